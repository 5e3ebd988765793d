//! The extractors every route uses: axum's `Query`, `Path` and `Json`, whose rejections
//! answer our error body (`{"error": {"code", "message"}}`, `application/json`) with a message
//! saying how to fix the request, instead of axum's plain-text defaults.
//!
//! A route takes `extract::Query<T>` where it would take `axum::extract::Query<T>`; the value is
//! the same. Each rejection maps to one [`ApiError`]:
//!
//! | extractor | rejection | answer |
//! |---|---|---|
//! | `Query` | the query string does not fit (a duplicate, a bad value) | 400 `invalid_parameter` |
//! | `Path` | a segment is not UTF-8 once decoded, or not of its type | 400 `invalid_parameter` |
//! | `Json` | a content type other than JSON | 415 `unsupported_media_type` |
//! | `Json` | not JSON | 400 `invalid_json` |
//! | `Json` | well formed, but not the fields the route takes | 422 `invalid_body` |
//! | `Json` | the body could not be read | 400 `unreadable_body` |

use axum::{
    extract::{
        rejection::{JsonRejection, PathRejection, QueryRejection},
        FromRequest, FromRequestParts, Request,
    },
    http::{header, request::Parts, HeaderMap},
    response::{IntoResponse, Response},
};
use serde::{de::DeserializeOwned, Serialize};

use super::error::ApiError;

/// How to find what a route takes, for every message below.
const SEE_DOC: &str = "see GET /openapi.json for what this route takes";

/// The query string deserialized into `T`; a query that does not fit answers 400
/// `invalid_parameter` in our error body. Use it instead of `axum::extract::Query`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Query<T>(pub(super) T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(ApiError::from)
    }
}

/// The path parameters deserialized into `T`; a segment that is not UTF-8 once percent-decoded,
/// or not of its type, answers 400 `invalid_parameter` in our error body. Use it instead of
/// `axum::extract::Path`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Path<T>(pub(super) T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(ApiError::from)
    }
}

/// A JSON body deserialized into `T` (and, as a response, `T` serialized as JSON); a body that
/// is not JSON, not declared as JSON or not of the route's shape answers in our error body.
/// Use it instead of `axum::Json`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Json<T>(pub(super) T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = content_type(req.headers());
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(value)| Self(value))
            .map_err(|e| json_rejection(e, content_type))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// The request's content type as sent, for the 415 message.
fn content_type(headers: &HeaderMap) -> String {
    match headers.get(header::CONTENT_TYPE) {
        None => "(none)".to_owned(),
        Some(v) => v.to_str().unwrap_or("(not text)").to_owned(),
    }
}

/// The reason axum gives, which names the parameter and what was wrong with it, without its
/// own prefix ("Failed to deserialize query string: ").
fn reason(body_text: &str) -> &str {
    body_text
        .split_once(": ")
        .map_or(body_text, |(_, rest)| rest)
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::InvalidParameter(format!(
            "the query string does not fit this route ({}): send each parameter at most once, with a value of its type, percent-encoded as UTF-8; {SEE_DOC}",
            reason(&e.body_text())
        ))
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        use axum::extract::path::ErrorKind;
        let PathRejection::FailedToDeserializePathParams(e) = &e else {
            return Self::InvalidParameter(format!("the path does not fit this route: {SEE_DOC}"));
        };
        Self::InvalidParameter(match e.kind() {
            ErrorKind::InvalidUtf8InPathParam { key } => format!(
                "the path parameter `{key}` is not valid UTF-8 once percent-decoded: send the {key} exactly as this API gave it (ids are ASCII)"
            ),
            _ => format!(
                "the path does not fit this route ({}): {SEE_DOC}",
                reason(&e.body_text())
            ),
        })
    }
}

fn json_rejection(e: JsonRejection, content_type: String) -> ApiError {
    match e {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedBodyType {
            got: content_type,
            expected: "application/json",
        },
        JsonRejection::JsonSyntaxError(e) => ApiError::InvalidJson(format!(
            "the body is not valid JSON ({}): send a JSON object",
            reason(&e.body_text())
        )),
        JsonRejection::JsonDataError(e) => ApiError::InvalidBody(format!(
            "the JSON body does not fit this route ({}): {SEE_DOC}",
            reason(&e.body_text())
        )),
        e => unreadable(&e.body_text()),
    }
}

fn unreadable(body_text: &str) -> ApiError {
    ApiError::UnreadableBody(format!(
        "the body could not be read ({body_text}): send the whole body, as its Content-Length says"
    ))
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::StatusCode, routing::get, Router};
    use serde::Deserialize;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    #[derive(Deserialize, Serialize)]
    struct Q {
        status: Option<String>,
        limit: Option<u32>,
    }

    fn router() -> Router {
        Router::new()
            .route("/q", get(|Query(q): Query<Q>| async move { Json(q) }))
            .route("/p/{id}", get(|Path(id): Path<String>| async move { id }))
            .route(
                "/n/{n}",
                get(|Path(n): Path<u32>| async move { n.to_string() }),
            )
            .route(
                "/j",
                axum::routing::post(|Json(q): Json<Q>| async move { Json(q) }),
            )
    }

    /// Status, code and message of an answer, which must be our error body.
    async fn refused(request: axum::http::Request<Body>) -> (StatusCode, String, String) {
        let response = router().oneshot(request).await.unwrap();
        let status = response.status();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/json",
            "{status}"
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).expect("a JSON body");
        let code = body["error"]["code"]
            .as_str()
            .expect("error.code")
            .to_owned();
        let message = body["error"]["message"].as_str().expect("error.message");
        (status, code, message.to_owned())
    }

    fn get_(uri: &str) -> axum::http::Request<Body> {
        axum::http::Request::get(uri).body(Body::empty()).unwrap()
    }

    fn post(uri: &str, content_type: &str, body: &'static str) -> axum::http::Request<Body> {
        axum::http::Request::post(uri)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap()
    }

    #[tokio::test]
    async fn query_rejections_name_the_parameter_in_our_body() {
        let (status, code, message) = refused(get_("/q?status=dead&status=dead")).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_parameter")
        );
        assert!(message.contains("duplicate field `status`"), "{message}");
        assert!(message.contains("at most once"), "{message}");
        let (status, code, message) = refused(get_("/q?limit=many")).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_parameter")
        );
        assert!(message.contains("limit"), "{message}");
    }

    #[tokio::test]
    async fn path_rejections_name_the_segment_in_our_body() {
        let (status, code, message) = refused(get_("/p/%FF")).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_parameter")
        );
        assert!(message.contains("`id` is not valid UTF-8"), "{message}");
        let (status, code, message) = refused(get_("/n/x")).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_parameter")
        );
        assert!(message.contains("x"), "{message}");
    }

    #[tokio::test]
    async fn json_rejections_answer_our_body() {
        let (status, code, message) = refused(post("/j", "text/plain", "{}")).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        );
        assert!(message.contains("`text/plain`") && message.contains("application/json"));
        let (status, code, _) = refused(post("/j", "application/json", "{")).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_json")
        );
        let (status, code, message) =
            refused(post("/j", "application/json", r#"{"limit":"x"}"#)).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
        );
        assert!(message.contains("limit"), "{message}");
    }

    #[tokio::test]
    async fn what_fits_passes_through() {
        let response = router()
            .oneshot(get_("/q?status=dead&limit=3"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let q: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(q, serde_json::json!({"status": "dead", "limit": 3}));
    }
}
