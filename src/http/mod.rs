//! The HTTP API: the callback sink Okra calls, the read/replay API, health and metrics, the
//! OpenAPI document and the web console.
//!
//! One room per resource, each with its own router, merged here under the access rule each
//! follows:
//!
//! - `ingest`: `POST /v1/callback`, the sink Okra calls.
//! - `callbacks`: one record's callbacks (`GET /v1/callback`), one callback
//!   (`GET /v1/callbacks/{id}`) and its replay.
//! - `search`: callbacks across all records by filter (`GET /v1/callbacks`) and the replay of
//!   all a filter matches (`POST /v1/callbacks/replay`); `filter` parses the filters and pages
//!   (for the console too).
//! - `stats`: the counts (`GET /v1/stats`).
//! - `health`: `/healthz`, `/readyz` and `/metrics`.
//! - `openapi`: the document's frame and `GET /openapi.json`; `schema` holds the schemas of
//!   what the routes accept, `refusals` the error answers several routes declare alike.
//! - `console`: the web console at `/console` (server-rendered pages, its own session and CSRF
//!   check, the same admin rule).
//!
//! Beside them: `access` (who may call: tokens, networks, signatures), `limits` (how much a
//! request may take), `error` (the one error type, mapped to HTTP), `state` (what the routes
//! share), `extract` (the `Query`, `Path` and `Json` every route takes, rejecting in our error
//! body) and `serve` (the connection loop). [`router`] builds the whole `Router`, so it can be
//! tested with `tower::ServiceExt::oneshot` before any socket exists.

mod access;
mod callbacks;
mod console;
mod error;
mod extract;
mod filter;
mod health;
mod ingest;
mod limits;
mod openapi;
mod refusals;
mod schema;
mod search;
pub(crate) mod serve;
mod sources;
mod state;
mod stats;

use axum::{
    extract::{DefaultBodyLimit, Request, State},
    middleware::{self, Next},
    response::Response,
    Extension, Router,
};
use tower_http::trace::TraceLayer;
use tracing::field::Empty;
use utoipa_axum::router::OpenApiRouter;

use self::error::ApiError;
pub(crate) use self::{access::Access, state::AppState};
use crate::Metrics;

/// Every route, by the access rule in front of it. Each route is registered with its OpenAPI
/// description, so the router and the document cannot drift apart. A new resource merges its
/// router into the group whose rule it follows.
struct Routes {
    /// Open to all: health, readiness, the OpenAPI document, and `POST /v1/callback`, which
    /// applies its own rules (`--allow-from`, `--callback-token`, signatures) as steps of
    /// `ingest`, where their order is kept and each refusal counted.
    open: OpenApiRouter<AppState>,
    /// The `--admin-token` rule: the read/replay API and metrics.
    admin: OpenApiRouter<AppState>,
}

fn routes() -> Routes {
    Routes {
        open: openapi::router()
            .merge(ingest::router())
            .merge(sources::router())
            .merge(health::open_router()),
        admin: OpenApiRouter::new()
            .merge(callbacks::router())
            .merge(search::router())
            .merge(stats::router())
            .merge(health::admin_router()),
    }
}

/// The OpenAPI 3 document of every route the receiver serves (what `GET /openapi.json`
/// answers).
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    let Routes { open, admin } = routes();
    let mut doc = open.merge(admin).into_openapi();
    schema::mark_required(&mut doc);
    doc
}

/// Builds every route of the receiver, with the layers in front of them: the request span, the
/// request-time limit and the metrics scope.
pub(crate) fn router(state: AppState) -> Router {
    let Routes { open, admin } = routes();
    let admin = admin.route_layer(middleware::from_fn_with_state(
        state.access.clone(),
        access::require_admin,
    ));
    let (routes, mut doc) = open.merge(admin).split_for_parts();
    schema::mark_required(&mut doc);
    let doc = openapi::OpenApiJson::of(&doc);
    let mut router = routes
        .merge(console::router(&state))
        .fallback(|| async {
            ApiError::NotFound("no such route: see GET /openapi.json for the API".into())
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(Extension(doc))
        // We read the body ourselves, against our own limit.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            state.limits.clone(),
            limits::limit_request_time,
        ));
    if let Some(metrics) = state.metrics().filter(|m| m.is_private()) {
        router = router.layer(middleware::from_fn_with_state(
            metrics.clone(),
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
                    source = Empty,
                    record = Empty,
                    callback_type = Empty,
                    callback_code = Empty,
                )
            }),
        )
        .with_state(state)
}

/// Records the metrics of a request into the receiver's private registry.
async fn in_metrics_scope(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    metrics.scope(next.run(request)).await
}
