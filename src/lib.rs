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
//! The walk of one callback: bytes → who may call → parse → store → dispatch → handler. Every
//! public item has one path: what a handler author uses is at the root; the modules that stay
//! public ([`output`], [`source`], [`store`], [`telemetry`]) hold what is not.
//!
//! - `callback` (private; its types at the root): the payload model — [`Envelope::parse`] turns
//!   Okra's bytes into a typed [`Callback`] (`okra.rs`: [`RecordEvent`], [`TransactionsEvent`],
//!   …; [`RecordId`], [`ParseError`]); [`Envelope::from_event`] wraps another source's
//!   [`Event`] (`event.rs`), Plaid's typed too ([`PlaidWebhook`], `plaid.rs`).
//! - `handler` (private; its items at the root): the [`Handler`] trait, its [`Context`] and
//!   [`HandlerError`], [`handle_by_type`], [`AllOf`] for several handlers, and the
//!   [`LogHandler`] the binary always runs (`handler/log.rs`: it writes only the process's own
//!   log, so it is no output).
//! - [`output`]: where callbacks go besides your code, each a [`Handler`] — an internal HTTP
//!   service ([`output::ForwardHandler`], `--forward-url`) and message brokers (NATS JetStream,
//!   Redis Streams, RabbitMQ: [`output::OutputConfig`], `--output`).
//! - [`store`]: the durable inbox — the [`store::Store`] trait, embedded SQLite
//!   ([`store::SqliteStore`]) and shared PostgreSQL ([`store::PostgresStore`]).
//! - `dispatch` (private): the [`Dispatcher`] and its [`DispatchConfig`] — ordered,
//!   at-least-once delivery with retries; exported to run a worker without the HTTP API.
//! - `http` (private): the HTTP API — ingest, the read/admin routes, health, metrics and the
//!   OpenAPI document ([`openapi`]), who may call, the error bodies — and the web console at
//!   `/console` (`http::console`: server-rendered pages on the same state, store and admin rule
//!   as the API). [`Receiver::router`] gives its `Router`.
//! - [`source`]: who sends callbacks, how their requests are proven genuine and how their
//!   payloads are read — [`source::Sources`] from the sources file (Plaid, Mono, Paystack,
//!   Standard Webhooks, generic), and Okra's own [`source::Verifier`].
//! - `config` (private; its types at the root): the flags, typed, in groups ([`Config`]:
//!   [`StoreConfig`], [`AccessConfig`], [`LimitsConfig`], [`DeliveryConfig`]); `settings`
//!   (private) checks them together once, at start-up ([`ConfigError`]).
//! - [`telemetry`]: log escaping ([`telemetry::Untrusted`]) and URL redaction, metric names,
//!   the `tracing` subscriber ([`telemetry::Logs`]), OTel; the metrics registry is
//!   [`Metrics`], at the root.
//! - `server` (private): the [`Receiver`] — runs it all until shutdown — and its [`Error`].
//!
//! The binary (`src/main.rs`) adds its own flags (`--listen`, logging, `--forward-url`) and the
//! client commands (`send`, `replay`, `healthcheck`, in `src/cli/`); the sample payloads `send`
//! ships with are in `samples/`.

#![warn(missing_docs)]

mod callback;
mod config;
mod dispatch;
mod handler;
mod http;
pub mod output;
mod server;
mod settings;
pub mod source;
pub mod store;
pub mod telemetry;

pub use async_trait::async_trait;
pub use callback::{
    AccountData, AccountsEvent, AuthData, AuthEvent, BalanceEvent, Callback, CallbackType,
    Envelope, Event, IdentityData, IdentityEvent, IncomeEvent, OkraError, ParseError, PlaidError,
    PlaidItemEvent, PlaidTransactionsEvent, PlaidWebhook, RecordEvent, RecordId, SourceModel,
    SourceModels, TransactionsEvent, MAX_FIELD_CHARS,
};
pub use config::{
    parse_duration, AccessConfig, Config, ConfigError, DeliveryConfig, LimitsConfig, Secret,
    StoreConfig,
};
pub use dispatch::{DispatchConfig, Dispatcher};
pub use handler::{
    handle_by_type, AllOf, Context, Handler, HandlerError, HandlerResult, LogHandler,
};
pub use server::{Error, Receiver};
pub use telemetry::registry::Metrics;

/// The OpenAPI 3 document of every route a [`Receiver`] serves (what `GET /openapi.json`
/// answers), for generating clients or checking a deployment against it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    http::openapi()
}

/// The README's Rust examples, compiled by `cargo test --doc` so they cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
