//! What publish-svc keeps per resource and what it tells other services:
//! one record per (event package, resource) holding every publication and
//! their composition, written in one compare-and-set so a composition
//! always matches the publications it came from; and the change events
//! pubsub-svc consumes.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use state_store::{Expect, Store, StoreError};

use crate::publication::Publication;

/// The event log resource changes go to: every new, modified, removed or
/// expired publication, and state set through the API.
pub const RESOURCE_CHANGES: &str = "sipbus:resource:changes";

/// One state change of a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceChange {
    pub package: String,
    pub resource: String,
}

/// The state subscribers get: the publications composed by the package's
/// handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Composed {
    pub content_type: String,
    pub body: String,
}

/// Every publication of one resource and their composition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRecord {
    pub publications: Vec<Publication>,
    pub composed: Option<Composed>,
    pub next_seq: u64,
}

/// The record's key: package and resource under one hash tag.
pub fn key(package: &str, resource: &str) -> String {
    format!("pub:{{{package}:{resource}}}")
}

/// How long a record outlives its last publication: a resource whose
/// publications all ran out is dropped by the store.
const LINGER: Duration = Duration::from_secs(60);

impl ResourceRecord {
    /// Publications still live at `now_ms`.
    pub fn prune(&mut self, now_ms: u64) -> Vec<Publication> {
        let (live, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.publications)
            .into_iter()
            .partition(|p| p.is_live(now_ms));
        self.publications = live;
        gone
    }

    pub fn find(&self, etag: &str) -> Option<&Publication> {
        self.publications.iter().find(|p| p.etag == etag)
    }

    /// The record's TTL: until the last publication runs out (none for
    /// state set through the API).
    fn ttl(&self, now_ms: u64) -> Option<Duration> {
        let mut last = 0u64;
        for p in &self.publications {
            match p.expires_at_ms {
                None => return None,
                Some(e) => last = last.max(e),
            }
        }
        Some(Duration::from_millis(last.saturating_sub(now_ms)) + LINGER)
    }
}

/// Reads a resource's record and its version (a missing or unreadable
/// record reads as empty, version `None`).
pub async fn load(store: &Store, package: &str, resource: &str) -> Result<(ResourceRecord, Option<u64>), StoreError> {
    match store.get(&key(package, resource)).await? {
        Some(v) => Ok((serde_json::from_slice(&v.value).unwrap_or_default(), Some(v.version))),
        None => Ok((ResourceRecord::default(), None)),
    }
}

/// Writes the record if it is still at `version`; an empty record is
/// deleted.
pub async fn save(
    store: &Store,
    package: &str,
    resource: &str,
    record: &ResourceRecord,
    version: Option<u64>,
    now_ms: u64,
) -> Result<(), StoreError> {
    let k = key(package, resource);
    let expect = version.map_or(Expect::Absent, Expect::Version);
    if record.publications.is_empty() {
        if version.is_some() {
            store.delete(&k, expect).await?;
        }
        return Ok(());
    }
    let json = serde_json::to_vec(record).map_err(|_| StoreError::Protocol {
        op: "encode publication",
    })?;
    store.put(&k, Bytes::from(json), expect, record.ttl(now_ms)).await?;
    Ok(())
}

/// The composed state of a resource, what subscribers see; `None` when
/// nothing is published (or all of it ran out).
pub async fn composed(store: &Store, package: &str, resource: &str) -> Result<Option<Composed>, StoreError> {
    let (mut record, _) = load(store, package, resource).await?;
    // Publications that ran out but whose timer has not fired yet still
    // count until it recomposes; only when none is left is there nothing.
    record.prune(state_store::now_ms());
    if record.publications.is_empty() {
        return Ok(None);
    }
    Ok(record.composed)
}

/// Tells pubsub-svc the resource changed.
pub async fn announce(store: &Store, package: &str, resource: &str) {
    let change = ResourceChange {
        package: package.to_owned(),
        resource: resource.to_owned(),
    };
    let Ok(json) = serde_json::to_vec(&change) else { return };
    if let Err(e) = store.publish(RESOURCE_CHANGES, Bytes::from(json)).await {
        tracing::warn!(error = %e, package, resource, "resource change not announced");
    }
}
