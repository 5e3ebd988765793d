//! The handler the binary always runs: one structured log line per callback.

use async_trait::async_trait;

use crate::{
    handler::{Context, Handler, HandlerResult},
    telemetry::Untrusted,
};

/// Logs one structured line per callback: id, source, record, type, code, attempt and size — never the
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
        // The body only when asked for; its size otherwise.
        let body = self.log_bodies.then(|| String::from_utf8_lossy(env.raw()));
        tracing::info!(
            id = %Untrusted(&cx.id),
            source = %Untrusted(env.source()),
            record = %Untrusted(env.record().as_str()),
            callback_type = %Untrusted(env.callback_type()),
            callback_code = %Untrusted(env.callback_code().unwrap_or("")),
            attempt = cx.attempt,
            body = body.as_deref().map(|b| tracing::field::display(Untrusted(b))),
            bytes = body.is_none().then_some(env.raw().len()),
            "{}",
            received_or_retry(cx.attempt)
        );
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
