//! A user's own `main`: the receiver with custom business logic, in a few lines.
//!
//! ```text
//! cargo run --example custom_handler                 # listens on 127.0.0.1:8081
//! # in another terminal:
//! cargo run -- send --url http://127.0.0.1:8081/v1/callback --type TRANSACTIONS --code PERIODIC_TRANSACTIONS
//! cargo run -- send --url http://127.0.0.1:8081/v1/callback --type RECORD --code ERROR --record rec-login-required
//! ```
//!
//! It listens on 127.0.0.1:8081 so that it runs beside `cargo run` (8080); set `LISTEN` to
//! choose another address (`LISTEN=127.0.0.1:0` picks a free port and prints it).
//!
//! The second `send` fails on purpose: `Underwriting` cannot reach the customer yet, so the
//! callback is retried with backoff and, after three attempts (a few seconds here), is
//! declared `dead` — replay it with `cargo run -- replay --url http://127.0.0.1:8081 --dead`.
//! Until then it holds back the later callbacks of its record (they are delivered in order),
//! which is why it is sent for a record of its own (`--record rec-login-required`) and not the
//! samples' record, whose other callbacks would wait behind it.

use okra_callbacks::{
    async_trait, AllOf, Config, Context, Handler, HandlerError, HandlerResult, IdentityEvent,
    LogHandler, Receiver, RecordEvent, TransactionsEvent,
};

/// What a lending team might do with Okra's callbacks.
struct Underwriting;

#[async_trait]
impl Handler for Underwriting {
    async fn on_transactions(&self, cx: &Context, event: &TransactionsEvent) -> HandlerResult {
        match event {
            TransactionsEvent::Initial { new_transactions }
            | TransactionsEvent::Full { new_transactions }
            | TransactionsEvent::Periodic { new_transactions } => {
                println!(
                    "{}: fetch {new_transactions:?} new transactions",
                    cx.record()
                );
            }
            TransactionsEvent::Deleted {
                removed_transactions,
            } => {
                println!(
                    "{}: drop {} transactions",
                    cx.record(),
                    removed_transactions.len()
                );
            }
            TransactionsEvent::Other(code) => println!("{}: new code {code:?}", cx.record()),
        }
        Ok(())
    }

    async fn on_identity(&self, cx: &Context, event: &IdentityEvent) -> HandlerResult {
        if let IdentityEvent::IdentityIsReady(Some(identity)) = event {
            // Personal data: store it, never log it.
            let has_bvn = identity.bvn.is_some();
            println!(
                "{}: identity received (BVN present: {has_bvn})",
                cx.record()
            );
        }
        Ok(())
    }

    async fn on_record(&self, cx: &Context, event: &RecordEvent) -> HandlerResult {
        if let RecordEvent::Error(error) = event {
            if error.error_code.as_deref() == Some("RECORD_LOGIN_REQUIRED") {
                // Returning an error means "try again later": the receiver retries with backoff.
                return Err(HandlerError::msg(format!(
                    "could not notify the customer of record {} yet",
                    cx.record()
                )));
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    okra_callbacks::telemetry::init_tracing(Default::default());
    let mut config = Config::default();
    config.store.database_url = "sqlite://example-callbacks.db".into();
    // A short retry schedule, so the failing callback turns dead while you watch.
    config.delivery.max_attempts = 3;
    config.delivery.retry_base_delay = std::time::Duration::from_secs(1);
    let handlers = AllOf::new().with(LogHandler::new()).with(Underwriting);
    let receiver = Receiver::new(config, handlers).await?;
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8081".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    receiver
        .run(listener, async {
            tokio::signal::ctrl_c().await.ok();
        })
        .await?;
    Ok(())
}
