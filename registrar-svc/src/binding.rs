//! What the store holds for one address-of-record: its bindings.

use edge_api::Flow;
use serde::{Deserialize, Serialize};

/// One contact registered for an address-of-record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The Contact value as registered, without its `expires` parameter.
    pub contact: String,
    /// The contact URI alone.
    pub uri: String,
    /// Unix milliseconds.
    pub expires_at_ms: u64,
    /// q in thousandths.
    pub q: u16,
    pub call_id: String,
    pub cseq: u32,
    pub instance: Option<String>,
    pub reg_id: Option<u32>,
    pub path: Vec<String>,
    /// The flow the REGISTER came over (RFC 5626): later requests to the
    /// contact go out through the same edge instance and connection.
    pub flow: Flow,
}

impl Binding {
    /// What identifies a binding: RFC 5626 instance and reg-id when given,
    /// otherwise the contact URI (compared case-insensitively in scheme and
    /// host, which is enough for the URIs phones send).
    pub fn identity(&self) -> String {
        identity(self.instance.as_deref(), self.reg_id, &self.uri)
    }

    /// How a request reaches this binding: over its registration flow when
    /// it asked for that (RFC 5626 reg-id) or registered over a
    /// connection, else to its Contact from the edge socket it registered
    /// through. `None` for a Contact whose host is a name.
    pub fn reach(&self) -> Option<Flow> {
        if self.reg_id.is_some() || self.flow.connection.is_some() {
            return Some(self.flow.clone());
        }
        Some(Flow {
            local: self.flow.local,
            edge: self.flow.edge.clone(),
            ..Flow::to_uri(&self.uri)?
        })
    }
}

pub fn identity(instance: Option<&str>, reg_id: Option<u32>, uri: &str) -> String {
    match instance {
        Some(i) => format!("instance:{i}:{}", reg_id.unwrap_or(0)),
        None => format!("uri:{}", normalize_uri(uri)),
    }
}

/// Lower-cases everything but the user part.
fn normalize_uri(uri: &str) -> String {
    match uri.rsplit_once('@') {
        Some((user, host)) => {
            let (scheme, user) = user.split_once(':').unwrap_or(("", user));
            format!("{}:{user}@{}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase())
        }
        None => uri.to_ascii_lowercase(),
    }
}

/// Every binding of one address-of-record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingSet {
    pub bindings: Vec<Binding>,
}

impl BindingSet {
    /// Drops what expired before `now_ms`; returns the dropped ones.
    pub fn prune(&mut self, now_ms: u64) -> Vec<Binding> {
        let (live, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.bindings)
            .into_iter()
            .partition(|b| b.expires_at_ms > now_ms);
        self.bindings = live;
        gone
    }

    /// The latest expiry, for the record's TTL.
    pub fn last_expiry_ms(&self) -> Option<u64> {
        self.bindings.iter().map(|b| b.expires_at_ms).max()
    }
}

/// The store key of an address-of-record: the AOR inside a hash tag, so all
/// of it lives in one Redis Cluster slot.
pub fn record_key(aor: &str) -> String {
    format!("reg:{{{aor}}}")
}

/// One expiry timer per binding: their count is the bindings'.
pub const EXPIRY_QUEUE: &str = "reg-expiry";

/// The store timer that removes one binding when it expires.
pub fn expiry_timer(aor: &str, identity: &str) -> String {
    format!("{EXPIRY_QUEUE}:{aor}|{identity}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities() {
        assert_eq!(
            identity(None, None, "sip:Alice@EXAMPLE.com:5060"),
            "uri:sip:Alice@example.com:5060"
        );
        assert_eq!(
            identity(Some("<urn:uuid:1>"), Some(2), "sip:x@y"),
            "instance:<urn:uuid:1>:2"
        );
        assert_eq!(record_key("sip:alice@example.com"), "reg:{sip:alice@example.com}");
    }
}
