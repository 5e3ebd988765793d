//! One handler attempt: the call with its timeout and panic guard, the verdict (delivered, retry
//! or dead), its metrics, and the attempt as the callback's history keeps it.

use std::{panic::AssertUnwindSafe, sync::Arc};

use chrono::Utc;
use futures::FutureExt;
use tracing::Instrument;

use super::Dispatcher;
use crate::{
    handler::Context,
    store::{Attempt, AttemptOutcome, Outcome, StoredCallback},
    telemetry::{self, names, Untrusted},
};

impl Dispatcher {
    /// One handler call for one callback, with its timeout, panic guard and verdict; and the
    /// attempt as its history keeps it.
    pub(super) async fn attempt(&self, cb: &StoredCallback) -> (Outcome, Attempt) {
        let attempt = cb.attempts + 1;
        let span = tracing::info_span!(
            "deliver",
            id = %Untrusted(&cb.id),
            source = %cb.source,
            record = %Untrusted(&cb.record),
            callback_type = %Untrusted(&cb.callback_type),
            callback_code = %Untrusted(cb.callback_code.as_deref().unwrap_or("")),
            attempt,
        );
        let started = std::time::Instant::now();
        let started_at = Utc::now();
        let handler = self.handler.name().to_owned();
        let result = match cb.envelope(&self.models) {
            // Bodies are validated before they are stored; this guards against a hand-edited row.
            Err(e) => Err((
                "error",
                format!("the stored body is not a valid callback: {e}"),
            )),
            Ok(envelope) => {
                let cx = Context {
                    id: cb.id.clone(),
                    attempt,
                    received_at: cb.received_at,
                    envelope: Arc::new(envelope),
                };
                let call = AssertUnwindSafe(self.handler.handle(&cx)).catch_unwind();
                match tokio::time::timeout(self.config.handler_timeout, call)
                    .instrument(span.clone())
                    .await
                {
                    Err(_) => Err((
                        "timeout",
                        format!(
                            "the handler did not finish within {}: make it faster, or raise --handler-timeout",
                            telemetry::format_duration(self.config.handler_timeout)
                        ),
                    )),
                    Ok(Err(panic)) => Err((
                        "panic",
                        format!("the handler panicked: {}", panic_message(&panic)),
                    )),
                    Ok(Ok(Err(e))) => Err(("error", e.to_string())),
                    Ok(Ok(Ok(()))) => Ok(()),
                }
            }
        };
        let elapsed = started.elapsed().as_secs_f64();
        let record = Attempt {
            attempt,
            started_at,
            finished_at: Utc::now(),
            outcome: match &result {
                Ok(()) => AttemptOutcome::Succeeded,
                Err(("timeout", _)) => AttemptOutcome::TimedOut,
                Err(("panic", _)) => AttemptOutcome::Panicked,
                Err(_) => AttemptOutcome::Failed,
            },
            error: result.as_ref().err().map(|(_, e)| e.clone()),
        };
        let _enter = span.enter();
        let call_outcome = match &result {
            Ok(()) => "ok",
            Err((label, _)) => *label,
        };
        let outcome = match result {
            Ok(()) => {
                tracing::debug!(elapsed_ms = elapsed * 1000.0, "delivered");
                Outcome::Delivered
            }
            Err((_, error)) if cb.cycle_attempts + 1 >= self.config.max_attempts => {
                tracing::error!(error = %Untrusted(&error), "handler failed for the last time; the callback is dead");
                Outcome::Dead { error }
            }
            Err((_, error)) => {
                let delay = self.config.backoff(cb.cycle_attempts + 1);
                tracing::warn!(error = %Untrusted(&error), retry_in_ms = delay.as_millis() as u64, "handler failed; will retry");
                Outcome::Retry {
                    at: Utc::now() + delay,
                    error,
                }
            }
        };
        let verdict = match &outcome {
            Outcome::Delivered => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Dead { .. } => "dead",
        };
        // The source is a configured name (or `okra`): a bounded label, as the handler's name is.
        let source = cb.source.clone();
        telemetry::record(self.metrics.as_ref(), || {
            metrics::counter!(names::HANDLER_ATTEMPTS, "handler" => handler.clone(), "source" => source.clone(), "outcome" => call_outcome)
                .increment(1);
            metrics::histogram!(names::HANDLER_DURATION, "handler" => handler, "source" => source.clone())
                .record(elapsed);
            metrics::counter!(names::DELIVERY_OUTCOMES, "source" => source.clone(), "outcome" => verdict)
                .increment(1);
            match &outcome {
                Outcome::Retry { .. } => {
                    metrics::counter!(names::RETRIES, "source" => source).increment(1)
                }
                Outcome::Dead { .. } => {
                    metrics::counter!(names::DEAD_LETTERS, "source" => source).increment(1)
                }
                Outcome::Delivered => {}
            }
        });
        (outcome, record)
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".into())
}
