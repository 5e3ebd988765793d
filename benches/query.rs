//! The operator's queries at size: fills a store with 1,000,000 callbacks (bulk SQL), serves it
//! with the real receiver on loopback, and times filtered pages of `GET /v1/callbacks` (by
//! status, type, record, unfiltered, and a page deep into a walk), a page of a large record's
//! `GET /v1/callback`, and `GET /v1/stats`: p50 / p99 / max over sequential requests.
//!
//! ```text
//! cargo bench --bench query                       # embedded SQLite (a temp file)
//! OKRA_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo bench --bench query                     # PostgreSQL (a fresh database)
//! ```
//!
//! `OKRA_BENCH_ROWS` (default 1000000) sizes the store, `OKRA_BENCH_REQUESTS` (default 300)
//! the requests per query. The mix: 60% TRANSACTIONS, 15% BALANCE, 10% IDENTITY, 5% AUTH,
//! 5% INCOME, 4% RECORD, 1% ACCOUNTS; 99.4% delivered, 0.5% dead, 0.1% pending (pending
//! ones are not queued for the dispatcher, so the store stays still while it is measured);
//! 50,000 records of ~20 callbacks, and one record (`rec-big`) with 2.5% of all. See
//! BENCHMARKS.md.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use okra_callbacks::{store, AllOf, Config, Receiver};

/// The callback type of row `i` (by its last two digits).
const TYPE_SQL: &str = "CASE WHEN i % 100 < 60 THEN 'TRANSACTIONS' WHEN i % 100 < 75 THEN 'BALANCE' \
     WHEN i % 100 < 85 THEN 'IDENTITY' WHEN i % 100 < 90 THEN 'AUTH' WHEN i % 100 < 95 THEN 'INCOME' \
     WHEN i % 100 < 99 THEN 'RECORD' ELSE 'ACCOUNTS' END";
/// The status of row `i`: 0.1% pending, 0.5% dead, the rest delivered.
const STATUS_SQL: &str = "CASE WHEN i % 1000 = 7 THEN 0 WHEN i % 200 = 3 THEN 2 ELSE 1 END";
/// The record of row `i`: every 40th is `rec-big`.
const RECORD_SQL: &str = "CASE WHEN i % 40 = 0 THEN 'rec-big' ELSE 'rec-' || (i % 50000) END";

fn rows() -> i64 {
    std::env::var("OKRA_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn requests() -> usize {
    std::env::var("OKRA_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// Fills the SQLite file at `path` (already migrated, not open) with `n` callbacks.
fn fill_sqlite(path: &std::path::Path, n: i64) {
    let conn = rusqlite::Connection::open(path).expect("open the file");
    let now = chrono::Utc::now().timestamp_millis();
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;
         BEGIN;
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})
         INSERT INTO callbacks (id, record, callback_type, callback_code, body, received_at,
                                status, attempts, cycle_attempts, next_attempt_at, finished_at)
         SELECT printf('bench-%010d', i), {RECORD_SQL}, {TYPE_SQL}, 'SOME_CODE',
                CAST('{{\"callback_type\":\"X\",\"record\":\"r\",\"n\":' || i || '}}' AS BLOB),
                {now} - ({n} - i) * 10, {STATUS_SQL}, 1, 1, NULL, NULL
         FROM s;
         DELETE FROM callback_counts;
         INSERT INTO callback_counts (callback_type, status, n)
           SELECT callback_type, status, count(*) FROM callbacks GROUP BY callback_type, status;
         COMMIT;
         ANALYZE;"
    ))
    .expect("fill");
}

/// Fills the (migrated) PostgreSQL database at `url` with `n` callbacks.
async fn fill_postgres(url: &str, n: i64) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let now = chrono::Utc::now().timestamp_millis();
    client
        .batch_execute(&format!(
            "INSERT INTO okra_callbacks (id, record, callback_type, callback_code, body,
                                         received_at, status, attempts, cycle_attempts)
             SELECT 'bench-' || lpad(i::text, 10, '0'), {RECORD_SQL}, {TYPE_SQL}, 'SOME_CODE',
                    convert_to('{{\"callback_type\":\"X\",\"record\":\"r\",\"n\":' || i || '}}', 'UTF8'),
                    {now} - ({n} - i) * 10, {STATUS_SQL}, 1, 1
             FROM generate_series(1, {n}) AS i;
             DELETE FROM okra_callback_counts;
             INSERT INTO okra_callback_counts (callback_type, status, shard, n)
               SELECT callback_type, status, 0, count(*) FROM okra_callbacks
               GROUP BY callback_type, status;"
        ))
        .await
        .expect("fill");
    // Not in the fill's (implicit) transaction: VACUUM refuses to run in one.
    client
        .batch_execute("VACUUM ANALYZE okra_callbacks")
        .await
        .expect("vacuum");
}

/// A fresh database on the server `base` names; returns its URL.
async fn fresh_postgres(base: &str) -> String {
    let (client, conn) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .expect("connect to OKRA_BENCH_DATABASE_URL");
    tokio::spawn(conn);
    let name = format!("okra_query_bench_{}", std::process::id());
    // Two statements: DROP DATABASE and CREATE DATABASE cannot share a transaction.
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        client
            .batch_execute(&sql)
            .await
            .expect("create the bench database");
    }
    let (prefix, _) = base.rsplit_once('/').expect("a URL with a database");
    format!("{prefix}/{name}")
}

/// Times `n` sequential GETs of `path`; returns sorted latencies. Asserts 200s.
async fn time_get(client: &reqwest::Client, base: &str, path: &str, n: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body = response.bytes().await.unwrap();
        times.push(started.elapsed());
        assert!(!body.is_empty());
    }
    times.sort();
    times
}

/// The RFC 3339 time (URL-encoded) at which the newest `n` callbacks of the fill begin (the
/// fill spaces them 10 ms apart, the newest now).
fn since(n: i64) -> String {
    let t = chrono::Utc::now() - chrono::Duration::milliseconds(n * 10);
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        .replace(':', "%3A")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run(label: &str, url: &str) {
    let store = store::open(url).await.expect("open the store");
    let mut config = Config::default();
    config.store.database_url = url.to_owned();
    let receiver = Receiver::with_store(config, store, Arc::new(AllOf::new())).expect("receiver");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(receiver.run(listener, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let n = requests();

    // A cursor 200 pages (10,000 callbacks) into the unfiltered walk.
    let mut cursor = String::new();
    for _ in 0..200 {
        let page: serde_json::Value = client
            .get(format!("{base}/v1/callbacks?limit=50{cursor}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        cursor = format!("&cursor={}", page["next_cursor"].as_str().unwrap());
    }
    let deep = format!("/v1/callbacks?limit=50{cursor}");
    let queries = [
        ("unfiltered, limit 50", "/v1/callbacks".to_owned()),
        (
            "unfiltered, limit 500",
            "/v1/callbacks?limit=500".to_owned(),
        ),
        ("unfiltered, page 201", deep),
        ("status=dead", "/v1/callbacks?status=dead".to_owned()),
        ("status=pending", "/v1/callbacks?status=pending".to_owned()),
        (
            "status=delivered",
            "/v1/callbacks?status=delivered".to_owned(),
        ),
        (
            "callback_type=identity",
            "/v1/callbacks?callback_type=identity".to_owned(),
        ),
        (
            "callback_type=ACCOUNTS (1%)",
            "/v1/callbacks?callback_type=ACCOUNTS".to_owned(),
        ),
        (
            "type + status=dead",
            "/v1/callbacks?callback_type=BALANCE&status=dead".to_owned(),
        ),
        (
            "record (20 callbacks)",
            "/v1/callbacks?record=rec-123".to_owned(),
        ),
        (
            "record=rec-big (25,000)",
            "/v1/callbacks?record=rec-big".to_owned(),
        ),
        (
            "GET /v1/callback rec-big TRANSACTIONS, limit 100",
            "/v1/callback?record=rec-big&method=TRANSACTIONS".to_owned(),
        ),
        ("GET /v1/stats", "/v1/stats".to_owned()),
        // Time bounds are plain conditions on the received-order walk: cheap when the
        // matches are near the newest end, a scan of what lies between when they are not.
        (
            "received_after = the last 1%",
            format!("/v1/callbacks?received_after={}", since(rows() / 100)),
        ),
        (
            "received_before = the oldest 1% (scans 99%)",
            format!("/v1/callbacks?received_before={}", since(rows() * 99 / 100)),
        ),
    ];
    println!("\n{label}: {n} sequential requests per query (ms)");
    println!("{:<50} {:>8} {:>8} {:>8}", "query", "p50", "p99", "max");
    for (name, path) in &queries {
        // One warm-up request, as a dashboard's first page would be.
        time_get(&client, &base, path, 1).await;
        // The scan is slow: fewer of it.
        let n = if name.contains("scans") { n.min(30) } else { n };
        let t = time_get(&client, &base, path, n).await;
        let p = |q: f64| ms(t[((t.len() as f64 * q).ceil() as usize).clamp(1, t.len()) - 1]);
        println!(
            "{:<50} {:>8.2} {:>8.2} {:>8.2}",
            name,
            p(0.50),
            p(0.99),
            ms(*t.last().unwrap())
        );
    }
    let _ = stop.send(());
    let _ = server.await;
}

#[tokio::main]
async fn main() {
    let n = rows();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // OKRA_BENCH_SQLITE=0 measures PostgreSQL only.
    if std::env::var("OKRA_BENCH_SQLITE").map_or(true, |v| v != "0") {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("query-bench.db");
        drop(
            store::open(&format!("sqlite://{}", path.display()))
                .await
                .expect("migrate"),
        );
        // The database thread lets go of the file once the store is dropped.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        fill_sqlite(&path, n);
        println!(
            "SQLite: {n} callbacks filled in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        run("SQLite", &format!("sqlite://{}", path.display())).await;
    }

    if let Ok(base) = std::env::var("OKRA_BENCH_DATABASE_URL") {
        let url = fresh_postgres(&base).await;
        drop(store::open(&url).await.expect("migrate"));
        let started = Instant::now();
        fill_postgres(&url, n).await;
        println!(
            "\nPostgreSQL: {n} callbacks filled in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        run("PostgreSQL", &url).await;
        let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        let name = url.rsplit('/').next().unwrap_or_default();
        let _ = client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    } else {
        println!("\n(PostgreSQL skipped: set OKRA_BENCH_DATABASE_URL to measure it too)");
    }
}
