//! The operator's view: finding callbacks by filter a page at a time, pages of one record's
//! callbacks, attempt history, bulk replay by filter, stats, and the store migrations behind
//! them — on both stores.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use serde_json::Value;

use crate::both_stores;
use crate::support::{app, callback, error_body, Action, Backend, TestApp};

/// Waits until nothing is pending; returns the stats.
async fn settled(app: &TestApp) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (code, stats) = app.get_json("/v1/stats").await;
        assert_eq!(code, 200, "{stats}");
        if stats["pending"] == 0 {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "callbacks still pending: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The ids of one page of `GET /v1/callbacks?{query}`, and its `next_cursor`.
async fn page(app: &TestApp, query: &str) -> (Vec<String>, Option<String>) {
    let (code, body) = app.get_json(&format!("/v1/callbacks?{query}")).await;
    assert_eq!(code, 200, "{query}: {body}");
    let ids = body["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, body["next_cursor"].as_str().map(str::to_owned))
}

/// The ids of every page of `GET /v1/callbacks?{query}`, walked with `limit`.
async fn walk(app: &TestApp, query: &str, limit: usize) -> Vec<String> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("{query}&limit={limit}&cursor={c}"),
            None => format!("{query}&limit={limit}"),
        };
        let (ids, next) = page(app, &q).await;
        assert!(ids.len() <= limit);
        all.extend(ids);
        match next {
            Some(c) => cursor = Some(c),
            None => return all,
        }
    }
}

/// Posts callbacks and returns their ids in the order posted.
async fn post_all(app: &TestApp, items: &[(&str, &str, &str)], from: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, (record, kind, code)) in items.iter().enumerate() {
        let ack = app.post_ok(callback(record, kind, code, from + i)).await;
        ids.push(ack["id"].as_str().unwrap().to_owned());
    }
    ids
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn filters_each_and_combined(backend: Backend) {
    // Everything of record `rec-dead` fails, with one attempt allowed: dead at once.
    let app = app(backend)
        .await
        .config(|c| c.delivery.max_attempts = 1)
        .script(|cx| {
            if cx.record().as_str() == "rec-dead" {
                Action::Fail("ledger answered 503")
            } else {
                Action::Succeed
            }
        })
        .spawn()
        .await;
    let early = post_all(
        &app,
        &[
            ("rec-a", "TRANSACTIONS", "PERIODIC_TRANSACTIONS"),
            ("rec-a", "TRANSACTIONS", "PERIODIC_TRANSACTIONS"),
            ("rec-b", "IDENTITY", "IDENTITY_IS_READY"),
            ("rec-dead", "BALANCE", "BALANCE_SUCCESS"),
        ],
        0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let late = post_all(
        &app,
        &[
            ("rec-a", "TRANSACTIONS", "INITIAL_TRANSACTIONS"),
            ("rec-b", "IDENTITY", "IDENTITY_IS_READY"),
            ("rec-dead", "BALANCE", "BALANCE_SUCCESS"),
        ],
        100,
    )
    .await;
    let all: Vec<String> = early.iter().chain(&late).cloned().collect();
    settled(&app).await;

    // Unfiltered: newest first, no payloads, the list's fields.
    let (code, body) = app.get_json("/v1/callbacks").await;
    assert_eq!(code, 200, "{body}");
    let listed: Vec<String> = body["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    let newest_first: Vec<String> = all.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);
    assert!(body["next_cursor"].is_null(), "{body}");
    let first = &body["callbacks"][0];
    assert_eq!(first["record"], "rec-dead");
    assert_eq!(first["callback_type"], "BALANCE");
    assert_eq!(first["callback_code"], "BALANCE_SUCCESS");
    assert_eq!(first["status"], "dead");
    assert_eq!(first["attempts"], 1);
    assert!(first["received_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        first.get("payload").is_none(),
        "no payloads in lists: {first}"
    );

    let dead = vec![all[3].clone(), all[6].clone()];
    let q = |query: &'static str| {
        let app = &app;
        async move { sorted(page(app, query).await.0) }
    };
    assert_eq!(q("status=dead").await, sorted(dead.clone()));
    assert_eq!(
        q("status=delivered").await,
        sorted(
            all.iter()
                .filter(|id| !dead.contains(id))
                .cloned()
                .collect()
        )
    );
    assert_eq!(q("status=dead,delivered").await, sorted(all.clone()));
    assert_eq!(q("status=pending").await, Vec::<String>::new());
    assert_eq!(
        q("callback_type=identity").await,
        sorted(vec![all[2].clone(), all[5].clone()]),
        "the type in any case"
    );
    assert_eq!(
        q("callback_code=PERIODIC_TRANSACTIONS").await,
        sorted(vec![all[0].clone(), all[1].clone()])
    );
    assert_eq!(
        q("record=rec-a").await,
        sorted(vec![all[0].clone(), all[1].clone(), all[4].clone()])
    );
    let after = format!(
        "received_after={}",
        urlencode(&between.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    );
    let before = after.replace("received_after", "received_before");
    assert_eq!(sorted(page(&app, &after).await.0), sorted(late.clone()));
    assert_eq!(sorted(page(&app, &before).await.0), sorted(early.clone()));
    // Combined (AND).
    assert_eq!(
        q("record=rec-dead&status=delivered").await,
        Vec::<String>::new()
    );
    assert_eq!(
        q("callback_type=BALANCE&status=dead&record=rec-dead").await,
        sorted(dead.clone())
    );
    assert_eq!(
        sorted(
            page(
                &app,
                &format!("record=rec-a&callback_type=transactions&{after}")
            )
            .await
            .0
        ),
        vec![all[4].clone()]
    );

    // Stats: per status and per type, nothing pending.
    let (code, stats) = app.get_json("/v1/stats").await;
    assert_eq!(code, 200);
    assert_eq!(
        (&stats["pending"], &stats["delivered"], &stats["dead"]),
        (&Value::from(0), &Value::from(5), &Value::from(2)),
        "{stats}"
    );
    assert_eq!(
        stats["by_type"],
        serde_json::json!({"BALANCE": 2, "IDENTITY": 2, "TRANSACTIONS": 3})
    );
    assert!(stats["oldest_pending_received_at"].is_null(), "{stats}");
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

async fn pages_list_each_callback_once_while_callbacks_arrive(backend: Backend) {
    let app = Arc::new(app(backend).await.spawn().await);
    let before: Vec<String> = {
        let items: Vec<(&str, &str, &str)> = (0..40)
            .map(|i| {
                (
                    if i % 2 == 0 { "rec-even" } else { "rec-odd" },
                    "AUTH",
                    "AUTH_SUCCESS",
                )
            })
            .collect();
        post_all(&app, &items, 0).await
    };
    // New callbacks keep arriving while the pages are walked.
    let writer = {
        let app = app.clone();
        tokio::spawn(async move {
            let items: Vec<(&str, &str, &str)> = (0..40)
                .map(|_| ("rec-even", "AUTH", "AUTH_SUCCESS"))
                .collect();
            post_all(&app, &items, 1000).await
        })
    };
    for query in ["", "record=rec-even", "callback_type=auth"] {
        let seen = walk(&app, query, 7).await;
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{query}: a callback listed twice");
        let expected: Vec<&String> = before
            .iter()
            .enumerate()
            .filter(|(i, _)| query != "record=rec-even" || i % 2 == 0)
            .map(|(_, id)| id)
            .collect();
        for id in &expected {
            assert!(unique.contains(id), "{query}: {id} was never listed");
        }
    }
    let late = writer.await.unwrap();
    // Once they stopped arriving, one walk lists exactly everything, newest first.
    let everything = walk(&app, "", 9).await;
    let expected: Vec<String> = before.iter().chain(&late).rev().cloned().collect();
    assert_eq!(everything, expected);

    // A record's query, oldest first, a page at a time.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (code, body) = app
            .get_json(&format!(
                "/v1/callback?record=rec-odd&method=auth&limit=8{cursor}"
            ))
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["method"], "AUTH");
        let callbacks = body["callbacks"].as_array().unwrap();
        assert!(callbacks.len() <= 8);
        assert!(callbacks
            .iter()
            .all(|c| c["payload"]["record"] == "rec-odd"));
        seen.extend(
            callbacks
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned()),
        );
        match body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    let odd: Vec<String> = before.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(
        seen, odd,
        "each of the record's callbacks once, oldest first"
    );
    // The default page holds 100: all 20 at once.
    let (_, body) = app
        .get_json("/v1/callback?record=rec-odd&method=AUTH")
        .await;
    assert_eq!(body["callbacks"].as_array().unwrap().len(), 20);
    assert!(body["next_cursor"].is_null());
}

async fn bad_parameters_are_400s_naming_the_parameter(backend: Backend) {
    let app = app(backend).await.spawn().await;
    for n in 0..3 {
        app.post_ok(callback("rec-p", "AUTH", "AUTH_SUCCESS", n))
            .await;
    }
    let get = |q: String| {
        let app = &app;
        async move { error_body(app.client.get(app.url(&q)).send().await.unwrap()).await }
    };
    for (query, name, valid) in [
        ("status=bogus", "status", "pending, delivered or dead"),
        ("status=dead,bogus", "status", "pending, delivered or dead"),
        ("limit=0", "limit", "1 to 500"),
        ("limit=100000", "limit", "1 to 500"),
        ("limit=many", "limit", "1 to 500"),
        ("received_after=yesterday", "received_after", "RFC 3339"),
        ("received_before=2026-13-01", "received_before", "RFC 3339"),
    ] {
        let (status, code, message) = get(format!("/v1/callbacks?{query}")).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_parameter"),
            "{query}: {message}"
        );
        assert!(
            message.contains(name) && message.contains(valid),
            "{query}: {message}"
        );
    }
    let (status, code, message) = get("/v1/callback?record=rec-p&method=AUTH&limit=0".into()).await;
    assert_eq!(
        (status, code.as_str()),
        (400, "invalid_parameter"),
        "{message}"
    );

    // Cursors: forged, edited, or of another filter or listing.
    let (_, next) = page(&app, "limit=1&status=pending,delivered").await;
    let real = next.expect("a second page");
    let mut edited: Vec<char> = real.chars().collect();
    edited[5] = if edited[5] == 'A' { 'B' } else { 'A' };
    let edited: String = edited.into_iter().collect();
    for query in [
        "/v1/callbacks?cursor=forged".to_owned(),
        format!("/v1/callbacks?status=pending,delivered&cursor={edited}"),
        format!("/v1/callbacks?status=dead&cursor={real}"),
        format!("/v1/callbacks?cursor={real}"),
        format!("/v1/callback?record=rec-p&method=AUTH&cursor={real}"),
    ] {
        let (status, code, message) = get(query.clone()).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_cursor"),
            "{query}: {message}"
        );
        assert!(message.contains("cursor"), "{message}");
    }
    // The same cursor with its own filters (in another order, another case) is fine.
    let (code, _) = app
        .get_json(&format!(
            "/v1/callbacks?status=delivered,PENDING&limit=1&cursor={real}"
        ))
        .await;
    assert_eq!(code, 200);

    // Bulk replay: at least one filter, and filters that parse.
    let post = |q: &'static str| {
        let app = &app;
        async move { error_body(app.client.post(app.url(q)).send().await.unwrap()).await }
    };
    let (status, code, message) = post("/v1/callbacks/replay").await;
    assert_eq!(
        (status, code.as_str()),
        (400, "missing_parameter"),
        "{message}"
    );
    assert!(message.contains("status=dead"), "{message}");
    let (status, code, message) = post("/v1/callbacks/replay?status=gone").await;
    assert_eq!(
        (status, code.as_str()),
        (400, "invalid_parameter"),
        "{message}"
    );
    assert!(message.contains("status"), "{message}");
    // A misspelt filter is refused, not ignored: it would widen what is replayed.
    let (status, code, message) = post("/v1/callbacks/replay?status=dead&recrod=rec-p").await;
    assert_eq!(
        (status, code.as_str()),
        (400, "invalid_parameter"),
        "{message}"
    );
    assert!(message.contains("`recrod` is not a filter"), "{message}");
}

async fn history_of_a_callback_that_failed_twice_then_succeeded(backend: Backend) {
    let app = app(backend)
        .await
        .config(|c| c.delivery.handler_timeout = Duration::from_millis(150))
        .script(|cx| match cx.attempt {
            1 => Action::Fail("the forward URL answered 503 Service Unavailable"),
            2 => Action::Sleep(Duration::from_secs(2)),
            _ => Action::Succeed,
        })
        .spawn()
        .await;
    let body = callback("rec-h", "IDENTITY", "IDENTITY_IS_READY", 7)
        .replace("\"error\":null", "\"bvn\":\"22212345678\"");
    let id = app.post_ok(body).await["id"].as_str().unwrap().to_owned();
    let detail = app.wait_status(&id, "delivered").await;
    assert_eq!(detail["attempts"], 3, "{detail}");
    let history = detail["history"].as_array().unwrap();
    let summary: Vec<(u64, &str)> = history
        .iter()
        .map(|h| {
            (
                h["attempt"].as_u64().unwrap(),
                h["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(1, "failed"), (2, "timed_out"), (3, "succeeded")],
        "{detail}"
    );
    assert_eq!(
        history[0]["error"],
        "the forward URL answered 503 Service Unavailable"
    );
    assert!(
        history[1]["error"]
            .as_str()
            .unwrap()
            .contains("did not finish within 150ms: make it faster, or raise --handler-timeout"),
        "{detail}"
    );
    assert!(history[2]["error"].is_null());
    let time = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    let mut last_end = time(&detail["received_at"]);
    for h in history {
        let (start, end) = (time(&h["started_at"]), time(&h["finished_at"]));
        assert!(
            start >= last_end - chrono::Duration::milliseconds(1),
            "{detail}"
        );
        assert!(end >= start, "{detail}");
        last_end = end;
    }
    let timed_out = time(&history[1]["finished_at"]) - time(&history[1]["started_at"]);
    assert!(
        timed_out >= chrono::Duration::milliseconds(140),
        "the timed-out attempt ran to the timeout: {timed_out}"
    );
    assert!(
        !detail["history"].to_string().contains("22212345678"),
        "no payload data in the history"
    );
    // A replay adds to the history rather than starting it again.
    let replayed = app
        .client
        .post(app.url(&format!("/v1/callbacks/{id}/replay")))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 202);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, detail) = app.get_json(&format!("/v1/callbacks/{id}")).await;
        if detail["history"].as_array().unwrap().len() == 4 {
            assert_eq!(detail["history"][3]["attempt"], 4);
            assert_eq!(detail["history"][3]["outcome"], "succeeded");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{detail}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn bulk_replay_touches_only_what_matched(backend: Backend) {
    let failing = Arc::new(AtomicBool::new(true));
    let flag = failing.clone();
    let mut app = app(backend)
        .await
        .config(|c| c.delivery.max_attempts = 1)
        .script(move |cx| {
            if cx.record().as_str() != "rec-ok" && flag.load(Ordering::SeqCst) {
                Action::Fail("down")
            } else {
                Action::Succeed
            }
        })
        .spawn()
        .await;
    let ids = post_all(
        &app,
        &[
            ("rec-x", "BALANCE", "BALANCE_SUCCESS"),
            ("rec-x", "BALANCE", "BALANCE_SUCCESS"),
            ("rec-y", "AUTH", "AUTH_SUCCESS"),
            ("rec-ok", "BALANCE", "BALANCE_SUCCESS"),
        ],
        0,
    )
    .await;
    settled(&app).await;
    app.seen_n(4).await;
    failing.store(false, Ordering::SeqCst);

    let response = app
        .client
        .post(app.url("/v1/callbacks/replay?record=rec-x&status=dead"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["replayed"], 2, "{body}");
    let again = app.seen_n(2).await;
    let replayed: HashSet<&str> = again.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(replayed, HashSet::from([ids[0].as_str(), ids[1].as_str()]));
    app.assert_quiet(Duration::from_millis(300)).await;
    app.wait_status(&ids[0], "delivered").await;
    app.wait_status(&ids[1], "delivered").await;
    let (_, y) = app.get_json(&format!("/v1/callbacks/{}", ids[2])).await;
    assert_eq!(y["status"], "dead", "rec-y did not match");
    let (_, ok) = app.get_json(&format!("/v1/callbacks/{}", ids[3])).await;
    assert_eq!(
        ok["attempts"], 1,
        "the delivered one of another record was left alone"
    );

    // By type: the delivered BALANCE callbacks (rec-x's two, rec-ok's one) go again.
    let response = app
        .client
        .post(app.url("/v1/callbacks/replay?callback_type=balance"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.json::<Value>().await.unwrap()["replayed"], 3);
    let again = app.seen_n(3).await;
    assert!(again.iter().all(|s| s.callback_type == "BALANCE"));
    app.assert_quiet(Duration::from_millis(300)).await;

    // `?status=dead` as before: what is left dead.
    let response = app
        .client
        .post(app.url("/v1/callbacks/replay?status=dead"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.json::<Value>().await.unwrap()["replayed"], 1);
    assert_eq!(app.next_seen().await.id, ids[2]);
    let stats = settled(&app).await;
    assert_eq!(
        (&stats["delivered"], &stats["dead"]),
        (&Value::from(4), &Value::from(0))
    );
}

async fn stats_and_gauges_show_the_oldest_pending(backend: Backend) {
    let app = app(backend)
        .await
        .metrics()
        .config(|c| c.delivery.max_attempts = 1)
        .script(|cx| match cx.record().as_str() {
            "rec-slow" => Action::Sleep(Duration::from_secs(3)),
            "rec-bad" => Action::Fail("down"),
            _ => Action::Succeed,
        })
        .spawn()
        .await;
    app.post_ok(callback("rec-bad", "RECORD", "ERROR", 1)).await;
    let slow = app
        .post_ok(callback("rec-slow", "AUTH", "AUTH_SUCCESS", 2))
        .await;
    app.post_ok(callback("rec-slow", "AUTH", "AUTH_SUCCESS", 3))
        .await;
    app.wait_status(slow["id"].as_str().unwrap(), "pending")
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let (_, stats) = app.get_json("/v1/stats").await;
        if stats["dead"] == 1 {
            break stats;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stats["pending"], 2, "{stats}");
    let (_, first) = app
        .get_json(&format!("/v1/callbacks/{}", slow["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        stats["oldest_pending_received_at"], first["received_at"],
        "{stats}"
    );
    assert!(stats["oldest_pending_age_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        stats["by_type"],
        serde_json::json!({"AUTH": 2, "RECORD": 1})
    );

    let text = app.metrics_text().await;
    let gauge = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in:\n{text}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(gauge("okra_callbacks_pending"), 2.0);
    assert_eq!(gauge("okra_callbacks_dead"), 1.0);
    assert!(gauge("okra_callbacks_oldest_pending_age_seconds") >= 0.0);
}

both_stores!(
    filters_each_and_combined,
    pages_list_each_callback_once_while_callbacks_arrive,
    bad_parameters_are_400s_naming_the_parameter,
    history_of_a_callback_that_failed_twice_then_succeeded,
    bulk_replay_touches_only_what_matched,
    stats_and_gauges_show_the_oldest_pending,
);

/// Every metric the example alert rules in `deploy/` name is one `/metrics` exports.
#[tokio::test]
async fn the_alert_rules_name_exported_metrics() {
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus-alerts.yml"
    ))
    .expect("deploy/prometheus-alerts.yml");
    let (text, exported) = crate::support::fresh_metrics().await;
    let named: HashSet<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .flat_map(|expr| {
            expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("okra_"))
        })
        .collect();
    assert!(
        named.len() >= 3,
        "the rules name the dead and pending-age gauges: {named:?}"
    );
    for name in &named {
        assert!(
            exported.contains(*name),
            "{name} (in the alert rules) is not exported by /metrics:\n{text}"
        );
    }
}

/// A PostgreSQL database of the schema before the operator's view (migration 1) opens with its
/// callbacks counted per type and status and found by the new queries.
#[tokio::test]
async fn a_postgres_database_of_the_previous_schema_is_upgraded_with_its_data() {
    let Some(base) = crate::support::postgres_url() else {
        return;
    };
    let url = crate::support::fresh_postgres_database(&base).await;
    let client = crate::support::postgres_client(&url).await;
    let now = chrono::Utc::now().timestamp_millis();
    crate::support::postgres_schema(&client, 1).await;
    client
        .batch_execute(&format!(
            "INSERT INTO okra_callbacks (id, record, callback_type, callback_code, body,
                                         received_at, status, attempts, next_attempt_at, finished_at)
               VALUES ('a', 'r1', 'AUTH', 'AUTH_SUCCESS', '\\x7b7d', {now}, 1, 1, NULL, {now}),
                      ('b', 'r1', 'AUTH', 'AUTH_SUCCESS', '\\x7b7d', {now} + 1, 2, 3, NULL, {now}),
                      ('c', 'r2', 'Custom', NULL, '\\x7b7d', {now} + 2, 0, 0, {now}, NULL);
             INSERT INTO okra_record_queue (record, pending, due_at) VALUES ('r2', 1, {now});"
        ))
        .await
        .unwrap();
    let store = okra_callbacks::store::PostgresStore::connect(&url)
        .await
        .unwrap();
    use crate::store::Shortcuts;
    use okra_callbacks::store::{Filter, OperatorView, Status};
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.pending, stats.delivered, stats.dead), (1, 1, 1));
    assert_eq!(
        stats.by_type,
        [("AUTH".to_owned(), 2), ("Custom".to_owned(), 1)]
    );
    let dead = Filter {
        statuses: vec![Status::Dead],
        ..Filter::default()
    };
    let page = store.search(&dead, 10, None).await.unwrap();
    let ids: Vec<_> = page.callbacks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["b"]);
    let custom = Filter {
        callback_type: Some("custom".into()),
        ..Filter::default()
    };
    assert_eq!(
        store
            .search(&custom, 10, None)
            .await
            .unwrap()
            .callbacks
            .len(),
        1
    );
    let listed = store.callbacks_of("r1").await;
    assert_eq!(listed.len(), 2);
    assert!(store.history("b").await.unwrap().is_empty());
    assert_eq!(store.replay_matching(&dead).await.unwrap(), 1);
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.pending, stats.delivered, stats.dead), (2, 1, 0));
}

/// A PostgreSQL database of the schema with a table of attempts (migrations 1–3) opens with
/// each callback's history, in attempt order, read from its own row; the old table is gone.
#[tokio::test]
async fn a_postgres_database_with_an_attempts_table_keeps_its_history() {
    let Some(base) = crate::support::postgres_url() else {
        return;
    };
    let url = crate::support::fresh_postgres_database(&base).await;
    let client = crate::support::postgres_client(&url).await;
    crate::support::postgres_schema(&client, 3).await;
    client
        .batch_execute(
            "INSERT INTO okra_callbacks (id, record, callback_type, callback_code, body,
                                         received_at, status, attempts, next_attempt_at, finished_at)
               VALUES ('a', 'r1', 'AUTH', NULL, '\\x7b7d', 1000, 1, 2, NULL, 5000),
                      ('b', 'r1', 'AUTH', NULL, '\\x7b7d', 1001, 1, 1, NULL, 6000),
                      ('c', 'r2', 'AUTH', NULL, '\\x7b7d', 1002, 0, 0, 1002, NULL);
             -- Written out of order: the history is read in attempt order.
             INSERT INTO okra_callback_attempts (seq, attempt, started_at, finished_at, outcome, error)
               VALUES (1, 2, 3000, 4000, 0, NULL),
                      (1, 1, 1000, 2000, 1, 'the forward target answered 503'),
                      (2, 1, 5000, 6000, 2, 'timed out');",
        )
        .await
        .unwrap();
    let store = okra_callbacks::store::PostgresStore::connect(&url)
        .await
        .unwrap();
    use okra_callbacks::store::{AttemptOutcome, OperatorView};
    let summary = |id: &'static str| {
        let store = store.clone();
        async move {
            store
                .history(id)
                .await
                .unwrap()
                .into_iter()
                .map(|a| {
                    (
                        a.attempt,
                        a.started_at.timestamp_millis(),
                        a.finished_at.timestamp_millis(),
                        a.outcome,
                        a.error,
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        summary("a").await,
        [
            (
                1,
                1000,
                2000,
                AttemptOutcome::Failed,
                Some("the forward target answered 503".to_owned())
            ),
            (2, 3000, 4000, AttemptOutcome::Succeeded, None),
        ]
    );
    assert_eq!(
        summary("b").await,
        [(
            1,
            5000,
            6000,
            AttemptOutcome::TimedOut,
            Some("timed out".to_owned())
        )]
    );
    assert!(summary("c").await.is_empty());
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'okra_callback_attempts'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        tables, 0,
        "the attempts table is dropped once its rows moved"
    );
}

/// With `--forward-url`, the history says what the forward target answered.
async fn the_history_names_the_forward_targets_answers(backend: Backend) {
    use std::sync::atomic::AtomicUsize;

    // A forward target that answers 503 twice, then 200.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let target = axum::Router::new().route(
        "/okra",
        axum::routing::post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let forward_url = format!("http://{}/okra", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, target).await });

    let db = crate::support::TestDb::new(backend).await;
    let store = okra_callbacks::store::open(&db.url).await.unwrap();
    let forward =
        okra_callbacks::output::ForwardHandler::new(forward_url, Duration::from_secs(5)).unwrap();
    let receiver = okra_callbacks::Receiver::with_store(
        crate::support::test_config(&db),
        store,
        Arc::new(forward),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(receiver.run(listener, std::future::pending()));
    let client = reqwest::Client::new();
    let ack: Value = client
        .post(format!("{base}/v1/callback"))
        .header("content-type", "application/json")
        .body(callback("rec-fwd", "AUTH", "AUTH_SUCCESS", 1))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = ack["id"].as_str().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let detail = loop {
        let detail: Value = client
            .get(format!("{base}/v1/callbacks/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if detail["status"] == "delivered" {
            break detail;
        }
        assert!(tokio::time::Instant::now() < deadline, "{detail}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let history = detail["history"].as_array().unwrap();
    let outcomes: Vec<&str> = history
        .iter()
        .map(|h| h["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failed", "failed", "succeeded"], "{detail}");
    for failed in &history[..2] {
        let error = failed["error"].as_str().unwrap();
        assert!(error.contains("503"), "the target's status: {error}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

both_stores!(the_history_names_the_forward_targets_answers);
