//! The dispatcher's policy: how it retries (backoff with jitter) and when it gives way to a burst
//! of acknowledgements.

use std::time::{Duration, Instant};

use rand::Rng;

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
    /// How long a replica that stopped renewing keeps its records before another may take them
    /// over; renewed every third of it while handlers run.
    pub lease: Duration,
    /// Whether the heartbeat renews leases while handlers run (on by default). Off, a claim
    /// lasts `lease` from the last outcome written, so `lease` must cover the longest handler
    /// call; off is for modelling a replica that stopped renewing.
    pub renew_leases: bool,
    /// How often to look for due retries (and other replicas' work) when idle.
    pub poll_interval: Duration,
    /// How long deliveries may wait while a burst of callbacks queues to be stored
    /// ([`Delivery::acknowledgements_queued`](crate::store::Delivery::acknowledgements_queued)): meanwhile the dispatcher takes no new work and
    /// its workers give their records back after the callback in hand, so the store's time goes
    /// to acknowledging Okra; they catch up after the burst. A burst that lasts longer is
    /// delivered alongside until it ends. Zero turns this off.
    pub max_delivery_deferral: Duration,
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
            lease: Duration::from_secs(10),
            renew_leases: true,
            poll_interval: Duration::from_millis(250),
            max_delivery_deferral: Duration::from_secs(30),
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

/// How often a deferring dispatcher looks whether the burst is over.
pub(super) const DEFERRAL_CHECK: Duration = Duration::from_millis(50);

/// Whether the dispatcher gives way to a burst of acknowledgements: from the moment
/// acknowledgements queue, for as long as they do, `max` at most; a burst that outlasts `max`
/// is delivered alongside until it ends. After giving way for a while, it does not again for as
/// long, so bursts that come and go cannot hold deliveries back more than half the time.
pub(super) struct Deferral {
    max: Duration,
    /// When the current deferral began.
    since: Option<Instant>,
    /// The current burst outlasted `max`: no deferral until it ends.
    spent: bool,
    /// No deferral before then (as long after the last one as it lasted).
    rearm_at: Option<Instant>,
}

impl Deferral {
    pub(super) fn new(max: Duration) -> Self {
        Self {
            max,
            since: None,
            spent: false,
            rearm_at: None,
        }
    }

    /// Whether to take no new work at `now`, given whether acknowledgements queue.
    pub(super) fn defer(&mut self, queued: bool, now: Instant) -> bool {
        if !queued || self.max.is_zero() {
            self.end(now);
            self.spent = false;
            return false;
        }
        if self.spent || self.rearm_at.is_some_and(|at| now < at) {
            return false;
        }
        let since = *self.since.get_or_insert(now);
        if now.duration_since(since) >= self.max {
            self.end(now);
            self.spent = true;
            return false;
        }
        true
    }

    /// Ends the current deferral, if any, at `now`.
    fn end(&mut self, now: Instant) {
        if let Some(since) = self.since.take() {
            self.rearm_at = Some(now + now.duration_since(since));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_give_way_to_a_burst_for_at_most_the_deferral() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut deferral = Deferral::new(Duration::from_millis(100));
        assert!(!deferral.defer(false, at(0)), "no burst, no deferral");
        assert!(deferral.defer(true, at(10)), "a burst starts: defer");
        assert!(deferral.defer(true, at(109)), "still within the deferral");
        assert!(
            !deferral.defer(true, at(110)),
            "the burst outlasted it: deliver"
        );
        assert!(
            !deferral.defer(true, at(500)),
            "and go on delivering while it lasts"
        );
        assert!(!deferral.defer(false, at(510)), "the burst is over");
        assert!(
            deferral.defer(true, at(520)),
            "the next burst is deferred again"
        );
        assert!(!deferral.defer(false, at(560)), "it ended after 40 ms");
        assert!(!deferral.defer(true, at(570)), "so none for the next 40 ms");
        assert!(deferral.defer(true, at(600)), "and one again after that");
        let mut off = Deferral::new(Duration::ZERO);
        assert!(!off.defer(true, at(0)), "a zero deferral never defers");
    }

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
