//! `POST /v1/callback`: every status and error code of the contract, and duplicates.

use std::time::Duration;

use serde_json::json;

use crate::both_stores;
use crate::support::{app, callback, error_body, fixture, paths, samples, Backend};

async fn acknowledges_every_fixture_and_hands_it_over(backend: Backend) {
    let mut app = app(backend).await.spawn().await;
    let names = [
        (
            "transactions_initial",
            "TRANSACTIONS",
            "INITIAL_TRANSACTIONS",
        ),
        ("record_error", "RECORD", "ERROR"),
        ("income_ready_misspelled", "INCOME", "PDOCUT_IS_READY"),
        ("identity_is_ready", "IDENTITY", "IDENTITY_IS_READY"),
        ("balance_success", "BALANCE", "BALANCE_SUCCESS"),
        ("auth_success", "AUTH", "AUTH_SUCCESS"),
        ("accounts_success", "ACCOUNTS", "ACCOUNTS_SUCCESS"),
    ];
    for (name, kind, code) in names {
        let body = fixture(name);
        let answer = app.post_ok(body.clone()).await;
        assert_eq!(answer["callback_type"], kind, "{name}");
        assert_eq!(answer["callback_code"], code, "{name}");
        assert_eq!(answer["duplicate"], false);
        assert!(answer["record"].as_str().is_some_and(|r| !r.is_empty()));
        let seen = app.next_seen().await;
        assert_eq!(seen.id, answer["id"].as_str().unwrap());
        assert_eq!(
            seen.body, body,
            "the handler gets the bytes exactly as received"
        );
        assert_eq!(seen.attempt, 1);
        assert_eq!(seen.callback_type, kind);
        assert_eq!(seen.callback_code.as_deref(), Some(code));
        assert_eq!(seen.record, answer["record"].as_str().unwrap());
    }
}

/// Every sample in `samples/` (what `okra-callbacks send` can post) is acknowledged and reaches
/// the handler byte for byte.
async fn acknowledges_every_sample_byte_for_byte(backend: Backend) {
    let mut app = app(backend).await.spawn().await;
    let samples = samples();
    assert!(samples.len() >= 13, "samples/ holds Okra's payloads");
    for (name, body) in samples {
        let answer = app.post_ok(body.clone()).await;
        assert_eq!(answer["duplicate"], false, "{name}");
        let seen = app.next_seen().await;
        assert_eq!(seen.id, answer["id"].as_str().unwrap(), "{name}");
        assert_eq!(seen.body, body, "{name}: the bytes exactly as received");
    }
}

async fn duplicates_answer_200_with_the_first_id_and_are_not_redelivered(backend: Backend) {
    let mut app = app(backend).await.spawn().await;
    let body = callback("rec-dup", "TRANSACTIONS", "PERIODIC_TRANSACTIONS", 1);
    let first = app.post_ok(body.clone()).await;
    let second = app.post_ok(body.clone()).await;
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["id"], first["id"]);
    assert_eq!(app.next_seen().await.id, first["id"].as_str().unwrap());
    app.assert_quiet(Duration::from_millis(300)).await;
    // Different bytes of the same callback are a different delivery.
    let other = app.post_ok(format!(" {body}")).await;
    assert_eq!(other["duplicate"], false);
    assert_ne!(other["id"], first["id"]);
}

async fn bad_requests_get_the_contract_errors(backend: Backend) {
    let app = app(backend)
        .await
        .config(|c| c.limits.max_body_bytes = 1024)
        .spawn()
        .await;
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            app.callback_request()
                .header("content-type", "application/json"),
            400,
            "invalid_json",
        ),
        (app.callback_request().body("{nope"), 400, "invalid_json"),
        (
            app.callback_request()
                .header("content-type", "text/plain")
                .body("{}"),
            415,
            "unsupported_media_type",
        ),
        (
            app.callback_request().body("x".repeat(2048)),
            413,
            "payload_too_large",
        ),
        (
            app.callback_request().body("[1,2]"),
            422,
            "invalid_callback",
        ),
        (
            app.callback_request().body(r#"{"callback_type":"AUTH"}"#),
            422,
            "invalid_callback",
        ),
        (
            app.callback_request().body(r#"{"record":"r"}"#),
            422,
            "invalid_callback",
        ),
        (
            app.callback_request()
                .body(r#"{"record":7,"method":"AUTH"}"#),
            422,
            "invalid_callback",
        ),
        (
            // PostgreSQL cannot store a NUL in text: refused up front, not a 503 retried forever.
            app.callback_request()
                .body(r#"{"record":"r\u0000x","method":"AUTH"}"#),
            422,
            "invalid_callback",
        ),
        (app.client.get(app.url("/v1/nowhere")), 404, "not_found"),
        (
            app.client.delete(app.url(paths::CALLBACK)),
            405,
            "method_not_allowed",
        ),
    ];
    for (request, status, code) in cases {
        let (got_status, got_code, message) = error_body(request.send().await.unwrap()).await;
        assert_eq!((got_status, got_code.as_str()), (status, code), "{message}");
    }
    // A missing content type is taken as JSON.
    let ok = app
        .callback_request()
        .body(callback("r-ct", "AUTH", "AUTH_SUCCESS", 0))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // The record-id error says what to send.
    let (_, _, message) = error_body(
        app.callback_request()
            .body(r#"{"method":"AUTH"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(message.contains("`record` (or `recordId`)"), "{message}");
}

async fn unknown_types_are_accepted_and_kept(backend: Backend) {
    let mut app = app(backend).await.spawn().await;
    let body =
        json!({"callback_type": "LIABILITIES", "callback_code": "NEW", "record": "r-u", "x": [1]})
            .to_string();
    let answer = app.post_ok(body.clone()).await;
    assert_eq!(answer["callback_type"], "LIABILITIES");
    let seen = app.next_seen().await;
    assert_eq!(seen.body, body.as_bytes());
    let (status, got) = app.get_callback(answer["id"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(got["payload"]["x"], json!([1]));
}

async fn callback_token_is_required_when_set(backend: Backend) {
    let app = app(backend)
        .await
        .config(|c| {
            c.access.callback_token = Some(okra_callbacks::Secret::new("okra-dashboard-token"));
            c.access.admin_token = Some(okra_callbacks::Secret::new("admin-token"));
        })
        .spawn()
        .await;
    let body = callback("r-tok", "AUTH", "AUTH_SUCCESS", 0);
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer admin-token"),
        Some("okra-dashboard-token"),
    ] {
        let mut request = app.callback_request().body(body.clone());
        if let Some(value) = auth {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let (status, code, _) = error_body(response).await;
        assert_eq!((status, code.as_str()), (401, "unauthorized"), "{auth:?}");
    }
    let response = app
        .callback_request()
        .bearer_auth("okra-dashboard-token")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn store_unavailable_is_503_and_nothing_is_acknowledged() {
    let db = crate::support::TestDb::new(Backend::Sqlite).await;
    let inner = okra_callbacks::store::open(&db.url).await.unwrap();
    let store = std::sync::Arc::new(crate::support::Switchable::new(inner));
    let (app, mut seen) = crate::support::spawn_with_store(&db, store.clone()).await;
    store.set_down(true);
    let response = app.post(callback("r-503", "AUTH", "AUTH_SUCCESS", 0)).await;
    let (status, code, message) = error_body(response).await;
    assert_eq!((status, code.as_str()), (503, "store_unavailable"));
    assert!(
        !message.contains("switched off"),
        "5xx details are logged, not sent: {message}"
    );
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), seen.recv())
            .await
            .is_err()
    );
    store.set_down(false);
    app.post_ok(callback("r-503", "AUTH", "AUTH_SUCCESS", 0))
        .await;
    assert_eq!(app.get_json("/readyz").await.0, 200);
    assert_eq!(seen.recv().await.unwrap().record, "r-503");
}

both_stores!(
    acknowledges_every_fixture_and_hands_it_over,
    acknowledges_every_sample_byte_for_byte,
    duplicates_answer_200_with_the_first_id_and_are_not_redelivered,
    bad_requests_get_the_contract_errors,
    unknown_types_are_accepted_and_kept,
    callback_token_is_required_when_set,
);

/// A configuration that cannot be used is an error from the library, never a panic.
#[tokio::test]
async fn an_unusable_config_is_an_error_not_a_panic() {
    let db = crate::support::TestDb::new(Backend::Sqlite).await;
    let store = okra_callbacks::store::open(&db.url).await.unwrap();
    let mut config = crate::support::test_config(&db);
    config.access.admin_token_file = Some("/nonexistent/admin-token".into());
    let err = okra_callbacks::Receiver::with_store(
        config,
        store,
        std::sync::Arc::new(okra_callbacks::LogHandler::new()),
    )
    .err()
    .expect("an unreadable token file is refused");
    assert!(err.to_string().contains("--admin-token-file"), "{err}");
}
