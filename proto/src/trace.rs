//! Trace context between processes: W3C `traceparent` in gRPC metadata, so
//! the logs of one request carry the same `trace_id` in the edge and in
//! every service it reaches (OpenTelemetry export comes with the
//! observability work; the context format is already the one it uses).

use tonic::metadata::{MetadataMap, MetadataValue};

/// The metadata key, as W3C Trace Context names the header.
pub const TRACEPARENT: &str = "traceparent";

/// A trace id and the id of the span that calls a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    trace_id: String,
    span_id: String,
}

impl Trace {
    /// A new trace (random ids).
    pub fn new() -> Self {
        Self {
            trace_id: format!("{:032x}", fastrand::u128(1..)),
            span_id: format!("{:016x}", fastrand::u64(1..)),
        }
    }

    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// `00-<trace id>-<span id>-01`.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }

    pub fn inject(&self, metadata: &mut MetadataMap) {
        if let Ok(v) = MetadataValue::try_from(self.traceparent()) {
            metadata.insert(TRACEPARENT, v);
        }
    }

    /// The trace a caller sent, if its `traceparent` is well formed.
    pub fn extract(metadata: &MetadataMap) -> Option<Trace> {
        let v = metadata.get(TRACEPARENT)?.to_str().ok()?;
        let mut parts = v.split('-');
        let (version, trace_id, span_id) = (parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        (version == "00" && hex(trace_id, 32) && hex(span_id, 16)).then(|| Trace {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
        })
    }
}

impl Default for Trace {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_metadata() {
        let t = Trace::new();
        let mut m = MetadataMap::new();
        t.inject(&mut m);
        assert_eq!(Trace::extract(&m), Some(t));
        let mut bad = MetadataMap::new();
        bad.insert(TRACEPARENT, MetadataValue::from_static("00-xyz-1-01"));
        assert_eq!(Trace::extract(&bad), None);
    }
}
