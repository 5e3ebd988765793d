//! A user's own `main`: the receiver with custom business logic, in a few lines.
//!
//! ```text
//! cargo run --example custom_handler
//! okra-callbacks send --type RECORD --code ERROR      # in another terminal
//! ```

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
    let handlers = AllOf::new().with(LogHandler::new()).with(Underwriting);
    let receiver = Receiver::new(config, handlers).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    receiver
        .run(listener, async {
            tokio::signal::ctrl_c().await.ok();
        })
        .await?;
    Ok(())
}
