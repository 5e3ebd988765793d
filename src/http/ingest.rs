//! `POST /v1/callback`: the sink Okra calls.

use axum::{
    body::{Body, Bytes},
    extract::State,
    http::{header, HeaderMap},
    Json,
};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{auth, error::ErrorBody, ApiError, AppState};
use crate::{
    callback::{CallbackType, Envelope},
    store::NewCallback,
    telemetry::names,
};

/// The sink's route, with its OpenAPI description.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive))
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads the body up to `limit` bytes; a longer one is refused without reading the rest.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::InvalidJson(format!("the body could not be read: {e}"))
        }
    })
}

/// The answer to an accepted callback.
#[derive(Serialize, ToSchema)]
pub struct Ack {
    /// The id this receiver gave the callback; for a duplicate, the first delivery's id.
    pub id: String,
    /// The record the callback is about.
    pub record: String,
    /// The callback type (the known spelling, or as sent for a type this crate does not know).
    pub callback_type: String,
    /// The callback code as sent, if any.
    pub callback_code: Option<String>,
    /// Whether the same bytes were already stored within the dedup window.
    pub duplicate: bool,
}

/// Bounded metric labels for a callback: known types and codes by name, the rest as `other`.
fn metric_labels(envelope: &Envelope) -> (&'static str, String) {
    let callback = envelope.callback();
    let kind = callback.kind().map_or("other", CallbackType::as_str);
    let code = if callback.is_unknown() {
        "other".to_owned()
    } else {
        envelope.callback_code().unwrap_or("none").to_owned()
    };
    (kind, code)
}

/// `POST /v1/callback`: authenticate, read, parse, store durably, then acknowledge.
#[utoipa::path(
    post,
    path = "/v1/callback",
    tag = "callbacks",
    description = "The sink Okra calls. Answers 200 only once the callback is durably stored; the same bytes again within the dedup window answer 200 with `duplicate: true` and are not handed to the handlers again.",
    request_body(
        content = Object,
        content_type = "application/json",
        description = "An Okra callback: a JSON object with a record id (`record` or `recordId`) and a callback type (`callback_type` or `method`); every other field is kept. A missing content type is taken as JSON.",
        example = json!({"callback_type": "TRANSACTIONS", "callback_code": "PERIODIC_TRANSACTIONS", "record": "5f8d1e2a9c1b2a0012345678", "new_transactions": 3})
    ),
    responses(
        (status = 200, description = "Stored (or a duplicate of a stored callback)", body = Ack),
        (status = 400, description = "`invalid_json`: empty or not JSON", body = ErrorBody),
        (status = 401, description = "`unauthorized`: --callback-token is set and the bearer token is missing or wrong; `invalid_signature`: signatures are required and this one is missing or wrong", body = ErrorBody),
        (status = 403, description = "`forbidden`: --allow-from is set and the client is not in it", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the request took longer than --request-timeout; nothing was acknowledged", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: larger than --max-body-bytes", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: a content type other than JSON", body = ErrorBody),
        (status = 422, description = "`invalid_callback`: JSON, but not an object, or no record id or callback type", body = ErrorBody),
        (status = 429, description = "`too_many_requests`: shedding load; retry after the `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "`store_unavailable`: nothing was acknowledged; retry later", body = ErrorBody),
    ),
    security((), ("callback_token" = [])),
)]
async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Ack>, ApiError> {
    let result = ingest(&state, &headers, body).await;
    if let Err(e) = &result {
        metrics::counter!(names::REJECTED, "reason" => e.parts().1).increment(1);
    }
    result.map(Json)
}

async fn ingest(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Ack, ApiError> {
    let started = std::time::Instant::now();
    let Ok(_slot) = state.in_flight.try_acquire() else {
        return Err(ApiError::TooManyRequests(1));
    };
    auth::check_callback_token(state, headers)?;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("(not text)");
        if !is_json(ct) {
            return Err(ApiError::UnsupportedMediaType(ct.to_owned()));
        }
    }
    let raw = read_body(headers, body, state.max_body_bytes).await?;
    // Authenticate the bytes as received, before anything parses them.
    if let Some(verifier) = &state.security.signature {
        if let Err(e) = verifier.verify(headers, &raw) {
            // Counted by `receive` as okra_callbacks_rejected_total{reason="invalid_signature"}.
            tracing::debug!(scheme = verifier.scheme(), reason = %e, "callback refused: invalid signature");
            return Err(ApiError::InvalidSignature(format!(
                "{e}: {}",
                verifier.hint()
            )));
        }
    }
    let envelope = Envelope::parse(raw)?;
    let span = tracing::Span::current();
    span.record("record", envelope.record().as_str());
    span.record("callback_type", envelope.callback_type());
    span.record("callback_code", envelope.callback_code().unwrap_or(""));
    let new = NewCallback {
        id: uuid::Uuid::now_v7().to_string(),
        record: envelope.record().as_str().to_owned(),
        callback_type: envelope.callback_type().to_owned(),
        callback_code: envelope.callback_code().map(str::to_owned),
        body: envelope.raw().clone(),
        received_at: Utc::now(),
    };
    let write_started = std::time::Instant::now();
    let stored = state.store.insert(new, state.dedup_window).await?;
    metrics::histogram!(names::STORE_WRITE_DURATION, "operation" => "insert")
        .record(write_started.elapsed().as_secs_f64());
    span.record("id", stored.id.as_str());
    if stored.duplicate {
        metrics::counter!(names::DUPLICATES).increment(1);
    } else {
        state.wake.notify_one();
    }
    let (kind, code) = metric_labels(&envelope);
    metrics::counter!(
        names::RECEIVED,
        "callback_type" => kind,
        "callback_code" => code,
        "outcome" => if stored.duplicate { "duplicate" } else { "stored" },
    )
    .increment(1);
    tracing::info!(id = %stored.id, duplicate = stored.duplicate, "callback stored");
    metrics::histogram!(names::ACK_DURATION).record(started.elapsed().as_secs_f64());
    Ok(Ack {
        id: stored.id,
        record: envelope.record().as_str().to_owned(),
        callback_type: envelope.callback_type().to_owned(),
        callback_code: envelope.callback_code().map(str::to_owned),
        duplicate: stored.duplicate,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::StatusCode;
    use serde_json::Value;

    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("Application/JSON"));
        assert!(is_json("application/vnd.okra+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }

    /// Collects what a `fmt` subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_request_span_carries_the_callback() {
        use tower::ServiceExt;

        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(dir.path().join("t.db"))
            .await
            .unwrap();
        let receiver = crate::Receiver::with_store(
            crate::Config::default(),
            Arc::new(store),
            Arc::new(crate::AllOf::new()),
        )
        .unwrap();
        let response = receiver
            .router()
            .oneshot(
                axum::http::Request::post("/v1/callback")
                    .body(Body::from(
                        r#"{"method":"BALANCE","code":"BALANCE_SUCCESS","recordId":"rec_traced"}"#,
                    ))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let ack: Value = serde_json::from_slice(&body).unwrap();

        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let stored: Value = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["fields"]["message"] == "callback stored")
            .unwrap_or_else(|| panic!("a `callback stored` event in:\n{text}"));
        let span = &stored["span"];
        assert_eq!(span["name"], "http", "{stored}");
        assert_eq!(span["route"], "/v1/callback");
        assert_eq!(span["id"], ack["id"]);
        assert_eq!(span["record"], "rec_traced");
        assert_eq!(span["callback_type"], "BALANCE");
        assert_eq!(span["callback_code"], "BALANCE_SUCCESS");
    }
}
