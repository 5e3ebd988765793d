//! The HTTP API: the callback sink Okra calls, the read/admin API, health and metrics.
//!
//! [`router`] builds the whole `Router` from an [`AppState`], so it can be tested with
//! `tower::ServiceExt::oneshot` before any socket exists.

pub mod auth;
pub mod error;
pub mod peer;

use std::{sync::Arc, time::Duration};

use axum::{
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, Path, Query, Request, State},
    http::{header, HeaderMap, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use chrono::{SecondsFormat, Utc};
use ipnet::IpNet;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::{json, value::RawValue, Value};
use tokio::sync::{Notify, Semaphore};
use tower_http::trace::TraceLayer;

pub use self::error::ApiError;
use crate::{
    callback::{CallbackType, Envelope},
    config::{Config, Secret},
    signature::Verifier,
    store::{NewCallback, Store, StoredCallback},
};

/// The network and signature rules in front of the routes (tokens live in [`AppState`]).
#[derive(Debug, Clone)]
pub struct Security {
    /// Proxies whose `X-Forwarded-For` is believed (`--trusted-proxies`).
    pub trusted_proxies: Vec<IpNet>,
    /// When not empty, `POST /v1/callback` only from these networks (`--allow-from`).
    pub allow_from: Vec<IpNet>,
    /// When set, every callback's raw body must carry a valid signature.
    pub signature: Option<Verifier>,
    /// The longest a request may take before it is answered 408 (`--request-timeout`).
    pub request_timeout: Duration,
}

impl Default for Security {
    /// No network rules, no signatures, a 30 s request timeout.
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            allow_from: Vec::new(),
            signature: None,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl Security {
    /// The rules `config` describes; fails if a signature secret is not valid.
    pub fn from_config(config: &Config) -> Result<Self, crate::config::ConfigError> {
        Ok(Self {
            trusted_proxies: config.trusted_proxies.clone(),
            allow_from: config.allow_from.clone(),
            signature: config.signature_verifier()?,
            request_timeout: config.request_timeout,
        })
    }
}

/// What every route shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Where callbacks are stored.
    pub store: Arc<dyn Store>,
    /// Wakes the dispatcher when a callback is stored.
    pub wake: Arc<Notify>,
    /// Required on `POST /v1/callback` when set.
    pub callback_token: Option<Secret>,
    /// Required on the read/admin API when set; otherwise loopback only.
    pub admin_token: Option<Secret>,
    /// Larger bodies get 413.
    pub max_body_bytes: usize,
    /// How long the same bytes count as a duplicate.
    pub dedup_window: Duration,
    /// Callbacks being stored at once; past it, 429.
    pub in_flight: Arc<Semaphore>,
    /// Renders `/metrics`, when a recorder is installed.
    pub metrics: Option<PrometheusHandle>,
    /// Network rules, signature checks and the request timeout.
    pub security: Arc<Security>,
}

/// Builds every route of the receiver.
pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/v1/callback", get(list_callbacks))
        .route("/v1/callbacks/{id}", get(get_callback))
        .route("/v1/callbacks/{id}/replay", post(replay_callback))
        .route("/v1/callbacks/replay", post(replay_dead))
        .route("/metrics", get(render_metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ));
    let sink = post(receive).route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_allowed_source,
    ));
    Router::new()
        .route("/v1/callback", sink)
        .merge(admin)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async {
            ApiError::NotFound("no such route: see the README for the API".into())
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // We read the body ourselves, against our own limit.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limit_request_time,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::extract::Request| {
                let route = req
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default();
                tracing::info_span!("http", method = %req.method(), route)
            }),
        )
        .with_state(state)
}

/// Answers 408 `request_timeout` (our JSON error body) when a request, body included, takes
/// longer than `--request-timeout`. Dropping the handler is safe: nothing is acknowledged before
/// it is stored, and a store write that completes anyway makes the retry a duplicate.
async fn limit_request_time(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let limit = state.security.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("okra_requests_timed_out_total").increment(1);
            ApiError::RequestTimeout(limit).into_response()
        }
    }
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

/// `POST /v1/callback`: authenticate, read, parse, store durably, then acknowledge.
async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let Ok(_slot) = state.in_flight.try_acquire() else {
        metrics::counter!("okra_callbacks_rejected_total", "reason" => "overloaded").increment(1);
        return Err(ApiError::TooManyRequests(1));
    };
    auth::check_callback_token(&state, &headers)?;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("(not text)");
        if !is_json(ct) {
            return Err(ApiError::UnsupportedMediaType(ct.to_owned()));
        }
    }
    let raw = read_body(&headers, body, state.max_body_bytes).await?;
    // Authenticate the bytes as received, before anything parses them.
    if let Some(verifier) = &state.security.signature {
        if let Err(e) = verifier.verify(&headers, &raw) {
            metrics::counter!("okra_callbacks_rejected_total", "reason" => "invalid_signature")
                .increment(1);
            tracing::debug!(scheme = verifier.scheme(), reason = %e, "callback refused: invalid signature");
            return Err(ApiError::InvalidSignature(format!(
                "{e}: {}",
                verifier.hint()
            )));
        }
    }
    let envelope = Envelope::parse(raw)?;
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
    metrics::histogram!("okra_store_write_seconds").record(write_started.elapsed().as_secs_f64());
    if stored.duplicate {
        metrics::counter!("okra_duplicates_total").increment(1);
    } else {
        state.wake.notify_one();
    }
    metrics::counter!(
        "okra_callbacks_received_total",
        "callback_type" => envelope.callback_type().to_owned(),
        "callback_code" => envelope.callback_code().unwrap_or("").to_owned(),
        "outcome" => if stored.duplicate { "duplicate" } else { "stored" },
    )
    .increment(1);
    tracing::info!(
        id = %stored.id,
        record = %envelope.record(),
        callback_type = envelope.callback_type(),
        callback_code = envelope.callback_code().unwrap_or(""),
        duplicate = stored.duplicate,
        "callback stored"
    );
    metrics::histogram!("okra_ack_seconds").record(started.elapsed().as_secs_f64());
    Ok(Json(json!({
        "id": stored.id,
        "record": envelope.record(),
        "callback_type": envelope.callback_type(),
        "callback_code": envelope.callback_code(),
        "duplicate": stored.duplicate,
    }))
    .into_response())
}

fn payload(body: &[u8]) -> Box<RawValue> {
    std::str::from_utf8(body)
        .ok()
        .and_then(|s| RawValue::from_string(s.trim().to_owned()).ok())
        .unwrap_or_else(|| {
            // Stored bodies were valid JSON when received; keep the answer valid regardless.
            RawValue::from_string(
                Value::String(String::from_utf8_lossy(body).into_owned()).to_string(),
            )
            .expect("a JSON string is valid JSON")
        })
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn summary(cb: &StoredCallback) -> Value {
    json!({
        "id": cb.id,
        "callback_type": cb.callback_type,
        "callback_code": cb.callback_code,
        "received_at": rfc3339(cb.received_at),
        "status": cb.status.as_str(),
        "attempts": cb.attempts,
        "payload": payload(&cb.body),
    })
}

#[derive(Deserialize)]
struct ListQuery {
    record: Option<String>,
    method: Option<String>,
}

/// `GET /v1/callback?record=…&method=…`: what was received for one record and product.
async fn list_callbacks(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let record = q.record.filter(|r| !r.trim().is_empty()).ok_or_else(|| {
        ApiError::MissingParameter(
            "the `record` query parameter is required: GET /v1/callback?record=<RECORD ID>&method=TRANSACTIONS".into(),
        )
    })?;
    let method = q.method.filter(|m| !m.trim().is_empty()).ok_or_else(|| {
        ApiError::MissingParameter(
            "the `method` query parameter is required: one of AUTH, TRANSACTIONS, IDENTITY, INCOME, BALANCE, RECORD, ACCOUNTS".into(),
        )
    })?;
    let kind = CallbackType::from_name(method.trim()).ok_or(ApiError::InvalidMethod(method))?;
    let (exists, callbacks) = state.store.list(&record, &[kind.as_str()]).await?;
    if !exists {
        return Err(ApiError::RecordNotFound(record));
    }
    Ok(Json(json!({
        "record": record,
        "method": kind.as_str(),
        "callbacks": callbacks.iter().map(summary).collect::<Vec<_>>(),
    })))
}

/// `GET /v1/callbacks/{id}`: one callback with its delivery state and last error.
async fn get_callback(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let cb = state
        .store
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no callback has the id `{id}`")))?;
    let mut body = summary(&cb);
    let obj = body.as_object_mut().expect("summary is an object");
    obj.insert("record".into(), json!(cb.record));
    obj.insert("last_error".into(), json!(cb.last_error));
    obj.insert(
        "next_attempt_at".into(),
        json!(cb
            .next_attempt_at
            .filter(|_| cb.status == crate::store::Status::Pending)
            .map(rfc3339)),
    );
    obj.insert("finished_at".into(), json!(cb.finished_at.map(rfc3339)));
    Ok(Json(body))
}

/// `POST /v1/callbacks/{id}/replay`: hand the callback to the handlers again.
async fn replay_callback(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !state.store.replay(&id).await? {
        return Err(ApiError::NotFound(format!("no callback has the id `{id}`")));
    }
    state.wake.notify_one();
    tracing::info!(%id, "callback replayed");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": "pending"})),
    )
        .into_response())
}

#[derive(Deserialize)]
struct ReplayQuery {
    status: Option<String>,
}

/// `POST /v1/callbacks/replay?status=dead`: replay every dead callback.
async fn replay_dead(
    State(state): State<AppState>,
    Query(q): Query<ReplayQuery>,
) -> Result<Response, ApiError> {
    match q.status.as_deref() {
        Some("dead") => {}
        _ => {
            return Err(ApiError::MissingParameter(
                "say which callbacks to replay: POST /v1/callbacks/replay?status=dead (or replay one by id: POST /v1/callbacks/<id>/replay)".into(),
            ))
        }
    }
    let replayed = state.store.replay_dead().await?;
    state.wake.notify_one();
    tracing::info!(replayed, "dead callbacks replayed");
    Ok((StatusCode::ACCEPTED, Json(json!({"replayed": replayed}))).into_response())
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(json!({"status": "ready"}))),
        Ok(Err(e)) => Err(ApiError::StoreUnavailable(e)),
        Err(_) => Err(ApiError::StoreUnavailable(
            crate::store::StoreError::Unavailable("the store did not answer within 2 s".into()),
        )),
    }
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    if let Ok(backlog) = state.store.backlog().await {
        metrics::gauge!("okra_pending_callbacks").set(backlog.pending as f64);
        metrics::gauge!("okra_dead_callbacks").set(backlog.dead as f64);
        let age = backlog
            .oldest_pending_at
            .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        metrics::gauge!("okra_oldest_pending_age_seconds").set(age);
    }
    let text = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[cfg(test)]
mod tests {
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
}
