//! What operators and load balancers call: health, readiness, metrics and the OpenAPI document.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    Extension, Json,
};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{error::ErrorBody, ApiError, AppState};
use crate::telemetry::{names, Metrics};

/// The routes open to all: health, readiness and the OpenAPI document.
pub(super) fn open_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi_json))
}

/// The routes under the `--admin-token` rule: metrics.
pub(super) fn admin_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(render_metrics))
}

/// The JSON of the OpenAPI document, rendered once per router.
#[derive(Clone)]
pub(super) struct OpenApiJson(Arc<str>);

impl OpenApiJson {
    /// Renders `doc` once, for every `GET /openapi.json` to answer.
    pub(super) fn of(doc: &utoipa::openapi::OpenApi) -> Self {
        Self(
            doc.to_json()
                .expect("the OpenAPI document serialises")
                .into(),
        )
    }
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
    let text = state.metrics().map(Metrics::render).unwrap_or_default();
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
