//! What load balancers and Prometheus call: health and readiness (open to all) and metrics
//! (the `--admin-token` rule).

use std::time::Duration;

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    error::{ApiError, ErrorBody},
    extract::Json,
    refusals::AccessRefusals,
    state::AppState,
    stats::pending_age,
};
use crate::{telemetry::names, Metrics};

/// The routes open to all: health and readiness.
pub(super) fn open_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// The routes under the `--admin-token` rule: metrics.
pub(super) fn admin_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(render_metrics))
}

/// The body of `/healthz` and `/readyz`.
#[derive(Serialize, ToSchema)]
pub(super) struct Health {
    /// `ok` (process up) or `ready` (store reachable).
    status: &'static str,
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
        AccessRefusals,
    ),
    security((), ("admin_token" = [])),
)]
async fn render_metrics(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), state.store.stats()).await {
        Ok(Ok(stats)) => {
            metrics::gauge!(names::CALLBACKS_PENDING).set(stats.pending as f64);
            metrics::gauge!(names::CALLBACKS_DEAD).set(stats.dead as f64);
            let age = pending_age(stats.oldest_pending_at);
            metrics::gauge!(names::CALLBACKS_OLDEST_PENDING_AGE).set(age);
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the backlog for /metrics"),
        Err(_) => tracing::warn!("the store did not report the backlog within 2 s"),
    }
    metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let text = state.metrics().map(Metrics::render).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
