//! Hostile input (issue 15): every rejection in our error body, logs no callback can forge,
//! the bounds of the model.

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use okra_callbacks::{
    telemetry::{LogFormat, Logs},
    Config, LogHandler, Receiver,
};
use serde_json::{json, Value};

use crate::support::{app, error_body, Backend, TestDb};

/// Each answers 4xx in our error body, `application/json`, with a message saying how to fix it.
#[tokio::test]
async fn extractor_rejections_answer_our_error_body() {
    let app = app(Backend::Sqlite).await.spawn().await;
    let cases = [
        (
            "GET",
            "/v1/callback?record=r1&method=AUTH&method=AUTH",
            "duplicate field `method`",
        ),
        (
            "GET",
            "/v1/callback?record=r1&record=r1&method=AUTH",
            "duplicate field `record`",
        ),
        (
            "POST",
            "/v1/callbacks/replay?status=dead&status=dead",
            "duplicate field `status`",
        ),
        ("GET", "/v1/callbacks/%FF", "`id` is not valid UTF-8"),
        (
            "POST",
            "/v1/callbacks/%FF/replay",
            "`id` is not valid UTF-8",
        ),
    ];
    for (method, path, says) in cases {
        let request = match method {
            "GET" => app.client.get(app.url(path)),
            _ => app.client.post(app.url(path)),
        };
        let response = request.send().await.unwrap();
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{method} {path}"
        );
        let (status, code, message) = error_body(response).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_parameter"),
            "{method} {path}"
        );
        assert!(message.contains(says), "{method} {path}: {message}");
        assert!(
            message.contains("at most once") || message.contains("exactly as this API gave it"),
            "{method} {path}: the message says how to fix it: {message}"
        );
    }
    // The console's pages answer the same code and message, in its HTML error page.
    for (method, path) in [
        ("GET", "/console/callbacks/%FF"),
        ("POST", "/console/callbacks/%FF/replay"),
    ] {
        let request = match method {
            "GET" => app.client.get(app.url(path)),
            _ => app.client.post(app.url(path)),
        };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400, "{method} {path}");
        let page = response.text().await.unwrap();
        assert!(page.contains("invalid_parameter"), "{page}");
        assert!(page.contains("is not valid UTF-8"), "{page}");
    }
    app.stop().await;
}

/// The document says what the server checks: required parameters, enums and lengths.
#[tokio::test]
async fn the_document_is_as_strict_as_the_server() {
    let doc = serde_json::to_value(okra_callbacks::openapi()).unwrap();
    let params = &doc["paths"]["/v1/callback"]["get"]["parameters"];
    let param = |name: &str| {
        params
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` in {params}"))
            .clone()
    };
    let (record, method) = (param("record"), param("method"));
    assert_eq!(record["required"], true, "{record}");
    assert_eq!(record["schema"]["minLength"], 1);
    assert_eq!(record["schema"]["maxLength"], 128);
    assert_eq!(method["required"], true, "{method}");
    assert_eq!(
        method["schema"]["enum"],
        json!([
            "AUTH",
            "TRANSACTIONS",
            "IDENTITY",
            "INCOME",
            "BALANCE",
            "RECORD",
            "ACCOUNTS"
        ])
    );
    for path in ["/v1/callbacks/{id}", "/v1/callbacks/{id}/replay"] {
        let item = &doc["paths"][path];
        let op = item.get("get").or(item.get("post")).unwrap();
        assert!(op["responses"].get("400").is_some(), "{path} declares 400");
    }
    let body = &doc["paths"]["/v1/callback"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    let body = match body["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => body,
    };
    let rules = body["allOf"].as_array().expect("allOf");
    let text = serde_json::to_string(rules).unwrap();
    for spelling in [
        "record",
        "recordId",
        "callback_type",
        "method",
        "callback_code",
        "code",
    ] {
        assert!(
            text.contains(&format!("\"{spelling}\"")),
            "{spelling} in {text}"
        );
    }
    assert!(text.contains("\"maxLength\":128"), "{text}");
}

/// The bounds of the model, over HTTP: 128 characters pass, 129 answer 422 naming the limit; a
/// blank record id is reported as such; a non-string code is acknowledged as absent and kept.
#[tokio::test]
async fn record_ids_types_and_codes_are_bounded_and_reported_accurately() {
    let app = app(Backend::Sqlite).await.spawn().await;
    let at = "r".repeat(128);
    let ack = app
        .post_ok(json!({"record": at, "callback_type": at, "callback_code": at}).to_string())
        .await;
    assert_eq!(ack["record"], at.as_str());
    assert_eq!(ack["callback_type"], at.as_str());
    assert_eq!(ack["callback_code"], at.as_str());

    let over = "r".repeat(129);
    for (field, body) in [
        ("record", json!({"record": over, "callback_type": "AUTH"})),
        ("recordId", json!({"recordId": over, "method": "AUTH"})),
        (
            "callback_type",
            json!({"record": "r1", "callback_type": over}),
        ),
        (
            "callback_code",
            json!({"record": "r1", "callback_type": "AUTH", "callback_code": over}),
        ),
    ] {
        let (status, code, message) = error_body(app.post(body.to_string()).await).await;
        assert_eq!(
            (status, code.as_str()),
            (422, "invalid_callback"),
            "{field}"
        );
        assert!(message.contains(&format!("`{field}`")), "{message}");
        assert!(message.contains("limit of 128"), "{message}");
    }
    // 100,000 characters: refused the same way.
    let huge = json!({"record": "x".repeat(100_000), "callback_type": "AUTH"});
    let (status, _, message) = error_body(app.post(huge.to_string()).await).await;
    assert_eq!(status, 422);
    assert!(message.contains("100000 characters"), "{message}");

    let (status, code, message) = error_body(
        app.post(r#"{"record":"  \t ","callback_type":"AUTH"}"#)
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (422, "invalid_callback"));
    assert!(message.contains("whitespace only"), "{message}");
    assert!(!message.contains("empty string"), "{message}");

    for code in ["{}", "false", "0"] {
        let body =
            format!(r#"{{"record":"r-{code}","callback_type":"AUTH","callback_code":{code}}}"#);
        let ack = app.post_ok(body.clone()).await;
        assert_eq!(ack["callback_code"], Value::Null, "{code}");
        let (status, stored) = app
            .get_json(&format!("/v1/callbacks/{}", ack["id"].as_str().unwrap()))
            .await;
        assert_eq!(status, 200);
        assert_eq!(stored["callback_code"], Value::Null);
        assert_eq!(
            stored["payload"]["callback_code"],
            serde_json::from_str::<Value>(code).unwrap(),
            "the body keeps the code as sent"
        );
    }
    app.stop().await;
}

/// What a subscriber wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A record id, type and code full of terminal escapes and forged log lines.
const RECORD: &str =
    "rec\u{1b}[31m\u{7f}\u{9b}2J\n2026-12-01T00:00:00Z  INFO okra_callbacks: forged record line";
const TYPE: &str = "T\r\n2026-12-01T00:00:00Z ERROR forged type line\u{202e}";
const CODE: &str = "C\u{1b}]0;title\u{7}\u{85}\u{2028}2026-12-01T00:00:00Z  WARN forged code";

/// Runs a receiver with the log handler under a subscriber of `format` writing to memory, sends
/// the hostile callback, waits until it is handled, and returns the log.
fn hostile_callback_logged(format: LogFormat) -> String {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = Logs::new(format)
        .filter("trace,hyper=off,hyper_util=off,reqwest=off,h2=off,rustls=off")
        .writer(move || sink.clone())
        .subscriber();
    // One thread, so every task of the receiver logs to this subscriber.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    crate::support::keep_callsites_enabled();
    let _default = tracing::subscriber::set_default(subscriber);
    runtime.block_on(async {
        let db = TestDb::new(Backend::Sqlite).await;
        let mut config = Config::default();
        config.store.database_url = db.url.clone();
        let receiver = Receiver::new(config, LogHandler::new()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(receiver.run(listener, async {
            stopped.await.ok();
        }));
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
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let stored: Value = client
                .get(format!("{base}/v1/callbacks/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(stored["record"], RECORD);
            if stored["status"] == "delivered" {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{stored}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        drop(db);
    });
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).expect("UTF-8 logs");
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

/// The fix for the one-in-twenty log test failure: `tracing` caches per process whether a
/// callsite is enabled, computed on the thread that first reaches it. A callsite first reached
/// by a thread without a subscriber of its own, while a test captures logs on another, is still
/// logged by the capturing one.
#[test]
fn a_callsite_first_reached_by_a_thread_without_a_subscriber_still_logs() {
    fn probe() -> tracing::Span {
        tracing::info_span!("callsite_race_probe")
    }
    crate::support::keep_callsites_enabled();
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = Logs::new(LogFormat::Json)
        .filter("trace")
        .writer(move || sink.clone())
        .subscriber();
    let _default = tracing::subscriber::set_default(subscriber);
    std::thread::spawn(|| drop(probe())).join().unwrap();
    probe().in_scope(|| tracing::info!("inside the probe"));
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("callsite_race_probe"),
        "the probe span is missing from the captured log:\n{text}"
    );
}
