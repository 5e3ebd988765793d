//! The dispatcher: hands stored callbacks to the handlers, at least once, in order per record.
//!
//! It claims records with due work from the store's [`Delivery`] part (a lease per record, so one worker in the
//! whole fleet serves a record at a time), then walks each record's pending callbacks oldest
//! first. A failure (error, panic or timeout) schedules a retry with exponential backoff and
//! jitter and holds the record's later callbacks back; after `max_attempts` the callback is
//! marked dead and the record goes on. Different records are served concurrently.
//!
//! While handlers run, a heartbeat renews every lease this dispatcher holds, every third of
//! `lease`, in one store call ([`Delivery::renew`]): a slow handler keeps its record, and a killed
//! replica's records go to another within about `lease`. A worker whose lease is gone — taken
//! over (the store refuses its outcome, or the heartbeat finds it), or not renewed for a whole
//! `lease` (database unreachable, process paused) — stops before its next handler call.
//!
//! One handler attempt (timeout, panic guard, verdict) is in `attempt`; the retry backoff and
//! the rule for giving way to bursts of acknowledgements in `policy`.

mod attempt;
mod policy;

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use tokio::{
    sync::{Notify, Semaphore},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

use crate::{
    callback::SourceModels,
    handler::Handler,
    store::{AfterLast, Claim, Delivery, Outcome, StoreError, StoredCallback},
    telemetry::{self, names, Untrusted},
    Metrics,
};
pub use policy::DispatchConfig;
use policy::{Deferral, DEFERRAL_CHECK};

/// Runs the handlers over the store's pending callbacks until cancelled.
pub struct Dispatcher {
    store: Arc<dyn Delivery>,
    handler: Arc<dyn Handler>,
    config: DispatchConfig,
    owner: String,
    wake: Arc<Notify>,
    /// Records this process is serving now. A record whose lease lapsed while its handler ran
    /// comes back in a claim from this very process; it is left to the task already on it.
    serving: Mutex<HashSet<String>>,
    /// Where handler metrics go; the global recorder when `None`.
    metrics: Option<Metrics>,
    /// Records whose lease the heartbeat found taken over: their workers stop before their
    /// next handler call.
    lost: Mutex<HashSet<String>>,
    /// When the leases were last known to be this dispatcher's (a claim or a heartbeat that
    /// reached the store). Older than `lease`, another replica may hold them: workers stop.
    renewed_at: Mutex<Instant>,
    /// Whether deliveries give way to a burst of acknowledgements now (see [`Deferral`]):
    /// workers give their records back before their next handler call.
    deferring: AtomicBool,
    /// Which typed view each source's callbacks get (Plaid's webhooks are typed).
    models: SourceModels,
}

impl Dispatcher {
    /// A dispatcher identified as `owner` in leases (unique per process).
    pub fn new(
        store: Arc<dyn Delivery>,
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
            lost: Mutex::default(),
            renewed_at: Mutex::new(Instant::now()),
            deferring: AtomicBool::new(false),
            models: SourceModels::default(),
        }
    }

    /// Hands each source's callbacks to the handlers typed as `models` says (every source not
    /// listed is generic; Okra's are always Okra's).
    pub fn with_source_models(mut self, models: SourceModels) -> Self {
        self.models = models;
        self
    }

    /// Records handler metrics (those of the handlers themselves included) into `metrics`
    /// rather than the global recorder.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.set_metrics(metrics);
        self
    }

    pub(crate) fn set_metrics(&mut self, metrics: Metrics) {
        metrics.record(|| telemetry::registry::export_from_the_start(self.handler.name()));
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
        let heartbeat = this
            .config
            .renew_leases
            .then(|| tokio::spawn(this.clone().heartbeat(stop.clone())));
        let mut deferral = Deferral::new(this.config.max_delivery_deferral);
        telemetry::record(this.metrics.as_ref(), || {
            metrics::gauge!(names::DELIVERY_DEFERRED).set(0.0)
        });
        while !stop.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            if this.give_way(&mut deferral) {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(DEFERRAL_CHECK) => {}
                }
                continue;
            }
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
                    *this.lock_renewed() = Instant::now();
                    for claim in claims {
                        this.lock_lost().remove(&claim.record);
                        if let Some(from) = &claim.taken_over_from {
                            tracing::info!(record = %Untrusted(&claim.record), from = %from, "took over a record whose lease ran out");
                            telemetry::record(this.metrics.as_ref(), || {
                                metrics::counter!(names::LEASE_TAKEOVERS).increment(1)
                            });
                        }
                        let Ok(permit) = slots.clone().acquire_owned().await else {
                            break;
                        };
                        if !this.lock_serving().insert(claim.record.clone()) {
                            tracing::debug!(record = %Untrusted(&claim.record), "record already being served here");
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
                Ok(claims) => {
                    store_errors = 0;
                    // Only claims without callbacks (a record whose count drifted): give their
                    // leases back, or the heartbeat would renew them while nobody serves the
                    // record, and its next callback would wait for this process to stop.
                    for claim in claims {
                        if let Err(e) = this.store.release(&this.owner, &claim.record).await {
                            tracing::warn!(record = %Untrusted(&claim.record), error = %Untrusted(&e.to_string()), "cannot release an empty claim's lease; it expires by itself");
                        }
                    }
                }
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
        if let Some(heartbeat) = heartbeat {
            heartbeat.abort();
        }
        if let Err(e) = this.store.release_all(&this.owner).await {
            tracing::warn!(error = %e, "could not release leases on shutdown; they expire by themselves");
        }
    }

    /// Decides whether deliveries give way to a burst of acknowledgements now, and tells the
    /// workers, the logs and the `okra_delivery_deferred` gauge when that changes.
    fn give_way(&self, deferral: &mut Deferral) -> bool {
        let queued = self.store.acknowledgements_queued();
        let defer = deferral.defer(queued, Instant::now());
        if self.deferring.swap(defer, Ordering::Relaxed) != defer {
            if defer {
                tracing::debug!(max = %telemetry::format_duration(self.config.max_delivery_deferral), "callbacks queue to be stored: deliveries wait for the burst");
            } else if queued {
                tracing::warn!(max = %telemetry::format_duration(self.config.max_delivery_deferral), "a burst of callbacks outlasted --max-delivery-deferral: delivering alongside it");
            } else {
                tracing::debug!("the burst is over: delivering");
            }
            telemetry::record(self.metrics.as_ref(), || {
                metrics::gauge!(names::DELIVERY_DEFERRED).set(f64::from(u8::from(defer)))
            });
        }
        defer
    }

    fn lock_serving(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.serving.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_lost(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_renewed(&self) -> std::sync::MutexGuard<'_, Instant> {
        self.renewed_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Renews this dispatcher's leases every third of `lease`, in one store call per beat,
    /// until `stop`; tells workers whose lease was taken over.
    async fn heartbeat(self: Arc<Self>, stop: CancellationToken) {
        let every = (self.config.lease / 3).max(Duration::from_millis(10));
        let mut failing = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let started = Instant::now();
            match self.store.renew(&self.owner, self.config.lease).await {
                Ok(renewal) => {
                    *self.lock_renewed() = started;
                    if failing {
                        tracing::info!("lease renewals succeed again");
                        failing = false;
                    }
                    telemetry::record(self.metrics.as_ref(), || {
                        metrics::counter!(names::LEASE_RENEWALS).increment(renewal.renewed as u64);
                        metrics::gauge!(names::LEASES_HELD).set(renewal.renewed as f64);
                    });
                    if !renewal.lost.is_empty() {
                        self.lock_lost().extend(renewal.lost);
                    }
                }
                Err(e) => {
                    telemetry::record(self.metrics.as_ref(), || {
                        metrics::counter!(names::LEASE_RENEWAL_FAILURES).increment(1)
                    });
                    if !failing {
                        tracing::warn!(error = %e, "cannot renew record leases; past --lease without a renewal, workers stop and other replicas take the records over");
                        failing = true;
                    }
                }
            }
        }
    }

    /// Whether the worker on `record` must stop: the lease was found taken over, or has not
    /// been renewed for a whole `lease` (another replica may hold it by now).
    fn lease_gone(&self, record: &str) -> bool {
        if self.lock_lost().remove(record) {
            return true;
        }
        self.config.renew_leases && self.lock_renewed().elapsed() >= self.config.lease
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
            tracing::warn!(record = %Untrusted(&record), error = %Untrusted(&e.to_string()), "cannot release a record lease; it expires by itself");
        }
    }

    /// Delivers a claim's callbacks in order, stopping at the first that must wait, and goes on
    /// with the record's next callbacks when the store hands them over with the last outcome
    /// ([`Delivery::finish_last_attempt`]). Returns whether this worker still holds the record's lease and
    /// is still in `serving` (then the caller gives both up); otherwise it has left `serving`.
    async fn deliver_claimed(&self, claim: Claim, stop: &CancellationToken) -> bool {
        let Claim {
            record,
            mut callbacks,
            ..
        } = claim;
        loop {
            let last = callbacks.len().saturating_sub(1);
            let mut next = None;
            for (i, cb) in callbacks.iter().enumerate() {
                if stop.is_cancelled() || self.deferring.load(Ordering::Relaxed) {
                    // Stopping, or giving way to a burst: the caller gives the record back,
                    // and its next callback waits in the store.
                    return true;
                }
                if self.lease_gone(&record) {
                    tracing::warn!(id = %Untrusted(&cb.id), record = %Untrusted(&record), "the record's lease is gone (taken over, or not renewed for a whole --lease); leaving the record before the next handler call");
                    telemetry::record(self.metrics.as_ref(), || {
                        metrics::counter!(names::LEASES_LOST).increment(1)
                    });
                    self.lock_serving().remove(&record);
                    self.abandon(&record).await;
                    return false;
                }
                let (outcome, attempt) = self.attempt(cb).await;
                let must_wait = matches!(outcome, Outcome::Retry { .. });
                if must_wait || i == last {
                    // Leave `serving` first: once the store has released the lease, a claim
                    // from this process may take the record again and must start a new task.
                    // Nobody else can claim it before this write commits (the lease is held).
                    self.lock_serving().remove(&record);
                    let recorded = self
                        .persist(stop, || {
                            self.store.finish_last_attempt(
                                &self.owner,
                                cb,
                                outcome.clone(),
                                &attempt,
                                self.config.lease,
                                self.config.batch,
                            )
                        })
                        .await;
                    let more = match recorded {
                        Ok(more) => more,
                        Err(e) => {
                            self.outcome_not_recorded(cb, &e);
                            self.abandon(&record).await;
                            return false;
                        }
                    };
                    // Back in `serving`, unless a claim of this process started another task
                    // on the record meanwhile (possible only if the lease had lapsed): that
                    // task serves it now.
                    if matches!(more, AfterLast::Released)
                        || !self.lock_serving().insert(record.clone())
                    {
                        // The store released the lease (or the other task holds it).
                        return false;
                    }
                    // `StillLeased`: the store only recorded the outcome; the caller releases.
                    next = match more {
                        AfterLast::Next(callbacks) => Some(callbacks),
                        _ => None,
                    };
                } else {
                    let recorded = self
                        .persist(stop, || {
                            self.store.finish_attempt(
                                &self.owner,
                                cb,
                                outcome.clone(),
                                &attempt,
                                self.config.lease,
                            )
                        })
                        .await;
                    if let Err(e) = recorded {
                        self.outcome_not_recorded(cb, &e);
                        self.lock_serving().remove(&record);
                        self.abandon(&record).await;
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

    /// Gives up the lease of a record this worker leaves without finishing, unless another task
    /// of this process serves the record now: a lease this process took again meanwhile (its
    /// claim was left to this task) must not stay held — and renewed by the heartbeat — with
    /// nobody serving it. A lease another replica holds is left alone by the store.
    async fn abandon(&self, record: &str) {
        if self.lock_serving().contains(record) {
            return;
        }
        if let Err(e) = self.store.release(&self.owner, record).await {
            tracing::debug!(record = %Untrusted(record), error = %Untrusted(&e.to_string()), "cannot release a lease left behind; it expires by itself");
        }
    }

    /// Logs why a handler outcome could not be recorded; the worker then leaves the record.
    fn outcome_not_recorded(&self, cb: &StoredCallback, e: &StoreError) {
        match e {
            // Another worker serves the record now; going on would deliver alongside it.
            StoreError::LeaseLost(_) => {
                tracing::warn!(id = %Untrusted(&cb.id), record = %Untrusted(&cb.record), "lease lost to another worker; leaving the record to it");
                telemetry::record(self.metrics.as_ref(), || {
                    metrics::counter!(names::LEASES_LOST).increment(1)
                });
            }
            // The lease runs out and the callback is delivered again: at least once.
            e => {
                tracing::warn!(id = %Untrusted(&cb.id), error = %Untrusted(&e.to_string()), "cannot record a handler outcome")
            }
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
}
