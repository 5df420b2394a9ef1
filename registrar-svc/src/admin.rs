//! What `sipbus ctl` shows about registrations: the binding records in
//! the store (removal is [`crate::Registrar::unregister`]).

use serde::Serialize;
use state_store::{Store, StoreError, now_ms};

use crate::binding::{BindingSet, record_key};

/// One live binding, as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    pub aor: String,
    pub contact: String,
    pub expires_in_s: u64,
    pub instance: Option<String>,
    pub reg_id: Option<u32>,
    /// How it registered: transport and source address.
    pub transport: &'static str,
    pub source: String,
    /// The edge instance holding its connection, when it has one.
    pub edge: Option<String>,
}

/// Bindings of `user` (any domain), of the AOR `user@domain`, or all when
/// empty; up to `max` AOR records; `true` when there were more.
pub async fn registrations(store: &Store, filter: &str, max: usize) -> Result<(Vec<Registration>, bool), StoreError> {
    // Keys name the AOR with its scheme: `reg:{sip:alice@example.com}`.
    let prefixes = match filter {
        "" => vec!["reg:{".to_owned()],
        f if f.contains('@') => vec![record_key(&aor(f))],
        user => vec![format!("reg:{{sip:{user}@"), format!("reg:{{sips:{user}@")],
    };
    let mut records = Vec::new();
    let mut truncated = false;
    for prefix in prefixes {
        let scanned = store.scan(&prefix, max).await?;
        // An AOR key is a prefix of no other AOR key but its own.
        records.extend(
            scanned
                .records
                .into_iter()
                .filter(|(k, _)| !filter.contains('@') || *k == prefix),
        );
        truncated |= scanned.truncated;
    }
    let now = now_ms();
    let mut out = Vec::new();
    for (key, value) in &records {
        let Some(aor) = key.strip_prefix("reg:{").and_then(|k| k.strip_suffix('}')) else {
            continue;
        };
        // A record this version cannot read is skipped, not fatal to a listing.
        let Ok(mut set) = serde_json::from_slice::<BindingSet>(value) else {
            continue;
        };
        set.prune(now);
        for b in set.bindings {
            out.push(Registration {
                aor: aor.to_owned(),
                expires_in_s: b.expires_at_ms.saturating_sub(now) / 1000,
                instance: b.instance,
                reg_id: b.reg_id,
                transport: b.flow.transport.via_token(),
                source: b.flow.remote.to_string(),
                edge: b.flow.edge.map(|e| e.as_str().to_owned()),
                contact: b.contact,
            });
        }
    }
    Ok((out, truncated))
}

/// An address-of-record as keys hold it: `sip:` added when no scheme is
/// given.
pub fn aor(text: &str) -> String {
    let text = text.trim();
    if text.starts_with("sip:") || text.starts_with("sips:") {
        text.to_owned()
    } else {
        format!("sip:{text}")
    }
}
