//! Hostile input and hostile clients: every rejection in our error body, the bounds of the
//! model (and a document as strict as the server), slow clients cut off, floods shed fast.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{app, callback, error_body, paths, Backend};

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

// ---------------------------------------------------------------------------------------------
// Slow clients and floods

fn addr_of(app: &crate::support::TestApp) -> SocketAddr {
    app.base.trim_start_matches("http://").parse().unwrap()
}

/// Sends `bytes` one at a time, `gap` apart, and reports how long the server let it go on
/// before closing the connection (or `None` if it never did within `give_up`).
async fn drip(
    addr: SocketAddr,
    bytes: Vec<u8>,
    gap: Duration,
    give_up: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        for b in bytes.iter().cycle() {
            if write.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
    });
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(give_up, read.read_to_end(&mut sink)).await;
    writer.abort();
    closed.ok().map(|_| started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_while_other_clients_are_served() {
    let app = app(Backend::Sqlite)
        .await
        .config(|c| c.limits.header_read_timeout = Duration::from_secs(1))
        .spawn()
        .await;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nX-Padding: {}\r\n",
        paths::CALLBACK,
        addr_of(&app),
        "a".repeat(200)
    );
    let slow: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(drip(
                addr_of(&app),
                head.clone().into_bytes(),
                Duration::from_millis(100),
                Duration::from_secs(10),
            ))
        })
        .collect();
    // Meanwhile, ordinary clients are served promptly.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in 0..10 {
        let started = Instant::now();
        app.post_ok(callback("r-slow", "AUTH", "AUTH_SUCCESS", n))
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a normal request waited {:?}",
            started.elapsed()
        );
    }
    for task in slow {
        let cut_after = task.await.unwrap().expect("the slow client was cut off");
        assert!(
            cut_after >= Duration::from_millis(900) && cut_after < Duration::from_secs(4),
            "cut off after {cut_after:?}, expected about 1 s"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_gets_408_with_our_error_body() {
    let app = app(Backend::Sqlite)
        .await
        .config(|c| c.limits.request_timeout = Duration::from_secs(1))
        .spawn()
        .await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr_of(&app)).await.unwrap();
    stream
        .write_all(
            format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
                paths::CALLBACK,
                addr_of(&app)
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        loop {
            if write.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), read.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes within the timeout")
        .ok();
    writer.abort();
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let json: Value = serde_json::from_str(body).expect("a JSON error body");
    assert_eq!(json["error"]["code"], "request_timeout");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_the_concurrency_limit_gets_fast_429s() {
    const REQUESTS: usize = 2000;
    const CLIENTS: usize = 64;
    let app = app(Backend::Sqlite)
        .await
        .config(|c| c.limits.max_concurrent_requests = 2)
        .spawn()
        .await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let client = client.clone();
            let next = next.clone();
            let url = app.url(paths::CALLBACK);
            tokio::spawn(async move {
                let mut results = Vec::new();
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= REQUESTS {
                        return results;
                    }
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .body(callback("r-flood", "AUTH", "AUTH_SUCCESS", n))
                        .send()
                        .await
                        .expect("the server answers every request");
                    let status = response.status().as_u16();
                    let retry_after = response.headers().get("retry-after").cloned();
                    let body: Value = response.json().await.unwrap();
                    results.push((status, sent.elapsed(), retry_after, body));
                }
            })
        })
        .collect();
    let mut ok = 0;
    let mut shed = Vec::new();
    for worker in workers {
        for (status, latency, retry_after, body) in worker.await.unwrap() {
            match status {
                200 => ok += 1,
                429 => {
                    assert_eq!(retry_after.expect("429 carries Retry-After"), "1");
                    assert_eq!(body["error"]["code"], "too_many_requests");
                    shed.push(latency);
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
    }
    let total = started.elapsed();
    shed.sort();
    assert_eq!(ok + shed.len(), REQUESTS);
    assert!(ok > 0, "some requests get through");
    assert!(!shed.is_empty(), "past the limit, requests are shed");
    let p50 = shed[shed.len() / 2];
    let p99 = shed[shed.len() * 99 / 100];
    let max = *shed.last().unwrap();
    eprintln!(
        "flood: {REQUESTS} requests from {CLIENTS} clients in {total:?}: {ok} stored, {} shed with 429; 429 latency p50 {p50:?} p99 {p99:?} max {max:?}",
        shed.len()
    );
    // Generous bounds: 429s are answered without waiting for a slot.
    assert!(p99 < Duration::from_secs(2), "429 p99 {p99:?}");
    assert!(total < Duration::from_secs(120));
    // Everything acknowledged was stored, and the receiver is still healthy.
    // (The record's query answers pages: walk them all.)
    let mut stored = 0;
    let mut cursor = String::new();
    loop {
        let (status, listed) = app
            .get_json(&format!(
                "/v1/callback?record=r-flood&method=AUTH&limit=500{cursor}"
            ))
            .await;
        assert_eq!(status, 200);
        stored += listed["callbacks"].as_array().unwrap().len();
        match listed["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(stored, ok);
    assert_eq!(app.get_json("/healthz").await.0, 200);
}
