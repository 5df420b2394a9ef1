//! The replicas of one service, and how a call picks one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use proto::edge::v1 as pb;
use proto::edge::v1::request_handler_client::RequestHandlerClient;
use proto::edge::v1::request_handler_server::RequestHandler;
use tonic::transport::{Channel, Endpoint};

use proto::trace::Trace;

/// One replica of a service.
#[derive(Clone)]
pub enum Handler {
    /// In this process: the service's own implementation of the contract.
    Local(Arc<dyn RequestHandler>),
    /// Over gRPC.
    Remote {
        address: String,
        client: RequestHandlerClient<Channel>,
    },
}

impl Handler {
    /// A remote replica at `http://host:port`; connects on first use and
    /// reconnects by itself.
    pub fn remote(address: &str, connect_timeout: Duration) -> Result<Handler, PoolError> {
        let endpoint = Endpoint::from_shared(address.to_owned())
            .map_err(|e| PoolError::BadAddress {
                address: address.to_owned(),
                reason: e.to_string(),
            })?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true);
        Ok(Handler::Remote {
            address: address.to_owned(),
            client: RequestHandlerClient::new(endpoint.connect_lazy()),
        })
    }

    async fn call(
        &self,
        req: pb::IncomingRequest,
        deadline: Duration,
        trace: &Trace,
    ) -> Result<pb::HandleReply, tonic::Status> {
        let mut request = tonic::Request::new(req);
        trace.inject(request.metadata_mut());
        request.set_timeout(deadline);
        match self {
            Handler::Local(svc) => match tokio::time::timeout(deadline, svc.handle(request)).await {
                Ok(r) => r.map(tonic::Response::into_inner),
                Err(_) => Err(tonic::Status::deadline_exceeded("local service did not answer in time")),
            },
            Handler::Remote { client, .. } => client.clone().handle(request).await.map(tonic::Response::into_inner),
        }
    }

    fn name(&self) -> &str {
        match self {
            Handler::Local(_) => "in-process",
            Handler::Remote { address, .. } => address,
        }
    }
}

/// Why no replica answered.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no replica configured")]
    Empty,
    #[error("`{address}` is not a gRPC address: {reason}")]
    BadAddress { address: String, reason: String },
    #[error("no replica reachable ({tried} tried): {last}")]
    Unreachable { tried: usize, last: tonic::Status },
    #[error("replica {replica} failed: {status}")]
    Failed { replica: String, status: tonic::Status },
}

/// Replicas of one service, tried round-robin.
pub struct HandlerPool {
    /// Swapped whole when discovery finds a new set of replicas.
    replicas: RwLock<Arc<Vec<Handler>>>,
    next: AtomicUsize,
    deadline: Duration,
}

impl HandlerPool {
    pub fn new(replicas: Vec<Handler>, deadline: Duration) -> Self {
        Self {
            replicas: RwLock::new(Arc::new(replicas)),
            next: AtomicUsize::new(0),
            deadline,
        }
    }

    fn snapshot(&self) -> Arc<Vec<Handler>> {
        self.replicas.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the replica set (discovery).
    pub fn replace(&self, replicas: Vec<Handler>) {
        *self.replicas.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(replicas);
    }

    /// The addresses of the remote replicas now in the pool.
    pub fn addresses(&self) -> Vec<String> {
        self.snapshot()
            .iter()
            .filter_map(|h| match h {
                Handler::Remote { address, .. } => Some(address.clone()),
                Handler::Local(_) => None,
            })
            .collect()
    }

    /// Calls one replica. Only a replica that could not be reached (the
    /// request never arrived) is retried on the next one: a request that
    /// may have been applied is never sent twice.
    pub async fn call(&self, req: pb::IncomingRequest, trace: &Trace) -> Result<pb::HandleReply, PoolError> {
        let replicas = self.snapshot();
        if replicas.is_empty() {
            return Err(PoolError::Empty);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for i in 0..replicas.len() {
            let replica = &replicas[(start + i) % replicas.len()];
            match replica.call(req.clone(), self.deadline, trace).await {
                Ok(reply) => return Ok(reply),
                Err(status) if status.code() == tonic::Code::Unavailable && never_arrived(&status) => {
                    tracing::warn!(replica = replica.name(), %status, "replica unreachable; trying the next");
                    last = Some(status);
                }
                Err(status) => {
                    return Err(PoolError::Failed {
                        replica: replica.name().to_owned(),
                        status,
                    });
                }
            }
        }
        Err(PoolError::Unreachable {
            tried: replicas.len(),
            last: last.unwrap_or_else(|| tonic::Status::unavailable("no replica")),
        })
    }
}

/// Where replicas come from: fixed addresses (`http://host:port`) and DNS
/// names (`dns://name:port`) that resolve to one address per replica, as a
/// Kubernetes headless Service does.
#[derive(Debug, Clone)]
pub enum ReplicaSource {
    Static(String),
    Dns { name: String, port: u16 },
}

impl ReplicaSource {
    pub fn parse(entry: &str) -> Result<ReplicaSource, PoolError> {
        let bad = |reason: &str| PoolError::BadAddress {
            address: entry.to_owned(),
            reason: reason.to_owned(),
        };
        match entry.strip_prefix("dns://") {
            Some(rest) => {
                let (name, port) = rest.rsplit_once(':').ok_or_else(|| bad("expected dns://name:port"))?;
                let port = port.parse().map_err(|_| bad("port is not a number"))?;
                Ok(ReplicaSource::Dns {
                    name: name.to_owned(),
                    port,
                })
            }
            None if entry.starts_with("http://") || entry.starts_with("https://") => {
                Ok(ReplicaSource::Static(entry.to_owned()))
            }
            None => Err(bad("expected http://host:port or dns://name:port")),
        }
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

/// Builds handlers for `addresses`, keeping the existing ones (and their
/// connections) for addresses already in the pool.
pub fn handlers_for(pool: &HandlerPool, addresses: &[String], connect: Duration) -> Result<Vec<Handler>, PoolError> {
    let current = pool.snapshot();
    addresses
        .iter()
        .map(|a| {
            match current
                .iter()
                .find(|h| matches!(h, Handler::Remote { address, .. } if address == a))
            {
                Some(h) => Ok(h.clone()),
                None => Handler::remote(a, connect),
            }
        })
        .collect()
}

/// Keeps `pool` in step with `sources`, re-resolving every `every`.
pub async fn follow(pool: Arc<HandlerPool>, sources: Vec<ReplicaSource>, every: Duration, connect: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let addresses = resolve(&sources).await;
        if addresses != pool.addresses() {
            match handlers_for(&pool, &addresses, connect) {
                Ok(h) => {
                    tracing::info!(replicas = ?addresses, "replica set changed");
                    pool.replace(h);
                }
                Err(e) => tracing::warn!(error = %e, "replica set not updated"),
            }
        }
    }
}

/// tonic reports a connection it could not open as Unavailable "tcp
/// connect error" with the transport error as source: only then did the
/// request certainly not reach the replica. Any other failure, even
/// Unavailable from the service or a broken connection, may come after the
/// request was applied.
fn never_arrived(status: &tonic::Status) -> bool {
    status.message() == "tcp connect error" && std::error::Error::source(status).is_some()
}
