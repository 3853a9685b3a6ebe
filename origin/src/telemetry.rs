//! Where the binary's tracing goes: the log on stderr, and for `serve` with `[telemetry] otlp_endpoint` the same spans exported over OTLP/HTTP.
//!
//! The export is a batch span processor on a thread of its own (the OpenTelemetry SDK's), with a
//! blocking HTTP client, so a slow or dead collector never holds a request: spans queue up to
//! the SDK's bound and the rest are dropped. [`Telemetry`] flushes what is queued when dropped,
//! at the end of `main`.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// What the exporter sees: the origin's own spans (create, warm, HTTP requests) at info, not
/// the libraries' internals.
#[cfg(feature = "server")]
const EXPORT_FILTER: &str =
    "warn,prewarm_client=info,prewarm_store=info,prewarm_node=info,prewarm_server=info";

/// Keeps the exporter alive; dropping it flushes and stops it.
pub(crate) struct Telemetry {
    #[cfg(feature = "server")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "server")]
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                crate::cli_output::error(&format!(
                    "flushing trace spans to the OTLP collector: {e}"
                ));
            }
        }
    }
}

/// An OTLP destination: the traces URL and the service name.
#[cfg(feature = "server")]
pub(crate) struct Otlp {
    pub traces_url: String,
    pub service_name: String,
}

/// Installs the global subscriber: the log filtered by `$PREWARM_LOG` (else `default_filter`)
/// and, with `otlp`, the exporter. Call it before the async runtime starts (the exporter's
/// blocking client must not be built inside it).
pub(crate) fn init(
    default_filter: &str,
    #[cfg(feature = "server")] otlp: Option<Otlp>,
) -> anyhow::Result<Telemetry> {
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            EnvFilter::try_from_env("PREWARM_LOG")
                .unwrap_or_else(|_| EnvFilter::new(default_filter)),
        );
    #[cfg(feature = "server")]
    if let Some(o) = otlp {
        let provider = provider(&o)?;
        let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "prewarm");
        let export = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(EnvFilter::new(EXPORT_FILTER));
        tracing_subscriber::registry().with(log).with(export).init();
        tracing::info!(url = %o.traces_url, "exporting trace spans over OTLP");
        return Ok(Telemetry {
            provider: Some(provider),
        });
    }
    tracing_subscriber::registry().with(log).init();
    Ok(Telemetry {
        #[cfg(feature = "server")]
        provider: None,
    })
}

#[cfg(feature = "server")]
fn provider(o: &Otlp) -> anyhow::Result<opentelemetry_sdk::trace::SdkTracerProvider> {
    use anyhow::Context;
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(&o.traces_url)
        .with_timeout(std::time::Duration::from_secs(10))
        .build()
        .with_context(|| format!("setting up the OTLP exporter to {}", o.traces_url))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(o.service_name.clone())
        .build();
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}
