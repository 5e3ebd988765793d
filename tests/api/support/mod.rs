//! Test support, one file per concern. Spawns the real receiver on port 0 over a real store,
//! with a fake handler that reports what it sees down a channel. Quiet unless `TEST_LOG` is set.
//!
//! - [`app`] / [`on`] → [`Builder`](app::Builder) → [`TestApp`], with one typed helper per endpoint
//!   ([`TestApp::post_callback`], [`TestApp::get_callback`], [`TestApp::record_query`],
//!   [`TestApp::replay`], [`TestApp::replay_dead`]); [`paths`] for tests that build requests
//!   themselves (raw sockets, a router called in-process, child processes);
//! - [`eventually`]: the one way to wait for something asynchronous;
//! - [`fixture`] / [`samples`]: the one loader of Okra's sample payloads (`samples/`);
//! - [`callback`]: a distinct callback body per record and marker;
//! - [`error_body`]: an error answer, checked against the contract's shape;
//! - [`Switchable`]: a store the test can switch off;
//! - [`sources`]: a sources file for the receiver, requests to `POST /v1/sources/{name}`, each
//!   provider's signature, and a stand-in of Plaid's key service.
//!
//! The files: `app.rs` (spawning the receiver), `handler.rs` (the fake handler), `client.rs`
//! (requests and error bodies), `db.rs` (a database per test), `services.rs` (where PostgreSQL
//! and the brokers are, and skipping without them), `samples.rs`, `wait.rs`, `switchable.rs`,
//! `sources.rs`, `browser.rs` (headless Chromium for the console), `process.rs` (the real binary in child
//! processes, replicas, and the forward sink) and `proxy.rs` (a controllable TCP proxy).
//!
//! PostgreSQL tests read the server URL from `OKRA_TEST_DATABASE_URL` and create a fresh database
//! per test. Without it they skip with a message — except under `CI=true`, where they must run.

mod app;
pub mod browser;
mod client;
mod db;
mod handler;
pub mod process;
pub mod proxy;
mod samples;
pub mod services;
pub mod sources;
mod switchable;
mod wait;

pub use app::{app, keep_callsites_enabled, on, serve, spawn_with_store, test_config, TestApp};
pub use client::{error_body, paths};
pub use db::{
    first_column, fresh_postgres_database, postgres_client, postgres_schema, Backend, TestDb,
};
pub use handler::{Action, Seen};
pub use samples::{callback, fixture, samples, samples_dir};
pub use services::postgres_url;
pub use switchable::Switchable;
pub use wait::{eventually, eventually_true, try_eventually};

/// Runs each named test against SQLite and, when configured, PostgreSQL:
/// `both_stores!(name)` makes `name::sqlite` and `name::postgres` from `async fn name(Backend)`.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::support::postgres_url().is_some() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            }
        }
    )*};
}

/// A fresh receiver's `/metrics` (SQLite, a registry of its own), before any callback: the
/// text, and the metric names on it.
pub async fn fresh_metrics() -> (String, std::collections::BTreeSet<String>) {
    let app = app(Backend::Sqlite).await.metrics().spawn().await;
    let text = app.metrics_text().await;
    let names = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split([' ', '{']).next())
        .map(str::to_owned)
        .collect();
    (text, names)
}
