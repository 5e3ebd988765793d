//! Dispatch throughput: stores a backlog of callbacks, then times draining it through a no-op
//! handler with the dispatcher's default settings.
//!
//! ```text
//! cargo bench --bench dispatch                      # embedded SQLite (a temp file)
//! OKRA_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo bench --bench dispatch                    # PostgreSQL (a fresh database)
//! ```
//!
//! `OKRA_BENCH_CALLBACKS` (default 100000) and `OKRA_BENCH_RECORDS` (default 500) size the
//! backlog; `OKRA_BENCH_CONCURRENCY` overrides the dispatcher's records served at once (default:
//! the dispatcher's own). It also reports how fast the backlog was stored through
//! `Store::insert` with 256
//! writers (the store alone, without HTTP). See BENCHMARKS.md.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures::{stream, StreamExt};
use okra_callbacks::{
    async_trait,
    store::{self, NewCallback, Store},
    Context, DispatchConfig, Dispatcher, Handler, HandlerResult,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Counts deliveries and does nothing else.
struct NoOp {
    delivered: AtomicU64,
    target: u64,
    done: Notify,
}

#[async_trait]
impl Handler for NoOp {
    fn name(&self) -> &str {
        "noop"
    }

    async fn handle(&self, _cx: &Context) -> HandlerResult {
        if self.delivered.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            self.done.notify_one();
        }
        Ok(())
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fresh database on the server `base` names; returns its URL and name.
async fn fresh_postgres(base: &str) -> (String, String) {
    let (client, conn) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to OKRA_BENCH_DATABASE_URL: {e}"));
    tokio::spawn(conn);
    let name = format!("okra_bench_{}", uuid::Uuid::now_v7().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create the bench database");
    let (prefix, _) = base.split('?').next().unwrap().rsplit_once('/').unwrap();
    (format!("{prefix}/{name}"), name)
}

async fn drop_postgres(base: &str, name: &str) {
    if let Ok((client, conn)) = tokio_postgres::connect(base, tokio_postgres::NoTls).await {
        tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let n = env_usize("OKRA_BENCH_CALLBACKS", 100_000);
    let records = env_usize("OKRA_BENCH_RECORDS", 500).max(1);
    let pg_base = std::env::var("OKRA_BENCH_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, pg_name) = match &pg_base {
        Some(base) => {
            let (url, name) = fresh_postgres(base).await;
            (url, Some(name))
        }
        None => (
            format!("sqlite://{}", dir.path().join("bench.db").display()),
            None,
        ),
    };
    let backend = if pg_name.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let store: Arc<dyn Store> = store::open(&url).await.expect("open the store");

    // 1. The backlog: n distinct callbacks over `records` records.
    let started = Instant::now();
    let window = Duration::from_secs(24 * 3600);
    let inserted = stream::iter(0..n)
        .map(|i| {
            let store = store.clone();
            async move {
                let record = format!("rec_{:05}", i % records);
                let body = format!(
                    r#"{{"callback_type":"TRANSACTIONS","callback_code":"PERIODIC_TRANSACTIONS","record":"{record}","new_transactions":{i},"env":"production"}}"#
                );
                let cb = NewCallback {
                    id: uuid::Uuid::now_v7().to_string(),
                    source: "okra".into(),
                    event_id: None,
                    record,
                    callback_type: "TRANSACTIONS".into(),
                    callback_code: Some("PERIODIC_TRANSACTIONS".into()),
                    body: body.into_bytes().into(),
                    received_at: chrono::Utc::now(),
                };
                store.insert(cb, window).await.expect("insert")
            }
        })
        .buffer_unordered(256)
        .filter(|i| futures::future::ready(!i.duplicate))
        .count()
        .await;
    let insert_secs = started.elapsed().as_secs_f64();
    assert_eq!(inserted, n, "every callback is distinct");
    let backlog = store.stats().await.expect("stats");
    assert_eq!(backlog.pending, n as u64);

    // 2. Drain it through a no-op handler.
    let handler = Arc::new(NoOp {
        delivered: AtomicU64::new(0),
        target: n as u64,
        done: Notify::new(),
    });
    let defaults = DispatchConfig::default();
    let config = DispatchConfig {
        concurrency: env_usize("OKRA_BENCH_CONCURRENCY", defaults.concurrency),
        ..defaults
    };
    let dispatcher = Dispatcher::new(
        store.clone(),
        handler.clone(),
        config.clone(),
        "bench".into(),
    );
    let stop = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(dispatcher.run(stop.clone()));
    tokio::time::timeout(Duration::from_secs(600), handler.done.notified())
        .await
        .expect("the backlog drains within 10 minutes");
    let handled_secs = started.elapsed().as_secs_f64();
    // Done means recorded as delivered in the store, not only handed to the handler.
    loop {
        if store.stats().await.expect("stats").pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drained_secs = started.elapsed().as_secs_f64();
    stop.cancel();
    running.await.expect("dispatcher stops");
    assert_eq!(handler.delivered.load(Ordering::Relaxed), n as u64);

    println!(
        "dispatch backend={backend} callbacks={n} records={records} concurrency={} batch={}",
        config.concurrency, config.batch
    );
    println!(
        "  store insert (256 writers, no HTTP): {:.2} s = {:.0} callbacks/s",
        insert_secs,
        n as f64 / insert_secs
    );
    println!(
        "  handed to the handler: {:.2} s = {:.0} callbacks/s",
        handled_secs,
        n as f64 / handled_secs
    );
    println!(
        "  drained (all recorded delivered): {:.2} s = {:.0} callbacks/s",
        drained_secs,
        n as f64 / drained_secs
    );
    drop(store);
    if let (Some(base), Some(name)) = (&pg_base, &pg_name) {
        drop_postgres(base, name).await;
    }
}
