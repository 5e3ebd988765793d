//! The counts (the `--admin-token` rule): callbacks per status and per type, and the oldest
//! pending one (`GET /v1/stats`).

use std::collections::BTreeMap;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    callbacks::rfc3339, error::ApiError, extract::Json, refusals::AdminRefusals, state::AppState,
};

/// The counts route, with its OpenAPI description.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stats))
}

/// What `GET /v1/stats` answers.
#[derive(Serialize, ToSchema)]
pub(super) struct StatsBody {
    /// Callbacks waiting for a (further) handler attempt.
    pending: u64,
    /// Callbacks the handlers took.
    delivered: u64,
    /// Callbacks that failed `--max-attempts` times, kept for inspection and replay.
    dead: u64,
    /// When the oldest pending callback was received (RFC 3339); `null` when none is pending.
    oldest_pending_received_at: Option<String>,
    /// How long the oldest pending callback has waited, in seconds; `0` when none is pending.
    oldest_pending_age_seconds: f64,
    /// Stored callbacks per callback type (every source's together).
    by_type: BTreeMap<String, u64>,
    /// Stored callbacks per source (`okra` for Okra's).
    by_source: BTreeMap<String, u64>,
}

/// `GET /v1/stats`: counts per status and per type, and the oldest pending callback.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "admin",
    description = "Counts per status, per callback type and per source, and the oldest pending callback. Read from counters kept on write: cheap at any size.",
    responses(
        (status = 200, description = "The counts", body = StatsBody),
        AdminRefusals,
    ),
    security((), ("admin_token" = [])),
)]
async fn stats(State(state): State<AppState>) -> Result<Json<StatsBody>, ApiError> {
    let stats = state.store.stats().await?;
    Ok(Json(StatsBody {
        pending: stats.pending,
        delivered: stats.delivered,
        dead: stats.dead,
        oldest_pending_received_at: stats.oldest_pending_at.map(rfc3339),
        oldest_pending_age_seconds: pending_age(stats.oldest_pending_at),
        by_type: stats.by_type.into_iter().collect(),
        by_source: stats.by_source.into_iter().collect(),
    }))
}

/// How long ago `oldest` was, in seconds (0 when nothing is pending).
pub(super) fn pending_age(oldest: Option<DateTime<Utc>>) -> f64 {
    oldest
        .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0)
}
