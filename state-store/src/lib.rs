//! The state every sipbus service keeps: versioned records (compare-and-set,
//! so concurrent updates of one binding, dialog or subscription are
//! serialised by the store, not by luck), TTLs so nothing leaks, durable
//! timers that exactly one replica claims once due (and another claims again
//! if that replica dies before finishing), and an event log.
//!
//! Two implementations with the same semantics behind one type: Redis
//! (single node or Cluster; keys carry hash tags so one record's keys share
//! a slot) and an embedded in-memory store for all-in-one mode. One
//! conformance suite (`tests/conformance.rs`) runs against both.

#![forbid(unsafe_code)]

mod memory;
mod redis_backend;
pub mod sentinel;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

pub use memory::MemoryStore;
pub use redis_backend::{RedisStore, RedisTls};

/// A record and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Bytes,
    /// Starts at 1 and grows by one with every write.
    pub version: u64,
}

/// What a write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is there.
    Any,
    /// Only create: fail if the record exists.
    Absent,
    /// Only if the record is still at this version.
    Version(u64),
}

/// A due timer handed to one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedTimer {
    pub id: String,
    pub payload: Bytes,
    /// Proves this claim when completing it: a claim that outlived its
    /// lease and was claimed again elsewhere cannot complete.
    pub lease_until_ms: u64,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record changed (or exists, or is gone) since it was read: read
    /// again and retry, or give up.
    #[error("record {key} changed concurrently")]
    Conflict { key: String },
    /// The backend did not answer: the write may not have happened.
    #[error("store unavailable during {op}: {source}")]
    Unavailable {
        op: &'static str,
        source: redis::RedisError,
    },
    /// The backend answered something this code never writes.
    #[error("store returned an unexpected reply during {op}")]
    Protocol { op: &'static str },
    /// The store's address cannot be used.
    #[error("store address: {0}")]
    Address(String),
    /// This backend cannot do it.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
}

/// Records whose keys share a prefix, in key order.
#[derive(Debug, Clone, Default)]
pub struct Scanned {
    pub records: Vec<(String, Bytes)>,
    /// More matched than were asked for.
    pub truncated: bool,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One store, whichever backend.
#[derive(Clone)]
pub enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Memory(_) => f.write_str("Store::Memory"),
            Store::Redis(_) => f.write_str("Store::Redis"),
        }
    }
}

/// Milliseconds since the Unix epoch: timers are shared between replicas,
/// so they use wall-clock time.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

macro_rules! dispatch {
    ($self:ident, $op:literal, $s:ident => $e:expr) => {{
        let began = tokio::time::Instant::now();
        // Only within a request's trace: the pollers' calls would each be a
        // trace of their own.
        let span = match tracing::Span::current().is_none() {
            true => tracing::Span::none(),
            false => tracing::debug_span!("store", otel.name = concat!("store.", $op), otel.kind = "client"),
        };
        let result = tracing::Instrument::instrument(
            async {
                match $self {
                    Store::Memory($s) => $e,
                    Store::Redis($s) => $e,
                }
            },
            span,
        )
        .await;
        let outcome = match &result {
            Ok(_) => telemetry::metrics::Outcome::ok,
            Err(_) => telemetry::metrics::Outcome::error,
        };
        telemetry::metrics::store_operation($op, outcome, began.elapsed());
        result
    }};
}

impl Store {
    /// The embedded store.
    pub fn memory() -> Store {
        Store::Memory(MemoryStore::new())
    }

    /// Checks `urls` as [`Store::redis`] reads them, without connecting:
    /// each must be a Redis URL.
    pub fn check_urls(urls: &str) -> std::result::Result<(), String> {
        if sentinel::is_sentinel(urls) {
            return sentinel::SentinelUrl::parse(urls).map(drop);
        }
        let urls = redis_backend::redis_urls(urls);
        if urls.is_empty() {
            return Err("no URL".into());
        }
        for &url in &urls {
            redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| format!("`{url}`: {e}"))?;
            // Certificates are always verified: set [store.tls] instead.
            if url.contains("#insecure") {
                return Err(format!(
                    "`{url}`: #insecure is not supported; name the CA in store.tls.ca_file"
                ));
            }
        }
        let secure = urls
            .iter()
            .filter(|u| u.to_ascii_lowercase().starts_with("rediss://"))
            .count();
        if secure != 0 && secure != urls.len() {
            return Err("mixes redis:// and rediss:// URLs".into());
        }
        Ok(())
    }

    /// Connects to Redis: `redis://host:port/db` for one node, several
    /// comma-separated URLs for a Cluster.
    pub async fn redis(urls: &str) -> Result<Store> {
        RedisStore::connect(urls, &RedisTls::default()).await.map(Store::Redis)
    }

    /// [`Store::redis`], with the CA and client certificate that
    /// `rediss://` URLs use.
    pub async fn redis_with_tls(urls: &str, tls: &RedisTls) -> Result<Store> {
        RedisStore::connect(urls, tls).await.map(Store::Redis)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Versioned>> {
        dispatch!(self, "get", s => s.get(key).await)
    }

    /// Writes `value` if `expect` holds; returns the new version. `ttl`
    /// bounds how long the record lives (none: until deleted).
    pub async fn put(&self, key: &str, value: Bytes, expect: Expect, ttl: Option<Duration>) -> Result<u64> {
        dispatch!(self, "put", s => s.put(key, value, expect, ttl).await)
    }

    /// Deletes if `expect` holds; `false` when there was nothing to delete.
    pub async fn delete(&self, key: &str, expect: Expect) -> Result<bool> {
        dispatch!(self, "delete", s => s.delete(key, expect).await)
    }

    /// Schedules (or moves) a timer. Ids are unique per purpose, e.g.
    /// `reg-expiry:{aor}:{binding}`; the text before the first `:` names the
    /// timer's queue (see [`Store::claim_due`]).
    pub async fn schedule(&self, id: &str, due_ms: u64, payload: Bytes) -> Result<()> {
        dispatch!(self, "schedule", s => s.schedule(id, due_ms, payload).await)
    }

    pub async fn cancel(&self, id: &str) -> Result<()> {
        dispatch!(self, "cancel", s => s.cancel(id).await)
    }

    /// Up to `max` live records whose key starts with `prefix`, for
    /// operators' listings (a SCAN over the keyspace on Redis: not for
    /// request paths). Not on a Redis Cluster.
    pub async fn scan(&self, prefix: &str, max: usize) -> Result<Scanned> {
        dispatch!(self, "scan", s => s.scan(prefix, max).await)
    }

    /// How many timers `queue` holds (due later or claimed now): a count
    /// of what they time, e.g. bindings by their expiry timers.
    pub async fn timers_held(&self, queue: &str) -> Result<u64> {
        dispatch!(self, "timers_held", s => s.timers_held(queue).await)
    }

    /// Claims up to `max` timers of `queue` due at `now_ms`, for `lease`. A
    /// claim not completed within its lease becomes due again: the timer
    /// still fires when its claimer dies. Services sharing a store claim
    /// only their own queue's timers.
    pub async fn claim_due(&self, queue: &str, now_ms: u64, lease: Duration, max: usize) -> Result<Vec<ClaimedTimer>> {
        dispatch!(self, "claim_due", s => s.claim_due(queue, now_ms, lease, max).await)
    }

    /// Ends a claimed timer for good. `false` when the claim was lost (the
    /// lease ran out and someone else claimed it, or it was rescheduled).
    pub async fn complete(&self, timer: &ClaimedTimer) -> Result<bool> {
        dispatch!(self, "complete", s => s.complete(timer).await)
    }

    /// Appends an event to a bounded log (`stream`), for other services.
    pub async fn publish(&self, stream: &str, payload: Bytes) -> Result<()> {
        dispatch!(self, "publish", s => s.publish(stream, payload).await)
    }

    /// Appends several events in order, in one round trip.
    pub async fn publish_many(&self, stream: &str, payloads: &[Bytes]) -> Result<()> {
        dispatch!(self, "publish_many", s => s.publish_many(stream, payloads).await)
    }

    /// Events after `after` (an id from a previous read, or "0"), oldest first.
    pub async fn read_events(&self, stream: &str, after: &str, max: usize) -> Result<Vec<(String, Bytes)>> {
        dispatch!(self, "read_events", s => s.read_events(stream, after, max).await)
    }

    /// Takes up to `max` events of `stream` for `consumer` of `group`, so
    /// that each event goes to one consumer of the group: first events
    /// another consumer took more than `reclaim_after` ago and never
    /// acknowledged (it died), then events no consumer was given yet. A
    /// group created by its first call starts at the end of the log. Every
    /// event taken must be [`Store::ack`]ed once handled.
    pub async fn consume(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        max: usize,
        reclaim_after: Duration,
    ) -> Result<Vec<(String, Bytes)>> {
        dispatch!(self, "consume", s => s.consume(stream, group, consumer, max, reclaim_after).await)
    }

    /// The events were handled: no consumer gets them again.
    pub async fn ack(&self, stream: &str, group: &str, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        dispatch!(self, "ack", s => s.ack(stream, group, ids).await)
    }
}

/// How many events a log keeps.
pub const EVENT_LOG_LEN: usize = 10_000;

/// The queue a timer id belongs to: its text up to the first `:`.
pub(crate) fn queue_of(id: &str) -> &str {
    id.split_once(':').map_or(id, |(q, _)| q)
}
