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
    Extension, Json, Router,
};
use chrono::{SecondsFormat, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{value::RawValue, Value};
use tokio::sync::{Notify, Semaphore};
use tower_http::trace::TraceLayer;
use tracing::field::Empty;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

pub use self::error::{ApiError, ErrorBody};
use crate::{
    callback::{CallbackType, Envelope},
    config::Secret,
    signature::Verifier,
    store::{NewCallback, Store, StoredCallback},
    telemetry::{names, Metrics},
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
    /// Where metrics are recorded and what `/metrics` renders; without it, metrics go to the
    /// global recorder (if any) and `/metrics` answers an empty body.
    pub metrics: Option<Metrics>,
    /// Network rules, signature checks and the request timeout.
    pub security: Arc<Security>,
}

/// The OpenAPI document's frame: title, version, tags and security schemes. The paths come
/// from the `#[utoipa::path]` annotations of the routes [`router`] serves.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "okra-callbacks",
        description = "Receives Okra's open-banking callbacks, stores them durably, and hands them to handlers at least once, in order per record."
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "callbacks", description = "The sink Okra calls"),
        (name = "admin", description = "Read and replay stored callbacks (the --admin-token rule)"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
struct ApiDoc;

/// Adds the two bearer-token schemes: `callback_token` and `admin_token`.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, what) in [
            ("callback_token", "--callback-token, when set"),
            (
                "admin_token",
                "--admin-token, when set; without it, loopback clients only",
            ),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(format!("Authorization: Bearer <token> ({what})")))
                        .build(),
                ),
            );
        }
    }
}

/// Every route, grouped by the rule in front of it, each registered with its OpenAPI
/// description, so the router and the document cannot drift apart.
struct Api {
    /// `POST /v1/callback`: the `--allow-from` rule (the token and signature are checked inside).
    sink: OpenApiRouter<AppState>,
    /// Open to all: health, readiness and the OpenAPI document.
    open: OpenApiRouter<AppState>,
    /// The `--admin-token` rule: the read/replay API and metrics.
    admin: OpenApiRouter<AppState>,
}

fn api() -> Api {
    Api {
        sink: OpenApiRouter::with_openapi(ApiDoc::openapi()).routes(routes!(receive)),
        open: OpenApiRouter::new()
            .routes(routes!(healthz))
            .routes(routes!(readyz))
            .routes(routes!(openapi_json)),
        admin: OpenApiRouter::new()
            .routes(routes!(list_callbacks))
            .routes(routes!(get_callback))
            .routes(routes!(replay_callback))
            .routes(routes!(replay_dead))
            .routes(routes!(render_metrics)),
    }
}

/// The OpenAPI 3 document of every route [`router`] serves (what `GET /openapi.json` answers).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let Api { sink, open, admin } = api();
    sink.merge(open).merge(admin).into_openapi()
}

/// The JSON of the OpenAPI document, rendered once per router.
#[derive(Clone)]
struct OpenApiJson(Arc<str>);

/// Builds every route of the receiver.
pub fn router(state: AppState) -> Router {
    let Api { sink, open, admin } = api();
    let sink = sink.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_allowed_source,
    ));
    let admin = admin.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_admin,
    ));
    let (routes, doc) = sink.merge(open).merge(admin).split_for_parts();
    let doc = OpenApiJson(
        doc.to_json()
            .expect("the OpenAPI document serialises")
            .into(),
    );
    let mut router = routes
        .fallback(|| async {
            ApiError::NotFound("no such route: see GET /openapi.json for the API".into())
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(Extension(doc))
        // We read the body ourselves, against our own limit.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limit_request_time,
        ));
    if state.metrics.as_ref().is_some_and(Metrics::is_private) {
        router = router.layer(middleware::from_fn_with_state(
            state.clone(),
            in_metrics_scope,
        ));
    }
    router
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::extract::Request| {
                let route = req
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default();
                // The callback's fields are filled in once its body is parsed.
                tracing::info_span!(
                    "http",
                    method = %req.method(),
                    route,
                    id = Empty,
                    record = Empty,
                    callback_type = Empty,
                    callback_code = Empty,
                )
            }),
        )
        .with_state(state)
}

/// Records the metrics of a request into the receiver's private registry.
async fn in_metrics_scope(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match &state.metrics {
        Some(metrics) => metrics.scope(next.run(request)).await,
        None => next.run(request).await,
    }
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
            metrics::counter!(names::REQUESTS_TIMED_OUT).increment(1);
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

/// Where delivery of a stored callback stands.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for a (further) handler attempt.
    Pending,
    /// The handlers succeeded.
    Delivered,
    /// The handlers failed `--max-attempts` times; kept for inspection and replay.
    Dead,
}

impl From<crate::store::Status> for DeliveryStatus {
    fn from(s: crate::store::Status) -> Self {
        match s {
            crate::store::Status::Pending => Self::Pending,
            crate::store::Status::Delivered => Self::Delivered,
            crate::store::Status::Dead => Self::Dead,
        }
    }
}

/// One stored callback, as `GET /v1/callback` lists it.
#[derive(Serialize, ToSchema)]
pub struct CallbackSummary {
    /// The id this receiver gave it.
    pub id: String,
    /// Its callback type.
    pub callback_type: String,
    /// Its code as sent, if any.
    pub callback_code: Option<String>,
    /// When it was received (RFC 3339).
    pub received_at: String,
    /// Where delivery stands.
    pub status: DeliveryStatus,
    /// Handler calls made so far, the successful one included.
    pub attempts: u32,
    /// The callback exactly as received.
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
}

/// One stored callback with its delivery state (`GET /v1/callbacks/{id}`).
#[derive(Serialize, ToSchema)]
pub struct CallbackDetail {
    /// What the list shows.
    #[serde(flatten)]
    pub summary: CallbackSummary,
    /// The record it is about.
    pub record: String,
    /// The last handler error, if the last attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt is due (pending callbacks only; RFC 3339).
    pub next_attempt_at: Option<String>,
    /// When it was delivered or declared dead (RFC 3339).
    pub finished_at: Option<String>,
}

/// What was received for one record and product (`GET /v1/callback`).
#[derive(Serialize, ToSchema)]
pub struct CallbackList {
    /// The record asked about.
    pub record: String,
    /// The callback type asked about, in its canonical spelling.
    pub method: String,
    /// Its callbacks, oldest first.
    pub callbacks: Vec<CallbackSummary>,
}

fn summary(cb: &StoredCallback) -> CallbackSummary {
    CallbackSummary {
        id: cb.id.clone(),
        callback_type: cb.callback_type.clone(),
        callback_code: cb.callback_code.clone(),
        received_at: rfc3339(cb.received_at),
        status: cb.status.into(),
        attempts: cb.attempts,
        payload: payload(&cb.body),
    }
}

/// The query of `GET /v1/callback` (the shape of Okra's own callback endpoint).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// The record id.
    #[param(required = true)]
    record: Option<String>,
    /// The product: AUTH, TRANSACTIONS, IDENTITY, INCOME, BALANCE, RECORD or ACCOUNTS (any case).
    #[param(required = true)]
    method: Option<String>,
}

/// `GET /v1/callback?record=…&method=…`: what was received for one record and product.
#[utoipa::path(
    get,
    path = "/v1/callback",
    tag = "admin",
    params(ListQuery),
    responses(
        (status = 200, description = "The record's callbacks of that type, oldest first", body = CallbackList),
        (status = 400, description = "`missing_parameter` or `invalid_method` (the message lists the valid methods)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: --admin-token is set and the bearer token is missing or wrong", body = ErrorBody),
        (status = 403, description = "`forbidden`: no --admin-token is set and the client is not on loopback", body = ErrorBody),
        (status = 404, description = "`record_not_found`: nothing was ever received for the record", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
    security((), ("admin_token" = [])),
)]
async fn list_callbacks(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<CallbackList>, ApiError> {
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
    let crate::store::Listing::Callbacks(callbacks) =
        state.store.list(&record, &[kind.as_str()]).await?
    else {
        return Err(ApiError::RecordNotFound(record));
    };
    Ok(Json(CallbackList {
        record,
        method: kind.as_str().to_owned(),
        callbacks: callbacks.iter().map(summary).collect(),
    }))
}

/// `GET /v1/callbacks/{id}`: one callback with its delivery state and last error.
#[utoipa::path(
    get,
    path = "/v1/callbacks/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "The callback's id, as the acknowledgement gave it")),
    responses(
        (status = 200, description = "The callback and its delivery state", body = CallbackDetail),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`: no callback has that id", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
    security((), ("admin_token" = [])),
)]
async fn get_callback(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CallbackDetail>, ApiError> {
    let cb = state
        .store
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no callback has the id `{id}`")))?;
    Ok(Json(CallbackDetail {
        summary: summary(&cb),
        record: cb.record.clone(),
        last_error: cb.last_error.clone(),
        next_attempt_at: cb
            .next_attempt_at
            .filter(|_| cb.status == crate::store::Status::Pending)
            .map(rfc3339),
        finished_at: cb.finished_at.map(rfc3339),
    }))
}

/// The answer to a replay of one callback.
#[derive(Serialize, ToSchema)]
pub struct Replayed {
    /// The callback's id.
    pub id: String,
    /// Always `pending`: it is queued for the handlers again.
    pub status: DeliveryStatus,
}

/// `POST /v1/callbacks/{id}/replay`: hand the callback to the handlers again.
#[utoipa::path(
    post,
    path = "/v1/callbacks/{id}/replay",
    tag = "admin",
    params(("id" = String, Path, description = "The callback's id")),
    responses(
        (status = 202, description = "Queued for the handlers again, with a fresh attempt budget", body = Replayed),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`: no callback has that id", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
    security((), ("admin_token" = [])),
)]
async fn replay_callback(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Replayed>), ApiError> {
    if !state.store.replay(&id).await? {
        return Err(ApiError::NotFound(format!("no callback has the id `{id}`")));
    }
    state.wake.notify_one();
    tracing::info!(%id, "callback replayed");
    Ok((
        StatusCode::ACCEPTED,
        Json(Replayed {
            id,
            status: DeliveryStatus::Pending,
        }),
    ))
}

/// The query of `POST /v1/callbacks/replay`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ReplayQuery {
    /// Which callbacks to replay: `dead`.
    #[param(required = true)]
    status: Option<String>,
}

/// The answer to a replay of every dead callback.
#[derive(Serialize, ToSchema)]
pub struct ReplayedDead {
    /// How many callbacks were queued again.
    pub replayed: u64,
}

/// `POST /v1/callbacks/replay?status=dead`: replay every dead callback.
#[utoipa::path(
    post,
    path = "/v1/callbacks/replay",
    tag = "admin",
    params(ReplayQuery),
    responses(
        (status = 202, description = "Every dead callback is queued for the handlers again", body = ReplayedDead),
        (status = 400, description = "`missing_parameter`: `status=dead` is required", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
    security((), ("admin_token" = [])),
)]
async fn replay_dead(
    State(state): State<AppState>,
    Query(q): Query<ReplayQuery>,
) -> Result<(StatusCode, Json<ReplayedDead>), ApiError> {
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
    Ok((StatusCode::ACCEPTED, Json(ReplayedDead { replayed })))
}

/// The body of `/healthz` and `/readyz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` (process up) or `ready` (store reachable).
    pub status: &'static str,
}

/// `GET /healthz`: the process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is up", body = Health)),
)]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /readyz`: the store answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The store answers", body = Health),
        (status = 503, description = "`store_unavailable`: the store did not answer within 2 s", body = ErrorBody),
    ),
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(Health { status: "ready" })),
        Ok(Err(e)) => Err(ApiError::StoreUnavailable(e)),
        Err(_) => Err(ApiError::StoreUnavailable(
            crate::store::StoreError::Unavailable("the store did not answer within 2 s".into()),
        )),
    }
}

/// `GET /metrics`: Prometheus text; the backlog gauges are read from the store at each scrape.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
    ),
    security((), ("admin_token" = [])),
)]
async fn render_metrics(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), state.store.backlog()).await {
        Ok(Ok(backlog)) => {
            metrics::gauge!(names::PENDING).set(backlog.pending as f64);
            metrics::gauge!(names::DEAD).set(backlog.dead as f64);
            let age = backlog
                .oldest_pending_at
                .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            metrics::gauge!(names::OLDEST_PENDING_AGE).set(age);
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the backlog for /metrics"),
        Err(_) => tracing::warn!("the store did not report the backlog within 2 s"),
    }
    metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let text = state
        .metrics
        .as_ref()
        .map(Metrics::render)
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `GET /openapi.json`: this API's OpenAPI 3 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    description = "This document. Open to all: it describes the API and holds no data.",
    responses((status = 200, description = "The OpenAPI 3 document", body = Object, content_type = "application/json")),
)]
async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.to_string(),
    )
        .into_response()
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
