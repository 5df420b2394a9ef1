//! OpenTelemetry traces, exported over OTLP/gRPC when configured: the
//! `tracing` spans of sipbus's crates become OpenTelemetry spans (through
//! tracing-opentelemetry), and the W3C `traceparent` that already travels
//! in gRPC metadata carries the current span, so one SIP transaction is one
//! trace across the edge, the services and extension modules.
//!
//! Spans for export are at DEBUG level: with exporting off and logs at
//! INFO they are disabled at their call sites and cost nothing.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracerProvider};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, Targets, filter_fn};
use tracing_subscriber::registry::LookupSpan;

/// The crates whose spans are exported (not tonic's, hyper's or h2's).
const CRATES: [&str; 12] = [
    "sipbus",
    "sip_edge",
    "bus",
    "state_store",
    "extension",
    "registrar_svc",
    "session_svc",
    "sdp_svc",
    "pubsub_svc",
    "publish_svc",
    "telemetry",
    "edge_api",
];

/// How often batches of finished spans leave.
const EXPORT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("tracing.otlp_endpoint `{endpoint}`: {reason}")]
    Exporter { endpoint: String, reason: String },
}

/// Exporting in progress; [`Exporting::shutdown`] sends what is left.
pub struct Exporting {
    provider: SdkTracerProvider,
}

impl Exporting {
    /// Flushes and stops. Call from outside the runtime's worker threads,
    /// while the runtime still runs.
    pub fn shutdown(self) {
        let _ = self.provider.shutdown();
    }
}

/// A layer exporting sipbus's spans to `endpoint` (`http://host:4317`),
/// keeping `sample_ratio` of new traces (a caller's decision, carried in
/// `traceparent`, wins). Must be called within a tokio runtime.
pub fn layer<S>(
    endpoint: &str,
    sample_ratio: f64,
    service: &str,
) -> Result<(impl Layer<S> + Send + Sync + use<S>, Exporting), TraceError>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| TraceError::Exporter {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        })?;
    // The SDK's default processor exports from its own thread, where
    // tonic has no runtime; this one runs on tokio.
    let processor = BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio)
        .with_batch_config(BatchConfigBuilder::default().with_scheduled_delay(EXPORT_EVERY).build())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(sample_ratio))))
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build();
    let tracer = provider.tracer("sipbus");
    let mut targets = Targets::new();
    for c in CRATES {
        targets = targets.with_target(c, tracing::Level::DEBUG);
    }
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Events stay logs; spans are what a trace is made of.
        .with_filter(targets.and(filter_fn(|meta| meta.is_span())));
    Ok((layer, Exporting { provider }))
}

/// The W3C `traceparent` of the current span, when spans are exported
/// (`None` otherwise: callers fall back to their own trace id).
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
}

/// Makes `span` the child of the remote span `traceparent` names (the
/// caller's, from gRPC metadata). Without exporting, nothing happens.
pub fn adopt(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_exporting_there_is_no_span_context() {
        let span = tracing::info_span!("x");
        let _in = span.enter();
        assert_eq!(current_traceparent(), None);
        adopt(&span, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        adopt(&span, "garbage");
    }
}
