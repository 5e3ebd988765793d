//! OpenTelemetry span export over OTLP/HTTP, with the `otel` cargo feature and
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set; without the feature, the same calls do nothing.

#[cfg(feature = "otel")]
mod enabled {
    use std::sync::OnceLock;

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::{trace::SdkTracerProvider, Resource};
    use tracing_subscriber::{registry::LookupSpan, Layer};

    /// The provider, kept to flush on shutdown; and why export is off, if it is.
    static PROVIDER: OnceLock<Result<SdkTracerProvider, String>> = OnceLock::new();

    pub(in crate::telemetry) fn layer<S>() -> Option<impl Layer<S>>
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

    pub(in crate::telemetry) fn report() {
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

    pub(in crate::telemetry) fn shutdown() {
        if let Some(Ok(provider)) = PROVIDER.get() {
            if let Err(e) = provider.shutdown() {
                eprintln!("okra-callbacks: flushing spans failed: {e}");
            }
        }
    }
}

#[cfg(not(feature = "otel"))]
mod disabled {
    use tracing_subscriber::layer::Identity;

    pub(in crate::telemetry) fn layer() -> Identity {
        Identity::new()
    }

    pub(in crate::telemetry) fn report() {}

    pub(in crate::telemetry) fn shutdown() {}
}

#[cfg(not(feature = "otel"))]
pub(super) use disabled::{layer, report, shutdown};
#[cfg(feature = "otel")]
pub(super) use enabled::{layer, report, shutdown};
