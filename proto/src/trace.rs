//! Trace context between processes: W3C `traceparent` in gRPC metadata.
//! When spans are exported (telemetry::trace), the context sent is the
//! current span's, so the callee's spans are its children; otherwise the
//! request's own trace id travels, for the logs.

pub use edge_api::Trace;
use tonic::metadata::{MetadataMap, MetadataValue};

/// The metadata key, as W3C Trace Context names the header.
pub const TRACEPARENT: &str = "traceparent";

pub fn inject(trace: &Trace, metadata: &mut MetadataMap) {
    let value = telemetry::trace::current_traceparent().unwrap_or_else(|| trace.traceparent());
    if let Ok(v) = MetadataValue::try_from(value) {
        metadata.insert(TRACEPARENT, v);
    }
}

/// The current span's context, for calls that carry no [`Trace`] of their
/// own; nothing when spans are not exported.
pub fn inject_current(metadata: &mut MetadataMap) {
    if let Some(v) = telemetry::trace::current_traceparent().and_then(|t| MetadataValue::try_from(t).ok()) {
        metadata.insert(TRACEPARENT, v);
    }
}

/// The trace a caller sent, if its `traceparent` is well formed.
pub fn extract(metadata: &MetadataMap) -> Option<Trace> {
    Trace::parse(metadata.get(TRACEPARENT)?.to_str().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_metadata() {
        let t = Trace::new();
        let mut m = MetadataMap::new();
        inject(&t, &mut m);
        assert_eq!(extract(&m), Some(t));
        let mut bad = MetadataMap::new();
        bad.insert(TRACEPARENT, MetadataValue::from_static("00-xyz-1-01"));
        assert_eq!(extract(&bad), None);
    }
}
