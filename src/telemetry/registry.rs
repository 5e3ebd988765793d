//! The metrics registry: where a receiver's Prometheus metrics are recorded and how
//! `GET /metrics` renders them.

use std::{future::Future, sync::Arc};

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Histogram buckets for every `_seconds` metric: 0.5 ms to 30 s, with 15 and 20 ms between
/// 10 and 25 so an acknowledgement p99 can be read against its 10 and 20 ms goals.
const LATENCY_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];

fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
        .expect("the bucket list is not empty")
}

/// Where a receiver's metrics are recorded, and how `GET /metrics` renders them.
///
/// Either the process-wide recorder ([`install_metrics`], what the binary uses; the metrics of
/// any other code in the process are rendered too), or a registry private to one receiver
/// ([`Metrics::private`]) — for tests, or several receivers in one process.
#[derive(Clone)]
pub struct Metrics {
    /// The private registry, recorded into while the receiver's futures run; `None` when the
    /// crate's metrics go to the global recorder.
    local: Option<Arc<PrometheusRecorder>>,
    /// Renders the registry as Prometheus text.
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("private", &self.local.is_some())
            .finish()
    }
}

impl From<PrometheusHandle> for Metrics {
    /// Renders the global recorder `handle` belongs to.
    fn from(handle: PrometheusHandle) -> Self {
        Self {
            local: None,
            handle,
        }
    }
}

impl Metrics {
    /// A registry of this receiver's own, not installed globally.
    pub fn private() -> Self {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        Self {
            local: Some(Arc::new(recorder)),
            handle,
        }
    }

    /// The Prometheus text exposition of everything recorded so far.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram samples into their buckets; the receiver calls it every few seconds so a
    /// registry nobody scrapes stays small. (The global recorder does it on its own thread.)
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Whether this is a private registry (that needs [`Metrics::run_upkeep`] calls).
    pub fn is_private(&self) -> bool {
        self.local.is_some()
    }

    /// Runs `f` with this registry as the recorder of the `metrics` macros.
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.local {
            Some(recorder) => metrics::with_local_recorder(recorder.as_ref(), f),
            None => f(),
        }
    }

    /// Runs `future` with this registry as the recorder of the `metrics` macros at every poll,
    /// so metrics emitted anywhere inside it (handlers included) land here.
    pub async fn scope<F: Future>(&self, future: F) -> F::Output {
        let Some(recorder) = self.local.clone() else {
            return future.await;
        };
        let mut future = std::pin::pin!(future);
        std::future::poll_fn(move |cx| {
            metrics::with_local_recorder(recorder.as_ref(), || future.as_mut().poll(cx))
        })
        .await
    }
}

/// Puts every metric the crate emits on `/metrics` from the start, at 0 (Okra's series, and
/// the dispatcher's `handler`), so dashboards and alerts see a series before its first event.
/// Adding 0 registers a series without changing one that already counts.
pub(crate) fn export_from_the_start(handler: &str) {
    use super::names::*;
    use crate::callback::OKRA;
    for name in [
        REQUESTS_TIMED_OUT,
        LEASE_RENEWALS,
        LEASE_RENEWAL_FAILURES,
        LEASE_TAKEOVERS,
        LEASES_LOST,
    ] {
        metrics::counter!(name).increment(0);
    }
    for name in [DUPLICATES, RETRIES, DEAD_LETTERS] {
        metrics::counter!(name, "source" => OKRA).increment(0);
    }
    for name in [LEASES_HELD, DELIVERY_DEFERRED] {
        metrics::gauge!(name).increment(0.0);
    }
    // A histogram handle registers its series (empty buckets) when it is created.
    let _ = metrics::histogram!(ACK_DURATION, "source" => OKRA);
    let _ = metrics::histogram!(STORE_WRITE_DURATION, "operation" => "insert");
    let _ =
        metrics::histogram!(HANDLER_DURATION, "handler" => handler.to_owned(), "source" => OKRA);
    for outcome in ["ok", "error", "panic", "timeout"] {
        metrics::counter!(HANDLER_ATTEMPTS, "handler" => handler.to_owned(), "source" => OKRA, "outcome" => outcome)
            .increment(0);
    }
    for outcome in ["delivered", "retry", "dead"] {
        metrics::counter!(DELIVERY_OUTCOMES, "source" => OKRA, "outcome" => outcome).increment(0);
    }
    for reason in [
        "invalid_json",
        "invalid_callback",
        "unsupported_media_type",
        "payload_too_large",
        "unauthorized",
        "invalid_signature",
        "forbidden",
        "too_many_requests",
        "store_unavailable",
    ] {
        metrics::counter!(REJECTED, "reason" => reason, "source" => OKRA).increment(0);
    }
    for outcome in ["stored", "duplicate"] {
        metrics::counter!(RECEIVED, "source" => OKRA, "callback_type" => "other", "callback_code" => "other", "outcome" => outcome)
            .increment(0);
    }
}

/// Runs `f` under `metrics`'s recorder when there is one, else under the global recorder.
pub(crate) fn record<T>(metrics: Option<&Metrics>, f: impl FnOnce() -> T) -> T {
    match metrics {
        Some(m) => m.record(f),
        None => f(),
    }
}

/// Installs the global Prometheus recorder (histogram buckets from 0.5 ms to 30 s for every
/// `_seconds` metric) and returns what `/metrics` renders from. Fails if a global recorder is
/// already installed.
pub fn install_metrics() -> Result<Metrics, String> {
    builder()
        .install_recorder()
        .map(Metrics::from)
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::names;

    #[test]
    fn acknowledgement_times_are_bucketed_around_their_10_and_20_ms_goals() {
        let metrics = Metrics::private();
        metrics.record(|| metrics::histogram!(names::ACK_DURATION).record(0.012));
        let page = metrics.render();
        let bucket = |le: &str| {
            page.lines()
                .find(|l| l.starts_with(names::ACK_DURATION) && l.contains(&format!("le=\"{le}\"")))
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        // 12 ms: above the 10 ms bucket, inside the 15 ms one.
        assert_eq!(bucket("0.01").as_deref(), Some("0"), "{page}");
        assert_eq!(bucket("0.015").as_deref(), Some("1"), "{page}");
        assert_eq!(bucket("0.02").as_deref(), Some("1"), "{page}");
    }

    #[tokio::test]
    async fn private_registries_do_not_see_each_other() {
        let (a, b) = (Metrics::private(), Metrics::private());
        a.record(|| metrics::counter!("okra_test_total").increment(2));
        b.scope(async {
            tokio::task::yield_now().await;
            metrics::counter!("okra_test_total").increment(5);
        })
        .await;
        assert!(a.render().contains("okra_test_total 2"), "{}", a.render());
        assert!(b.render().contains("okra_test_total 5"), "{}", b.render());
    }
}
