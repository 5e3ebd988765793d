//! The handlers the binary ships with: structured logging and forwarding to an internal URL.

use std::time::Duration;

use async_trait::async_trait;

use crate::{
    handler::{Context, Handler, HandlerError, HandlerResult},
    telemetry::Untrusted,
};

/// Logs one structured line per callback: id, record, type, code, attempt and size — never the
/// body or any personal data, unless `log_bodies` is set explicitly.
#[derive(Debug, Clone, Default)]
pub struct LogHandler {
    log_bodies: bool,
}

impl LogHandler {
    /// Logs metadata only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also logs each body in full. The bodies hold BVNs, names and phone numbers: use only while
    /// debugging, never in production.
    pub fn with_bodies(mut self, on: bool) -> Self {
        self.log_bodies = on;
        self
    }
}

#[async_trait]
impl Handler for LogHandler {
    fn name(&self) -> &str {
        "log"
    }

    async fn handle(&self, cx: &Context) -> HandlerResult {
        let env = &cx.envelope;
        if self.log_bodies {
            tracing::info!(
                id = %Untrusted(&cx.id),
                record = %Untrusted(env.record().as_str()),
                callback_type = %Untrusted(env.callback_type()),
                callback_code = %Untrusted(env.callback_code().unwrap_or("")),
                attempt = cx.attempt,
                body = %Untrusted(&String::from_utf8_lossy(env.raw())),
                "{}",
                received_or_retry(cx.attempt)
            );
        } else {
            tracing::info!(
                id = %Untrusted(&cx.id),
                record = %Untrusted(env.record().as_str()),
                callback_type = %Untrusted(env.callback_type()),
                callback_code = %Untrusted(env.callback_code().unwrap_or("")),
                attempt = cx.attempt,
                bytes = env.raw().len(),
                "{}",
                received_or_retry(cx.attempt)
            );
        }
        Ok(())
    }
}

/// The log line's message: "callback received" once, at the first attempt; later attempts are
/// retries (or replays) of a callback already logged as received.
fn received_or_retry(attempt: u32) -> String {
    if attempt <= 1 {
        "callback received".to_owned()
    } else {
        format!(
            "callback handed to the handlers again (retry {})",
            attempt - 1
        )
    }
}

/// Why an HTTP request got no answer, in the words an operator acts on: `connection refused`,
/// `no such host`, `timed out after 1s` (with `timeout`, the request's limit), else the error
/// and each of its causes. Never the request's body, nor the URL (it may hold credentials).
pub fn request_failure(e: &reqwest::Error, timeout: Option<Duration>) -> String {
    let causes: Vec<&dyn std::error::Error> =
        std::iter::successors(Some(e as &dyn std::error::Error), |&s| s.source()).collect();
    let refused = causes.iter().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    let text: Vec<String> = causes.iter().map(ToString::to_string).collect();
    let unknown_host = text.iter().any(|t| {
        t.contains("dns error")
            || t.contains("failed to lookup address")
            || t.contains("Name or service not known")
    });
    if refused {
        "connection refused".to_owned()
    } else if unknown_host {
        let host = e.url().and_then(|u| u.host_str()).unwrap_or("the host");
        format!("no such host: {host} does not resolve")
    } else if e.is_timeout() {
        match timeout {
            Some(limit) => format!("timed out after {}", humantime::format_duration(limit)),
            None => "timed out".to_owned(),
        }
    } else {
        let mut parts: Vec<String> = Vec::new();
        for t in text {
            if !parts.iter().any(|p| p.contains(&t)) {
                parts.push(t);
            }
        }
        parts.join(": ")
    }
}

/// POSTs each callback's original bytes to an internal URL, with `Content-Type:
/// application/json`, `X-Okra-Callback-Id` and `X-Okra-Attempt`. A non-2xx answer, or none
/// within the timeout, is a failure (and so a retry).
#[derive(Debug, Clone)]
pub struct ForwardHandler {
    client: reqwest::Client,
    url: String,
    /// Each request's limit, named when one runs past it.
    timeout: Duration,
}

impl ForwardHandler {
    /// Forwards to `url`, giving each request `timeout` in all. The client pools connections.
    pub fn new(url: impl Into<String>, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("okra-callbacks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            url: url.into(),
            timeout,
        })
    }
}

#[async_trait]
impl Handler for ForwardHandler {
    fn name(&self) -> &str {
        "forward"
    }

    async fn handle(&self, cx: &Context) -> HandlerResult {
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Okra-Callback-Id", &cx.id)
            .header("X-Okra-Attempt", cx.attempt.to_string())
            .body(cx.envelope.raw().clone())
            .send()
            .await
            .map_err(|e| {
                HandlerError::msg(format_args!(
                    "forward request failed: {}",
                    request_failure(&e, Some(self.timeout))
                ))
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(HandlerError::msg(format_args!(
                "the forward URL answered {status}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callback_is_logged_as_received_once_and_its_retries_as_retries() {
        assert_eq!(received_or_retry(1), "callback received");
        let retry = received_or_retry(3);
        assert!(!retry.contains("received"), "{retry}");
        assert!(retry.contains("retry 2"), "{retry}");
    }
}
