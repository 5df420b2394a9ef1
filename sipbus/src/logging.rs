//! Structured logs with `tracing`, and the same spans exported as
//! OpenTelemetry traces when `[tracing] otlp_endpoint` is set.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use sipbus::config::{LogConfig, LogFormat, TracingConfig};
use telemetry::trace::{Exporting, TraceError};

/// Installs the global subscriber. Within a tokio runtime: the exporter
/// runs on it.
pub fn init(config: &LogConfig, tracing: &TracingConfig, target: &str) -> Result<Option<Exporting>, TraceError> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, not in files and collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Logs go to stderr; stdout carries only what a command prints (--print-config).
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true)
        .with_ansi(ansi);
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match config.format {
        LogFormat::Text => logs.with_filter(filter).boxed(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_filter(filter)
            .boxed(),
    };
    if tracing.otlp_endpoint.is_empty() {
        tracing_subscriber::registry().with(logs).init();
        return Ok(None);
    }
    let (spans, exporting) = telemetry::trace::layer(
        &tracing.otlp_endpoint,
        tracing.sample_ratio,
        &tracing.service_name(target),
    )?;
    tracing_subscriber::registry().with(logs).with(spans).init();
    Ok(Some(exporting))
}
