//! The `tracing` subscriber: text or JSON lines, the filter, the destination, and span export.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, fmt::MakeWriter, prelude::*, EnvFilter};

use super::otel;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
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
