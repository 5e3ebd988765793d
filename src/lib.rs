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
//! The walk of one callback: bytes → who may call → parse → store → dispatch → handler.
//!
//! - [`callback`]: the payload model — [`Envelope::parse`] turns Okra's bytes into a typed
//!   [`Callback`]; [`Envelope::from_event`] wraps another source's event (Plaid's typed too).
//! - [`handler`]: the [`Handler`] trait, [`handle_by_type`] and [`AllOf`] for several handlers.
//! - [`builtin`]: the binary's handlers — [`LogHandler`] and [`ForwardHandler`].
//! - [`store`]: the durable inbox — the [`store::Store`] trait, embedded SQLite and shared
//!   PostgreSQL.
//! - `dispatch` (private): the [`Dispatcher`] — ordered, at-least-once delivery with retries;
//!   exported to run a worker without the HTTP API.
//! - `http` (private): the HTTP API — ingest, the read/admin routes, health, metrics and the
//!   OpenAPI document ([`openapi`]), who may call, the error bodies — and the web console at
//!   `/console` (`http::console`: server-rendered pages on the same state, store and admin rule
//!   as the API). [`Receiver::router`] gives its `Router`.
//! - [`output`]: outputs to message brokers (NATS JetStream, Redis Streams, RabbitMQ), each a [`Handler`].
//! - [`source`]: who sends callbacks, how their requests are proven genuine and how their
//!   payloads are read — [`source::Sources`] from the sources file (Plaid, Mono, Paystack,
//!   Standard Webhooks, generic), and Okra's own [`source::Verifier`].
//! - [`config`]: the flags, typed, in groups (store, access, limits, delivery); `settings`
//!   (private) checks them together once, at start-up.
//! - [`telemetry`]: log escaping ([`telemetry::Untrusted`]) and URL redaction, metric names,
//!   the metrics registry ([`Metrics`]), the `tracing` subscriber ([`telemetry::Logs`]), OTel.
//! - [`Receiver`] (private `server` module): runs it all until shutdown.
//!
//! The binary (`src/main.rs`) adds its own flags (`--listen`, logging, `--forward-url`) and the
//! client commands (`send`, `replay`, `healthcheck`, in `src/cli/`); the sample payloads `send`
//! ships with are in `samples/`.

#![warn(missing_docs)]

pub mod builtin;
pub mod callback;
pub mod config;
mod dispatch;
pub mod handler;
mod http;
pub mod output;
mod server;
mod settings;
pub mod source;
pub mod store;
pub mod telemetry;

pub use async_trait::async_trait;
pub use builtin::{ForwardHandler, LogHandler};
pub use callback::{
    AccountData, AccountsEvent, AuthData, AuthEvent, BalanceEvent, Callback, CallbackType,
    Envelope, IdentityData, IdentityEvent, IncomeEvent, OkraError, ParseError, RecordEvent,
    RecordId, TransactionsEvent,
};
pub use config::{AccessConfig, Config, DeliveryConfig, LimitsConfig, Secret, StoreConfig};
pub use dispatch::{DispatchConfig, Dispatcher};
pub use handler::{handle_by_type, AllOf, Context, Handler, HandlerError, HandlerResult};
pub use output::{AmqpOutput, NatsOutput, OutputConfig, RedisOutput};
pub use server::{Error, Receiver};
pub use telemetry::Metrics;

/// The OpenAPI 3 document of every route a [`Receiver`] serves (what `GET /openapi.json`
/// answers), for generating clients or checking a deployment against it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    http::openapi()
}
