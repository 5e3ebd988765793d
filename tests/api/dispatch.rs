//! Delivery: per-record order, parallelism across records, retries, dead letters, replay,
//! panics and timeouts, and resuming after a restart.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use serde_json::Value;

use crate::both_stores;
use crate::support::{app, callback, on, paths, Action, Backend};

/// What the handler saw, as `(seq, attempt, outcome)` per call.
fn trace(seen: &[crate::support::Seen]) -> Vec<(u64, u32, &'static str)> {
    seen.iter()
        .map(|s| (seq_of(&s.body), s.attempt, s.outcome))
        .collect()
}

fn seq_of(body: &[u8]) -> u64 {
    serde_json::from_slice::<Value>(body).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

async fn one_record_is_delivered_in_order_one_at_a_time(backend: Backend) {
    let mut app = app(backend)
        .await
        .script(|_| Action::Sleep(Duration::from_millis(15)))
        .spawn()
        .await;
    for n in 0..20 {
        app.post_ok(callback(
            "rec-order",
            "TRANSACTIONS",
            "PERIODIC_TRANSACTIONS",
            n,
        ))
        .await;
    }
    let order: Vec<u64> = app
        .seen_n(20)
        .await
        .iter()
        .map(|s| seq_of(&s.body))
        .collect();
    assert_eq!(order, (0..20).collect::<Vec<_>>());
    assert_eq!(
        app.load.max_per_record.load(Ordering::SeqCst),
        1,
        "one record's callbacks never overlap"
    );
}

async fn different_records_are_handled_in_parallel(backend: Backend) {
    let mut app = app(backend)
        .await
        .script(|_| Action::Sleep(Duration::from_millis(300)))
        .spawn()
        .await;
    // Posted at once: one after another on a busy machine, each could be handled (300 ms)
    // before the next arrived, and nothing would overlap for a reason that is not the receiver's.
    let bodies: Vec<String> = (0..8)
        .map(|r| callback(&format!("rec-par-{r}"), "BALANCE", "BALANCE_SUCCESS", r))
        .collect();
    futures::future::join_all(bodies.into_iter().map(|body| app.post_ok(body))).await;
    let started = std::time::Instant::now();
    app.seen_n(8).await;
    assert!(
        app.load.max_total.load(Ordering::SeqCst) >= 4,
        "records overlap"
    );
    assert_eq!(app.load.max_per_record.load(Ordering::SeqCst), 1);
    // One after another this would take 8 × 300 ms.
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "{:?}",
        started.elapsed()
    );
}

async fn failures_are_retried_then_succeed_and_hold_the_record_back(backend: Backend) {
    let failures: Arc<Mutex<HashMap<u64, u32>>> = Default::default();
    let f = failures.clone();
    let mut app = app(backend)
        .await
        .script(move |cx| {
            let seq = seq_of(cx.envelope.raw());
            let mut f = f.lock().unwrap();
            let n = f.entry(seq).or_default();
            *n += 1;
            if seq == 0 && *n <= 2 {
                Action::Fail("ledger unavailable")
            } else {
                Action::Succeed
            }
        })
        .spawn()
        .await;
    let first = app
        .post_ok(callback(
            "rec-retry",
            "TRANSACTIONS",
            "INITIAL_TRANSACTIONS",
            0,
        ))
        .await;
    app.post_ok(callback(
        "rec-retry",
        "TRANSACTIONS",
        "PERIODIC_TRANSACTIONS",
        1,
    ))
    .await;
    let seen = app.seen_n(4).await;
    let got = trace(&seen);
    assert_eq!(
        got,
        vec![(0, 1, "fail"), (0, 2, "fail"), (0, 3, "ok"), (1, 1, "ok")]
    );
    let id = first["id"].as_str().unwrap();
    let state = app.wait_status(id, "delivered").await;
    assert_eq!(state["attempts"], 3);
    assert_eq!(state["last_error"], Value::Null);
}

async fn dead_after_max_attempts_then_the_record_goes_on_and_replay_works(backend: Backend) {
    let poison = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let p = poison.clone();
    let mut app = app(backend)
        .await
        .config(|c| c.delivery.max_attempts = 3)
        .script(move |cx| {
            if seq_of(cx.envelope.raw()) == 0 && p.load(Ordering::SeqCst) {
                Action::Panic
            } else {
                Action::Succeed
            }
        })
        .spawn()
        .await;
    let dead = app
        .post_ok(callback("rec-dead", "RECORD", "ERROR", 0))
        .await;
    let next = app
        .post_ok(callback(
            "rec-dead",
            "RECORD",
            "WEBHOOK_UPDATE_ACKNOWLEDGED",
            1,
        ))
        .await;
    let seen = app.seen_n(4).await;
    let got = trace(&seen);
    assert_eq!(
        got,
        vec![
            (0, 1, "panic"),
            (0, 2, "panic"),
            (0, 3, "panic"),
            (1, 1, "ok")
        ]
    );
    let id = dead["id"].as_str().unwrap();
    let state = app.wait_status(id, "dead").await;
    assert_eq!(state["attempts"], 3);
    assert!(
        state["last_error"].as_str().unwrap().contains("panicked"),
        "{state}"
    );

    // The handler reports before the outcome is recorded: wait for it.
    app.wait_status(next["id"].as_str().unwrap(), "delivered")
        .await;

    // The record's listing shows both, oldest first.
    let (status, list) = app.record_query("rec-dead", "record").await;
    assert_eq!(status, 200, "{list}");
    let statuses: Vec<&str> = list["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["dead", "delivered"]);

    // Replay hands it over again, with a fresh attempt budget.
    poison.store(false, Ordering::SeqCst);
    let response = app.replay(id).await;
    assert_eq!(response.status(), 202);
    let again = app.next_seen().await;
    assert_eq!(
        (seq_of(&again.body), again.attempt, again.outcome),
        (0, 4, "ok")
    );
    let state = app.wait_status(id, "delivered").await;
    assert_eq!(state["attempts"], 4);
    // Replaying a delivered callback delivers it once more.
    let response = app.replay(id).await;
    assert_eq!(response.status(), 202);
    assert_eq!(app.next_seen().await.attempt, 5);
    // Unknown ids are 404.
    let response = app.replay("nope").await;
    assert_eq!(response.status(), 404);
}

async fn replay_all_dead(backend: Backend) {
    let healed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = healed.clone();
    let mut app = app(backend)
        .await
        .config(|c| c.delivery.max_attempts = 1)
        .script(move |_| {
            if h.load(Ordering::SeqCst) {
                Action::Succeed
            } else {
                Action::Fail("down")
            }
        })
        .spawn()
        .await;
    let mut ids = Vec::new();
    for r in 0..3 {
        ids.push(
            app.post_ok(callback(&format!("rec-rd-{r}"), "AUTH", "AUTH_SUCCESS", r))
                .await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    app.seen_n(3).await;
    for id in &ids {
        app.wait_status(id, "dead").await;
    }
    healed.store(true, Ordering::SeqCst);
    let response = app.replay_dead().await;
    assert_eq!(response.status(), 202);
    assert_eq!(response.json::<Value>().await.unwrap()["replayed"], 3);
    let seen = app.seen_n(3).await;
    assert!(seen.iter().all(|s| s.outcome == "ok" && s.attempt == 2));
    for id in &ids {
        app.wait_status(id, "delivered").await;
    }
}

async fn slow_handlers_time_out_and_are_retried(backend: Backend) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut app = app(backend)
        .await
        .config(|c| c.delivery.handler_timeout = Duration::from_millis(200))
        .script(move |_| {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                Action::Sleep(Duration::from_secs(3))
            } else {
                Action::Succeed
            }
        })
        .spawn()
        .await;
    let answer = app
        .post_ok(callback("rec-slow", "INCOME", "PRODUCT_IS_READY", 0))
        .await;
    let id = answer["id"].as_str().unwrap();
    // The timed-out call never reports (it is cancelled); the retry does.
    let seen = app.next_seen().await;
    assert_eq!(seen.attempt, 2);
    let state = app.wait_status(id, "delivered").await;
    assert_eq!(state["attempts"], 2);
}

async fn query_api_lists_a_record_by_method(backend: Backend) {
    let mut app = app(backend).await.spawn().await;
    let t = app
        .post_ok(callback("rec-q", "TRANSACTIONS", "INITIAL_TRANSACTIONS", 0))
        .await;
    app.post_ok(callback("rec-q", "BALANCE", "BALANCE_SUCCESS", 1))
        .await;
    app.seen_n(2).await;
    app.wait_status(t["id"].as_str().unwrap(), "delivered")
        .await;
    let (status, body) = app.record_query("rec-q", "Transactions").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["record"], "rec-q");
    assert_eq!(body["method"], "TRANSACTIONS");
    let list = body["callbacks"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    let item = &list[0];
    assert_eq!(item["id"], t["id"]);
    assert_eq!(item["callback_type"], "TRANSACTIONS");
    assert_eq!(item["callback_code"], "INITIAL_TRANSACTIONS");
    assert_eq!(item["status"], "delivered");
    assert_eq!(item["attempts"], 1);
    assert_eq!(item["payload"]["seq"], 0);
    let received = item["received_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(received).is_ok(),
        "{received}"
    );

    let (status, body) = app.record_query("rec-q", "AUTH").await;
    assert_eq!(
        (status, body["callbacks"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    for (query, status, code) in [
        (paths::list(&[("method", "AUTH")]), 400, "missing_parameter"),
        (
            paths::list(&[("record", "rec-q")]),
            400,
            "missing_parameter",
        ),
        (paths::record_query("rec-q", "LOANS"), 400, "invalid_method"),
        (
            paths::record_query("never-seen", "AUTH"),
            404,
            "record_not_found",
        ),
        (paths::callback("not-an-id"), 404, "not_found"),
    ] {
        let (got, body) = app.get_json(&query).await;
        assert_eq!(
            (got, body["error"]["code"].as_str().unwrap()),
            (status, code),
            "{query}: {body}"
        );
    }
    let (_, body) = app.record_query("rec-q", "LOANS").await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("TRANSACTIONS"));
}

async fn admin_api_needs_the_admin_token_when_set(backend: Backend) {
    let app = app(backend)
        .await
        .config(|c| c.access.admin_token = Some(okra_callbacks::Secret::new("adm1n")))
        .spawn()
        .await;
    let id = app
        .post_ok(callback("rec-adm", "AUTH", "AUTH_SUCCESS", 0))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in [
        paths::record_query("rec-adm", "AUTH"),
        paths::callback(&id),
        "/metrics".into(),
    ] {
        for token in [None, Some("wrong")] {
            let mut request = app.client.get(app.url(&path));
            if let Some(t) = token {
                request = request.bearer_auth(t);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{path} {token:?}");
        }
        let response = app
            .client
            .get(app.url(&path))
            .bearer_auth("adm1n")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let response = app.replay(&id).await;
    assert_eq!(response.status(), 401);
    // Health checks stay open to load balancers.
    assert_eq!(app.get_json("/healthz").await.0, 200);
    assert_eq!(app.get_json("/readyz").await.0, 200);
}

async fn pending_callbacks_resume_after_a_restart(backend: Backend) {
    let mut app = app(backend)
        .await
        .config(|c| {
            c.delivery.max_attempts = 100;
            c.delivery.retry_base_delay = Duration::from_millis(60_000);
            c.delivery.retry_max_delay = Duration::from_secs(120);
        })
        .script(|_| Action::Fail("not yet"))
        .spawn()
        .await;
    let first = app
        .post_ok(callback("rec-restart", "AUTH", "AUTH_SUCCESS", 0))
        .await;
    app.post_ok(callback("rec-restart", "AUTH", "AUTH_SUCCESS", 1))
        .await;
    assert_eq!(app.next_seen().await.outcome, "fail");
    let db = app.stop().await;

    // The same database, a new process-equivalent: both callbacks are still there, and the
    // pending ones are delivered once the retry falls due (replay makes it due now).
    let mut app = on(db).spawn().await;
    let id = first["id"].as_str().unwrap();
    let (status, state) = app.get_callback(id).await;
    assert_eq!((status, state["status"].as_str()), (200, Some("pending")));
    assert_eq!(state["attempts"], 1);
    let response = app.replay(id).await;
    assert_eq!(response.status(), 202);
    let seen = app.seen_n(2).await;
    assert_eq!(
        seen.iter().map(|s| seq_of(&s.body)).collect::<Vec<_>>(),
        [0, 1]
    );
    assert_eq!(seen[0].attempt, 2);
}

async fn undelivered_work_is_picked_up_by_the_next_process(backend: Backend) {
    // A receiver stops (gracefully) while callbacks are queued behind a slow handler; the
    // next one on the same database delivers the rest without any request.
    let mut app = app(backend)
        .await
        .config(|c| c.limits.shutdown_timeout = Duration::from_secs(5))
        .script(|_| Action::Sleep(Duration::from_millis(200)))
        .spawn()
        .await;
    for n in 0..5 {
        app.post_ok(callback(
            "rec-resume",
            "TRANSACTIONS",
            "PERIODIC_TRANSACTIONS",
            n,
        ))
        .await;
    }
    let before = app.next_seen().await;
    // The first receiver goes on until it has drained, so it may deliver more than `before`.
    let (db, drained) = app.stop_seen().await;
    let mut app = on(db).spawn().await;
    let mut delivered: Vec<u64> = std::iter::once(&before)
        .chain(&drained)
        .map(|s| seq_of(&s.body))
        .collect();
    while delivered.len() < 5 || *delivered.last().unwrap() != 4 {
        delivered.push(seq_of(&app.next_seen().await.body));
    }
    let mut unique = delivered.clone();
    unique.dedup();
    assert_eq!(
        unique,
        (0..5).collect::<Vec<_>>(),
        "in order, each at least once: {delivered:?}"
    );
}

both_stores!(
    one_record_is_delivered_in_order_one_at_a_time,
    different_records_are_handled_in_parallel,
    failures_are_retried_then_succeed_and_hold_the_record_back,
    dead_after_max_attempts_then_the_record_goes_on_and_replay_works,
    replay_all_dead,
    slow_handlers_time_out_and_are_retried,
    query_api_lists_a_record_by_method,
    admin_api_needs_the_admin_token_when_set,
    pending_callbacks_resume_after_a_restart,
    undelivered_work_is_picked_up_by_the_next_process,
);

/// Without an admin token the read/admin API answers loopback peers only (the socket's peer,
/// not any header).
#[tokio::test]
async fn admin_api_is_loopback_only_without_a_token() {
    use axum::{body::Body, extract::ConnectInfo, http::Request};
    use tower::ServiceExt;

    let db = crate::support::TestDb::new(Backend::Sqlite).await;
    let receiver = okra_callbacks::Receiver::new(
        crate::support::test_config(&db),
        okra_callbacks::LogHandler::new(),
    )
    .await
    .unwrap();
    let router = receiver.router();
    let call = |peer: &str, path: &str| {
        let mut request = Request::get(path)
            .header("x-forwarded-for", "127.0.0.1")
            .body(Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo::<std::net::SocketAddr>(peer.parse().unwrap()));
        router.clone().oneshot(request)
    };
    for path in [
        paths::record_query("r", "AUTH"),
        paths::callback("x"),
        "/metrics".to_owned(),
    ] {
        let path = path.as_str();
        let response = call("203.0.113.9:5000", path).await.unwrap();
        assert_eq!(response.status(), 403, "{path}");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "forbidden");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--admin-token"));
        assert_ne!(
            call("127.0.0.1:5000", path).await.unwrap().status(),
            403,
            "{path}"
        );
        assert_ne!(
            call("[::1]:5000", path).await.unwrap().status(),
            403,
            "{path}"
        );
    }
    // Health stays open to everyone.
    assert_eq!(
        call("203.0.113.9:5000", "/healthz").await.unwrap().status(),
        200
    );
}

/// A record whose pending count drifted (counted, but no callback waits) is claimed empty. Its
/// lease is given back at once: were it kept, the heartbeat would renew it while nobody serves
/// the record, and the record's next callback would never be delivered by this process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_claim_gives_its_lease_back() {
    if crate::support::postgres_url().is_none() {
        return;
    }
    let db = crate::support::TestDb::new(Backend::Postgres).await;
    drop(okra_callbacks::store::open(&db.url).await.unwrap());
    let client = crate::support::postgres_client(&db.url).await;
    client
        .execute(
            "INSERT INTO okra_record_queue (record, pending, due_at) VALUES ('rec-drift', 1, 0)",
            &[],
        )
        .await
        .unwrap();
    let mut app = on(db).spawn().await;
    // The dispatcher has claimed the drifted record (empty) by the time its lease is gone.
    crate::support::eventually(
        Duration::from_secs(10),
        "the drifted record was claimed and its lease given back",
        || async {
            let row = client
                .query_one(
                    "SELECT lease_gen, lease_until FROM okra_record_queue WHERE record = 'rec-drift'",
                    &[],
                )
                .await
                .unwrap();
            let (generation, until): (i64, Option<i64>) = (row.get(0), row.get(1));
            (generation > 0 && until.is_none()).then_some(())
        },
    )
    .await;
    app.post_ok(callback("rec-drift", "AUTH", "AUTH_SUCCESS", 0))
        .await;
    let seen = app.next_seen().await;
    assert_eq!(seq_of(&seen.body), 0);
    assert_eq!(seen.outcome, "ok");
}

/// A receiver on PostgreSQL with deliveries deferred for at most `max` during a burst, in a
/// burst it cannot get out of: record `rec-burst`'s queue row is locked by another session
/// (returned, with its transaction open), so 20 callbacks of that record wait to be stored (its
/// first callback was delivered before, so the row exists). Before the burst, one callback of
/// `rec-other` failed its first attempt: its retry falls due (within a second) during the burst.
async fn in_a_burst(max: Duration) -> Option<(crate::support::TestApp, tokio_postgres::Client)> {
    crate::support::postgres_url()?;
    let db = crate::support::TestDb::new(Backend::Postgres).await;
    let url = db.url.clone();
    let mut app = on(db)
        .config(|c| {
            c.delivery.max_delivery_deferral = max;
            c.delivery.retry_base_delay = Duration::from_secs(1);
            // The burst's inserts wait for the lock as long as the test holds it, however slow
            // the machine: one that timed out would end the burst early.
            c.store.database_timeout = Duration::from_secs(60);
        })
        .script(|cx| match cx.record().as_str() {
            "rec-other" if cx.attempt == 1 => Action::Fail("not yet"),
            _ => Action::Succeed,
        })
        .metrics()
        .spawn()
        .await;
    app.post_ok(callback("rec-burst", "BALANCE", "BALANCE_SUCCESS", 0))
        .await;
    assert_eq!(seq_of(&app.next_seen().await.body), 0);
    app.post_ok(callback("rec-other", "AUTH", "AUTH_SUCCESS", 100))
        .await;
    let failed = app.next_seen().await;
    assert_eq!((seq_of(&failed.body), failed.attempt), (100, 1));
    assert_eq!(deferred_gauge(&app).await, Some(0.0), "no burst yet");
    let lock = crate::support::postgres_client(&url).await;
    lock.batch_execute(
        "BEGIN; SELECT 1 FROM okra_record_queue WHERE record = 'rec-burst' FOR UPDATE",
    )
    .await
    .unwrap();
    for n in 1..=20 {
        let post = app.callback_request();
        tokio::spawn(async move {
            let body = callback("rec-burst", "BALANCE", "BALANCE_SUCCESS", n);
            let _ = post.body(body).send().await;
        });
    }
    crate::support::eventually(
        Duration::from_secs(10),
        "deliveries give way to the burst",
        || async { (deferred_gauge(&app).await == Some(1.0)).then_some(()) },
    )
    .await;
    Some((app, lock))
}

/// Asserts that `seen` are `rec-burst`'s 20 callbacks of the burst, in the order they were
/// stored (the 20 requests raced each other, so their order is the database's).
async fn assert_the_burst_in_order(client: &tokio_postgres::Client, seen: &[crate::support::Seen]) {
    let stored: Vec<String> = crate::support::first_column(
        client,
        "SELECT id FROM okra_callbacks WHERE record = 'rec-burst' ORDER BY seq OFFSET 1",
        &[],
    )
    .await;
    let delivered: Vec<&str> = seen.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(delivered, stored, "the burst, in the order it was stored");
    let mut numbers: Vec<u64> = seen.iter().map(|s| seq_of(&s.body)).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=20).collect::<Vec<_>>());
}

/// `okra_delivery_deferred`, as `/metrics` shows it now.
async fn deferred_gauge(app: &crate::support::TestApp) -> Option<f64> {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    let text = response.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("okra_delivery_deferred "))
        .and_then(|v| v.trim().parse().ok())
}

/// While callbacks queue to be stored (a burst the database is the bottleneck of), the
/// dispatcher takes no new work, so the database's time goes to acknowledging: a retry that
/// falls due meanwhile waits, and is delivered once the burst is over — and the burst's own
/// callbacks follow, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_wait_while_callbacks_queue_to_be_stored() {
    let Some((mut app, lock)) = in_a_burst(Duration::from_secs(60)).await else {
        return;
    };
    app.assert_quiet(Duration::from_secs(2)).await;
    lock.batch_execute("ROLLBACK").await.unwrap();
    let (retry, burst): (Vec<_>, Vec<_>) = app
        .seen_n(21)
        .await
        .into_iter()
        .partition(|s| s.record == "rec-other");
    assert_eq!(retry.len(), 1, "the retry");
    assert_eq!((seq_of(&retry[0].body), retry[0].attempt), (100, 2));
    assert_the_burst_in_order(&lock, &burst).await;
    assert_eq!(deferred_gauge(&app).await, Some(0.0), "the burst is over");
}

/// A burst that lasts longer than `--max-delivery-deferral` does not hold deliveries back any
/// longer: they go on alongside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_longer_than_the_deferral_is_delivered_alongside() {
    // Long enough for the test to see the deferral begin (the gauge) however slow the machine.
    let Some((mut app, lock)) = in_a_burst(Duration::from_secs(2)).await else {
        return;
    };
    let retry = app.next_seen().await;
    assert_eq!(
        (seq_of(&retry.body), retry.attempt),
        (100, 2),
        "the retry, delivered while the burst still lasts"
    );
    assert_eq!(deferred_gauge(&app).await, Some(0.0));
    lock.batch_execute("ROLLBACK").await.unwrap();
    let burst = app.seen_n(20).await;
    assert_the_burst_in_order(&lock, &burst).await;
}
