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
                "callback received"
            );
        } else {
            tracing::info!(
                id = %Untrusted(&cx.id),
                record = %Untrusted(env.record().as_str()),
                callback_type = %Untrusted(env.callback_type()),
                callback_code = %Untrusted(env.callback_code().unwrap_or("")),
                attempt = cx.attempt,
                bytes = env.raw().len(),
                "callback received"
            );
        }
        Ok(())
    }
}

/// POSTs each callback's original bytes to an internal URL, with `Content-Type:
/// application/json`, `X-Okra-Callback-Id` and `X-Okra-Attempt`. A non-2xx answer, or none
/// within the timeout, is a failure (and so a retry).
#[derive(Debug, Clone)]
pub struct ForwardHandler {
    client: reqwest::Client,
    url: String,
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
            .map_err(|e| HandlerError::msg(format_args!("forward request failed: {e}")))?;
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
