//! `GET /metrics`: after known traffic, the counts are exactly that traffic's.
//!
//! Each app records into a registry of its own (`Builder::metrics`), so the counts are not
//! disturbed by the tests running next to it.

use std::{collections::BTreeMap, time::Duration};

use crate::both_stores;
use crate::support::{app, callback, eventually, Action, Backend, TestApp};

/// The `source` label of Okra's callbacks.
const OKRA: (&str, &str) = ("source", "okra");

/// One scrape: `(name, sorted labels)` → value.
struct Scrape(BTreeMap<(String, Vec<(String, String)>), f64>);

impl Scrape {
    async fn of(app: &TestApp) -> Self {
        let response = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        let text = response.text().await.unwrap();
        let mut samples = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let mut labels: Vec<(String, String)> = rest
                        .trim_end_matches('}')
                        .split("\",")
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').expect("label=value");
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    labels.sort();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), Vec::new()),
            };
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
            samples.insert((name, labels), value);
        }
        Self(samples)
    }

    /// The value of one series, 0 if absent (Prometheus semantics for a counter never touched).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        self.0
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// Whether the exposition has any series named `name`.
    fn has(&self, name: &str) -> bool {
        self.0.keys().any(|(n, _)| n == name)
    }
}

async fn metrics_count_known_traffic(backend: Backend) {
    let mut app = app(backend)
        .await
        .metrics()
        .config(|c| c.delivery.max_attempts = 2)
        .script(|cx| match cx.record().as_str() {
            // Held long enough for the backlog gauges to see it waiting.
            "rec-slow" if cx.attempt == 1 => Action::Sleep(Duration::from_millis(1500)),
            // Fails once, then succeeds: one retry.
            "rec-flaky" if cx.attempt == 1 => Action::Fail("not yet"),
            // Fails every time: dead after --max-attempts=2.
            "rec-doomed" => Action::Fail("never"),
            _ => Action::Succeed,
        })
        .spawn()
        .await;

    // While the handler sleeps, the record's two callbacks are pending.
    for n in 0..2 {
        app.post_ok(callback("rec-slow", "BALANCE", "BALANCE_SUCCESS", n))
            .await;
    }
    let busy = eventually(
        Duration::from_secs(10),
        "the oldest pending callback was 0.4 s old",
        || async {
            let busy = Scrape::of(&app).await;
            assert_eq!(busy.get("okra_callbacks_pending", &[]), 2.0);
            (busy.get("okra_callbacks_oldest_pending_age_seconds", &[]) >= 0.4).then_some(busy)
        },
    )
    .await;
    let age = busy.get("okra_callbacks_oldest_pending_age_seconds", &[]);
    assert!((0.4..30.0).contains(&age), "oldest pending age {age}");

    // Three distinct callbacks, one of them sent twice.
    for n in 0..3 {
        app.post_ok(callback(
            "rec-ok",
            "TRANSACTIONS",
            "PERIODIC_TRANSACTIONS",
            n,
        ))
        .await;
    }
    let again = app
        .post_ok(callback(
            "rec-ok",
            "TRANSACTIONS",
            "PERIODIC_TRANSACTIONS",
            0,
        ))
        .await;
    assert_eq!(again["duplicate"], true);
    // A type this crate does not know: accepted, counted as `other`.
    app.post_ok(callback("rec-ok", "FUTURE_PRODUCT", "SOMETHING_NEW", 9))
        .await;
    app.post_ok(callback("rec-flaky", "AUTH", "AUTH_SUCCESS", 0))
        .await;
    app.post_ok(callback("rec-doomed", "RECORD", "ERROR", 0))
        .await;
    // Two refusals.
    assert_eq!(app.post("{not json").await.status(), 400);
    assert_eq!(app.post(r#"{"record": "r"}"#).await.status(), 422);

    // Deliveries: 2 slow + 3 ok + 1 unknown + 2 flaky (fail, ok) + 2 doomed (fail, fail).
    app.seen_n(10).await;
    let dead_id = {
        let (_, body) = app.record_query("rec-doomed", "RECORD").await;
        body["callbacks"][0]["id"].as_str().unwrap().to_owned()
    };
    app.wait_status(&dead_id, "dead").await;
    // The handler reports each call before its outcome is recorded, and the metrics of an outcome
    // before its store write: wait until all ten calls are counted and none is pending (a bug
    // that left one pending fails here on the timeout).
    let m = eventually(
        Duration::from_secs(10),
        "the outcomes of all ten handler calls were counted",
        || async {
            let m = Scrape::of(&app).await;
            let counted = ["delivered", "retry", "dead"]
                .iter()
                .map(|o| m.get("okra_delivery_outcomes_total", &[OKRA, ("outcome", o)]))
                .sum::<f64>();
            let settled = m.get("okra_callbacks_pending", &[]) == 0.0;
            (counted >= 10.0 && settled).then_some(m)
        },
    )
    .await;
    let received = |kind: &str, code: &str, outcome: &str| {
        m.get(
            "okra_callbacks_received_total",
            &[
                ("source", "okra"),
                ("callback_type", kind),
                ("callback_code", code),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(
        received("TRANSACTIONS", "PERIODIC_TRANSACTIONS", "stored"),
        3.0
    );
    assert_eq!(
        received("TRANSACTIONS", "PERIODIC_TRANSACTIONS", "duplicate"),
        1.0
    );
    assert_eq!(received("BALANCE", "BALANCE_SUCCESS", "stored"), 2.0);
    assert_eq!(received("other", "other", "stored"), 1.0);
    assert_eq!(received("AUTH", "AUTH_SUCCESS", "stored"), 1.0);
    assert_eq!(received("RECORD", "ERROR", "stored"), 1.0);
    assert_eq!(m.get("okra_duplicates_total", &[OKRA]), 1.0);
    assert_eq!(
        m.get(
            "okra_callbacks_rejected_total",
            &[OKRA, ("reason", "invalid_json")]
        ),
        1.0
    );
    assert_eq!(
        m.get(
            "okra_callbacks_rejected_total",
            &[OKRA, ("reason", "invalid_callback")]
        ),
        1.0
    );
    // Every acknowledgement (9, the duplicate included) was timed, and so was every store write.
    assert_eq!(m.get("okra_ack_duration_seconds_count", &[OKRA]), 9.0);
    assert_eq!(
        m.get(
            "okra_store_write_duration_seconds_count",
            &[("operation", "insert")]
        ),
        9.0
    );
    assert!(m.has("okra_ack_duration_seconds_bucket"));

    let attempts = |outcome: &str| {
        m.get(
            "okra_handler_attempts_total",
            &[("handler", "recorder"), OKRA, ("outcome", outcome)],
        )
    };
    assert_eq!(attempts("ok"), 7.0);
    assert_eq!(attempts("error"), 3.0);
    assert_eq!(
        m.get(
            "okra_handler_duration_seconds_count",
            &[("handler", "recorder"), OKRA]
        ),
        10.0
    );
    let outcomes = |o: &str| m.get("okra_delivery_outcomes_total", &[OKRA, ("outcome", o)]);
    assert_eq!(outcomes("delivered"), 7.0);
    assert_eq!(outcomes("retry"), 2.0);
    assert_eq!(outcomes("dead"), 1.0);
    assert_eq!(m.get("okra_retries_total", &[OKRA]), 2.0);
    assert_eq!(m.get("okra_dead_letters_total", &[OKRA]), 1.0);

    assert_eq!(m.get("okra_callbacks_pending", &[]), 0.0);
    assert_eq!(m.get("okra_callbacks_dead", &[]), 1.0);
    assert_eq!(m.get("okra_callbacks_oldest_pending_age_seconds", &[]), 0.0);
    assert_eq!(
        m.get("okra_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );
}

both_stores!(metrics_count_known_traffic);

#[tokio::test]
async fn metrics_follow_the_admin_token_rule() {
    let app = app(Backend::Sqlite)
        .await
        .metrics()
        .config(|c| c.access.admin_token = Some(okra_callbacks::Secret::new("adm1n")))
        .spawn()
        .await;
    let denied = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let allowed = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("adm1n")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert!(allowed
        .text()
        .await
        .unwrap()
        .contains("okra_callbacks_pending 0"));
}

/// A refused callback token is one rejection, counted once (it used to be counted twice).
#[tokio::test]
async fn each_refused_callback_token_is_counted_once() {
    let app = app(Backend::Sqlite)
        .await
        .metrics()
        .config(|c| c.access.callback_token = Some(okra_callbacks::Secret::new("t0ken")))
        .spawn()
        .await;
    let body = callback("rec-refused", "BALANCE", "BALANCE_SUCCESS", 0);
    for _ in 0..2 {
        assert_eq!(app.post(body.clone()).await.status(), 401);
    }
    // With the token, a body that is not JSON is refused for that reason alone.
    let refused = app
        .callback_request()
        .bearer_auth("t0ken")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    let m = Scrape::of(&app).await;
    let rejected =
        |reason: &str| m.get("okra_callbacks_rejected_total", &[OKRA, ("reason", reason)]);
    assert_eq!(rejected("unauthorized"), 2.0);
    assert_eq!(rejected("invalid_json"), 1.0);
}

/// A sender outside `--allow-from` is one rejection too, counted under its own reason.
#[tokio::test]
async fn each_refused_network_is_counted_once() {
    let app = app(Backend::Sqlite)
        .await
        .metrics()
        .config(|c| c.access.allow_from = vec!["10.0.0.0/8".parse().unwrap()])
        .spawn()
        .await;
    let body = callback("rec-outside", "BALANCE", "BALANCE_SUCCESS", 0);
    for _ in 0..2 {
        assert_eq!(app.post(body.clone()).await.status(), 403);
    }
    let m = Scrape::of(&app).await;
    let rejected =
        |reason: &str| m.get("okra_callbacks_rejected_total", &[OKRA, ("reason", reason)]);
    assert_eq!(rejected("forbidden"), 2.0);
    assert_eq!(rejected("unauthorized"), 0.0);
}

/// A source's callback is counted under its source, from the acknowledgement to the handler's
/// outcome; a refusal on its route too.
async fn a_source_s_callbacks_are_counted_under_its_source(backend: Backend) {
    let mut app = app(backend)
        .await
        .metrics()
        .sources("[sources.mono]\npreset = \"mono\"\nsecret = \"mono-s3cret\"\n")
        .spawn()
        .await;
    let body = crate::support::fixture("mono/account_updated");
    let secret = |s: &str| vec![("mono-webhook-secret".to_owned(), s.to_owned())];
    app.post_source_ok("mono", &secret("mono-s3cret"), body.clone())
        .await;
    let refused = app.post_source("mono", &secret("wrong"), body).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(app.next_seen().await.source, "mono");

    let mono = ("source", "mono");
    let m = eventually(
        Duration::from_secs(10),
        "the mono callback's delivery was counted",
        || async {
            let m = Scrape::of(&app).await;
            (m.get(
                "okra_delivery_outcomes_total",
                &[mono, ("outcome", "delivered")],
            ) == 1.0)
                .then_some(m)
        },
    )
    .await;
    assert_eq!(
        m.get(
            "okra_handler_attempts_total",
            &[("handler", "recorder"), mono, ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        m.get(
            "okra_handler_duration_seconds_count",
            &[("handler", "recorder"), mono]
        ),
        1.0
    );
    assert_eq!(m.get("okra_ack_duration_seconds_count", &[mono]), 1.0);
    assert_eq!(
        m.get(
            "okra_callbacks_rejected_total",
            &[mono, ("reason", "unauthorized")]
        ),
        1.0
    );
    // Nothing of it is counted as Okra's.
    assert_eq!(
        m.get(
            "okra_delivery_outcomes_total",
            &[OKRA, ("outcome", "delivered")]
        ),
        0.0
    );
    app.stop().await;
}

both_stores!(a_source_s_callbacks_are_counted_under_its_source);
