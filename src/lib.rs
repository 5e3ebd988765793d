//! Receive [Okra](https://okra.ng)'s open-banking callbacks durably, and hand them to your code.
//!
//! Okra POSTs a JSON callback whenever data about a customer's linked bank *record* is ready or
//! has changed. This crate turns each one into a typed [`Callback`], stores it before answering
//! 2xx, and delivers it to your [`Handler`] at least once, one at a time per record, in the order
//! received, retrying failures with backoff.
//!
//! ```no_run
//! use okra_callbacks::{async_trait, Config, Context, Handler, HandlerResult, Receiver, RecordEvent};
//!
//! struct Alerts;
//!
//! #[async_trait]
//! impl Handler for Alerts {
//!     async fn on_record(&self, cx: &Context, event: &RecordEvent) -> HandlerResult {
//!         if let RecordEvent::Error(e) = event {
//!             println!("record {} needs the customer: {:?}", cx.record(), e.error_code);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let receiver = Receiver::new(Config::default(), Alerts).await?;
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! receiver.run(listener, async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`callback`]: the payload model — [`Envelope::parse`] turns bytes into a typed [`Callback`].
//! - [`handler`]: the [`Handler`] trait, [`dispatch()`] and [`AllOf`] for several handlers.
//! - [`builtin`]: the binary's handlers — [`LogHandler`] and [`ForwardHandler`].
//! - [`store`]: the durable inbox — embedded SQLite or shared PostgreSQL.
//! - [`dispatch`](mod@dispatch): the dispatcher — ordered, at-least-once delivery with retries.
//! - [`http`]: routes, error bodies, auth and the OpenAPI document.
//! - [`config`]: typed, validated settings (clap + environment).
//! - [`client`]: the CLI's client side — `send`, `replay`, `healthcheck`.
//! - [`server`]: [`Receiver`], which runs it all until shutdown.
//! - [`signature`]: HMAC-SHA256 and Standard Webhooks signature checks on the raw body.
//! - [`telemetry`]: logging, tracing (optional OpenTelemetry export) and metrics set-up.

#![warn(missing_docs)]

pub mod builtin;
pub mod callback;
pub mod client;
pub mod config;
pub mod dispatch;
pub mod handler;
pub mod http;
pub mod output;
pub mod server;
pub mod signature;
pub mod store;
pub mod telemetry;

pub use async_trait::async_trait;
pub use builtin::{ForwardHandler, LogHandler};
pub use callback::{
    AccountData, AccountsEvent, AuthData, AuthEvent, BalanceEvent, Callback, CallbackType,
    Envelope, IdentityData, IdentityEvent, IncomeEvent, OkraError, ParseError, RecordEvent,
    RecordId, TransactionsEvent,
};
pub use config::{Config, Secret};
pub use handler::{dispatch, AllOf, Context, Handler, HandlerError, HandlerResult};
pub use output::{AmqpOutput, NatsOutput, OutputConfig, RedisOutput};
pub use server::{Error, Receiver};
pub use telemetry::Metrics;
