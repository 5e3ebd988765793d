//! Logging, tracing and metrics set-up, in one place.
//!
//! - [`Logs`] and [`init_tracing`]: the `tracing` subscriber — text or JSON lines on stderr (or
//!   any writer), and, with the
//!   `otel` cargo feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, OTLP/HTTP span export.
//! - [`Metrics`](crate::Metrics) (at the crate root): where a receiver's Prometheus metrics go
//!   and how `GET /metrics` renders them.
//!   [`install_metrics`] installs the process-wide recorder the binary uses.
//!
//! Every value that came from a request (record ids, types, codes, ids, header values, handler
//! errors) is logged through [`Untrusted`], so no sender can write a control character, a
//! terminal escape sequence or a line of its own into the logs; every URL that may hold a
//! password (a database's, a broker's) is shown through [`redact`].
//!
//! Every duration a message or log line shows is written by [`format_duration`] (`1.67s`,
//! `250ms`, `2m`), the way the duration flags take it.
//!
//! Every metric name the crate emits is a constant in [`names`], so dashboards and tests spell
//! them the same way.

mod duration;
mod logs;
pub mod names;
mod otel;
mod redact;
pub(crate) mod registry;
mod untrusted;

pub(crate) use self::registry::record;
pub use self::{
    duration::format_duration,
    logs::{init_tracing, shutdown_tracing, LogFormat, Logs, DEFAULT_LOG_FILTER},
    redact::redact,
    registry::install_metrics,
    untrusted::Untrusted,
};
