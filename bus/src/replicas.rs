//! The replicas of one service and the one rule for calling them: round
//! robin, and a call moves on to the next replica only when it certainly
//! never reached the one it tried. A request that may have been applied is
//! never sent twice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Says whether a failed call certainly never reached the replica.
pub trait NeverArrived {
    fn never_arrived(&self) -> bool;
}

/// One replica: its address (`in-process` for the local one) and the
/// client that reaches it.
#[derive(Clone)]
pub struct Replica<T> {
    pub address: String,
    pub client: T,
}

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    #[error("no replica configured")]
    Empty,
    #[error("no replica reachable ({tried} tried): {last}")]
    Unreachable { tried: usize, last: E },
    #[error("replica {replica} failed: {error}")]
    Failed { replica: String, error: E },
    #[error("replica {replica} did not answer within {deadline:?}")]
    Timeout { replica: String, deadline: Duration },
}

/// Replicas of one service, tried round-robin.
pub struct Replicas<T> {
    /// Swapped whole when discovery finds a new set of replicas.
    list: RwLock<Arc<Vec<Replica<T>>>>,
    next: AtomicUsize,
    deadline: Duration,
    /// The contract, for metrics.
    service: &'static str,
}

impl<T: Clone> Replicas<T> {
    pub fn new(list: Vec<Replica<T>>, deadline: Duration) -> Self {
        Self {
            list: RwLock::new(Arc::new(list)),
            next: AtomicUsize::new(0),
            deadline,
            service: "unnamed",
        }
    }

    /// The one replica of an all-in-one process: the implementation itself.
    pub fn local(client: T, deadline: Duration) -> Self {
        Self::new(
            vec![Replica {
                address: "in-process".to_owned(),
                client,
            }],
            deadline,
        )
    }

    /// Names the contract these replicas serve, for metrics.
    pub fn named(mut self, service: &'static str) -> Self {
        self.service = service;
        self
    }

    fn snapshot(&self) -> Arc<Vec<Replica<T>>> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the replica set (discovery).
    pub fn replace(&self, list: Vec<Replica<T>>) {
        *self.list.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(list);
    }

    pub fn addresses(&self) -> Vec<String> {
        self.snapshot().iter().map(|r| r.address.clone()).collect()
    }

    /// Calls one replica within the deadline; see the module comment for
    /// when the next one is tried.
    pub async fn call<R, E, F>(&self, mut call: impl FnMut(T) -> F) -> Result<R, CallError<E>>
    where
        E: NeverArrived + std::fmt::Display,
        F: Future<Output = Result<R, E>>,
    {
        let began = tokio::time::Instant::now();
        let span = tracing::debug_span!("bus.call", otel.kind = "client", rpc.service = self.service);
        let result = tracing::Instrument::instrument(self.call_one(&mut call), span).await;
        let outcome = match &result {
            Ok(_) => telemetry::metrics::Outcome::ok,
            Err(CallError::Timeout { .. }) => telemetry::metrics::Outcome::timeout,
            Err(_) => telemetry::metrics::Outcome::error,
        };
        telemetry::metrics::bus_call(self.service, outcome, began.elapsed());
        result
    }

    async fn call_one<R, E, F>(&self, call: &mut impl FnMut(T) -> F) -> Result<R, CallError<E>>
    where
        E: NeverArrived + std::fmt::Display,
        F: Future<Output = Result<R, E>>,
    {
        let replicas = self.snapshot();
        if replicas.is_empty() {
            return Err(CallError::Empty);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for i in 0..replicas.len() {
            let replica = &replicas[(start + i) % replicas.len()];
            match tokio::time::timeout(self.deadline, call(replica.client.clone())).await {
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(e)) if e.never_arrived() => {
                    tracing::warn!(replica = %replica.address, error = %e, "replica unreachable; trying the next");
                    last = Some(e);
                }
                Ok(Err(error)) => {
                    return Err(CallError::Failed {
                        replica: replica.address.clone(),
                        error,
                    });
                }
                Err(_) => {
                    return Err(CallError::Timeout {
                        replica: replica.address.clone(),
                        deadline: self.deadline,
                    });
                }
            }
        }
        match last {
            Some(last) => Err(CallError::Unreachable {
                tried: replicas.len(),
                last,
            }),
            None => Err(CallError::Empty),
        }
    }

    /// Clients for `addresses`, keeping the existing ones (and their
    /// connections) for addresses already here.
    pub fn rebuild<E>(
        &self,
        addresses: &[String],
        connect: &impl Fn(&str) -> Result<T, E>,
    ) -> Result<Vec<Replica<T>>, E> {
        let current = self.snapshot();
        addresses
            .iter()
            .map(|a| match current.iter().find(|r| r.address == *a) {
                Some(r) => Ok(r.clone()),
                None => Ok(Replica {
                    address: a.clone(),
                    client: connect(a)?,
                }),
            })
            .collect()
    }
}

/// Why a replica list entry is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{address}`: {reason}")]
pub struct SourceError {
    pub address: String,
    pub reason: String,
}

/// Where replicas come from: fixed addresses (`http://host:port`) and DNS
/// names (`dns://name:port`) that resolve to one address per replica, as a
/// Kubernetes headless Service does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaSource {
    Static(String),
    Dns { name: String, port: u16 },
}

impl ReplicaSource {
    pub fn parse(entry: &str) -> Result<ReplicaSource, SourceError> {
        let bad = |reason: &str| SourceError {
            address: entry.to_owned(),
            reason: reason.to_owned(),
        };
        match entry.strip_prefix("dns://") {
            Some(rest) => {
                let (name, port) = rest.rsplit_once(':').ok_or_else(|| bad("expected dns://name:port"))?;
                let port = port.parse().map_err(|_| bad("port is not a number"))?;
                if name.is_empty() {
                    return Err(bad("expected dns://name:port"));
                }
                Ok(ReplicaSource::Dns {
                    name: name.to_owned(),
                    port,
                })
            }
            None => {
                crate::grpc::check_address(entry).map_err(|reason| bad(&reason))?;
                Ok(ReplicaSource::Static(entry.to_owned()))
            }
        }
    }

    /// Parses a whole list, naming the first bad entry.
    pub fn parse_all(entries: &[String]) -> Result<Vec<ReplicaSource>, SourceError> {
        entries.iter().map(|e| ReplicaSource::parse(e)).collect()
    }
}

/// Resolves every source once: the addresses to call, sorted.
pub async fn resolve(sources: &[ReplicaSource]) -> Vec<String> {
    let mut out = Vec::new();
    for s in sources {
        match s {
            ReplicaSource::Static(a) => out.push(a.clone()),
            ReplicaSource::Dns { name, port } => match tokio::net::lookup_host((name.as_str(), *port)).await {
                Ok(addrs) => out.extend(addrs.map(|a| format!("http://{a}"))),
                Err(e) => tracing::warn!(%name, error = %e, "replica name does not resolve"),
            },
        }
    }
    out.sort();
    out.dedup();
    out
}

impl<T: Clone + Send + Sync + 'static> Replicas<T> {
    /// Replicas from `sources`, resolved once now.
    pub async fn discover<E>(
        service: &'static str,
        sources: &[ReplicaSource],
        deadline: Duration,
        connect: &impl Fn(&str) -> Result<T, E>,
    ) -> Result<Arc<Replicas<T>>, E> {
        let replicas = Arc::new(Replicas::new(Vec::new(), deadline).named(service));
        let addresses = resolve(sources).await;
        replicas.replace(replicas.rebuild(&addresses, connect)?);
        Ok(replicas)
    }

    /// Keeps the set in step with `sources`, re-resolving every `every`.
    pub async fn follow<E: std::fmt::Display>(
        self: Arc<Self>,
        sources: Vec<ReplicaSource>,
        every: Duration,
        connect: impl Fn(&str) -> Result<T, E> + Send + Sync,
    ) {
        loop {
            tokio::time::sleep(every).await;
            let addresses = resolve(&sources).await;
            if addresses != self.addresses() {
                match self.rebuild(&addresses, &connect) {
                    Ok(list) => {
                        tracing::info!(replicas = ?addresses, "replica set changed");
                        self.replace(list);
                    }
                    Err(e) => tracing::warn!(error = %e, "replica set not updated"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[derive(Debug)]
    enum E {
        Refused,
        Broken,
    }

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }

    impl NeverArrived for E {
        fn never_arrived(&self) -> bool {
            matches!(self, E::Refused)
        }
    }

    fn replicas(names: &[&'static str]) -> Replicas<&'static str> {
        Replicas::new(
            names
                .iter()
                .map(|n| Replica {
                    address: (*n).to_owned(),
                    client: *n,
                })
                .collect(),
            Duration::from_millis(200),
        )
    }

    #[tokio::test]
    async fn only_calls_that_never_arrived_move_on() {
        let r = replicas(&["down", "up"]);
        // Whichever it starts with, the refused one is skipped.
        for _ in 0..2 {
            let got = r
                .call(|c| async move { if c == "down" { Err(E::Refused) } else { Ok(c) } })
                .await
                .unwrap();
            assert_eq!(got, "up");
        }
        let broken = replicas(&["a", "b"]);
        let mut tried = Vec::new();
        let e = broken
            .call(|c| {
                tried.push(c);
                async { Err::<(), _>(E::Broken) }
            })
            .await
            .unwrap_err();
        assert!(matches!(e, CallError::Failed { .. }));
        assert_eq!(tried.len(), 1, "a call that may have been applied is not repeated");
        let none = replicas(&["x", "y"]);
        let e = none.call(|_| async { Err::<(), _>(E::Refused) }).await.unwrap_err();
        assert!(matches!(e, CallError::Unreachable { tried: 2, .. }));
        let empty = replicas(&[]);
        assert!(matches!(
            empty.call(|_| async { Ok::<_, E>(()) }).await.unwrap_err(),
            CallError::Empty
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_replica_is_a_timeout_not_a_retry() {
        let r = replicas(&["slow", "fast"]);
        let mut tried = 0;
        let e = r
            .call(|_| {
                tried += 1;
                async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok::<_, E>(())
                }
            })
            .await
            .unwrap_err();
        assert!(matches!(e, CallError::Timeout { .. }));
        assert_eq!(tried, 1);
    }

    #[test]
    fn sources_parse_or_name_the_problem() {
        assert_eq!(
            ReplicaSource::parse("dns://registrar.sipbus:50051").unwrap(),
            ReplicaSource::Dns {
                name: "registrar.sipbus".into(),
                port: 50051
            }
        );
        assert!(ReplicaSource::parse("http://10.0.0.1:50051").is_ok());
        assert!(ReplicaSource::parse("dns://name").is_err());
        assert!(ReplicaSource::parse("10.0.0.1:50051").is_err());
        assert!(ReplicaSource::parse("http://").is_err());
    }
}
