//! Trace context between processes: W3C `traceparent` in gRPC metadata
//! (OpenTelemetry export comes with the observability work; the context
//! format is already the one it uses).

pub use edge_api::Trace;
use tonic::metadata::{MetadataMap, MetadataValue};

/// The metadata key, as W3C Trace Context names the header.
pub const TRACEPARENT: &str = "traceparent";

pub fn inject(trace: &Trace, metadata: &mut MetadataMap) {
    if let Ok(v) = MetadataValue::try_from(trace.traceparent()) {
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
