//! The dispatcher: hands stored callbacks to the handlers, at least once, in order per record.
//!
//! It claims records with due work from the [`Store`] (a lease per record, so one worker in the
//! whole fleet serves a record at a time), then walks each record's pending callbacks oldest
//! first. A failure (error, panic or timeout) schedules a retry with exponential backoff and
//! jitter and holds the record's later callbacks back; after `max_attempts` the callback is
//! marked dead and the record goes on. Different records are served concurrently.

use std::{
    collections::HashSet,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use futures::FutureExt;
use rand::Rng;
use tokio::{
    sync::{Notify, Semaphore},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    callback::Envelope,
    handler::{Context, Handler},
    store::{Claim, Outcome, Store, StoreError, StoredCallback},
    telemetry::{self, names, Metrics},
};

/// How the dispatcher retries and how much it does at once.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Handler attempts before a callback is marked dead.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles with each attempt.
    pub retry_base_delay: Duration,
    /// The longest delay between two attempts.
    pub retry_max_delay: Duration,
    /// How long one handler call may run before it counts as failed.
    pub handler_timeout: Duration,
    /// How many records are served at once.
    pub concurrency: usize,
    /// How many of one record's callbacks are claimed together.
    pub batch: usize,
    /// How long a claim is held before another worker may take the record over.
    pub lease: Duration,
    /// How often to look for due retries (and other replicas' work) when idle.
    pub poll_interval: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            retry_base_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(3600),
            handler_timeout: Duration::from_secs(30),
            concurrency: 64,
            batch: 32,
            lease: Duration::from_secs(120),
            poll_interval: Duration::from_millis(250),
        }
    }
}

impl DispatchConfig {
    /// The delay before the attempt after `attempt` failed ones: `base × 2^(attempt-1)`, capped at
    /// `retry_max_delay`, of which the upper half is random (jitter), so retries of many callbacks
    /// spread out instead of arriving together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let full = self
            .retry_base_delay
            .saturating_mul(1u32 << exp)
            .min(self.retry_max_delay);
        let half = full / 2;
        half + half.mul_f64(rand::thread_rng().gen::<f64>())
    }
}

/// Runs the handlers over the store's pending callbacks until cancelled.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    handler: Arc<dyn Handler>,
    config: DispatchConfig,
    owner: String,
    wake: Arc<Notify>,
    /// Records this process is serving now. A record whose lease lapsed while its handler ran
    /// comes back in a claim from this very process; it is left to the task already on it.
    serving: Mutex<HashSet<String>>,
    /// Where handler metrics go; the global recorder when `None`.
    metrics: Option<Metrics>,
}

impl Dispatcher {
    /// A dispatcher identified as `owner` in leases (unique per process).
    pub fn new(
        store: Arc<dyn Store>,
        handler: Arc<dyn Handler>,
        config: DispatchConfig,
        owner: String,
    ) -> Self {
        Self {
            store,
            handler,
            config,
            owner,
            wake: Arc::new(Notify::new()),
            serving: Mutex::default(),
            metrics: None,
        }
    }

    /// Records handler metrics (those of the handlers themselves included) into `metrics`
    /// rather than the global recorder.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.set_metrics(metrics);
        self
    }

    pub(crate) fn set_metrics(&mut self, metrics: Metrics) {
        self.metrics = Some(metrics);
    }

    /// Notified when new work is stored, so it is picked up at once rather than at the next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Claims and delivers until `stop` is cancelled; then lets in-flight handler calls finish
    /// (each within the handler timeout) and gives up its leases.
    pub async fn run(self, stop: CancellationToken) {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(this.config.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let mut store_errors = 0u32;
        while !stop.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            let free = slots.available_permits();
            let claimed = if free == 0 {
                Ok(Vec::new())
            } else {
                this.store
                    .claim(&this.owner, free, this.config.batch, this.config.lease)
                    .await
            };
            match claimed {
                // Claims without callbacks (a record whose count drifted) are idle time, not
                // work: going round again at once would spin.
                Ok(claims) if claims.iter().any(|c| !c.callbacks.is_empty()) => {
                    store_errors = 0;
                    for claim in claims {
                        let Ok(permit) = slots.clone().acquire_owned().await else {
                            break;
                        };
                        if !this.lock_serving().insert(claim.record.clone()) {
                            tracing::debug!(record = %claim.record, "record already being served here");
                            continue;
                        }
                        let (this, stop) = (this.clone(), stop.clone());
                        tasks.spawn(async move {
                            match this.metrics.clone() {
                                Some(m) => m.scope(this.serve_record(claim, &stop)).await,
                                None => this.serve_record(claim, &stop).await,
                            }
                            drop(permit);
                        });
                    }
                    continue;
                }
                Ok(_) => store_errors = 0,
                Err(e) => {
                    store_errors = store_errors.saturating_add(1);
                    tracing::warn!(error = %e, "cannot claim work from the store; will retry");
                }
            }
            let pause = this.config.poll_interval * store_errors.clamp(1, 20);
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = this.wake.notified(), if store_errors == 0 => {}
                _ = tokio::time::sleep(pause) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        while tasks.join_next().await.is_some() {}
        if let Err(e) = this.store.release_all(&this.owner).await {
            tracing::warn!(error = %e, "could not release leases on shutdown; they expire by themselves");
        }
    }

    fn lock_serving(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.serving.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delivers one claimed record's callbacks, then gives the record up: first here (so a
    /// claim that comes once the lease is free starts a new task), then its lease.
    async fn serve_record(&self, claim: Claim, stop: &CancellationToken) {
        let record = claim.record.clone();
        let holds_lease = self.deliver_claimed(claim, stop).await;
        if !holds_lease {
            return;
        }
        self.lock_serving().remove(&record);
        let released = self
            .persist(stop, || self.store.release(&self.owner, &record))
            .await;
        if let Err(e) = released {
            tracing::warn!(record = %record, error = %e, "cannot release a record lease; it expires by itself");
        }
    }

    /// Delivers a claim's callbacks in order, stopping at the first that must wait, and goes on
    /// with the record's next callbacks when the store hands them over with the last outcome
    /// ([`Store::finish_last`]). Returns whether this worker still holds the record's lease and
    /// is still in `serving` (then the caller gives both up); otherwise it has left `serving`.
    async fn deliver_claimed(&self, claim: Claim, stop: &CancellationToken) -> bool {
        let Claim {
            record,
            mut callbacks,
        } = claim;
        loop {
            let last = callbacks.len().saturating_sub(1);
            let mut next = None;
            for (i, cb) in callbacks.iter().enumerate() {
                if stop.is_cancelled() {
                    return true;
                }
                let outcome = self.attempt(cb).await;
                let must_wait = matches!(outcome, Outcome::Retry { .. });
                if must_wait || i == last {
                    // Leave `serving` first: once the store has released the lease, a claim
                    // from this process may take the record again and must start a new task.
                    // Nobody else can claim it before this write commits (the lease is held).
                    self.lock_serving().remove(&record);
                    let recorded = self
                        .persist(stop, || {
                            self.store.finish_last(
                                &self.owner,
                                cb,
                                outcome.clone(),
                                self.config.lease,
                                self.config.batch,
                            )
                        })
                        .await;
                    let more = match recorded {
                        Ok(more) => more,
                        Err(e) => {
                            self.outcome_not_recorded(cb, &e);
                            return false;
                        }
                    };
                    // Back in `serving`, unless a claim of this process started another task
                    // on the record meanwhile (possible only if the lease had lapsed): that
                    // task serves it now.
                    if matches!(more, crate::store::AfterLast::Released)
                        || !self.lock_serving().insert(record.clone())
                    {
                        // The store released the lease (or the other task holds it).
                        return false;
                    }
                    // `StillLeased`: the store only recorded the outcome; the caller releases.
                    next = match more {
                        crate::store::AfterLast::Next(callbacks) => Some(callbacks),
                        _ => None,
                    };
                } else {
                    let recorded = self
                        .persist(stop, || {
                            self.store
                                .finish(&self.owner, cb, outcome.clone(), self.config.lease)
                        })
                        .await;
                    if let Err(e) = recorded {
                        self.outcome_not_recorded(cb, &e);
                        self.lock_serving().remove(&record);
                        return false;
                    }
                }
                if must_wait {
                    break;
                }
            }
            match next {
                Some(more) => callbacks = more,
                None => return true,
            }
        }
    }

    /// Logs why a handler outcome could not be recorded; the worker then leaves the record.
    fn outcome_not_recorded(&self, cb: &StoredCallback, e: &StoreError) {
        match e {
            // Another worker serves the record now; going on would deliver alongside it.
            StoreError::LeaseLost(_) => {
                tracing::warn!(id = %cb.id, record = %cb.record, "lease lost to another worker; leaving the record to it")
            }
            // The lease runs out and the callback is delivered again: at least once.
            e => tracing::warn!(id = %cb.id, error = %e, "cannot record a handler outcome"),
        }
    }

    /// Runs a store write, retrying while the store is unavailable, for at most half a lease
    /// (the lease still protects the record meanwhile). A short database outage then costs
    /// neither a redelivery nor a record held back until its lease expires.
    async fn persist<T, F, Fut>(
        &self,
        stop: &CancellationToken,
        mut write: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let deadline = tokio::time::Instant::now() + self.config.lease / 2;
        let mut pause = Duration::from_millis(100);
        loop {
            match write().await {
                Err(StoreError::Unavailable(e))
                    if !stop.is_cancelled() && tokio::time::Instant::now() + pause < deadline =>
                {
                    tracing::debug!(error = %e, "store write failed; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return Err(StoreError::Unavailable(e)),
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                result => return result,
            }
        }
    }

    /// One handler call for one callback, with its timeout, panic guard and verdict.
    async fn attempt(&self, cb: &StoredCallback) -> Outcome {
        let attempt = cb.attempts + 1;
        let span = tracing::info_span!(
            "deliver",
            id = %cb.id,
            record = %cb.record,
            callback_type = %cb.callback_type,
            callback_code = cb.callback_code.as_deref().unwrap_or(""),
            attempt,
        );
        let started = std::time::Instant::now();
        let handler = self.handler.name().to_owned();
        let result = match Envelope::parse(cb.body.clone()) {
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
                            "the handler did not finish within {:?}",
                            self.config.handler_timeout
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
                tracing::error!(%error, "handler failed for the last time; the callback is dead");
                Outcome::Dead { error }
            }
            Err((_, error)) => {
                let delay = self.config.backoff(cb.cycle_attempts + 1);
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "handler failed; will retry");
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
        telemetry::record(self.metrics.as_ref(), || {
            metrics::counter!(names::HANDLER_ATTEMPTS, "handler" => handler.clone(), "outcome" => call_outcome)
                .increment(1);
            metrics::histogram!(names::HANDLER_DURATION, "handler" => handler).record(elapsed);
            metrics::counter!(names::DELIVERY_OUTCOMES, "outcome" => verdict).increment(1);
            match &outcome {
                Outcome::Retry { .. } => metrics::counter!(names::RETRIES).increment(1),
                Outcome::Dead { .. } => metrics::counter!(names::DEAD_LETTERS).increment(1),
                Outcome::Delivered => {}
            }
        });
        outcome
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let config = DispatchConfig {
            retry_base_delay: Duration::from_millis(1000),
            retry_max_delay: Duration::from_secs(10),
            ..Default::default()
        };
        for attempt in 1..=3u32 {
            let full = Duration::from_millis(1000 * (1 << (attempt - 1)));
            let seen: Vec<_> = (0..50).map(|_| config.backoff(attempt)).collect();
            assert!(
                seen.iter().all(|d| *d >= full / 2 && *d <= full),
                "{attempt}: {seen:?}"
            );
            assert!(
                seen.iter().any(|d| *d != seen[0]),
                "jitter varies the delay"
            );
        }
        assert!(config.backoff(40) <= Duration::from_secs(10));
        assert!(config.backoff(40) >= Duration::from_secs(5));
    }
}
