//! The read/replay API: what was received, one callback's state, and replays (the
//! `--admin-token` rule).

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    Json,
};
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{value::RawValue, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{error::ErrorBody, ApiError, AppState};
use crate::{
    callback::CallbackType,
    store::{Listing, StoredCallback},
};

/// The read/replay routes, with their OpenAPI descriptions.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_callbacks))
        .routes(routes!(get_callback))
        .routes(routes!(replay_callback))
        .routes(routes!(replay_dead))
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
    let Listing::Callbacks(callbacks) = state.store.list(&record, &[kind.as_str()]).await? else {
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
