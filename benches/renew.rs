//! The heartbeat's cost: how fast one replica renews 1,000 held leases (one statement per beat,
//! `Store::renew`), beside a baseline measured in the same run on the same database — a claim
//! of the same 1,000 records, the statement the heartbeat stands next to.
//!
//! ```text
//! OKRA_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench renew
//! ```
//!
//! `OKRA_BENCH_LEASES` (default 1000) sets how many leases are held; `OKRA_BENCH_BEATS` (default
//! 200) how many beats are timed. At the default `--lease 10s` a replica beats every 3.3 s, so
//! `beats/s × 3.3` is how many replicas' heartbeats the database could serve at once. See
//! BENCHMARKS.md.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use okra_callbacks::store::{Delivery, Ingest, NewCallback, PostgresStore};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let Ok(base) = std::env::var("OKRA_BENCH_DATABASE_URL") else {
        eprintln!("renew: set OKRA_BENCH_DATABASE_URL (a PostgreSQL server) to run this bench");
        return;
    };
    let leases = env_or("OKRA_BENCH_LEASES", 1000);
    let beats = env_or("OKRA_BENCH_BEATS", 200);
    let (admin, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .expect("connect to OKRA_BENCH_DATABASE_URL");
    tokio::spawn(conn);
    let name = format!("okra_bench_{}", uuid::Uuid::now_v7().simple());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (prefix, _) = base.split('?').next().unwrap().rsplit_once('/').unwrap();
    let store = PostgresStore::connect(&format!("{prefix}/{name}"))
        .await
        .unwrap();
    for n in 0..leases {
        let body = format!(r#"{{"record":"rec-{n:05}","n":{n}}}"#);
        store
            .insert(
                NewCallback {
                    id: format!("cb-{n:05}"),
                    source: "okra".into(),
                    event_id: None,
                    record: format!("rec-{n:05}"),
                    callback_type: "TRANSACTIONS".into(),
                    callback_code: None,
                    body: Bytes::from(body),
                    received_at: Utc::now(),
                },
                Duration::from_secs(60),
            )
            .await
            .unwrap();
    }
    let lease = Duration::from_secs(10);
    // Baseline: claiming the 1,000 records (and reading one callback of each), then giving
    // them back, `beats` / 10 times.
    let rounds = (beats / 10).max(1);
    let started = Instant::now();
    for _ in 0..rounds {
        let claims = store.claim("bench", leases, 1, lease).await.unwrap();
        assert_eq!(claims.len(), leases);
        store.release_all("bench").await.unwrap();
    }
    let claim_each = started.elapsed() / rounds as u32;
    let claims = store.claim("bench", leases, 1, lease).await.unwrap();
    assert_eq!(claims.len(), leases);
    let started = Instant::now();
    for _ in 0..beats {
        let renewal = store.renew("bench", lease).await.unwrap();
        assert_eq!(renewal.renewed, leases, "every lease renewed");
    }
    let elapsed = started.elapsed();
    let beat = elapsed / beats as u32;
    let per_second = (beats * leases) as f64 / elapsed.as_secs_f64();
    println!(
        "renew: {leases} held leases, {beats} beats: {:.2} ms per beat (one statement), \
         {per_second:.0} lease renewals/s; baseline in the same run: claiming the same \
         {leases} records takes {:.2} ms. At --lease 10s (a beat every 3.3 s) one replica \
         holding {leases} leases keeps the database busy {:.3}% of the time.",
        beat.as_secs_f64() * 1000.0,
        claim_each.as_secs_f64() * 1000.0,
        beat.as_secs_f64() / 3.333 * 100.0,
    );
    drop(store);
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}
