//! Each replica's last minute per external module, shared through the
//! store so that a listing shows the whole service, not the replica that
//! happened to answer: one record per point (`ext:stats:{point}`) where
//! every replica rewrites its own entry once per `refresh_ms`; an entry not
//! rewritten for a while is a replica that stopped, left out.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use state_store::{Expect, Store, StoreError};

use super::book::BookError;
use crate::config::Point;
use crate::window::Tally;

/// Module name → its last minute on one replica.
pub type Tallies = BTreeMap<String, Tally>;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Shared {
    replicas: BTreeMap<String, Entry>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Entry {
    at_ms: u64,
    modules: Tallies,
}

/// Replicas reporting at most this many modules are kept: what the record
/// holds stays bounded.
const MAX_REPLICAS: usize = 256;

fn key(point: Point) -> String {
    format!("ext:stats:{{{}}}", point.as_str())
}

async fn read(store: &Store, point: Point) -> Result<(Shared, Option<u64>), BookError> {
    match store.get(&key(point)).await? {
        None => Ok((Shared::default(), None)),
        Some(v) => serde_json::from_slice(&v.value)
            .map(|s| (s, Some(v.version)))
            .map_err(|e| BookError::Corrupt(point, e.to_string())),
    }
}

/// Writes this replica's minute; drops replicas silent for `stale`.
pub async fn publish(
    store: &Store,
    point: Point,
    replica: &str,
    modules: Tallies,
    stale: Duration,
) -> Result<(), BookError> {
    let stale_ms = u64::try_from(stale.as_millis()).unwrap_or(u64::MAX);
    let mut modules = Some(modules);
    for _ in 0..16 {
        let (mut shared, version) = read(store, point).await?;
        let now = state_store::now_ms();
        shared.replicas.retain(|_, e| e.at_ms.saturating_add(stale_ms) > now);
        if shared.replicas.len() >= MAX_REPLICAS && !shared.replicas.contains_key(replica) {
            return Ok(());
        }
        let mine = modules.take().unwrap_or_default();
        shared.replicas.insert(
            replica.to_owned(),
            Entry {
                at_ms: now,
                modules: mine.clone(),
            },
        );
        let bytes = serde_json::to_vec(&shared).map_err(|e| BookError::Corrupt(point, e.to_string()))?;
        let expect = version.map_or(Expect::Absent, Expect::Version);
        match store.put(&key(point), bytes.into(), expect, Some(stale * 2)).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => {
                modules = Some(mine);
                tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=20))).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(BookError::Busy(point))
}

/// The other live replicas' minutes, summed per module.
pub async fn others(store: &Store, point: Point, replica: &str, stale: Duration) -> Result<Tallies, BookError> {
    let (shared, _) = read(store, point).await?;
    let stale_ms = u64::try_from(stale.as_millis()).unwrap_or(u64::MAX);
    let now = state_store::now_ms();
    let mut sum = Tallies::new();
    for (_, e) in shared
        .replicas
        .iter()
        .filter(|(id, e)| id.as_str() != replica && e.at_ms.saturating_add(stale_ms) > now)
    {
        for (name, t) in &e.modules {
            sum.entry(name.clone()).or_default().add(t);
        }
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn tally(calls: u64) -> Tally {
        Tally {
            calls,
            failures: 1,
            latency: vec![0, calls],
        }
    }

    #[tokio::test]
    async fn replicas_add_up_and_a_silent_one_drops_out() {
        let store = Store::memory();
        let p = Point::SessionSupplement;
        let stale = Duration::from_millis(300);
        let one = |n| Tallies::from([("screening".to_owned(), tally(n))]);
        publish(&store, p, "a", one(3), stale).await.unwrap();
        publish(&store, p, "b", one(4), stale).await.unwrap();
        publish(&store, p, "c", one(5), stale).await.unwrap();
        let seen_by_a = others(&store, p, "a", stale).await.unwrap();
        assert_eq!(seen_by_a["screening"].calls, 9);
        assert_eq!(seen_by_a["screening"].failures, 2);
        tokio::time::sleep(Duration::from_millis(350)).await;
        publish(&store, p, "b", one(4), stale).await.unwrap();
        // c stopped reporting: left out, and dropped from the record.
        assert_eq!(others(&store, p, "a", stale).await.unwrap()["screening"].calls, 4);
        let (shared, _) = read(&store, p).await.unwrap();
        assert_eq!(shared.replicas.keys().collect::<Vec<_>>(), ["b"]);
    }
}
