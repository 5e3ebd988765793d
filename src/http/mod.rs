//! The HTTP API: the callback sink Okra calls, the read/replay API, health and metrics.
//!
//! One router per resource, merged here under the access rule each follows:
//!
//! - `ingest`: `POST /v1/callback`, the sink Okra calls.
//! - `admin`: the read/replay API (`GET /v1/callback`, `/v1/callbacks/{id}`, the replays).
//! - `ops`: `/healthz`, `/readyz`, `/metrics` and `/openapi.json`.
//! - `console`: the web console at `/console` (server-rendered pages, its own session and CSRF
//!   check, the same admin rule).
//!
//! Beside them: `access` (who may call: tokens, networks, signatures), `limits` (how much a
//! request may take), [`error`] (the one error type, mapped to HTTP), `state` (what the routes
//! share), [`extract`] (the `Query`, `Path`, `Json` and `Form` every route takes, rejecting in
//! our error body), `schema` (the OpenAPI schemas of what the routes accept) and `serve` (the connection loop). `router` builds the whole `Router`, so it can be
//! tested with `tower::ServiceExt::oneshot` before any socket exists.

mod access;
mod admin;
mod console;
pub mod error;
pub(crate) mod extract;
mod ingest;
mod limits;
mod operator;
mod ops;
mod schema;
pub(crate) mod serve;
mod state;

use axum::{
    extract::{DefaultBodyLimit, Request, State},
    middleware::{self, Next},
    response::Response,
    Extension, Router,
};
use tower_http::trace::TraceLayer;
use tracing::field::Empty;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use self::error::ApiError;
pub(crate) use self::state::AppState;
use crate::telemetry::Metrics;

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

/// Every route, by the access rule in front of it. Each route is registered with its OpenAPI
/// description, so the router and the document cannot drift apart. A new resource merges its
/// router into the group whose rule it follows.
struct Routes {
    /// Open to all: health, readiness, the OpenAPI document, and `POST /v1/callback`, which
    /// applies its own rules (`--allow-from`, `--callback-token`, signatures) as steps of
    /// [`ingest`], where their order is kept and each refusal counted.
    open: OpenApiRouter<AppState>,
    /// The `--admin-token` rule: the read/replay API and metrics.
    admin: OpenApiRouter<AppState>,
}

fn routes() -> Routes {
    Routes {
        open: OpenApiRouter::with_openapi(ApiDoc::openapi())
            .merge(ingest::router())
            .merge(ops::open_router()),
        admin: OpenApiRouter::new()
            .merge(admin::router())
            .merge(ops::admin_router()),
    }
}

/// The OpenAPI 3 document of every route the receiver serves (what `GET /openapi.json`
/// answers).
pub fn openapi() -> utoipa::openapi::OpenApi {
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
    let doc = ops::OpenApiJson::of(&doc);
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
