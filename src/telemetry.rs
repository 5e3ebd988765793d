//! Logging and metrics set-up, in one place.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::config::LogFormat;

/// The log filter when `RUST_LOG` is not set: `info` for this crate, `warn` for the rest. At this
/// level no payload body, personal data or secret is ever logged.
pub const DEFAULT_LOG_FILTER: &str = "warn,okra_callbacks=info,tower_http=warn";

/// Installs the global `tracing` subscriber: `RUST_LOG` if set, else [`DEFAULT_LOG_FILTER`];
/// human-readable or JSON lines on stderr.
pub fn init_tracing(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // A subscriber already installed (e.g. by an embedding application) is kept.
    let _ = result;
}

/// Installs the global Prometheus recorder and returns the handle `/metrics` renders.
pub fn install_metrics() -> Result<PrometheusHandle, String> {
    let latency = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())
}
