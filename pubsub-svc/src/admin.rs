//! What `sipbus ctl` shows about subscriptions: their records in the
//! store.

use serde::Serialize;
use state_store::{Store, StoreError, now_ms};

use crate::subscription::{Status, Subscription};

/// One subscription, as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub id: String,
    pub package: String,
    pub resource: String,
    pub watcher: String,
    pub state: &'static str,
    pub expires_in_s: u64,
    pub notifies_sent: u32,
}

/// Subscriptions, up to `max` records (`true` when there were more); with
/// a `filter`, those whose resource or watcher contains it.
pub async fn subscriptions(store: &Store, filter: &str, max: usize) -> Result<(Vec<Listed>, bool), StoreError> {
    let scanned = store.scan("sub:{", max).await?;
    let now = now_ms();
    let listed = scanned
        .records
        .iter()
        // A record this version cannot read is skipped, not fatal to a listing.
        .filter_map(|(_, v)| serde_json::from_slice::<Subscription>(v).ok())
        .filter(|s| s.expires_at_ms > now)
        .filter(|s| filter.is_empty() || s.resource.contains(filter) || s.watcher.contains(filter))
        .map(|s| Listed {
            state: match (s.ending.is_some(), s.status) {
                (true, _) => "terminating",
                (false, Status::Active) => "active",
                (false, Status::Pending) => "pending",
            },
            expires_in_s: s.expires_at_ms.saturating_sub(now) / 1000,
            notifies_sent: s.version,
            id: s.id,
            package: s.package,
            resource: s.resource,
            watcher: s.watcher,
        })
        .collect();
    Ok((listed, scanned.truncated))
}
