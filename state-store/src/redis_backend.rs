//! The Redis backend: one node (through a `ConnectionManager`, which
//! reconnects by itself) or a Cluster. Every multi-key operation is one Lua
//! script over keys that share a hash tag, so it is atomic and legal in a
//! Cluster.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};

use crate::sentinel::SentinelConn;
use crate::{ClaimedTimer, EVENT_LOG_LEN, Expect, Result, Scanned, StoreError, Versioned};

/// Timer shards: each is three keys with one hash tag; shards spread the
/// timer load over Cluster slots.
const TIMER_SHARDS: u64 = 16;

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(SentinelConn),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(c) => c.get_db(),
        }
    }
}

struct Scripts {
    put: Script,
    delete: Script,
    schedule: Script,
    cancel: Script,
    claim: Script,
    complete: Script,
}

/// The Redis store. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    scripts: Arc<Scripts>,
}

fn unavailable(op: &'static str) -> impl FnOnce(redis::RedisError) -> StoreError {
    move |source| StoreError::Unavailable { op, source }
}

/// The URLs of a `redis` setting: comma-separated, blanks ignored.
pub(crate) fn redis_urls(setting: &str) -> Vec<&str> {
    setting.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
}

/// TLS for `rediss://` URLs: the CA that the server's certificate chains
/// to (the system roots when unset), and a client certificate for servers
/// that require one (`tls-auth-clients yes`). PEM bytes.
#[derive(Debug, Clone, Default)]
pub struct RedisTls {
    pub ca: Option<Vec<u8>>,
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl RedisTls {
    fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self
                .client
                .clone()
                .map(|(client_cert, client_key)| redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }),
            root_cert: self.ca.clone(),
        }
    }
}

impl RedisStore {
    /// One URL: a single node. Several, comma-separated: Cluster seed nodes.
    /// `rediss://` URLs connect over TLS with `tls`.
    pub async fn connect(urls: &str, tls: &RedisTls) -> Result<RedisStore> {
        if crate::sentinel::is_sentinel(urls) {
            let url = crate::sentinel::SentinelUrl::parse(urls).map_err(StoreError::Address)?;
            let conn = SentinelConn::connect(&url).await.map_err(unavailable("connect"))?;
            return Ok(RedisStore {
                conn: Conn::Sentinel(conn),
                scripts: Arc::new(scripts()),
            });
        }
        let urls = redis_urls(urls);
        let secure = urls.iter().any(|u| u.to_ascii_lowercase().starts_with("rediss://"));
        let conn = if urls.len() == 1 {
            let client = match secure {
                true => redis::Client::build_with_tls(urls[0], tls.certificates()),
                false => redis::Client::open(urls[0]),
            }
            .map_err(unavailable("connect"))?;
            Conn::Single(client.get_connection_manager().await.map_err(unavailable("connect"))?)
        } else {
            let mut builder = redis::cluster::ClusterClientBuilder::new(urls);
            if secure {
                builder = builder.certs(tls.certificates());
            }
            let client = builder.build().map_err(unavailable("connect"))?;
            Conn::Cluster(client.get_async_connection().await.map_err(unavailable("connect"))?)
        };
        Ok(RedisStore {
            conn,
            scripts: Arc::new(scripts()),
        })
    }

    pub(crate) async fn scan(&self, prefix: &str, max: usize) -> Result<Scanned> {
        if matches!(self.conn, Conn::Cluster(_)) {
            return Err(StoreError::Unsupported("listing records of a Redis Cluster"));
        }
        // SCAN's MATCH is a glob: the prefix's own glob characters escaped.
        let mut pattern = String::with_capacity(prefix.len() + 8);
        for c in prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut conn = self.conn.clone();
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(unavailable("scan"))?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 || keys.len() > max {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        let truncated = keys.len() > max;
        keys.truncate(max);
        let mut records = Vec::with_capacity(keys.len());
        for key in keys {
            // Gone since the scan: skipped.
            if let Some(v) = self.get(&key).await? {
                records.push((key, v.value));
            }
        }
        Ok(Scanned { records, truncated })
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Versioned>> {
        let mut conn = self.conn.clone();
        let (version, value): (Option<u64>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(key)
            .arg("v")
            .arg("d")
            .query_async(&mut conn)
            .await
            .map_err(unavailable("get"))?;
        Ok(match (version, value) {
            (Some(version), Some(value)) => Some(Versioned {
                value: Bytes::from(value),
                version,
            }),
            _ => None,
        })
    }

    pub(crate) async fn put(&self, key: &str, value: Bytes, expect: Expect, ttl: Option<Duration>) -> Result<u64> {
        let mut conn = self.conn.clone();
        let ttl_ms = ttl.map_or(0, |t| t.as_millis().max(1) as u64);
        let reply: i64 = self
            .scripts
            .put
            .key(key)
            .arg(expect_arg(expect))
            .arg(value.as_ref())
            .arg(ttl_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable("put"))?;
        u64::try_from(reply).map_err(|_| StoreError::Conflict { key: key.to_owned() })
    }

    pub(crate) async fn delete(&self, key: &str, expect: Expect) -> Result<bool> {
        let mut conn = self.conn.clone();
        let reply: i64 = self
            .scripts
            .delete
            .key(key)
            .arg(expect_arg(expect))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable("delete"))?;
        match reply {
            -1 => Err(StoreError::Conflict { key: key.to_owned() }),
            n => Ok(n > 0),
        }
    }

    pub(crate) async fn schedule(&self, id: &str, due_ms: u64, payload: Bytes) -> Result<()> {
        let mut conn = self.conn.clone();
        let [due, claimed, payloads] = shard_keys(crate::queue_of(id), shard_of(id));
        let _: i64 = self
            .scripts
            .schedule
            .key(due)
            .key(claimed)
            .key(payloads)
            .arg(id)
            .arg(due_ms)
            .arg(payload.as_ref())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable("schedule"))?;
        Ok(())
    }

    pub(crate) async fn cancel(&self, id: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        let [due, claimed, payloads] = shard_keys(crate::queue_of(id), shard_of(id));
        let _: i64 = self
            .scripts
            .cancel
            .key(due)
            .key(claimed)
            .key(payloads)
            .arg(id)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable("cancel"))?;
        Ok(())
    }

    pub(crate) async fn timers_held(&self, queue: &str) -> Result<u64> {
        let mut total = 0;
        for shard in 0..TIMER_SHARDS {
            let mut conn = self.conn.clone();
            // Every timer of a shard, due or claimed, has its payload there.
            let [_, _, payloads] = shard_keys(queue, shard);
            let n: u64 = redis::cmd("HLEN")
                .arg(payloads)
                .query_async(&mut conn)
                .await
                .map_err(unavailable("timers_held"))?;
            total += n;
        }
        Ok(total)
    }

    pub(crate) async fn claim_due(
        &self,
        queue: &str,
        now_ms: u64,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<ClaimedTimer>> {
        let lease_until_ms = now_ms + lease.as_millis() as u64;
        let mut out = Vec::new();
        for shard in 0..TIMER_SHARDS {
            if out.len() >= max {
                break;
            }
            let mut conn = self.conn.clone();
            let [due, claimed, payloads] = shard_keys(queue, shard);
            let flat: Vec<Vec<u8>> = self
                .scripts
                .claim
                .key(due)
                .key(claimed)
                .key(payloads)
                .arg(now_ms)
                .arg(lease_until_ms)
                .arg(max - out.len())
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable("claim_due"))?;
            let mut it = flat.into_iter();
            while let (Some(id), Some(payload)) = (it.next(), it.next()) {
                let id = String::from_utf8(id).map_err(|_| StoreError::Protocol { op: "claim_due" })?;
                out.push(ClaimedTimer {
                    id,
                    payload: Bytes::from(payload),
                    lease_until_ms,
                });
            }
        }
        Ok(out)
    }

    pub(crate) async fn complete(&self, timer: &ClaimedTimer) -> Result<bool> {
        let mut conn = self.conn.clone();
        let [_, claimed, payloads] = shard_keys(crate::queue_of(&timer.id), shard_of(&timer.id));
        let done: i64 = self
            .scripts
            .complete
            .key(claimed)
            .key(payloads)
            .arg(&timer.id)
            .arg(timer.lease_until_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable("complete"))?;
        Ok(done == 1)
    }

    pub(crate) async fn publish(&self, stream: &str, payload: Bytes) -> Result<()> {
        self.publish_many(stream, &[payload]).await
    }

    pub(crate) async fn publish_many(&self, stream: &str, payloads: &[Bytes]) -> Result<()> {
        // One round trip: the events share a key, so a Cluster takes the
        // pipeline on one node.
        let mut pipe = redis::pipe();
        for payload in payloads {
            pipe.cmd("XADD")
                .arg(stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(EVENT_LOG_LEN)
                .arg("*")
                .arg("p")
                .arg(payload.as_ref())
                .ignore();
        }
        let mut conn = self.conn.clone();
        let _: () = pipe.query_async(&mut conn).await.map_err(unavailable("publish"))?;
        Ok(())
    }

    pub(crate) async fn read_events(&self, stream: &str, after: &str, max: usize) -> Result<Vec<(String, Bytes)>> {
        let mut conn = self.conn.clone();
        let start = if after == "0" || after.is_empty() {
            "-".to_owned()
        } else {
            format!("({after}")
        };
        let list: Vec<StreamEntry> = redis::cmd("XRANGE")
            .arg(stream)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut conn)
            .await
            .map_err(unavailable("read_events"))?;
        Ok(entries(entries_of(list)))
    }
}

impl RedisStore {
    pub(crate) async fn consume(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        max: usize,
        reclaim_after: Duration,
    ) -> Result<Vec<(String, Bytes)>> {
        let mut conn = self.conn.clone();
        // XAUTOCLAIM answers [cursor, entries, deleted ids] (Redis 7) or
        // [cursor, entries] (6.2): read the entries only.
        let claimed: std::result::Result<Vec<Value>, _> = redis::cmd("XAUTOCLAIM")
            .arg(stream)
            .arg(group)
            .arg(consumer)
            .arg(reclaim_after.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut conn)
            .await;
        let mut out = match claimed {
            Ok(reply) => match reply.into_iter().nth(1) {
                Some(v) => entries(
                    redis::from_redis_value::<Vec<Option<StreamEntry>>>(v)
                        .map_err(|_| StoreError::Protocol { op: "consume" })?,
                ),
                None => Vec::new(),
            },
            Err(e) if e.code() == Some("NOGROUP") => {
                let created: std::result::Result<(), _> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(stream)
                    .arg(group)
                    .arg("$")
                    .arg("MKSTREAM")
                    .query_async(&mut conn)
                    .await;
                match created {
                    Ok(()) => {}
                    Err(e) if e.code() == Some("BUSYGROUP") => {}
                    Err(e) => return Err(unavailable("consume")(e)),
                }
                Vec::new()
            }
            Err(e) => return Err(unavailable("consume")(e)),
        };
        if out.len() >= max {
            return Ok(out);
        }
        let fresh: Option<Vec<(String, Vec<StreamEntry>)>> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(max - out.len())
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query_async(&mut conn)
            .await
            .map_err(unavailable("consume"))?;
        for (_, list) in fresh.unwrap_or_default() {
            out.extend(entries(entries_of(list)));
        }
        Ok(out)
    }

    pub(crate) async fn ack(&self, stream: &str, group: &str, ids: &[String]) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("XACK")
            .arg(stream)
            .arg(group)
            .arg(ids)
            .query_async(&mut conn)
            .await
            .map_err(unavailable("ack"))?;
        Ok(())
    }
}

/// Every entry present (XRANGE and XREADGROUP have no nil entries).
fn entries_of(list: Vec<StreamEntry>) -> Vec<Option<StreamEntry>> {
    list.into_iter().map(Some).collect()
}

/// Entries as (id, payload); a claimed entry trimmed from the log is nil.
fn entries(list: Vec<Option<StreamEntry>>) -> Vec<(String, Bytes)> {
    list.into_iter()
        .flatten()
        .map(|(id, fields)| {
            let payload = fields
                .into_iter()
                .find(|(k, _)| k == "p")
                .map(|(_, v)| v)
                .unwrap_or_default();
            (id, Bytes::from(payload))
        })
        .collect()
}

/// One XRANGE entry: id and field/value pairs.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

fn expect_arg(expect: Expect) -> String {
    match expect {
        Expect::Any => "*".to_owned(),
        Expect::Absent => "-".to_owned(),
        Expect::Version(v) => v.to_string(),
    }
}

fn shard_of(id: &str) -> u64 {
    // Stable across processes: every replica must pick the same shard.
    let mut h = FnvHasher(0xcbf2_9ce4_8422_2325);
    id.hash(&mut h);
    h.finish() % TIMER_SHARDS
}

fn shard_keys(queue: &str, shard: u64) -> [String; 3] {
    // One hash tag per queue and shard: the three keys a script touches
    // share a Cluster slot.
    [
        format!("sipbus:timers:{{{queue}:t{shard}}}:due"),
        format!("sipbus:timers:{{{queue}:t{shard}}}:claimed"),
        format!("sipbus:timers:{{{queue}:t{shard}}}:payload"),
    ]
}

/// FNV-1a: a fixed, seedless hash so every process agrees on shards.
struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn scripts() -> Scripts {
    Scripts {
        // ARGV: expect ('*' any, '-' absent, or a version), value, ttl ms (0: none).
        // New records start at the server's clock in microseconds, so a
        // record deleted and created again never reuses an old version.
        put: Script::new(
            r"
local cur = redis.call('HGET', KEYS[1], 'v')
local e = ARGV[1]
if e == '-' then
  if cur then return -1 end
elseif e ~= '*' then
  if (not cur) or cur ~= e then return -1 end
end
local new
if cur then
  new = tonumber(cur) + 1
else
  local t = redis.call('TIME')
  new = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local nv = string.format('%d', new)
redis.call('HSET', KEYS[1], 'v', nv, 'd', ARGV[2])
local ttl = tonumber(ARGV[3])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) else redis.call('PERSIST', KEYS[1]) end
return new
",
        ),
        delete: Script::new(
            r"
local cur = redis.call('HGET', KEYS[1], 'v')
local e = ARGV[1]
if e == '-' then
  if cur then return -1 end
  return 0
elseif e ~= '*' then
  if (not cur) or cur ~= e then return -1 end
end
return redis.call('DEL', KEYS[1])
",
        ),
        schedule: Script::new(
            r"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
return 1
",
        ),
        cancel: Script::new(
            r"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
",
        ),
        // Lapsed claims become due again, then up to ARGV[3] due timers move
        // to the claimed set until ARGV[2].
        claim: Script::new(
            r"
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, id in ipairs(lapsed) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], ARGV[1], id)
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], ARGV[2], id)
  table.insert(out, id)
  table.insert(out, redis.call('HGET', KEYS[3], id) or '')
end
return out
",
        ),
        complete: Script::new(
            r"
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not s) or tonumber(s) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
",
        ),
    }
}
