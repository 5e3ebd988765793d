//! The HTTP API: the callback sink Okra calls, the read/admin API, health and metrics.
//!
//! [`router`] builds the whole `Router` from an [`AppState`], so it can be tested with
//! `tower::ServiceExt::oneshot` before any socket exists.

mod admin;
pub mod auth;
pub mod error;
mod ingest;
mod operator;
mod ops;
pub mod peer;
pub(crate) mod serve;

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{DefaultBodyLimit, Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Extension, Router,
};
use ipnet::IpNet;
use tokio::sync::{Notify, Semaphore};
use tower_http::trace::TraceLayer;
use tracing::field::Empty;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use self::error::{ApiError, ErrorBody, ErrorDetail};
pub use self::{
    admin::{CallbackSummary, DeliveryStatus, Replayed},
    ingest::Ack,
    operator::{
        AttemptEntry, AttemptOutcomeName, CallbackDetail, CallbackList, CallbackPage, FilterQuery,
        ListedCallback, PageQuery, RecordQuery, ReplayedCount, StatsBody,
    },
    ops::Health,
};
use crate::{
    config::{Config, Secret},
    signature::Verifier,
    store::Store,
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
        sink: OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(ingest::router()),
        open: ops::open_router(),
        admin: admin::router().merge(ops::admin_router()),
    }
}

/// The OpenAPI 3 document of every route [`router`] serves (what `GET /openapi.json` answers).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let Api { sink, open, admin } = api();
    sink.merge(open).merge(admin).into_openapi()
}
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
    let doc = ops::OpenApiJson(
        doc.to_json()
            .expect("the OpenAPI document serialises")
            .into(),
    );
    let mut router = routes
        .merge(crate::console::router(&state))
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
