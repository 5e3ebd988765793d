//! How much a request may take: time (`--request-timeout`), body size (`--max-body-bytes`) and
//! callbacks being stored at once (`--max-concurrent-requests`). Who may call at all is decided
//! in `access`; the limits of the connections themselves are in `serve`.

use std::{sync::Arc, time::Duration};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{header, HeaderMap},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::error::ApiError;
use crate::{config::LimitsConfig, telemetry::names};

/// The limits every request is held to: read once from the configuration, shared by every
/// request.
#[derive(Debug)]
pub(super) struct Limits {
    /// The longest a request, body included, may take before it is answered 408.
    request_timeout: Duration,
    /// Larger callback bodies get 413.
    max_body_bytes: usize,
    /// One permit per callback being stored; when none is free, 429.
    callback_slots: Semaphore,
}

impl Limits {
    /// The limits `config` describes.
    pub(super) fn from_config(config: &LimitsConfig) -> Self {
        Self {
            request_timeout: config.request_timeout,
            max_body_bytes: config.max_body_bytes,
            callback_slots: Semaphore::new(config.max_concurrent_requests),
        }
    }

    /// A slot for one callback, held until it is answered; none free is 429 with `Retry-After`,
    /// so a sender backs off instead of piling more work onto a busy store.
    pub(super) fn callback_slot(&self) -> Result<SemaphorePermit<'_>, ApiError> {
        self.callback_slots
            .try_acquire()
            .map_err(|_| ApiError::TooManyRequests(1))
    }

    /// Reads the body up to `--max-body-bytes`; a longer one is refused without reading the
    /// rest.
    pub(super) async fn read_body(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Bytes, ApiError> {
        let limit = self.max_body_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        axum::body::to_bytes(body, limit).await.map_err(|e| {
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                ApiError::PayloadTooLarge(limit)
            } else {
                ApiError::InvalidJson(format!("the body could not be read: {e}"))
            }
        })
    }
}

/// Answers 408 `request_timeout` (our JSON error body) when a request, body included, takes
/// longer than `--request-timeout`. Dropping the handler is safe: nothing is acknowledged before
/// it is stored, and a store write that completes anyway makes the retry a duplicate.
pub(super) async fn limit_request_time(
    State(limits): State<Arc<Limits>>,
    request: Request,
    next: Next,
) -> Response {
    let limit = limits.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!(names::REQUESTS_TIMED_OUT).increment(1);
            ApiError::RequestTimeout(limit).into_response()
        }
    }
}
