//! What reaches the logs: no callback can forge a log line or smuggle a control character into
//! one (text or JSON), and no token, secret or personal data is logged — at the default level,
//! nor at `trace` with bodies on.
//!
//! Each test runs a receiver on a runtime of its own thread, under the crate's log set-up writing
//! into memory for that thread only, so other tests' logs stay out of it.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use okra_callbacks::{
    source::Verifier,
    telemetry::{LogFormat, Logs, DEFAULT_LOG_FILTER},
    AllOf, Config, LogHandler, Receiver, Secret,
};
use serde_json::{json, Value};

use crate::support::{
    eventually, keep_callsites_enabled, paths, serve, test_config, Backend, TestDb,
};

/// What a subscriber wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything written so far.
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("UTF-8 logs")
    }
}

/// The crate's log set-up (`format`, `filter`) writing into memory, and the memory.
fn capturing(
    format: LogFormat,
    filter: &str,
) -> (Captured, Box<dyn tracing::Subscriber + Send + Sync>) {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = Logs::new(format)
        .filter(filter)
        .writer(move || sink.clone())
        .subscriber();
    (logs, subscriber)
}

/// Runs `work` on a runtime of this thread only, under [`capturing`], and returns everything it
/// logged. Every task of a current-thread runtime runs on this thread, so this thread's
/// subscriber sees all the receiver logs, while tests on other threads log elsewhere.
fn logged(format: LogFormat, filter: &str, work: impl Future<Output = ()>) -> String {
    let (logs, subscriber) = capturing(format, filter);
    keep_callsites_enabled();
    let _default = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(work);
    drop(runtime);
    logs.text()
}

// ---------------------------------------------------------------------------------------------
// Forged lines and control characters

/// A record id, type and code full of terminal escapes and forged log lines.
const RECORD: &str =
    "rec\u{1b}[31m\u{7f}\u{9b}2J\n2026-12-01T00:00:00Z  INFO okra_callbacks: forged record line";
const TYPE: &str = "T\r\n2026-12-01T00:00:00Z ERROR forged type line\u{202e}";
const CODE: &str = "C\u{1b}]0;title\u{7}\u{85}\u{2028}2026-12-01T00:00:00Z  WARN forged code";

/// Runs a receiver with the log handler under a subscriber of `format` writing to memory, sends
/// the hostile callback, waits until it is handled, and returns the log.
fn hostile_callback_logged(format: LogFormat) -> String {
    let filter = "trace,hyper=off,hyper_util=off,reqwest=off,h2=off,rustls=off";
    let text = logged(format, filter, async {
        let db = TestDb::new(Backend::Sqlite).await;
        let mut config = Config::default();
        config.store.database_url = db.url.clone();
        let receiver = Receiver::new(config, LogHandler::new()).await.unwrap();
        let server = serve(receiver).await;
        let base = server.base.clone();
        let client = reqwest::Client::new();
        let body = json!({"record": RECORD, "callback_type": TYPE, "callback_code": CODE});
        let response = client
            .post(format!("{base}/v1/callback"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let ack: Value = response.json().await.unwrap();
        assert_eq!(ack["record"], RECORD, "stored as sent");
        assert_eq!(ack["callback_type"], TYPE);
        assert_eq!(ack["callback_code"], CODE);
        let id = ack["id"].as_str().unwrap();
        // Handled: delivered to the log handler.
        eventually(
            Duration::from_secs(10),
            "the hostile callback was delivered",
            || async {
                let stored: Value = client
                    .get(format!("{base}/v1/callbacks/{id}"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(stored["record"], RECORD);
                (stored["status"] == "delivered").then_some(())
            },
        )
        .await;
        server.stop().await;
        drop(db);
    });
    assert!(
        text.contains("callback received"),
        "the log handler logged the callback:\n{text}"
    );
    text
}

/// No character of the log is a control character other than the line ends it wrote.
fn assert_no_raw_control_character(text: &str) {
    for (n, line) in text.lines().enumerate() {
        if let Some(c) = line.chars().find(|c| c.is_control() || *c == '\u{2028}') {
            panic!("line {n} holds a raw {c:?}: {line:?}");
        }
    }
}

#[test]
fn a_hostile_callback_cannot_forge_text_log_lines() {
    let text = hostile_callback_logged(LogFormat::Text);
    assert_no_raw_control_character(&text);
    for line in text.lines() {
        // Every line is one the subscriber wrote: this run's timestamp, then a level.
        let (stamp, rest) = line.split_once(' ').unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
            "a line that does not start with a timestamp: {line:?}"
        );
        assert!(
            !stamp.starts_with("2026-12-01T00:00:00"),
            "a forged line: {line:?}"
        );
        let level = rest.trim_start().split(' ').next().unwrap_or_default();
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
            "{line:?}"
        );
    }
    // The values are there, escaped and quoted, in the handler's event and the deliver span.
    let received = text
        .lines()
        .find(|l| l.contains("callback received"))
        .unwrap();
    assert!(
        received.contains(r#"record="rec\u{1b}[31m\u{7f}\u{9b}2J\n2026-12-01T00:00:00Z  INFO okra_callbacks: forged record line""#),
        "{received}"
    );
    assert!(received.contains("deliver{"), "{received}");
    assert!(received.contains(r"forged type line\u{202e}"), "{received}");
    assert!(
        received.contains(r"C\u{1b}]0;title\u{7}\u{85}\u{2028}"),
        "{received}"
    );
}

#[test]
fn a_hostile_callback_cannot_forge_json_log_lines() {
    let text = hostile_callback_logged(LogFormat::Json);
    assert_no_raw_control_character(&text);
    let mut received = None;
    for line in text.lines() {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a line that is not a JSON object ({e}): {line:?}"));
        // Decoded, no value holds a control character either (a reader printing `record`
        // raw to a terminal is safe too).
        let mut values = vec![&event];
        while let Some(v) = values.pop() {
            match v {
                Value::String(s) => assert!(
                    !s.chars().any(|c| c.is_control() || c == '\u{2028}'),
                    "a decoded value holds a control character: {s:?} in {line}"
                ),
                Value::Object(m) => values.extend(m.values()),
                Value::Array(a) => values.extend(a),
                _ => {}
            }
        }
        if event["message"] == "callback received" {
            received = Some(event);
        }
    }
    let received = received.expect("the log handler's event");
    let expected_record = r#""rec\u{1b}[31m\u{7f}\u{9b}2J\n2026-12-01T00:00:00Z  INFO okra_callbacks: forged record line""#;
    assert_eq!(received["record"], expected_record, "{received}");
    assert_eq!(received["span"]["name"], "deliver", "{received}");
    assert_eq!(received["span"]["record"], expected_record, "{received}");
    assert_eq!(
        received["span"]["callback_type"],
        r#""T\r\n2026-12-01T00:00:00Z ERROR forged type line\u{202e}""#
    );
}

/// `tracing` caches per process whether a callsite is enabled, computed on the thread that first
/// reaches it. A callsite first reached by a thread without a subscriber of its own, while a test
/// captures logs on another, is still logged by the capturing one.
#[test]
fn a_callsite_first_reached_by_a_thread_without_a_subscriber_still_logs() {
    fn probe() -> tracing::Span {
        tracing::info_span!("callsite_race_probe")
    }
    keep_callsites_enabled();
    let (logs, subscriber) = capturing(LogFormat::Json, "trace");
    let _default = tracing::subscriber::set_default(subscriber);
    std::thread::spawn(|| drop(probe())).join().unwrap();
    probe().in_scope(|| tracing::info!("inside the probe"));
    let text = logs.text();
    assert!(
        text.contains("callsite_race_probe"),
        "the probe span is missing from the captured log:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Tokens, secrets and personal data

const CALLBACK_TOKEN: &str = "cb-token-4f1c9a";
const ADMIN_TOKEN: &str = "admin-token-7d2e0b";
const BVN: &str = "22298765431";
const NAME: &str = "Chiamaka Eze-Obi";
const PHONE: &str = "08031234567";
const HMAC_SECRET: &str = "hmac-secret-9a8b7c";
const WRONG_TOKEN: &str = "wrong-token-e5f6";
const SECRETS: [&str; 4] = [CALLBACK_TOKEN, ADMIN_TOKEN, HMAC_SECRET, WRONG_TOKEN];

fn identity_body(n: usize) -> String {
    json!({
        "callback_type": "IDENTITY",
        "callback_code": "IDENTITY_IS_READY",
        "record": "r-pii",
        "identity": {"bvn": BVN, "fullname": NAME, "phone": [PHONE], "n": n},
    })
    .to_string()
}

/// A receiver with tokens, an HMAC secret and the built-in log handler: one callback accepted and
/// handled, refusals for each reason, admin reads with good and bad tokens.
async fn drive_every_kind_of_request(log_bodies: bool) {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = test_config(&db);
    config.access.callback_token = Some(Secret::new(CALLBACK_TOKEN));
    config.access.admin_token = Some(Secret::new(ADMIN_TOKEN));
    config.access.hmac_secret = Some(Secret::new(HMAC_SECRET));
    let handlers = AllOf::new().with(LogHandler::new().with_bodies(log_bodies));
    let receiver = Receiver::new(config, handlers).await.unwrap();
    let server = serve(receiver).await;
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let signer = Verifier::hmac_sha256(HMAC_SECRET.as_bytes(), "X-Okra-Signature").unwrap();
    let post = |token: &str, body: String, signed: bool| {
        let mut r = client
            .post(format!("{base}{}", paths::CALLBACK))
            .bearer_auth(token)
            .body(body.clone());
        if signed {
            for (k, v) in signer.sign("", 0, body.as_bytes()) {
                r = r.header(k, v);
            }
        }
        r.send()
    };
    let stored: Value = post(CALLBACK_TOKEN, identity_body(0), true)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = stored["id"].as_str().expect("stored").to_owned();
    for (token, signed) in [
        (WRONG_TOKEN, true),
        (ADMIN_TOKEN, true),
        (CALLBACK_TOKEN, false),
    ] {
        let response = post(token, identity_body(1), signed).await.unwrap();
        assert_eq!(response.status(), 401);
    }
    let state_url = format!("{base}{}", paths::callback(&id));
    for token in [WRONG_TOKEN, CALLBACK_TOKEN] {
        let response = client
            .get(&state_url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    // Wait until the log handler has seen it.
    eventually(
        Duration::from_secs(10),
        "the callback was delivered",
        || async {
            let got: Value = client
                .get(&state_url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (got["status"] == "delivered").then_some(())
        },
    )
    .await;
    server.stop().await;
}

#[test]
fn no_token_secret_or_personal_data_is_logged_at_the_default_level() {
    let logs = logged(
        LogFormat::Text,
        DEFAULT_LOG_FILTER,
        drive_every_kind_of_request(false),
    );
    // The capture works: the handled callback was logged (its acknowledgement is a DEBUG line).
    assert!(logs.contains("callback received"), "{logs}");
    assert!(!logs.contains("callback stored"), "{logs}");
    // The handler's line names the source and the size, not the body.
    let received = logs
        .lines()
        .find(|l| l.contains("callback received"))
        .unwrap();
    assert!(received.contains(" source=okra "), "{received}");
    assert!(
        received.contains(&format!("bytes={}", identity_body(0).len())),
        "{received}"
    );
    assert!(!received.contains("body="), "{received}");
    for needle in SECRETS.iter().chain(&[BVN, NAME, PHONE, "fullname"]) {
        assert!(!logs.contains(needle), "`{needle}` was logged:\n{logs}");
    }
}

#[test]
fn tokens_stay_out_of_the_logs_even_at_trace_with_bodies_on() {
    let logs = logged(LogFormat::Text, "trace", drive_every_kind_of_request(true));
    // Bodies are logged on this explicit opt-in only, which shows the capture would see a leak.
    assert!(logs.contains(BVN), "--log-bodies logs bodies:\n{logs}");
    let received = logs
        .lines()
        .find(|l| l.contains("callback received"))
        .unwrap();
    assert!(
        received.contains("body=") && !received.contains("bytes="),
        "{received}"
    );
    for needle in SECRETS {
        assert!(!logs.contains(needle), "`{needle}` was logged:\n{logs}");
    }
}
