//! Logging, tracing and metrics set-up, in one place.
//!
//! - [`Logs`] and [`init_tracing`]: the `tracing` subscriber — text or JSON lines on stderr (or
//!   any writer), and, with the
//!   `otel` cargo feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, OTLP/HTTP span export.
//! - [`Metrics`]: where a receiver's Prometheus metrics go and how `GET /metrics` renders them.
//!   [`install_metrics`] installs the process-wide recorder the binary uses.
//!
//! Every value that came from a request (record ids, types, codes, ids, header values, handler
//! errors) is logged through [`Untrusted`], so no sender can write a control character, a
//! terminal escape sequence or a line of its own into the logs.
//!
//! Every metric name the crate emits is a constant in [`names`], so dashboards and tests spell
//! them the same way.

use std::{future::Future, io::IsTerminal, sync::Arc};

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tracing_subscriber::{fmt, fmt::MakeWriter, prelude::*, EnvFilter};

/// A value that came from a request (or from a handler's error), as it is written to logs: in
/// text and JSON formats, in spans and events, at every level. Log it with `%`:
///
/// ```
/// use okra_callbacks::telemetry::Untrusted;
///
/// let record = "r1\u{1b}[31m\n2026-12-01T00:00:00Z  INFO forged";
/// tracing::info!(record = %Untrusted(record), "callback received");
/// assert_eq!(
///     Untrusted(record).to_string(),
///     r#""r1\u{1b}[31m\n2026-12-01T00:00:00Z  INFO forged""#
/// );
/// assert_eq!(Untrusted("5f8d1e2a9c").to_string(), "5f8d1e2a9c");
/// ```
///
/// Control characters (C0, DEL, C1), Unicode format characters (bidirectional overrides,
/// zero-width characters) and line or paragraph separators are written as escapes (`\n`,
/// `\u{1b}`), a backslash as `\\`, so the line shows exactly what was sent, unambiguously. A
/// value holding whitespace, `"` or `=`, or an empty one, is also quoted, so it cannot pass for
/// another `key=value` field of a text line. Ordinary ids, types and codes are written as they
/// are.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Untrusted<'a>(pub &'a str);

impl Untrusted<'_> {
    /// Whether `c` is written as an escape.
    fn escapes(c: char) -> bool {
        c.is_control()
            || matches!(
                c,
                '\\'
                    | '\u{00ad}'
                    | '\u{061c}'
                    | '\u{180e}'
                    | '\u{200b}'..='\u{200f}'
                    | '\u{2028}'..='\u{202e}'
                    | '\u{2060}'..='\u{206f}'
                    | '\u{feff}'
                    | '\u{fff9}'..='\u{fffb}'
            )
    }

    /// Whether the value is quoted.
    fn quoted(&self) -> bool {
        self.0.is_empty()
            || self
                .0
                .chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '=')
    }
}

impl std::fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        let quoted = self.quoted();
        if quoted {
            f.write_char('"')?;
        }
        let mut rest = self.0;
        while let Some(at) = rest.find(|c: char| Self::escapes(c) || (quoted && c == '"')) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().expect("found at a char boundary");
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)?;
        if quoted {
            f.write_char('"')?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The metric names this crate emits (Prometheus conventions: `_total` counters, `_seconds`
/// histograms in base units, gauges named after what they measure).
pub mod names {
    /// Counter `{callback_type, callback_code, outcome=stored|duplicate}`: callbacks accepted by
    /// `POST /v1/callback`. Types and codes this crate does not know are counted as `other`, so
    /// a sender cannot grow the label set without bound.
    pub const RECEIVED: &str = "okra_callbacks_received_total";
    /// Counter `{reason}`: `POST /v1/callback` requests refused; `reason` is the error body's code
    /// (`invalid_json`, `unauthorized`, `too_many_requests`, `store_unavailable`, …).
    pub const REJECTED: &str = "okra_callbacks_rejected_total";
    /// Counter: requests answered 408 because they took longer than `--request-timeout`.
    pub const REQUESTS_TIMED_OUT: &str = "okra_requests_timed_out_total";
    /// Counter: deliveries answered `"duplicate": true`.
    pub const DUPLICATES: &str = "okra_duplicates_total";
    /// Histogram: from the request reaching the handler to the 2xx (the store commit included).
    pub const ACK_DURATION: &str = "okra_ack_duration_seconds";
    /// Histogram `{operation=insert}`: how long the durable store write took.
    pub const STORE_WRITE_DURATION: &str = "okra_store_write_duration_seconds";
    /// Counter `{handler, outcome=ok|error|panic|timeout}`: handler calls. The dispatcher counts
    /// the handler it was given; [`crate::AllOf`] also counts each of its members by name.
    pub const HANDLER_ATTEMPTS: &str = "okra_handler_attempts_total";
    /// Histogram `{handler}`: how long handler calls took.
    pub const HANDLER_DURATION: &str = "okra_handler_duration_seconds";
    /// Counter `{outcome=delivered|retry|dead}`: what the dispatcher decided after each attempt.
    pub const DELIVERY_OUTCOMES: &str = "okra_delivery_outcomes_total";
    /// Counter: attempts that failed and were scheduled again.
    pub const RETRIES: &str = "okra_retries_total";
    /// Counter: callbacks declared dead after `--max-attempts` failures.
    pub const DEAD_LETTERS: &str = "okra_dead_letters_total";
    /// Gauge: callbacks waiting for a (further) handler attempt, read from the store when
    /// `/metrics` is scraped.
    pub const PENDING: &str = "okra_pending_callbacks";
    /// Gauge: dead callbacks kept for inspection and replay.
    pub const DEAD: &str = "okra_dead_callbacks";
    /// Gauge: age of the oldest pending callback (0 when none is pending).
    pub const OLDEST_PENDING_AGE: &str = "okra_oldest_pending_age_seconds";
    /// Gauge: callbacks waiting for a (further) handler attempt, from the store's counts at
    /// each scrape — the name alert rules use (`deploy/prometheus-alerts.yml`); the same value
    /// as [`PENDING`].
    pub const CALLBACKS_PENDING: &str = "okra_callbacks_pending";
    /// Gauge: dead callbacks, from the store's counts at each scrape (alert on `> 0`); the same
    /// value as [`DEAD`].
    pub const CALLBACKS_DEAD: &str = "okra_callbacks_dead";
    /// Gauge: seconds the oldest pending callback has waited (0 when none is pending); the
    /// same value as [`OLDEST_PENDING_AGE`].
    pub const CALLBACKS_OLDEST_PENDING_AGE: &str = "okra_callbacks_oldest_pending_age_seconds";
    /// Gauge: record leases this replica holds (PostgreSQL), as of its last heartbeat.
    pub const LEASES_HELD: &str = "okra_leases_held";
    /// Gauge: 1 while deliveries give way to a burst of callbacks being stored, else 0.
    pub const DELIVERY_DEFERRED: &str = "okra_delivery_deferred";
    /// Counter: leases renewed by the heartbeat (each lease each beat).
    pub const LEASE_RENEWALS: &str = "okra_lease_renewals_total";
    /// Counter: heartbeats that could not renew this replica's leases (database unreachable or
    /// too slow); once none succeeds for a whole `--lease`, workers stop before their next call.
    pub const LEASE_RENEWAL_FAILURES: &str = "okra_lease_renewal_failures_total";
    /// Counter: records claimed from a replica whose lease ran out (it was killed, paused or cut
    /// off); each is a failover.
    pub const LEASE_TAKEOVERS: &str = "okra_lease_takeovers_total";
    /// Counter: records this replica stopped serving because another took its lease over (its
    /// outcome was refused, or a heartbeat found the lease gone).
    pub const LEASES_LOST: &str = "okra_leases_lost_total";
    /// Gauge `{version}`: always 1; tells dashboards which version runs.
    pub const BUILD_INFO: &str = "okra_build_info";
}

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

/// The log filter when `RUST_LOG` is not set: `info` for this crate, `warn` for the rest. At this
/// level no payload body, personal data or secret is ever logged.
pub const DEFAULT_LOG_FILTER: &str = "warn,okra_callbacks=info,tower_http=warn";

/// How logs are written: format, filter and destination. [`Logs::init`] installs them for the
/// whole process (what the binary does, through [`init_tracing`]); [`Logs::subscriber`] builds
/// them for a scope of one's own, e.g. a test that reads what a receiver logged:
///
/// ```
/// use okra_callbacks::telemetry::{LogFormat, Logs};
///
/// let captured = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
/// let sink = captured.clone();
/// let subscriber = Logs::new(LogFormat::Json)
///     .filter("info")
///     .writer(move || WriteTo(sink.clone()))
///     .subscriber();
/// tracing::subscriber::with_default(subscriber, || tracing::info!("hello"));
/// assert!(String::from_utf8_lossy(&captured.lock().unwrap()).contains("hello"));
/// # struct WriteTo(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
/// # impl std::io::Write for WriteTo {
/// #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().write(b) }
/// #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
/// # }
/// ```
pub struct Logs<W = fn() -> std::io::Stderr> {
    /// Text or JSON lines.
    format: LogFormat,
    /// `tracing` filter directives; `None`: `RUST_LOG`, else [`DEFAULT_LOG_FILTER`].
    filter: Option<String>,
    /// Where the lines go.
    writer: W,
    /// Colours: only on a terminal.
    ansi: bool,
}

impl Logs {
    /// Lines in `format` on stderr, filtered by `RUST_LOG` or else [`DEFAULT_LOG_FILTER`].
    pub fn new(format: LogFormat) -> Self {
        Self {
            format,
            filter: None,
            writer: std::io::stderr,
            // Colours only on a terminal: escape codes in a log file or a container's log
            // stream are noise to whatever reads it (and were 40% of each line's bytes).
            ansi: std::io::stderr().is_terminal(),
        }
    }
}

impl<W> Logs<W>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    /// Uses these filter directives (e.g. `"trace"`) instead of `RUST_LOG`.
    pub fn filter(mut self, directives: &str) -> Self {
        self.filter = Some(directives.to_owned());
        self
    }

    /// Writes the lines to `writer` instead of stderr, without colours.
    pub fn writer<W2>(self, writer: W2) -> Logs<W2>
    where
        W2: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        Logs {
            format: self.format,
            filter: self.filter,
            writer,
            ansi: false,
        }
    }

    /// The subscriber these settings describe (with OTLP export when the `otel` feature and
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` are set), for `tracing::subscriber::set_default` or
    /// [`Logs::init`].
    pub fn subscriber(self) -> Box<dyn tracing::Subscriber + Send + Sync> {
        let filter = match &self.filter {
            Some(directives) => EnvFilter::new(directives),
            None => EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER)),
        };
        let registry = tracing_subscriber::registry()
            .with(filter)
            .with(otel::layer());
        match self.format {
            LogFormat::Text => {
                Box::new(registry.with(fmt::layer().with_ansi(self.ansi).with_writer(self.writer)))
            }
            LogFormat::Json => Box::new(
                registry.with(
                    fmt::layer()
                        .json()
                        .flatten_event(true)
                        .with_current_span(true)
                        .with_span_list(false)
                        .with_writer(self.writer),
                ),
            ),
        }
    }

    /// Installs [`Logs::subscriber`] for the whole process. A subscriber already installed
    /// (e.g. by an embedding application) is kept.
    pub fn init(self) {
        if self.subscriber().try_init().is_ok() {
            otel::report();
        }
    }
}

/// Installs the global `tracing` subscriber: `RUST_LOG` if set, else [`DEFAULT_LOG_FILTER`];
/// human-readable or JSON lines on stderr. With the `otel` cargo feature
/// and `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also exported over OTLP/HTTP (the other
/// standard `OTEL_*` variables apply); call [`shutdown_tracing`] before exiting to flush them.
///
/// A subscriber already installed (e.g. by an embedding application) is kept.
pub fn init_tracing(format: LogFormat) {
    Logs::new(format).init();
}

/// Flushes and stops span export (a no-op without the `otel` feature or endpoint).
pub fn shutdown_tracing() {
    otel::shutdown();
}

#[cfg(feature = "otel")]
mod otel {
    use std::sync::OnceLock;

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::{trace::SdkTracerProvider, Resource};
    use tracing_subscriber::{registry::LookupSpan, Layer};

    /// The provider, kept to flush on shutdown; and why export is off, if it is.
    static PROVIDER: OnceLock<Result<SdkTracerProvider, String>> = OnceLock::new();

    pub(super) fn layer<S>() -> Option<impl Layer<S>>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")?;
        let provider = PROVIDER.get_or_init(|| {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()
                .map_err(|e| e.to_string())?;
            Ok(SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    Resource::builder()
                        .with_service_name(env!("CARGO_PKG_NAME"))
                        .build(),
                )
                .build())
        });
        let provider = provider.as_ref().ok()?;
        opentelemetry::global::set_tracer_provider(provider.clone());
        let tracer = provider.tracer(env!("CARGO_PKG_NAME"));
        Some(tracing_opentelemetry::layer().with_tracer(tracer))
    }

    pub(super) fn report() {
        match PROVIDER.get() {
            Some(Ok(_)) => tracing::info!(
                endpoint = ?std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default(),
                "exporting spans over OTLP/HTTP"
            ),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot export spans over OTLP; continuing without")
            }
            None => {}
        }
    }

    pub(super) fn shutdown() {
        if let Some(Ok(provider)) = PROVIDER.get() {
            if let Err(e) = provider.shutdown() {
                eprintln!("okra-callbacks: flushing spans failed: {e}");
            }
        }
    }
}

#[cfg(not(feature = "otel"))]
mod otel {
    use tracing_subscriber::layer::Identity;

    pub(super) fn layer() -> Identity {
        Identity::new()
    }

    pub(super) fn report() {}

    pub(super) fn shutdown() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_values_are_escaped_and_quoted_when_odd() {
        let shown = |s: &str| Untrusted(s).to_string();
        assert_eq!(
            shown("5f8d1e2a9c1b2a0012345678"),
            "5f8d1e2a9c1b2a0012345678"
        );
        assert_eq!(shown("PERIODIC_TRANSACTIONS"), "PERIODIC_TRANSACTIONS");
        assert_eq!(shown(""), r#""""#);
        assert_eq!(shown("r\u{1b}[31m"), r"r\u{1b}[31m");
        assert_eq!(shown("a\u{7f}\u{9b}b"), r"a\u{7f}\u{9b}b");
        assert_eq!(shown("a\\nb"), r"a\\nb", "a backslash is not an escape");
        assert_eq!(shown("a\u{202e}b"), r"a\u{202e}b");
        assert_eq!(
            shown("a\u{2028}b"),
            r#""a\u{2028}b""#,
            "a separator is whitespace"
        );
        assert_eq!(shown("r1 callback_type=AUTH"), r#""r1 callback_type=AUTH""#);
        assert_eq!(
            shown("T\n2026-12-01T00:00:00Z  INFO \"x\""),
            r#""T\n2026-12-01T00:00:00Z  INFO \"x\"""#
        );
        assert_eq!(shown("naïve-ₙ"), "naïve-ₙ", "printable Unicode is kept");
        for s in ["a\rb", "\u{1b}", "x\u{0}y", "\u{85}", "é\tè"] {
            assert!(!shown(s).chars().any(char::is_control), "{s:?}");
        }
    }

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
