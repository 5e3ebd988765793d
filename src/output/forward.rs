//! The forward output: POSTs every callback to an internal URL.

use std::time::Duration;

use async_trait::async_trait;

use crate::{
    handler::{Context, Handler, HandlerError, HandlerResult},
    telemetry::redact,
};

/// POSTs each callback's original bytes to an internal URL, with `Content-Type:
/// application/json`, `X-Okra-Callback-Id`, `X-Okra-Attempt` and `X-Okra-Source` (`okra`, or the
/// source's name). A non-2xx answer, or none
/// within the timeout, is a failure (and so a retry). Redirects are not followed: a 3xx is a
/// failure naming where it pointed, since a POST re-sent elsewhere (or turned into a GET) would
/// not be the delivery the operator configured.
#[derive(Debug, Clone)]
pub struct ForwardHandler {
    client: reqwest::Client,
    url: String,
    /// Each request's limit, named when one runs past it.
    timeout: Duration,
}

impl ForwardHandler {
    /// Forwards to `url`, giving each request `timeout` in all. The client pools connections and
    /// follows no redirect.
    pub fn new(url: impl Into<String>, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("okra-callbacks/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
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
            .header("X-Okra-Source", cx.envelope.source())
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
        } else if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|l| redact(&String::from_utf8_lossy(l.as_bytes())))
                .unwrap_or_else(|| "nowhere (no Location header)".to_owned());
            Err(HandlerError::msg(format_args!(
                "the forward URL answered {status}, a redirect to {location}: redirects are not followed, so set --forward-url to the final URL"
            )))
        } else {
            Err(HandlerError::msg(format_args!(
                "the forward URL answered {status}"
            )))
        }
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
            Some(limit) => format!(
                "timed out after {}",
                crate::telemetry::format_duration(limit)
            ),
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
