//! Several replicas on one PostgreSQL database: dedup, claiming, order and crash recovery across
//! processes, and what a replica does while the database is away.
//!
//! Every test here needs `OKRA_TEST_DATABASE_URL` (they skip with a message without it).

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use okra_callbacks::{
    async_trait, store, Context, DispatchConfig, Dispatcher, Handler, HandlerResult,
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::{new_callback, Shortcuts};
use crate::support::process::{Delivery, Replicas, Sink};
use crate::support::proxy::{upstream_of, Link, Proxy};
use crate::support::{
    callback, eventually, eventually_true, fresh_postgres_database, on, paths, postgres_url,
    Backend, TestDb,
};

// ---------------------------------------------------------------------------------------------
// Dispatchers on two stores of one database behave like two replicas. (The store-level checks
// of two stores on one database live in `store.rs`.)

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A handler that reports each call, then takes `delay` before succeeding.
struct Probe {
    name: &'static str,
    delay: Duration,
    calls: mpsc::UnboundedSender<(&'static str, String)>,
}

#[async_trait]
impl Handler for Probe {
    fn name(&self) -> &str {
        self.name
    }

    async fn handle(&self, cx: &Context) -> HandlerResult {
        let _ = self.calls.send((self.name, cx.id.clone()));
        tokio::time::sleep(self.delay).await;
        Ok(())
    }
}

/// A worker whose lease ran out while its handler was still busy (a paused process, a slow
/// network) hears so when it records the outcome, and leaves the record to the replica that
/// took it over instead of going on with the callbacks it had claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_lease_was_taken_over_stops_serving_the_record() {
    let Some(base) = postgres_url() else { return };
    let url = fresh_postgres_database(&base).await;
    let (store_a, store_b) = (
        store::open(&url).await.unwrap(),
        store::open(&url).await.unwrap(),
    );
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            store_a
                .insert(new_callback("rec-lease", n), DAY)
                .await
                .unwrap()
                .id,
        );
    }
    let (tx, mut calls) = mpsc::unbounded_channel();
    let config = |lease_ms, poll_ms, renew_leases| DispatchConfig {
        lease: Duration::from_millis(lease_ms),
        handler_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(poll_ms),
        renew_leases,
        ..DispatchConfig::default()
    };
    let slow = Dispatcher::new(
        store_a,
        Arc::new(Probe {
            name: "slow",
            delay: Duration::from_millis(1500),
            calls: tx.clone(),
        }),
        // It does not poll again during the test, and does not renew its lease (as if paused),
        // so the other replica takes the record over.
        config(400, 10_000, false),
        "replica-a".into(),
    );
    let fast = Dispatcher::new(
        store_b.clone(),
        Arc::new(Probe {
            name: "fast",
            delay: Duration::ZERO,
            calls: tx,
        }),
        config(10_000, 50, true),
        "replica-b".into(),
    );
    let stop = CancellationToken::new();
    let slow_task = tokio::spawn(slow.run(stop.clone()));
    let first = tokio::time::timeout(Duration::from_secs(5), calls.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, ("slow", ids[0].clone()));
    let fast_task = tokio::spawn(fast.run(stop.clone()));
    // The slow handler ends at 1.5 s; give the slow worker time to go on if it (wrongly) would.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.cancel();
    slow_task.await.unwrap();
    fast_task.await.unwrap();
    let mut seen = vec![first];
    while let Ok(call) = calls.try_recv() {
        seen.push(call);
    }
    let by = |name| -> Vec<String> {
        seen.iter()
            .filter(|(who, _)| *who == name)
            .map(|(_, id)| id.clone())
            .collect()
    };
    assert_eq!(
        by("slow"),
        vec![ids[0].clone()],
        "the worker that lost its lease must not go on to the record's later callbacks"
    );
    assert_eq!(
        by("fast"),
        ids,
        "the new owner delivers the record in order"
    );
    let stored = store_b.callbacks_of("rec-lease").await;
    assert!(stored
        .iter()
        .all(|cb| cb.status == store::Status::Delivered));
    // The stale worker's outcome was refused (fencing); the new owner's counted once.
    assert_eq!(store_b.stats().await.unwrap().pending, 0);
}

/// Within one process the lease owner is the same for every worker, so a lease that lapsed while
/// a handler ran would let the process claim the record again and serve it twice at once; the
/// dispatcher leaves such a claim to the task already serving the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_never_serves_one_record_twice_at_once_when_its_lease_lapses() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = store::open(&db.url).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..2 {
        ids.push(
            store
                .insert(new_callback("rec-self", n), DAY)
                .await
                .unwrap()
                .id,
        );
    }
    let (tx, mut calls) = mpsc::unbounded_channel();
    let dispatcher = Dispatcher::new(
        store,
        Arc::new(Probe {
            name: "slow",
            delay: Duration::from_millis(1200),
            calls: tx,
        }),
        DispatchConfig {
            lease: Duration::from_millis(200),
            handler_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(20),
            ..DispatchConfig::default()
        },
        "replica-a".into(),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(dispatcher.run(stop.clone()));
    let mut seen = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(3000);
    while let Ok(Some((_, id))) = tokio::time::timeout_at(until, calls.recv()).await {
        seen.push(id);
    }
    stop.cancel();
    task.await.unwrap();
    assert_eq!(seen, ids, "each callback once, in order, one at a time");
}

// ---------------------------------------------------------------------------------------------
// Three real server processes on one database, with one killed mid-run.

/// POSTs one callback as Okra would: to the replica the load balancer picks (`first`), and on
/// a connection error or 5xx to the next live one. Returns the acknowledged id.
async fn post_round_robin(
    client: &reqwest::Client,
    replicas: &Replicas,
    first: usize,
    body: &str,
) -> String {
    let n = replicas.bases.len();
    for attempt in 0..60 {
        let i = (first + attempt) % n;
        if !replicas.is_alive(i) {
            continue;
        }
        let sent = client
            .post(format!("{}{}", replicas.bases[i], paths::CALLBACK))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 200 => {
                let answer: Value = r.json().await.unwrap();
                return answer["id"].as_str().unwrap().to_owned();
            }
            Ok(r) => assert!(
                r.status().is_server_error(),
                "unexpected answer {}",
                r.status()
            ),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no replica acknowledged {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_deliver_every_callback_in_order_through_a_sigkill() {
    const REPLICAS: usize = 3;
    const RECORDS: usize = 50;
    const PER_RECORD: usize = 40;
    const KILL_AFTER: usize = RECORDS * PER_RECORD / 3;
    const VICTIM: usize = 1;
    let Some(base) = postgres_url() else { return };
    let started = Instant::now();
    let url = fresh_postgres_database(&base).await;
    // Commits need not wait for the WAL flush here: the database server is not what is killed,
    // and 2,000 fsyncs would slow every other test sharing the disk.
    let admin = crate::support::postgres_client(&url).await;
    let name = url.rsplit('/').next().unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} SET synchronous_commit = off"
        ))
        .await
        .unwrap();
    drop(admin);
    // The internal service behind `--forward-url`: fails the first attempt of every tenth
    // callback (so retries cross replicas too), and holds each call open a moment, so
    // overlapping deliveries of one record would be caught.
    let sink = Sink::slow(Duration::from_millis(2))
        .failing(|d| d.seq.is_some_and(|seq| seq % 10 == 3) && d.attempt == 1);
    let forward_url = sink.start().await;
    let args = [
        "--forward-url",
        forward_url.as_str(),
        "--handler-timeout",
        "1s",
        "--forward-timeout",
        "1s",
        "--database-timeout",
        "1s",
        "--lease",
        "3s",
        "--database-pool-size",
        "8",
        "--retry-base-delay",
        "20ms",
        "--retry-max-delay",
        "200ms",
    ];
    let shared = Arc::new(Replicas::start(REPLICAS, &url, &args).await);
    let db = crate::support::postgres_client(&url).await;
    let acked = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let posters: Vec<_> = (0..RECORDS)
        .map(|r| {
            let (shared, acked, client) = (shared.clone(), acked.clone(), client.clone());
            tokio::spawn(async move {
                let record = format!("rec-{r:02}");
                let mut ids = Vec::with_capacity(PER_RECORD);
                for seq in 0..PER_RECORD {
                    let body = callback(&record, "TRANSACTIONS", "PERIODIC_TRANSACTIONS", seq);
                    ids.push(post_round_robin(&client, &shared, r + seq, &body).await);
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                (record, ids)
            })
        })
        .collect();

    // Kill one replica once a third is acknowledged, at a moment it holds live leases.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(Instant::now() < deadline, "posting stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let lease_query = "SELECT count(*) FROM okra_record_queue
         WHERE lease_owner LIKE $1 AND pending > 0
           AND lease_until > (extract(epoch from now()) * 1000)::bigint";
    let victim_owner = format!("replica-{VICTIM}-%");
    let mut leases_at_kill = 0;
    let wait_for_lease = Instant::now() + Duration::from_secs(5);
    while leases_at_kill == 0 && Instant::now() < wait_for_lease {
        leases_at_kill = db
            .query_one(lease_query, &[&victim_owner])
            .await
            .unwrap()
            .get::<_, i64>(0);
    }
    let acked_at_kill = acked.load(Ordering::SeqCst);
    let killed_at = Instant::now();
    shared.kill(VICTIM);

    let mut acknowledged: Vec<(String, Vec<String>)> = Vec::new();
    for poster in posters {
        acknowledged.push(poster.await.unwrap());
    }
    let posted_in = started.elapsed();

    // Every acknowledged callback reaches the sink, the killed replica's leases included.
    let all_delivered = || {
        let by_record = sink.by_record();
        acknowledged.iter().all(|(record, ids)| {
            let seen = by_record.get(record);
            ids.iter().enumerate().all(|(seq, id)| {
                seen.is_some_and(|d| {
                    d.iter()
                        .any(|d| d.ok && d.seq == Some(seq as u64) && d.id == *id)
                })
            })
        })
    };
    eventually_true(
        Duration::from_secs(30),
        "every acknowledged callback was delivered (30 s after the last POST)",
        all_delivered,
    )
    .await;
    let delivered_in = started.elapsed();
    let after_kill = killed_at.elapsed();
    let leases_left = db
        .query_one(lease_query, &[&victim_owner])
        .await
        .unwrap()
        .get::<_, i64>(0);

    let (redelivered, retried) = check_deliveries(&sink, &acknowledged);

    // Any live replica answers the read API for every callback, whichever replica stored it.
    let readers: Vec<usize> = (0..REPLICAS).filter(|i| *i != VICTIM).collect();
    for (n, (record, ids)) in acknowledged.iter().enumerate() {
        let base = &shared.bases[readers[n % readers.len()]];
        let what = format!("{record} is listed as delivered by {base}");
        eventually(Duration::from_secs(10), &what, || async {
            let listed: Value = client
                .get(format!(
                    "{base}{}",
                    paths::record_query(record, "transactions")
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let callbacks = listed["callbacks"].as_array().unwrap();
            let listed_ids: Vec<&str> = callbacks
                .iter()
                .map(|c| c["id"].as_str().unwrap())
                .collect();
            assert_eq!(listed_ids, *ids, "{record} as listed by {base}");
            callbacks
                .iter()
                .all(|c| c["status"] == "delivered")
                .then_some(())
        })
        .await;
    }

    let total: usize = acknowledged.iter().map(|(_, ids)| ids.len()).sum();
    assert_eq!(total, RECORDS * PER_RECORD);
    assert!(
        retried >= RECORDS * PER_RECORD / 10,
        "every tenth callback fails once"
    );
    assert_eq!(leases_left, 0, "the killed replica's leases expired");
    eprintln!(
        "multi-replica: {total} callbacks over {RECORDS} records on {REPLICAS} replicas; \
         replica-{VICTIM} SIGKILLed after {acked_at_kill} acks while holding {leases_at_kill} live \
         leases; all delivered {:.1}s after the kill; redeliveries of already delivered callbacks: \
         {redelivered}; retries after failed attempts: {retried}; posted in {:.1}s, all delivered \
         in {:.1}s",
        after_kill.as_secs_f64(),
        posted_in.as_secs_f64(),
        delivered_in.as_secs_f64(),
    );
}

/// Checks what the sink saw against what was acknowledged; returns the redeliveries of callbacks
/// already delivered, and the retries after failed attempts.
fn check_deliveries(sink: &Sink, acknowledged: &[(String, Vec<String>)]) -> (usize, usize) {
    let overlaps = sink.overlaps.lock().unwrap().clone();
    assert!(
        overlaps.is_empty(),
        "two deliveries of one record were in flight at once: {overlaps:?}"
    );
    let by_record = sink.by_record();
    let (mut redelivered, mut retried) = (0usize, 0usize);
    for (record, ids) in acknowledged {
        let deliveries = &by_record[record];
        // Order under at-least-once: the first call is the record's first callback; each call
        // after is the same callback again (a retry, or a redelivery after a crash) or, once
        // that one succeeded, the next one. Never an earlier one, never a skip.
        let seq = |d: &Delivery| d.seq.expect("the test's callbacks carry a seq");
        assert_eq!(seq(&deliveries[0]), 0, "{record}: {deliveries:?}");
        let mut done: HashSet<u64> = HashSet::new();
        for pair in deliveries.windows(2) {
            let (prev, next) = (&pair[0], &pair[1]);
            if prev.ok {
                done.insert(seq(prev));
            }
            let in_order =
                seq(next) == seq(prev) || (seq(next) == seq(prev) + 1 && done.contains(&seq(prev)));
            assert!(
                in_order,
                "{record}: seq {} delivered after seq {} (ok: {}): {deliveries:?}",
                seq(next),
                seq(prev),
                prev.ok
            );
        }
        for d in deliveries {
            assert_eq!(d.id, ids[seq(d) as usize], "{record}: the acknowledged id");
        }
        let successes = deliveries.iter().filter(|d| d.ok).count();
        redelivered += successes - ids.len();
        retried += deliveries.iter().filter(|d| !d.ok).count();
    }
    (redelivered, retried)
}

// ---------------------------------------------------------------------------------------------
// The database goes away and comes back under a running replica.

async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_away_post_answers_503_and_recovers_without_restart() {
    if postgres_url().is_none() {
        return;
    }
    let mut db = TestDb::new(Backend::Postgres).await;
    let proxy = Proxy::start(upstream_of(&db.url).await).await;
    db.url = proxy.url_through(&db.url);
    let mut app = on(db)
        .config(|c| c.store.database_timeout = Duration::from_secs(1))
        .spawn()
        .await;
    let body = |n| callback("rec-outage", "BALANCE", "BALANCE_SUCCESS", n);

    let before = app.post_ok(body(0)).await;
    assert_eq!(app.next_seen().await.id, before["id"].as_str().unwrap());
    assert_eq!(app.get_json("/readyz").await.0, 200);

    // Half-dead: the pooled connections stay open but nothing comes back.
    proxy.set(Link::Stall);
    let outage = Instant::now();
    let mut answers = Vec::new();
    let mut slowest = Duration::ZERO;
    for n in 1..=3 {
        let t = Instant::now();
        answers.push((n, error_code(app.post(body(n)).await).await));
        slowest = slowest.max(t.elapsed());
    }
    assert_eq!(app.get_json("/readyz").await.0, 503, "readyz while stalled");
    // Down: every connection cut, new ones refused.
    proxy.set(Link::Refuse);
    let mut n = 4;
    let refused_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < refused_until {
        let t = Instant::now();
        answers.push((n, error_code(app.post(body(n)).await).await));
        slowest = slowest.max(t.elapsed());
        n += 1;
    }
    assert_eq!(app.get_json("/readyz").await.0, 503, "readyz while down");
    for (n, answer) in &answers {
        assert_eq!(
            answer,
            &(503, "store_unavailable".to_owned()),
            "POST #{n} during the outage"
        );
    }
    assert!(
        slowest < Duration::from_secs(4),
        "a 503 took {slowest:?}: requests must not hang on a dead database"
    );

    // Back: the same process recovers by itself.
    proxy.set(Link::Up);
    let back = Instant::now();
    let outage_lasted = back - outage;
    eventually(
        Duration::from_secs(15),
        "a POST was acknowledged again after the outage",
        || async {
            match app.post(body(1000)).await.status().as_u16() {
                200 => Some(()),
                503 => None,
                other => panic!("unexpected {other} while recovering"),
            }
        },
    )
    .await;
    let recovered = back.elapsed();
    assert_eq!(
        app.get_json("/readyz").await.0,
        200,
        "readyz after recovery"
    );
    // What Okra retries after the 503s is acknowledged now, and every acknowledged callback
    // is delivered.
    let mut expected: HashSet<String> = HashSet::new();
    for (n, _) in &answers {
        let answer = app.post_ok(body(*n)).await;
        expected.insert(answer["id"].as_str().unwrap().to_owned());
    }
    let after = app.post_ok(body(1000)).await;
    expected.insert(after["id"].as_str().unwrap().to_owned());
    let mut delivered = HashSet::new();
    while !expected.is_subset(&delivered) {
        delivered.insert(app.next_seen().await.id);
    }
    eprintln!(
        "database outage: {} POSTs answered 503 store_unavailable over {:.1}s (slowest {:.2}s); \
         first 200 {:.2}s after the database was back, without a restart",
        answers.len(),
        outage_lasted.as_secs_f64(),
        slowest.as_secs_f64(),
        recovered.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// Leases that live by heartbeat: failover in about `--lease`, slow handlers keep their record,
// a paused replica is fenced off.

/// The records a replica (`replica-{i}-…`) holds a live lease on, with work pending.
async fn leases_held(db: &tokio_postgres::Client, replica: usize) -> Vec<String> {
    crate::support::first_column(
        db,
        "SELECT record FROM okra_record_queue
         WHERE lease_owner LIKE $1 AND pending > 0
           AND lease_until > (extract(epoch from now()) * 1000)::bigint
         ORDER BY record",
        &[&format!("replica-{replica}-%")],
    )
    .await
}

/// A record's lease owner and generation, as the database holds them.
async fn lease_row(db: &tokio_postgres::Client, record: &str) -> (Option<String>, i64) {
    let row = db
        .query_one(
            "SELECT lease_owner, lease_gen FROM okra_record_queue WHERE record = $1",
            &[&record],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    db
}

/// Posts `per_record` callbacks to each record, alternating replicas; returns what was
/// acknowledged.
async fn post_records(
    client: &reqwest::Client,
    replicas: &Replicas,
    records: &[String],
    per_record: usize,
) -> Vec<(String, Vec<String>)> {
    let mut acknowledged = Vec::new();
    for (r, record) in records.iter().enumerate() {
        let mut ids = Vec::with_capacity(per_record);
        for seq in 0..per_record {
            let body = callback(record, "TRANSACTIONS", "PERIODIC_TRANSACTIONS", seq);
            ids.push(post_round_robin(client, replicas, r + seq, &body).await);
        }
        acknowledged.push((record.clone(), ids));
    }
    acknowledged
}

/// Waits (at most `limit`) until the sink saw every acknowledged callback succeed.
async fn wait_all_delivered(sink: &Sink, acknowledged: &[(String, Vec<String>)], limit: Duration) {
    eventually_true(limit, "every acknowledged callback delivered", || {
        let by_record = sink.by_record();
        acknowledged.iter().all(|(record, ids)| {
            (0..ids.len() as u64).all(|seq| {
                by_record
                    .get(record)
                    .is_some_and(|d| d.iter().any(|d| d.ok && d.seq == Some(seq)))
            })
        })
    })
    .await;
}

/// Two replicas delivering to `forward_url`, with quick retries and `flags` (`[]`: the
/// defaults, `--lease 10s` among them).
async fn start_pair(url: &str, forward_url: &str, flags: &[&str]) -> Replicas {
    let mut args = vec![
        "--forward-url",
        forward_url,
        "--retry-base-delay",
        "20ms",
        "--retry-max-delay",
        "200ms",
    ];
    args.extend_from_slice(flags);
    Replicas::start(2, url, &args).await
}

/// The sink of the lease tests: `delay` per call of each record in `records`, and every call
/// of the record `failing` names fails while it names one.
fn lease_sink(records: &[String], delay: Duration, failing: Arc<Mutex<Option<String>>>) -> Sink {
    let mut sink = Sink::default();
    for record in records {
        sink.delays.insert(record.clone(), delay);
    }
    sink.failing(move |d| failing.lock().unwrap().as_deref() == d.record.as_deref())
}

/// With default flags (`--lease 10s`), a replica killed with `kill -9` while holding leases
/// loses its records to the survivor within about the lease: every acknowledged callback is
/// delivered within 30 s of the kill, in order, with at most one redelivery per record it held
/// (the call in flight when it died), and the survivor counts the takeovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_replicas_records_resume_within_thirty_seconds_with_default_flags() {
    const RECORDS: usize = 16;
    const PER_RECORD: usize = 8;
    const VICTIM: usize = 0;
    const SURVIVOR: usize = 1;
    let Some(base) = postgres_url() else { return };
    let url = fresh_postgres_database(&base).await;
    let records: Vec<String> = (0..RECORDS).map(|r| format!("rec-{r:02}")).collect();
    // Slow enough that both replicas hold leases while the test posts.
    let sink = lease_sink(&records, Duration::from_millis(400), Default::default());
    let forward_url = sink.start().await;
    let replicas = start_pair(&url, &forward_url, &[]).await;
    let db = connect(&url).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let acknowledged = post_records(&client, &replicas, &records, PER_RECORD).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut held = Vec::new();
    while held.is_empty() {
        assert!(Instant::now() < deadline, "the victim never held a lease");
        held = leases_held(&db, VICTIM).await;
    }
    let killed_at = Instant::now();
    replicas.kill(VICTIM);
    wait_all_delivered(&sink, &acknowledged, Duration::from_secs(30)).await;
    let all_delivered_after = killed_at.elapsed();
    // Takeover: from the kill to the first call of each record the victim held.
    let takeover = {
        let arrivals = sink.arrivals_by_record();
        held.iter()
            .map(|record| {
                arrivals[record]
                    .iter()
                    .find(|d| d.at > killed_at)
                    .map_or(Duration::MAX, |d| d.at - killed_at)
            })
            .max()
            .unwrap()
    };
    let (redelivered, retried) = check_deliveries(&sink, &acknowledged);
    assert_eq!(retried, 0, "no call failed");
    assert!(
        redelivered <= held.len(),
        "{redelivered} redeliveries for {} records held at the kill",
        held.len()
    );
    let takeovers = replicas
        .metric(SURVIVOR, "okra_lease_takeovers_total")
        .await;
    assert!(
        takeovers >= held.len() as f64,
        "the survivor counted {takeovers} takeovers of {} records",
        held.len()
    );
    assert!(takeover < Duration::from_secs(30), "{takeover:?}");
    eprintln!(
        "failover (default flags, --lease 10s): replica-{VICTIM} SIGKILLed holding {} leases; \
         its records resumed on the survivor {:.1}s after the kill (the last of them); all \
         {} callbacks delivered {:.1}s after the kill; redeliveries: {redelivered}",
        held.len(),
        takeover.as_secs_f64(),
        RECORDS * PER_RECORD,
        all_delivered_after.as_secs_f64(),
    );
}

/// A handler that runs three leases long (`--lease 2s`, a 6 s call) is called once: the
/// heartbeat renews the lease, so the other replica never takes the record (the lease keeps its
/// owner and generation throughout), and `GET /v1/callbacks/{id}` shows who holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_handler_running_three_leases_long_keeps_its_record_and_is_called_once() {
    let Some(base) = postgres_url() else { return };
    let url = fresh_postgres_database(&base).await;
    let record = "rec-slow".to_owned();
    let sink = lease_sink(
        std::slice::from_ref(&record),
        Duration::from_secs(6),
        Default::default(),
    );
    let forward_url = sink.start().await;
    let flags = [
        "--lease",
        "2s",
        "--database-timeout",
        "1s",
        "--handler-timeout",
        "20s",
        "--forward-timeout",
        "20s",
    ];
    let replicas = start_pair(&url, &forward_url, &flags).await;
    let db = connect(&url).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let acknowledged = post_records(&client, &replicas, std::slice::from_ref(&record), 2).await;
    let ids = acknowledged[0].1.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sink.arrivals_by_record().contains_key(&record) {
        assert!(
            Instant::now() < deadline,
            "the first callback was never delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let (owner, generation) = lease_row(&db, &record).await;
    let owner = owner.expect("the record is leased while its handler runs");
    // While the 6 s call runs (three leases), the lease stays with its owner, at its
    // generation; any replica shows it.
    let mut shown = 0;
    while started.elapsed() < Duration::from_millis(5500) {
        assert_eq!(
            lease_row(&db, &record).await,
            (Some(owner.clone()), generation),
            "the record changed hands {:?} into its handler call",
            started.elapsed()
        );
        let base = &replicas.bases[shown % 2];
        let detail: Value = client
            .get(format!("{base}/v1/callbacks/{}", ids[0]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(detail["lease"]["owner"], owner.as_str(), "{detail}");
        assert_eq!(detail["lease"]["generation"], generation, "{detail}");
        let until =
            chrono::DateTime::parse_from_rfc3339(detail["lease"]["until"].as_str().unwrap())
                .unwrap();
        assert!(until > chrono::Utc::now(), "a live lease: {detail}");
        shown += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_all_delivered(&sink, &acknowledged, Duration::from_secs(20)).await;
    let seqs: Vec<Option<u64>> = sink.by_record()[&record].iter().map(|d| d.seq).collect();
    assert_eq!(
        seqs,
        [Some(0), Some(1)],
        "each callback called once, in order"
    );
    for i in 0..2 {
        assert_eq!(replicas.metric(i, "okra_lease_takeovers_total").await, 0.0);
    }
    let renewals = replicas.metric(0, "okra_lease_renewals_total").await
        + replicas.metric(1, "okra_lease_renewals_total").await;
    assert!(
        renewals >= 3.0,
        "the lease was renewed by heartbeat: {renewals}"
    );
}

/// A replica paused (`SIGSTOP`) past its lease while its handler runs loses the record to the
/// other; resumed (`SIGCONT`), its handler's success is refused by the database (the lease's
/// generation moved on): the callback stays pending while the new owner's calls fail, nothing is
/// recorded twice, and order holds once the new owner delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_replica_records_no_outcome_for_a_record_taken_over_meanwhile() {
    let Some(base) = postgres_url() else { return };
    let url = fresh_postgres_database(&base).await;
    let record = "rec-stop".to_owned();
    let failing: Arc<Mutex<Option<String>>> = Default::default();
    let sink = lease_sink(
        std::slice::from_ref(&record),
        Duration::from_secs(1),
        failing.clone(),
    );
    let forward_url = sink.start().await;
    let flags = [
        "--lease",
        "2s",
        "--database-timeout",
        "1s",
        "--handler-timeout",
        "10s",
        "--forward-timeout",
        "10s",
        "--max-attempts",
        "1000",
    ];
    let replicas = start_pair(&url, &forward_url, &flags).await;
    let db = connect(&url).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let acknowledged = post_records(&client, &replicas, std::slice::from_ref(&record), 3).await;
    let ids = acknowledged[0].1.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sink.arrivals_by_record().contains_key(&record) {
        assert!(
            Instant::now() < deadline,
            "the first callback was never delivered"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Pause the replica whose handler call is in flight (the sink answers it after 1 s).
    let (owner, _) = lease_row(&db, &record).await;
    let owner = owner.unwrap();
    let stale = usize::from(owner.starts_with("replica-1-"));
    let other = 1 - stale;
    replicas.signal(stale, "STOP");
    let stopped_at = Instant::now();
    let stopped_wall = chrono::Utc::now();
    *failing.lock().unwrap() = Some(record.clone());
    // The other replica takes the record over once the lease runs out, and its calls fail.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let taken = sink.arrivals_by_record()[&record]
            .iter()
            .any(|d| d.at > stopped_at);
        if taken {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nobody took the paused replica's record over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let taken_over_after = stopped_at.elapsed();
    assert!(lease_row(&db, &record)
        .await
        .0
        .unwrap()
        .starts_with(&format!("replica-{other}-")));
    // Resume the stale one: its call had succeeded, but it may not record it.
    replicas.signal(stale, "CONT");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let detail: Value = client
        .get(format!("{}/v1/callbacks/{}", replicas.bases[other], ids[0]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        detail["status"], "pending",
        "the stale replica's success was recorded over the new owner's lease: {detail}"
    );
    // Fenced: no attempt the paused replica started is recorded — every recorded attempt began
    // after the pause, and none succeeded. (Who holds the lease now is not fixed: each failed
    // attempt gives the lease up for its retry, and the resumed replica may rightly claim the
    // record again under a new generation.)
    let history = detail["history"].as_array().expect("a history");
    assert!(!history.is_empty(), "{detail}");
    for attempt in history {
        let started =
            chrono::DateTime::parse_from_rfc3339(attempt["started_at"].as_str().unwrap()).unwrap();
        assert!(
            started > stopped_wall,
            "an attempt of the paused replica was recorded: {detail}"
        );
        assert_ne!(attempt["outcome"], "succeeded", "{detail}");
    }
    assert!(replicas.metric(stale, "okra_leases_lost_total").await >= 1.0);
    assert!(replicas.metric(other, "okra_lease_takeovers_total").await >= 1.0);
    *failing.lock().unwrap() = None;
    wait_all_delivered(&sink, &acknowledged, Duration::from_secs(15)).await;
    // Order held; and the first callback's recorded attempts are exactly the new owner's calls.
    let (_, _) = check_deliveries(&sink, &acknowledged);
    let calls_by_new_owner = sink.arrivals_by_record()[&record]
        .iter()
        .filter(|d| d.seq == Some(0) && d.at > stopped_at)
        .count();
    let deadline = Instant::now() + Duration::from_secs(5);
    let detail = loop {
        let detail: Value = client
            .get(format!("{}/v1/callbacks/{}", replicas.bases[other], ids[0]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if detail["status"] == "delivered" {
            break detail;
        }
        assert!(Instant::now() < deadline, "{detail}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        detail["attempts"].as_u64().unwrap() as usize,
        calls_by_new_owner,
        "the stale replica's attempt is not among the recorded ones: {detail}"
    );
    eprintln!(
        "SIGSTOP: record taken over {:.1}s after the pause (--lease 2s); the resumed replica's \
         outcome was refused",
        taken_over_after.as_secs_f64()
    );
}
