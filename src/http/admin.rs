//! The read/replay API: what was received, one callback's state, and replays (the
//! `--admin-token` rule). The operator's view (lists, pages, history, bulk replay, stats) is
//! in [`super::operator`].

use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{value::RawValue, Value};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{error::ErrorBody, ApiError, AppState};
use crate::store::StoredCallback;

/// The read/replay routes, with their OpenAPI descriptions.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(super::operator::search_callbacks))
        .routes(routes!(super::operator::list_callbacks))
        .routes(routes!(super::operator::get_callback))
        .routes(routes!(replay_callback))
        .routes(routes!(super::operator::replay_matching))
        .routes(routes!(super::operator::stats))
}

pub(super) fn payload(body: &[u8]) -> Box<RawValue> {
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

pub(super) fn rfc3339(t: chrono::DateTime<Utc>) -> String {
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

pub(super) fn summary(cb: &StoredCallback) -> CallbackSummary {
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
