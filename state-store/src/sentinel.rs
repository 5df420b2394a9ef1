//! Redis behind Sentinel: `redis+sentinel://[:password@]host:port[,host:port...]/master[/db]`.
//! The sentinels name the
//! master; a connection to it serves every call until it fails in a way
//! that says the master moved (the connection broke, or the node answers
//! READONLY because it is a replica now). Then the next call asks the
//! sentinels again. A command that certainly did not run (refused
//! connection, READONLY) is retried once on the new master; one that may
//! have run is not, and its caller sees the error (a 503 to the phone),
//! like any store failure.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value};

/// How long finding and connecting to the master may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A parsed Sentinel URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
    pub db: i64,
    pub password: Option<String>,
}

/// Whether a `store.redis` setting names Sentinel.
pub fn is_sentinel(setting: &str) -> bool {
    let lower = setting.trim().to_ascii_lowercase();
    lower.starts_with("redis+sentinel://") || lower.starts_with("rediss+sentinel://")
}

impl SentinelUrl {
    pub fn parse(setting: &str) -> Result<SentinelUrl, String> {
        let setting = setting.trim();
        if strip_prefix_ci(setting, "rediss+sentinel://").is_some() {
            return Err(
                "TLS behind Sentinel is not supported yet: use redis+sentinel:// or rediss:// to one node".into(),
            );
        }
        let rest = strip_prefix_ci(setting, "redis+sentinel://")
            .ok_or("expected redis+sentinel://host:port[,host:port...]/master")?;
        let (authority, path) = rest
            .split_once('/')
            .ok_or("no master name: redis+sentinel://host:port/master")?;
        let (password, hosts) = match authority.rsplit_once('@') {
            Some((user_info, hosts)) => {
                // `:password` or `user:password`; sipbus sends the password.
                let password = user_info.split_once(':').map_or(user_info, |(_, p)| p);
                (Some(password.to_owned()).filter(|p| !p.is_empty()), hosts)
            }
            None => (None, authority),
        };
        let mut sentinels = Vec::new();
        for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            let (name, port) = match host.rsplit_once(':') {
                Some((n, p)) if !n.ends_with(']') || host.starts_with('[') => {
                    let port = p
                        .parse::<u16>()
                        .map_err(|_| format!("`{host}`: port is not a number"))?;
                    (n, port)
                }
                _ => (host, 26379),
            };
            let name = name.trim_start_matches('[').trim_end_matches(']');
            if name.is_empty() {
                return Err(format!("`{host}`: no host"));
            }
            sentinels.push((name.to_owned(), port));
        }
        if sentinels.is_empty() {
            return Err("no sentinel address".into());
        }
        let mut parts = path.split('/');
        let master = parts.next().unwrap_or_default();
        if master.is_empty() {
            return Err("no master name: redis+sentinel://host:port/master".into());
        }
        let db = match parts.next() {
            None | Some("") => 0,
            Some(d) => d.parse().map_err(|_| format!("database `{d}` is not a number"))?,
        };
        if parts.next().is_some() {
            return Err("expected /master or /master/db after the sentinels".into());
        }
        Ok(SentinelUrl {
            sentinels,
            master: master.to_owned(),
            db,
            password,
        })
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)).then(|| &s[prefix.len()..])
}

/// The current master's connection, replaced when it fails.
#[derive(Clone)]
pub struct SentinelConn {
    shared: Arc<Shared>,
}

struct Shared {
    client: tokio::sync::Mutex<SentinelClient>,
    /// The connection and its generation (bumped on each replacement, so a
    /// failure seen on an old one does not replace a fresh one).
    current: RwLock<(u64, Option<MultiplexedConnection>)>,
    db: i64,
}

impl SentinelConn {
    pub async fn connect(url: &SentinelUrl) -> RedisResult<SentinelConn> {
        let sentinels: Vec<String> = url
            .sentinels
            .iter()
            .map(|(h, p)| match h.contains(':') {
                true => format!("redis://[{h}]:{p}/"),
                false => format!("redis://{h}:{p}/"),
            })
            .collect();
        let mut node = redis::RedisConnectionInfo::default().set_db(url.db);
        if let Some(p) = &url.password {
            node = node.set_password(p.clone());
        }
        let info = SentinelNodeConnectionInfo::default().set_redis_connection_info(node);
        let client = SentinelClient::build(sentinels, url.master.clone(), Some(info), SentinelServerType::Master)?;
        let conn = SentinelConn {
            shared: Arc::new(Shared {
                client: tokio::sync::Mutex::new(client),
                current: RwLock::new((0, None)),
                db: url.db,
            }),
        };
        conn.reconnect(0).await?;
        Ok(conn)
    }

    fn current(&self) -> (u64, Option<MultiplexedConnection>) {
        self.shared.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Asks the sentinels for the master and connects to it, unless another
    /// call did so since generation `seen`.
    async fn reconnect(&self, seen: u64) -> RedisResult<MultiplexedConnection> {
        let mut client = self.shared.client.lock().await;
        if let (generation, Some(conn)) = self.current()
            && generation != seen
        {
            return Ok(conn);
        }
        let found = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_connection()).await;
        let conn = match found {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(RedisError::from((
                    ErrorKind::Io,
                    "sentinel: no master within the timeout",
                )));
            }
        };
        let mut current = self.shared.current.write().unwrap_or_else(|e| e.into_inner());
        *current = (current.0 + 1, Some(conn.clone()));
        tracing::info!(generation = current.0, "redis sentinel: connected to the master");
        Ok(conn)
    }

    /// The master's connection: the current one, or a new one.
    async fn master(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        match self.current() {
            (generation, Some(conn)) => Ok((generation, conn)),
            (generation, None) => Ok((generation + 1, self.reconnect(generation).await?)),
        }
    }

    async fn run<C: Call>(&self, call: C) -> RedisResult<C::Out> {
        let (generation, mut conn) = self.master().await?;
        match call.send(&mut conn).await {
            Err(e) if moved(&e) => {
                tracing::warn!(error = %e, "redis sentinel: the master moved or is gone; asking the sentinels");
                let mut fresh = self.reconnect(generation).await?;
                if never_ran(&e) {
                    return call.send(&mut fresh).await;
                }
                Err(e)
            }
            other => other,
        }
    }
}

/// One command or a pipeline, sent on a connection.
trait Call: Send + Sync {
    type Out;
    fn send<'c>(&'c self, conn: &'c mut MultiplexedConnection) -> RedisFuture<'c, Self::Out>;
}

struct One<'a>(&'a Cmd);

impl Call for One<'_> {
    type Out = Value;
    fn send<'c>(&'c self, conn: &'c mut MultiplexedConnection) -> RedisFuture<'c, Value> {
        conn.req_packed_command(self.0)
    }
}

struct Many<'a>(&'a Pipeline, usize, usize);

impl Call for Many<'_> {
    type Out = Vec<Value>;
    fn send<'c>(&'c self, conn: &'c mut MultiplexedConnection) -> RedisFuture<'c, Vec<Value>> {
        conn.req_packed_commands(self.0, self.1, self.2)
    }
}

fn read_only(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
}

/// The failure says this connection no longer reaches the master.
fn moved(e: &RedisError) -> bool {
    read_only(e)
        || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

/// The command certainly did not run.
fn never_ran(e: &RedisError) -> bool {
    read_only(e) || e.is_connection_refusal()
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move { self.run(One(cmd)).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move { self.run(Many(cmd, offset, count)).await })
    }

    fn get_db(&self) -> i64 {
        self.shared.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_sentinels_master_db_and_password() {
        let u = SentinelUrl::parse("redis+sentinel://:pw@10.0.0.1:26379, s2 ,[::1]:26380/mymaster/2").unwrap();
        assert_eq!(
            u,
            SentinelUrl {
                sentinels: vec![("10.0.0.1".into(), 26379), ("s2".into(), 26379), ("::1".into(), 26380)],
                master: "mymaster".into(),
                db: 2,
                password: Some("pw".into()),
            }
        );
        assert!(SentinelUrl::parse("rediss+sentinel://s1/m").is_err());
        assert!(is_sentinel("Redis+Sentinel://s1/m"));
        assert!(!is_sentinel("redis://s1/"));
        for bad in [
            "redis+sentinel://s1",
            "redis+sentinel://s1/",
            "redis+sentinel:///m",
            "redis+sentinel://s1:x/m",
            "redis+sentinel://s1/m/x",
            "redis+sentinel://s1/m/0/extra",
            "redis://s1/m",
        ] {
            assert!(SentinelUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
