//! The replicas of one service, and how a call picks one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    replicas: Vec<Handler>,
    next: AtomicUsize,
    deadline: Duration,
}

impl HandlerPool {
    pub fn new(replicas: Vec<Handler>, deadline: Duration) -> Self {
        Self {
            replicas,
            next: AtomicUsize::new(0),
            deadline,
        }
    }

    /// Calls one replica. Only a replica that could not be reached (the
    /// request never arrived) is retried on the next one: a request that
    /// may have been applied is never sent twice.
    pub async fn call(&self, req: pb::IncomingRequest, trace: &Trace) -> Result<pb::HandleReply, PoolError> {
        if self.replicas.is_empty() {
            return Err(PoolError::Empty);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for i in 0..self.replicas.len() {
            let replica = &self.replicas[(start + i) % self.replicas.len()];
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
            tried: self.replicas.len(),
            last: last.unwrap_or_else(|| tonic::Status::unavailable("no replica")),
        })
    }
}

/// tonic reports a refused connection as Unavailable with a transport
/// source; an Unavailable returned by the service itself has none.
fn never_arrived(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some() || status.message().contains("connect")
}
