//! The one error type of the HTTP boundary, and its mapping to status codes and bodies.
//!
//! Every error body is `{"error": {"code": "<snake_case>", "message": "<what and how to fix>"}}`.
//! Details of 5xx errors are logged, never sent.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{callback::ParseError, store::StoreError, telemetry::Untrusted};

/// Every error body: `{"error": {"code": "<snake_case>", "message": "<what and how to fix>"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ErrorBody {
    /// What went wrong.
    error: ErrorDetail,
}

/// The `error` object of an [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ErrorDetail {
    /// A stable snake_case code, e.g. `invalid_json`, `store_unavailable`.
    #[schema(example = "invalid_callback")]
    code: String,
    /// What went wrong and how to fix it, for people.
    message: String,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ApiError {
    /// 400: the body is empty or not JSON.
    #[error("{0}")]
    InvalidJson(String),
    /// 415: a content type other than JSON.
    #[error("content type `{0}` is not supported: send the callback as application/json")]
    UnsupportedMediaType(String),
    /// 413: the body is larger than `--max-body-bytes`.
    #[error("the body is larger than the {0}-byte limit: raise --max-body-bytes if such callbacks are expected")]
    PayloadTooLarge(usize),
    /// 422: JSON, but not an Okra callback.
    #[error("{0}")]
    InvalidCallback(String),
    /// 401: a bearer token is required and was missing or wrong.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 401 `unauthorized`: a request to `POST /v1/sources/{name}` failed its source's check;
    /// the message says which check, never a secret nor the signature that would have matched.
    #[error("the request failed the source's check: {0}")]
    SourceRefused(String),
    /// 404 `unknown_source`: no source of this name is configured.
    #[error("no source named `{0}` is configured: post to /v1/sources/NAME with a NAME from the sources file (--sources), or to /v1/callback for Okra")]
    UnknownSource(String),
    /// 503 `verification_unavailable`: the source's check cannot be made now (its provider's
    /// key service is away, or the receiver's own limit on asking it is reached); nothing was
    /// acknowledged, so the provider retries.
    #[error(
        "the request cannot be verified now, so nothing was accepted ({0}): the provider retries"
    )]
    VerificationUnavailable(String),
    /// 403: the admin API answers loopback clients only while no admin token is set.
    #[error("the admin API answers loopback clients only: set --admin-token (OKRA_ADMIN_TOKEN) and send `Authorization: Bearer <token>` to use it remotely")]
    LoopbackOnly,
    /// 403: the client's address is refused by a network rule (`--allow-from`, or a local proxy
    /// not listed in `--trusted-proxies`); the message says which and how to fix it.
    #[error("{0}")]
    NetworkNotAllowed(String),
    /// 401: signatures are required (`--hmac-secret` or `--webhook-secret`) and this one is
    /// missing or wrong; the message says what was wrong and how to sign.
    #[error("the callback's signature was refused: {0}")]
    InvalidSignature(String),
    /// 408: the request took longer than `--request-timeout` (e.g. a body sent too slowly).
    #[error("the request took longer than the {} limit: send the whole request promptly, or raise --request-timeout", crate::telemetry::format_duration(*.0))]
    RequestTimeout(std::time::Duration),
    /// 429: too many callbacks in flight; try again after `Retry-After` seconds.
    #[error("the receiver is at its limit of concurrent callbacks: retry after {0} s")]
    TooManyRequests(u64),
    /// 503: the store cannot be reached; nothing was acknowledged. The message names the cause
    /// ([`StoreError::cause`]: disk full, read-only, database unreachable, timeout).
    #[error("the store is unavailable ({}), so nothing was accepted: retry later, and see the receiver's log and /readyz", .0.cause())]
    StoreUnavailable(#[source] StoreError),
    /// 400: a required query parameter is missing.
    #[error("{0}")]
    MissingParameter(String),
    /// 400: a query parameter does not parse; the message names it and its valid values.
    #[error("{0}")]
    InvalidParameter(String),
    /// 400: `cursor` is not the `next_cursor` of this listing (edited, or of other filters).
    #[error("{0}")]
    InvalidCursor(String),
    /// 400: `method` is not a callback type.
    #[error("`{0}` is not a valid method: use one of AUTH, TRANSACTIONS, IDENTITY, INCOME, BALANCE, RECORD, ACCOUNTS")]
    InvalidMethod(String),
    /// 404: nothing was ever received for the record.
    #[error("no callback was ever received for record `{0}`")]
    RecordNotFound(String),
    /// 404: no such callback or route.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists but not with this method.
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    /// 415: a body other than the type the route takes (see the `extract` module).
    #[error("content type `{got}` is not supported here: send the body as {expected}")]
    UnsupportedBodyType {
        /// The content type as sent.
        got: String,
        /// The one the route takes.
        expected: &'static str,
    },
    /// 422: a well-formed body without the fields the route takes.
    #[error("{0}")]
    InvalidBody(String),
    /// 400: the body could not be read to its end.
    #[error("{0}")]
    UnreadableBody(String),
}

impl ApiError {
    /// The status code and the stable `code` string of the body.
    pub(super) fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::InvalidCallback(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_callback"),
            Self::Unauthorized(_) | Self::SourceRefused(_) => {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            }
            Self::UnknownSource(_) => (StatusCode::NOT_FOUND, "unknown_source"),
            Self::VerificationUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "verification_unavailable")
            }
            Self::LoopbackOnly | Self::NetworkNotAllowed(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::InvalidSignature(_) => (StatusCode::UNAUTHORIZED, "invalid_signature"),
            Self::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            Self::StoreUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            Self::MissingParameter(_) => (StatusCode::BAD_REQUEST, "missing_parameter"),
            Self::InvalidParameter(_) => (StatusCode::BAD_REQUEST, "invalid_parameter"),
            Self::InvalidCursor(_) => (StatusCode::BAD_REQUEST, "invalid_cursor"),
            Self::InvalidMethod(_) => (StatusCode::BAD_REQUEST, "invalid_method"),
            Self::RecordNotFound(_) => (StatusCode::NOT_FOUND, "record_not_found"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::UnsupportedBodyType { .. } => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::InvalidBody(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            Self::UnreadableBody(_) => (StatusCode::BAD_REQUEST, "unreadable_body"),
        }
    }
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::Empty | ParseError::InvalidJson(_) => Self::InvalidJson(e.to_string()),
            _ => Self::InvalidCallback(e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::StoreUnavailable(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if let Self::StoreUnavailable(source) = &self {
            tracing::error!(error = %Untrusted(&source.to_string()), "store unavailable");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Self::TooManyRequests(secs) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Self::RequestTimeout(_) = self {
            // The rest of the request was not read: this connection cannot carry another one.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Self::Unauthorized(_) = self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
