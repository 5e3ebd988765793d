//! Broker output throughput: callbacks/s the dispatcher delivers through each output (NATS
//! JetStream, Redis Streams, RabbitMQ), each broker drained by a no-op consumer, next to the
//! no-op handler alone, alternated in the same run.
//!
//! ```text
//! cargo bench --bench outputs
//! ```
//!
//! Each run stores a fresh backlog (`OKRA_BENCH_CALLBACKS`, default 10000, over
//! `OKRA_BENCH_RECORDS`, default 100 records) in an embedded SQLite store and drains it through
//! the dispatcher with its default settings; a run ends when the store reports nothing pending
//! (every callback confirmed by the broker and recorded delivered). `OKRA_BENCH_ROUNDS`
//! (default 2) rounds of: no-op, NATS, no-op, Redis, no-op, RabbitMQ. The brokers are
//! `OKRA_TEST_NATS_URL`, `OKRA_TEST_REDIS_URL` and `OKRA_TEST_AMQP_URL` (default: the loopback
//! servers); one that cannot be reached is skipped. See BENCHMARKS.md.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use async_nats::jetstream;
use futures::{stream, StreamExt};
use lapin::{
    options::{
        BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
        QueueDeclareOptions, QueueDeleteOptions,
    },
    types::FieldTable,
    Connection, ConnectionProperties, ExchangeKind,
};
use okra_callbacks::{
    async_trait,
    output::OutputConfig,
    store::{self, NewCallback, Store},
    AllOf, Context, DispatchConfig, Dispatcher, Handler, HandlerResult,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Counts deliveries and does nothing else: the baseline, and the last link after an output.
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

fn env_url(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// A broker destination of this run's own, with a consumer that reads and drops every message.
struct Broker {
    name: &'static str,
    output_url: String,
    consumed: Arc<AtomicU64>,
    cleanup: Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send>,
}

async fn nats(url: &str, id: &str) -> Result<Broker, String> {
    let client = async_nats::connect(url).await.map_err(|e| e.to_string())?;
    let js = jetstream::new(client);
    let name = format!("OKRA_BENCH_{id}");
    let prefix = format!("okrabench.{id}");
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![format!("{prefix}.>")],
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let consumed = Arc::new(AtomicU64::new(0));
    let count = consumed.clone();
    let task = tokio::spawn(async move {
        while let Some(Ok(_)) = messages.next().await {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    Ok(Broker {
        name: "nats",
        output_url: format!("{url}?subject={prefix}.{{callback_type}}"),
        consumed,
        cleanup: Box::new(move || {
            Box::pin(async move {
                task.abort();
                let _ = js.delete_stream(&name).await;
            })
        }),
    })
}

async fn redis(url: &str, id: &str) -> Result<Broker, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let key = format!("okra:bench:{id}");
    let consumed = Arc::new(AtomicU64::new(0));
    let count = consumed.clone();
    let (reader_key, mut reader) = (key.clone(), conn.clone());
    let task = tokio::spawn(async move {
        let mut last = "0".to_owned();
        loop {
            let reply: Result<redis::streams::StreamReadReply, _> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1000)
                .arg("BLOCK")
                .arg(100)
                .arg("STREAMS")
                .arg(&reader_key)
                .arg(&last)
                .query_async(&mut reader)
                .await;
            match reply {
                Ok(reply) => {
                    for key in reply.keys {
                        count.fetch_add(key.ids.len() as u64, Ordering::Relaxed);
                        if let Some(entry) = key.ids.last() {
                            last = entry.id.clone();
                        }
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    Ok(Broker {
        name: "redis",
        output_url: format!("{url}?stream={key}"),
        consumed,
        cleanup: Box::new(move || {
            Box::pin(async move {
                task.abort();
                let _: Result<i64, _> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
            })
        }),
    })
}

async fn amqp(url: &str, id: &str) -> Result<Broker, String> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .map_err(|e| e.to_string())?;
    let channel = conn.create_channel().await.map_err(|e| e.to_string())?;
    let exchange = format!("okra.bench.{id}");
    let queue = format!("okra.bench.{id}");
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "okra-bench".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let consumed = Arc::new(AtomicU64::new(0));
    let count = consumed.clone();
    let task = tokio::spawn(async move {
        while let Some(Ok(_)) = consumer.next().await {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    Ok(Broker {
        name: "amqp",
        output_url: format!(
            "{url}{}exchange={exchange}",
            if url.contains('?') { '&' } else { '?' }
        ),
        consumed,
        cleanup: Box::new(move || {
            Box::pin(async move {
                task.abort();
                let _ = channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await;
                let _ = channel
                    .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                    .await;
                drop(conn);
            })
        }),
    })
}

/// Stores `n` callbacks over `records` records, drains them through `output` (if any) then the
/// no-op handler, and returns callbacks/s until the store reports nothing pending.
async fn run(n: usize, records: usize, output: Option<Arc<dyn Handler>>) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store: Arc<dyn Store> = store::open(&url).await.expect("open the store");
    let window = Duration::from_secs(24 * 3600);
    stream::iter(0..n)
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
        .for_each(|_| async {})
        .await;

    let noop = Arc::new(NoOp {
        delivered: AtomicU64::new(0),
        target: n as u64,
        done: Notify::new(),
    });
    let handler: Arc<dyn Handler> = match output {
        Some(output) => {
            let mut chain = AllOf::new();
            chain.push(output);
            chain.push(noop.clone());
            Arc::new(chain)
        }
        None => noop.clone(),
    };
    let dispatcher = Dispatcher::new(
        store.clone(),
        handler,
        DispatchConfig::default(),
        "bench".into(),
    );
    let stop = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(dispatcher.run(stop.clone()));
    tokio::time::timeout(Duration::from_secs(600), noop.done.notified())
        .await
        .expect("the backlog drains within 10 minutes");
    while store.stats().await.expect("stats").pending != 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    stop.cancel();
    running.await.expect("dispatcher stops");
    n as f64 / secs
}

#[tokio::main]
async fn main() {
    let n = env_usize("OKRA_BENCH_CALLBACKS", 10_000);
    let records = env_usize("OKRA_BENCH_RECORDS", 100).max(1);
    let rounds = env_usize("OKRA_BENCH_ROUNDS", 2).max(1);
    let nats_url = env_url("OKRA_TEST_NATS_URL", "nats://127.0.0.1:4222");
    let redis_url = env_url("OKRA_TEST_REDIS_URL", "redis://127.0.0.1:6379");
    let amqp_url = env_url(
        "OKRA_TEST_AMQP_URL",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
    );
    println!(
        "outputs callbacks={n} records={records} rounds={rounds} concurrency={} (dispatcher defaults)",
        DispatchConfig::default().concurrency
    );
    let mut results: Vec<(&str, Vec<f64>)> = Vec::new();
    let mut record = |name: &'static str, rate: f64| {
        println!("  {name:<6} {rate:>8.0} callbacks/s");
        match results.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => v.push(rate),
            None => results.push((name, vec![rate])),
        }
    };
    for round in 1..=rounds {
        println!("round {round}");
        for which in ["nats", "redis", "amqp"] {
            record("noop", run(n, records, None).await);
            let id = uuid::Uuid::now_v7().simple().to_string();
            let broker = match which {
                "nats" => nats(&nats_url, &id).await,
                "redis" => redis(&redis_url, &id).await,
                _ => amqp(&amqp_url, &id).await,
            };
            let broker = match broker {
                Ok(b) => b,
                Err(e) => {
                    println!("  {which:<6} skipped: {e}");
                    continue;
                }
            };
            let output = OutputConfig::parse(&broker.output_url)
                .expect("output URL")
                .connect()
                .await
                .expect("output");
            let rate = run(n, records, Some(output)).await;
            // The consumer sees every message (a few ms after its confirm).
            let deadline = Instant::now() + Duration::from_secs(30);
            while broker.consumed.load(Ordering::Relaxed) < n as u64 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let consumed = broker.consumed.load(Ordering::Relaxed);
            assert!(
                consumed >= n as u64,
                "{}: the consumer got {consumed} of {n}",
                broker.name
            );
            record(broker.name, rate);
            (broker.cleanup)().await;
        }
    }
    println!("# medians");
    for (name, mut rates) in results {
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        println!(
            "{name:<6} {median:>8.0} callbacks/s (runs: {})",
            rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
