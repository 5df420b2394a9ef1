//! Trace context: the W3C trace id that follows one request through every
//! service it reaches (in gRPC metadata between processes, as a value in
//! process), so their logs carry the same `trace_id`.

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

    /// The trace a `traceparent` value names, if it is well formed.
    pub fn parse(traceparent: &str) -> Option<Trace> {
        let mut parts = traceparent.split('-');
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
    fn traceparent_round_trips_and_bad_ones_are_refused() {
        let t = Trace::new();
        assert_eq!(Trace::parse(&t.traceparent()), Some(t));
        assert_eq!(Trace::parse("00-xyz-1-01"), None);
        assert_eq!(Trace::parse(""), None);
    }
}
