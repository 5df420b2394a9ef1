//! A subscription as the store keeps it (everything any replica needs to
//! refresh it, end it or NOTIFY on it), and the index of subscriptions per
//! resource that a change fans out over.

use std::time::Duration;

use bytes::Bytes;
use edge_api::Flow;
use serde::{Deserialize, Serialize};
use sip_dialog::Dialog;
use state_store::{Expect, Store, StoreError};

use crate::handlers::{SubView, Termination};

/// Whether the subscriber sees state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Active,
    /// Authorization pending: NOTIFYs carry no state.
    Pending,
}

/// The NOTIFY side of a subscription: at most one NOTIFY in flight
/// (RFC 6665 4.2.2), and what to send once it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sending {
    Idle,
    /// A NOTIFY is out; its sender owns the subscription's NOTIFYs until
    /// `until_ms` (then another replica may take over: the sender died).
    InFlight {
        until_ms: u64,
        last: bool,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscription {
    /// Also sipbus's tag in the dialog.
    pub id: String,
    pub package: String,
    /// The Event header's `id` parameter, echoed in NOTIFYs.
    pub event_id: Option<String>,
    pub resource: String,
    pub watcher: String,
    pub content_type: String,
    pub dialog: Dialog,
    /// How the subscriber is reached (its connection when it has one).
    pub flow: Flow,
    pub contact: String,
    pub status: Status,
    pub expires_at_ms: u64,
    /// NOTIFYs sent so far (RFC 4235 version of the next one).
    pub version: u32,
    pub sending: Sending,
    /// A change arrived while a NOTIFY was in flight or too soon after
    /// the last: the newest state is still to be sent.
    pub dirty: bool,
    /// The subscription ends with its next NOTIFY, for this reason.
    pub ending: Option<Termination>,
    pub last_sent_ms: u64,
    /// The next NOTIFY goes even if its state is the last one's (a
    /// refresh came while one was in flight).
    #[serde(default)]
    pub full: bool,
    /// Digest of the last NOTIFY's body.
    #[serde(default)]
    pub last_body: u64,
    /// The handler module it began with: it keeps it for its life (a
    /// registered one that lapsed answers by its failure policy).
    #[serde(default)]
    pub module: String,
}

impl Subscription {
    pub fn view(&self) -> SubView<'_> {
        SubView {
            id: &self.id,
            package: &self.package,
            resource: &self.resource,
            watcher: &self.watcher,
            content_type: &self.content_type,
        }
    }
}

pub fn key(id: &str) -> String {
    format!("sub:{{{id}}}")
}

fn index_key(package: &str, resource: &str) -> String {
    format!("subs:{{{package}:{resource}}}")
}

/// How long a record outlives its expiry: the expiry timer removes it,
/// this only bounds a record whose timer was lost with its store.
const GRACE: Duration = Duration::from_secs(120);
/// Attempts of one compare-and-set on a shared index.
const INDEX_ATTEMPTS: usize = 64;

pub async fn load(store: &Store, id: &str) -> Result<Option<(Subscription, u64)>, StoreError> {
    Ok(match store.get(&key(id)).await? {
        Some(v) => serde_json::from_slice(&v.value).ok().map(|s| (s, v.version)),
        None => None,
    })
}

/// Writes `sub` if it is still at `version` (`None`: only if new).
pub async fn save(store: &Store, sub: &Subscription, version: Option<u64>) -> Result<u64, StoreError> {
    let json = serde_json::to_vec(sub).map_err(|_| StoreError::Protocol {
        op: "encode subscription",
    })?;
    let ttl = Duration::from_millis(sub.expires_at_ms.saturating_sub(state_store::now_ms())) + GRACE;
    let expect = version.map_or(Expect::Absent, Expect::Version);
    store.put(&key(&sub.id), Bytes::from(json), expect, Some(ttl)).await
}

/// The subscriptions to a resource.
pub async fn watchers(store: &Store, package: &str, resource: &str) -> Result<Vec<String>, StoreError> {
    Ok(match store.get(&index_key(package, resource)).await? {
        Some(v) => serde_json::from_slice(&v.value).unwrap_or_default(),
        None => Vec::new(),
    })
}

/// Adds (or removes) a subscription in its resource's index; adding one
/// that is there renews the index's time to live.
pub async fn index(
    store: &Store,
    package: &str,
    resource: &str,
    id: &str,
    add: bool,
    ttl: Duration,
) -> Result<(), StoreError> {
    let k = index_key(package, resource);
    for _ in 0..INDEX_ATTEMPTS {
        let current = store.get(&k).await?;
        let (mut ids, expect): (Vec<String>, Expect) = match &current {
            Some(v) => (
                serde_json::from_slice(&v.value).unwrap_or_default(),
                Expect::Version(v.version),
            ),
            None => (Vec::new(), Expect::Absent),
        };
        let present = ids.iter().any(|i| i == id);
        match (add, present) {
            (false, false) => return Ok(()),
            // Written again all the same: a refresh extends the index's
            // life with the subscription's.
            (true, true) => {}
            (true, false) => ids.push(id.to_owned()),
            (false, true) => ids.retain(|i| i != id),
        }
        let written = if ids.is_empty() {
            store.delete(&k, expect).await.map(|_| ())
        } else {
            let json = serde_json::to_vec(&ids).map_err(|_| StoreError::Protocol { op: "encode index" })?;
            // An index lives as long as the longest subscription may.
            store
                .put(&k, Bytes::from(json), expect, Some(ttl + GRACE))
                .await
                .map(|_| ())
        };
        match written {
            Ok(()) => return Ok(()),
            Err(StoreError::Conflict { .. }) => {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..5))).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict { key: k })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_index_adds_lose_none() {
        let redis = state_store::testing::RedisServer::start().unwrap();
        let mut stores = Vec::new();
        for _ in 0..3 {
            stores.push(Store::redis(&redis.url()).await.unwrap());
        }
        let mut set = tokio::task::JoinSet::new();
        for i in 0..200 {
            let store = stores[i % 3].clone();
            set.spawn(async move { index(&store, "p", "r", &format!("id{i}"), true, Duration::from_secs(60)).await });
        }
        let mut failed = 0;
        while let Some(r) = set.join_next().await {
            if r.unwrap().is_err() {
                failed += 1;
            }
        }
        let ids = watchers(&stores[0], "p", "r").await.unwrap();
        assert_eq!((ids.len(), failed), (200, 0));
    }
}
