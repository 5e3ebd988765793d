//! The console's errors: answered as an HTML page with the API's status, code and message.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};

use super::{
    form::FormTooLarge,
    pages::{self, Chrome},
};
use crate::{
    http::{error::ApiError, filter::InvalidFilter},
    store::StoreError,
    telemetry::Untrusted,
};

/// An error answered as an HTML page, with the API's status, code and message.
#[derive(Debug)]
pub(super) struct ConsoleError {
    pub(super) status: StatusCode,
    code: &'static str,
    pub(super) message: String,
}

impl ConsoleError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        let (status, code) = e.parts();
        if let ApiError::StoreUnavailable(source) = &e {
            tracing::error!(error = %Untrusted(&source.to_string()), "store unavailable");
            return Self::new(
                status,
                code,
                "the store is unavailable: reload the page in a moment, and check /readyz and the receiver's logs if it persists",
            );
        }
        Self::new(status, code, e.to_string())
    }
}

impl From<StoreError> for ConsoleError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

/// A filter the form holds that does not parse, in the form's words.
impl From<InvalidFilter> for ConsoleError {
    fn from(e: InvalidFilter) -> Self {
        let message = match e {
            InvalidFilter::Status { bad, .. } => {
                format!("`{bad}` is not a status: use pending, delivered or dead")
            }
            InvalidFilter::Source { bad, .. } => format!(
                "`{bad}` is not a source's name: use okra or a name from the sources file"
            ),
            InvalidFilter::Time { parameter, value } => format!(
                "`{value}` is not a time for \"{}\": write it as the list shows times (2026-12-01 10:00:00 UTC), or in RFC 3339 such as 2026-12-01T11:00:00+01:00",
                parameter.replace('_', " ")
            ),
        };
        Self::new(StatusCode::BAD_REQUEST, "invalid_parameter", message)
    }
}

impl From<FormTooLarge> for ConsoleError {
    fn from(_: FormTooLarge) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the form is larger than the console accepts: send it from the console's pages",
        )
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let chrome = Chrome {
            csrf: None,
            logged_in: false,
        };
        (self.status, pages::error(&chrome, self.code, &self.message)).into_response()
    }
}
