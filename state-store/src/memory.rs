//! The embedded store: the same semantics as Redis, in one process.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use crate::{ClaimedTimer, EVENT_LOG_LEN, Expect, Result, Scanned, StoreError, Versioned, now_ms};

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

struct Record {
    value: Bytes,
    version: u64,
    expires_ms: Option<u64>,
}

#[derive(Default)]
struct Timers {
    /// id -> (due, payload); `due` ordered in `queue`.
    entries: Map<String, (u64, Bytes)>,
    queue: BTreeSet<(u64, String)>,
    /// id -> lease end, for claimed timers.
    claimed: Map<String, u64>,
}

#[derive(Default)]
struct Inner {
    records: Map<String, Record>,
    /// (expiry, key) of every record with a TTL: what expired is dropped
    /// as the store is written, not only when its key is read again (a
    /// call's records are never read after it ended).
    expiry: BTreeSet<(u64, String)>,
    /// By queue.
    timers: Map<String, Timers>,
    events: Map<String, (u64, VecDeque<(u64, Bytes)>)>,
    /// (stream, group) -> what the group was given.
    groups: Map<(String, String), Group>,
    /// One counter for every record: a record deleted and created again
    /// never reuses a version a stale writer might still hold.
    last_version: u64,
}

/// A consumer group of one stream.
#[derive(Default)]
struct Group {
    /// The last event handed to any consumer.
    last: u64,
    /// Given and not acknowledged: id -> (consumer, when given).
    pending: std::collections::BTreeMap<u64, (String, u64)>,
}

/// The in-memory store. Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records currently held (expired ones are dropped lazily).
    pub fn len(&self) -> usize {
        let now = now_ms();
        self.lock()
            .records
            .values()
            .filter(|r| r.expires_ms.is_none_or(|e| e > now))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Versioned>> {
        let mut inner = self.lock();
        Ok(live(&mut inner, key).map(|r| Versioned {
            value: r.value.clone(),
            version: r.version,
        }))
    }

    pub(crate) async fn scan(&self, prefix: &str, max: usize) -> Result<Scanned> {
        let mut inner = self.lock();
        sweep(&mut inner, now_ms());
        let mut records: Vec<(String, Bytes)> = inner
            .records
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, r)| (k.clone(), r.value.clone()))
            .collect();
        records.sort_by(|a, b| a.0.cmp(&b.0));
        let truncated = records.len() > max;
        records.truncate(max);
        Ok(Scanned { records, truncated })
    }

    pub(crate) async fn put(&self, key: &str, value: Bytes, expect: Expect, ttl: Option<Duration>) -> Result<u64> {
        let mut inner = self.lock();
        let now = now_ms();
        sweep(&mut inner, now);
        let current = live(&mut inner, key).map(|r| r.version);
        check(key, current, expect)?;
        inner.last_version += 1;
        let version = inner.last_version;
        let expires_ms = ttl.map(|t| now + t.as_millis() as u64);
        if let Some(e) = expires_ms {
            inner.expiry.insert((e, key.to_owned()));
        }
        let old = inner.records.insert(
            key.to_owned(),
            Record {
                value,
                version,
                expires_ms,
            },
        );
        if let Some(old_e) = old.and_then(|r| r.expires_ms).filter(|e| Some(*e) != expires_ms) {
            inner.expiry.remove(&(old_e, key.to_owned()));
        }
        Ok(version)
    }

    pub(crate) async fn delete(&self, key: &str, expect: Expect) -> Result<bool> {
        let mut inner = self.lock();
        let current = live(&mut inner, key).map(|r| r.version);
        if expect != Expect::Any {
            check(key, current, expect)?;
        }
        Ok(remove(&mut inner, key))
    }

    pub(crate) async fn schedule(&self, id: &str, due_ms: u64, payload: Bytes) -> Result<()> {
        let mut inner = self.lock();
        let t = inner.timers.entry(crate::queue_of(id).to_owned()).or_default();
        if let Some((old_due, _)) = t.entries.remove(id) {
            t.queue.remove(&(old_due, id.to_owned()));
        }
        t.claimed.remove(id);
        t.entries.insert(id.to_owned(), (due_ms, payload));
        t.queue.insert((due_ms, id.to_owned()));
        Ok(())
    }

    pub(crate) async fn cancel(&self, id: &str) -> Result<()> {
        let mut inner = self.lock();
        let Some(t) = inner.timers.get_mut(crate::queue_of(id)) else {
            return Ok(());
        };
        if let Some((due, _)) = t.entries.remove(id) {
            t.queue.remove(&(due, id.to_owned()));
        }
        t.claimed.remove(id);
        Ok(())
    }

    pub(crate) async fn timers_held(&self, queue: &str) -> Result<u64> {
        let inner = self.lock();
        Ok(inner.timers.get(queue).map_or(0, |t| t.entries.len() as u64))
    }

    pub(crate) async fn claim_due(
        &self,
        queue: &str,
        now: u64,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<ClaimedTimer>> {
        let mut inner = self.lock();
        let Some(t) = inner.timers.get_mut(queue) else {
            return Ok(Vec::new());
        };
        // Claims whose lease ran out are due again.
        let lapsed: Vec<String> = t
            .claimed
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in lapsed {
            t.claimed.remove(&id);
            if let Some((due, _)) = t.entries.get(&id) {
                t.queue.insert((*due, id));
            }
        }
        let lease_until_ms = now + lease.as_millis() as u64;
        let mut out = Vec::new();
        while out.len() < max {
            let Some((due, id)) = t.queue.first().cloned() else {
                break;
            };
            if due > now {
                break;
            }
            t.queue.remove(&(due, id.clone()));
            t.claimed.insert(id.clone(), lease_until_ms);
            let payload = t.entries.get(&id).map(|(_, p)| p.clone()).unwrap_or_default();
            out.push(ClaimedTimer {
                id,
                payload,
                lease_until_ms,
            });
        }
        Ok(out)
    }

    pub(crate) async fn complete(&self, timer: &ClaimedTimer) -> Result<bool> {
        let mut inner = self.lock();
        let Some(t) = inner.timers.get_mut(crate::queue_of(&timer.id)) else {
            return Ok(false);
        };
        if t.claimed.get(&timer.id) != Some(&timer.lease_until_ms) {
            return Ok(false);
        }
        t.claimed.remove(&timer.id);
        t.entries.remove(&timer.id);
        Ok(true)
    }

    pub(crate) async fn publish(&self, stream: &str, payload: Bytes) -> Result<()> {
        let mut inner = self.lock();
        let (next, log) = inner.events.entry(stream.to_owned()).or_default();
        *next += 1;
        log.push_back((*next, payload));
        while log.len() > EVENT_LOG_LEN {
            log.pop_front();
        }
        Ok(())
    }

    pub(crate) async fn publish_many(&self, stream: &str, payloads: &[Bytes]) -> Result<()> {
        for p in payloads {
            self.publish(stream, p.clone()).await?;
        }
        Ok(())
    }

    pub(crate) async fn read_events(&self, stream: &str, after: &str, max: usize) -> Result<Vec<(String, Bytes)>> {
        let after: u64 = after.parse().unwrap_or(0);
        let inner = self.lock();
        Ok(inner
            .events
            .get(stream)
            .map(|(_, log)| {
                log.iter()
                    .filter(|(id, _)| *id > after)
                    .take(max)
                    .map(|(id, p)| (id.to_string(), p.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }
}

impl MemoryStore {
    pub(crate) async fn consume(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        max: usize,
        reclaim_after: Duration,
    ) -> Result<Vec<(String, Bytes)>> {
        let now = now_ms();
        let mut guard = self.lock();
        let inner = &mut *guard;
        let (next, log) = inner.events.entry(stream.to_owned()).or_default();
        let g = inner
            .groups
            .entry((stream.to_owned(), group.to_owned()))
            .or_insert_with(|| Group {
                last: *next,
                pending: Default::default(),
            });
        let payload_of = |id: u64| log.iter().find(|(i, _)| *i == id).map(|(_, p)| p.clone());
        let mut out = Vec::new();
        let idle = reclaim_after.as_millis() as u64;
        let stale: Vec<u64> = g
            .pending
            .iter()
            .filter(|(_, (_, at))| at.saturating_add(idle) <= now)
            .map(|(id, _)| *id)
            .take(max)
            .collect();
        for id in stale {
            match payload_of(id) {
                Some(p) => {
                    g.pending.insert(id, (consumer.to_owned(), now));
                    out.push((id.to_string(), p));
                }
                // Trimmed from the log: nothing left to hand out.
                None => {
                    g.pending.remove(&id);
                }
            }
        }
        let from = g.last;
        for (id, p) in log.iter().filter(|(id, _)| *id > from) {
            if out.len() >= max {
                break;
            }
            g.last = *id;
            g.pending.insert(*id, (consumer.to_owned(), now));
            out.push((id.to_string(), p.clone()));
        }
        Ok(out)
    }

    pub(crate) async fn ack(&self, stream: &str, group: &str, ids: &[String]) -> Result<()> {
        let mut inner = self.lock();
        if let Some(g) = inner.groups.get_mut(&(stream.to_owned(), group.to_owned())) {
            for id in ids {
                if let Ok(id) = id.parse::<u64>() {
                    g.pending.remove(&id);
                }
            }
        }
        Ok(())
    }
}

/// The record if it exists and has not expired (expired ones are removed).
fn live<'a>(inner: &'a mut Inner, key: &str) -> Option<&'a Record> {
    let now = now_ms();
    if inner
        .records
        .get(key)
        .is_some_and(|r| r.expires_ms.is_some_and(|e| e <= now))
    {
        remove(inner, key);
    }
    inner.records.get(key)
}

/// Removes a record and its expiry entry.
fn remove(inner: &mut Inner, key: &str) -> bool {
    match inner.records.remove(key) {
        Some(r) => {
            if let Some(e) = r.expires_ms {
                inner.expiry.remove(&(e, key.to_owned()));
            }
            true
        }
        None => false,
    }
}

/// How many expired records one write drops at most: more than a write
/// adds, so expired records never pile up, and a bounded pause.
const SWEEP_MAX: usize = 64;

/// Drops records whose TTL ran out, oldest first.
fn sweep(inner: &mut Inner, now: u64) {
    for _ in 0..SWEEP_MAX {
        let Some((e, key)) = inner.expiry.first().cloned() else {
            return;
        };
        if e > now {
            return;
        }
        inner.expiry.remove(&(e, key.clone()));
        if inner.records.get(&key).is_some_and(|r| r.expires_ms == Some(e)) {
            inner.records.remove(&key);
        }
    }
}

fn check(key: &str, current: Option<u64>, expect: Expect) -> Result<()> {
    let ok = match expect {
        Expect::Any => true,
        Expect::Absent => current.is_none(),
        Expect::Version(v) => current == Some(v),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::Conflict { key: key.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn expired_records_are_dropped_by_later_writes_without_being_read() {
        let store = MemoryStore::new();
        for i in 0..100 {
            let key = format!("call:{i}");
            store
                .put(
                    &key,
                    Bytes::from_static(b"x"),
                    Expect::Any,
                    // Long enough to outlast this loop on a loaded machine.
                    Some(Duration::from_millis(300)),
                )
                .await
                .unwrap();
            // Written again with a longer life: one expiry entry per record.
            store
                .put(
                    &key,
                    Bytes::from_static(b"y"),
                    Expect::Any,
                    Some(Duration::from_millis(600)),
                )
                .await
                .unwrap();
        }
        assert_eq!(store.lock().expiry.len(), 100);
        tokio::time::sleep(Duration::from_millis(700)).await;
        for _ in 0..2 {
            store
                .put("other", Bytes::from_static(b"z"), Expect::Any, None)
                .await
                .unwrap();
        }
        let inner = store.lock();
        assert_eq!(inner.records.len(), 1, "only the record without a TTL is left");
        assert!(inner.expiry.is_empty());
    }

    #[tokio::test]
    async fn a_deleted_record_leaves_no_expiry_entry() {
        let store = MemoryStore::new();
        let ttl = Some(Duration::from_secs(60));
        store
            .put("k", Bytes::from_static(b"x"), Expect::Any, ttl)
            .await
            .unwrap();
        assert!(store.delete("k", Expect::Any).await.unwrap());
        assert!(store.lock().expiry.is_empty());
        assert_eq!(store.get("k").await.unwrap(), None);
    }
}
