//! The OpenAPI document: its frame (title, tags, security schemes) and `GET /openapi.json`,
//! open to all. The paths come from the `#[utoipa::path]` annotations of the routes, merged
//! into this frame where the router is built, so the router and the document cannot drift
//! apart.

use std::sync::Arc;

use axum::{
    http::header,
    response::{IntoResponse, Response},
    Extension,
};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::state::AppState;

/// The OpenAPI document's frame: title, version, tags and security schemes.
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

/// The document's frame with `GET /openapi.json` in it: the router every other route is
/// merged into.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).routes(routes!(openapi_json))
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
