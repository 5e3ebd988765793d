//! `POST /v1/callback`: the sink Okra calls.
//!
//! [`ingest`] walks one callback through named steps, in an order that matters: admit (the
//! sender's network, a free slot) → authorise (the callback token) → read the body → verify its
//! signature on the raw bytes → parse → store durably → acknowledge. Each step refuses with the
//! error that is answered; [`receive`] counts every refusal once.

use std::time::Instant;

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{header, request::Parts, HeaderMap},
};
use chrono::Utc;
use serde::Serialize;
use tokio::sync::SemaphorePermit;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    error::{ApiError, ErrorBody},
    extract::Json,
    refusals::SinkRefusals,
    schema::CallbackBody,
    state::AppState,
};
use crate::{
    callback::{CallbackType, Envelope, OKRA},
    store::{Inserted, NewCallback},
    telemetry::{names, Untrusted},
};
use tracing::field::display;

/// The sink's route, with its OpenAPI description.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive))
}

/// The answer to an accepted callback.
#[derive(Serialize, ToSchema)]
pub(super) struct Ack {
    /// The id this receiver gave the callback; for a duplicate, the first delivery's id.
    id: String,
    /// The source that sent it: `okra` on `POST /v1/callback`, the source's name on
    /// `POST /v1/sources/{name}`.
    #[schema(example = "okra")]
    source: String,
    /// The record the callback is about (for a source whose payload has none, the callback's
    /// own id).
    record: String,
    /// The callback type (the known spelling, or as sent for a type this crate does not know).
    callback_type: String,
    /// The callback code as sent, if any.
    callback_code: Option<String>,
    /// Whether the same callback was already stored within the dedup window (for Okra's, the
    /// same bytes; for another source's, the same event id, or the same bytes where it has none).
    duplicate: bool,
}

/// Bounded metric labels for a callback: Okra's known types and codes by name, the rest (and
/// every other source's, whose types are open-ended) as `other`.
fn metric_labels(envelope: &Envelope) -> (&'static str, String) {
    let callback = envelope.callback();
    if !envelope.is_okra() {
        return ("other", "other".to_owned());
    }
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
        content = CallbackBody,
        content_type = "application/json",
        description = "An Okra callback: a JSON object with a record id (`record` or `recordId`) and a callback type (`callback_type` or `method`), each at most 128 characters; every other field is kept. A missing content type is taken as JSON.",
    ),
    responses(
        (status = 200, description = "Stored (or a duplicate of a stored callback)", body = Ack),
        (status = 400, description = "`invalid_json`: empty or not JSON", body = ErrorBody),
        (status = 401, description = "`unauthorized`: --callback-token is set and the bearer token is missing or wrong; `invalid_signature`: signatures are required and this one is missing or wrong", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the request took longer than --request-timeout; nothing was acknowledged", body = ErrorBody),
        (status = 422, description = "`invalid_callback`: JSON, but not an object, or no record id or callback type, or a record id, type or code longer than 128 characters", body = ErrorBody),
        (status = 503, description = "`store_unavailable`: nothing was acknowledged; retry later", body = ErrorBody),
        SinkRefusals,
    ),
    security((), ("callback_token" = [])),
)]
async fn receive(State(state): State<AppState>, request: Request) -> Result<Json<Ack>, ApiError> {
    let result = ingest(&state, request).await;
    // The one place a refused callback is counted, whichever step refused it.
    if let Err(e) = &result {
        metrics::counter!(names::REJECTED, "reason" => e.parts().1, "source" => OKRA).increment(1);
    }
    result.map(Json)
}

/// One callback, from the request to its acknowledgement.
async fn ingest(state: &AppState, request: Request) -> Result<Ack, ApiError> {
    let started = Instant::now();
    let (head, body) = request.into_parts();
    let _slot = admit(state, &head)?;
    state.access.check_callback_token(&head.headers)?;
    let raw = read_body(state, &head.headers, body).await?;
    state.access.check_signature(&head.headers, &raw)?;
    let envelope = parse(raw)?;
    let stored = store(state, &envelope, new_id()).await?;
    Ok(acknowledge(&envelope, stored, started))
}

/// A new callback id: a UUIDv7, so ids sort in the order they were made.
pub(super) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl Ack {
    /// Answers `record` as the callback's record (a record-less source's callback is its own
    /// record: a duplicate names the first delivery's id).
    pub(super) fn set_record(&mut self, record: String) {
        self.record = record;
    }
}

/// Lets the request in: from an `--allow-from` network, and only while a slot for one more
/// callback is free. The slot is held until the callback is answered.
pub(super) fn admit<'a>(
    state: &'a AppState,
    request: &Parts,
) -> Result<SemaphorePermit<'a>, ApiError> {
    state.access.check_sender(request)?;
    state.limits.callback_slot()
}

/// The body, if it is declared as JSON (a missing content type is taken as JSON) and within
/// `--max-body-bytes`.
pub(super) async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("(not text)");
        if !is_json(ct) {
            return Err(ApiError::UnsupportedMediaType(ct.to_owned()));
        }
    }
    state.limits.read_body(headers, body).await
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

/// The typed callback, its record, type and code also recorded on the request span.
fn parse(raw: Bytes) -> Result<Envelope, ApiError> {
    let envelope = Envelope::parse(raw)?;
    record_on_span(&envelope);
    Ok(envelope)
}

/// Records the callback's source, record, type and code on the request span.
pub(super) fn record_on_span(envelope: &Envelope) {
    let span = tracing::Span::current();
    span.record("source", envelope.source());
    span.record("record", display(Untrusted(envelope.record().as_str())));
    span.record(
        "callback_type",
        display(Untrusted(envelope.callback_type())),
    );
    span.record(
        "callback_code",
        display(Untrusted(envelope.callback_code().unwrap_or(""))),
    );
}

/// Stores the callback durably as `id` (or finds it a duplicate) and, when it is new, wakes
/// the dispatcher.
pub(super) async fn store(
    state: &AppState,
    envelope: &Envelope,
    id: String,
) -> Result<Inserted, ApiError> {
    let new = NewCallback {
        id,
        source: envelope.source().to_owned(),
        record: envelope.record().as_str().to_owned(),
        callback_type: envelope.callback_type().to_owned(),
        callback_code: envelope.callback_code().map(str::to_owned),
        event_id: envelope.event_id().map(str::to_owned),
        body: envelope.raw().clone(),
        received_at: Utc::now(),
    };
    let write_started = Instant::now();
    let stored = state.store.insert(new, state.dedup_window).await?;
    metrics::histogram!(names::STORE_WRITE_DURATION, "operation" => "insert")
        .record(write_started.elapsed().as_secs_f64());
    tracing::Span::current().record("id", stored.id.as_str());
    if stored.duplicate {
        metrics::counter!(names::DUPLICATES, "source" => envelope.source().to_owned()).increment(1);
    } else {
        state.wake.notify_one();
    }
    Ok(stored)
}

/// The answer to a stored callback, counted and timed from the request's start.
pub(super) fn acknowledge(envelope: &Envelope, stored: Inserted, started: Instant) -> Ack {
    let (kind, code) = metric_labels(envelope);
    metrics::counter!(
        names::RECEIVED,
        "source" => envelope.source().to_owned(),
        "callback_type" => kind,
        "callback_code" => code,
        "outcome" => if stored.duplicate { "duplicate" } else { "stored" },
    )
    .increment(1);
    // DEBUG: a line per callback on the acknowledging path cost as much as the rest of the
    // request's logging (format, escape, write); the dispatcher's handler logs each callback.
    tracing::debug!(id = %stored.id, duplicate = stored.duplicate, "callback stored");
    metrics::histogram!(names::ACK_DURATION, "source" => envelope.source().to_owned())
        .record(started.elapsed().as_secs_f64());
    Ack {
        id: stored.id,
        source: envelope.source().to_owned(),
        record: envelope.record().as_str().to_owned(),
        callback_type: envelope.callback_type().to_owned(),
        callback_code: envelope.callback_code().map(str::to_owned),
        duplicate: stored.duplicate,
    }
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

    /// A receiver on a fresh SQLite store, with the directory that holds the store.
    async fn receiver() -> (tempfile::TempDir, crate::Receiver) {
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
        (dir, receiver)
    }

    /// Posts `body` to the sink; answers the status and the JSON answer.
    async fn post_callback(router: &axum::Router, body: &str) -> (StatusCode, Value) {
        use tower::ServiceExt;

        let response = router
            .clone()
            .oneshot(
                axum::http::Request::post("/v1/callback")
                    .body(Body::from(body.to_owned()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// Ids are UUIDv7s, distinct and in the order the callbacks were stored (the store's
    /// readers sort and page by them), whichever RNG feeds their random bits.
    #[tokio::test(flavor = "current_thread")]
    async fn ids_are_distinct_uuidv7s_in_creation_order() {
        let (_dir, receiver) = receiver().await;
        let router = receiver.router();
        let mut ids = Vec::new();
        for n in 0..200 {
            let body = format!(
                r#"{{"method":"BALANCE","recordId":"rec_{}","n":{n}}}"#,
                n % 3
            );
            let (status, ack) = post_callback(&router, &body).await;
            assert_eq!(status, StatusCode::OK, "{ack}");
            assert_eq!(ack["duplicate"], false);
            let id = uuid::Uuid::parse_str(ack["id"].as_str().unwrap()).unwrap();
            assert_eq!(id.get_version_num(), 7, "{id}");
            ids.push(id);
        }
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "ids not strictly increasing: {ids:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_request_span_carries_the_callback() {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(move || writer.clone())
            .finish();
        // `tracing` caches per process whether a callsite is enabled, computed on the thread
        // that reaches it first; a parallel test without a subscriber would cache the request
        // span as disabled. A do-nothing global registry keeps every callsite enabled (see
        // `keep_callsites_enabled` in tests/api/support/app.rs).
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
        });
        tracing::callsite::rebuild_interest_cache();
        let _guard = tracing::subscriber::set_default(subscriber);

        let (_dir, receiver) = receiver().await;
        let (status, ack) = post_callback(
            &receiver.router(),
            r#"{"method":"BALANCE","code":"BALANCE_SUCCESS","recordId":"rec_traced"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{ack}");

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
