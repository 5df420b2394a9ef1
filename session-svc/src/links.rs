//! How session-svc reaches the edge, the registrar and sdp-svc: the same
//! generated contract traits, in process (all-in-one) or over gRPC (split).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proto::convert::to_proto;
use proto::edge::v1 as pb;
use proto::edge::v1::edge_client::EdgeClient;
use proto::edge::v1::edge_server::Edge;
use proto::registrar::v1 as rpb;
use proto::registrar::v1::registrar_client::RegistrarClient;
use proto::registrar::v1::registrar_server::Registrar;
use proto::sdp::v1 as spb;
use proto::sdp::v1::sdp_negotiator_client::SdpNegotiatorClient;
use proto::sdp::v1::sdp_negotiator_server::SdpNegotiator;
use sip_message::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// Deadline of one unary call to another service.
const CALL_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("no edge instance `{0}` is configured")]
    UnknownEdge(String),
    #[error("`{address}` is not a gRPC address: {reason}")]
    BadAddress { address: String, reason: String },
    #[error("{service}: {status}")]
    Call { service: &'static str, status: Status },
}

fn channel(address: &str) -> Result<Channel, LinkError> {
    let endpoint = Endpoint::from_shared(address.to_owned()).map_err(|e| LinkError::BadAddress {
        address: address.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(endpoint
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .connect_lazy())
}

fn request<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.set_timeout(CALL_DEADLINE);
    r
}

/// The edge API of this process's edge, called without a socket.
pub type LocalEdge = Arc<dyn Edge<SendRequestStream = ReceiverStream<Result<pb::ClientResponse, Status>>>>;

/// Every edge instance session-svc can reach, by instance name.
pub struct Edges {
    local: Option<(String, LocalEdge)>,
    remote: HashMap<String, EdgeClient<Channel>>,
    /// The instance new requests leave from when no flow names one.
    default: String,
}

/// The responses of one client transaction, after the item naming it.
pub enum ClientStream {
    Local(mpsc::Receiver<Result<pb::ClientResponse, Status>>),
    Remote(Box<tonic::Streaming<pb::ClientResponse>>),
}

impl ClientStream {
    /// The next item; `None` when the transaction has ended (or the edge
    /// went away).
    pub async fn next(&mut self) -> Option<pb::ClientResponse> {
        match self {
            ClientStream::Local(rx) => rx.recv().await.and_then(Result::ok),
            ClientStream::Remote(s) => s.message().await.ok().flatten(),
        }
    }
}

impl Edges {
    pub fn local(instance: &str, edge: LocalEdge) -> Self {
        Self {
            local: Some((instance.to_owned(), edge)),
            remote: HashMap::new(),
            default: instance.to_owned(),
        }
    }

    /// `instances`: edge instance name → `http://host:port` of its API.
    pub fn remote(instances: &[(String, String)]) -> Result<Self, LinkError> {
        let mut remote = HashMap::new();
        for (name, address) in instances {
            remote.insert(name.clone(), EdgeClient::new(channel(address)?));
        }
        let default = instances.first().map(|(n, _)| n.clone()).unwrap_or_default();
        Ok(Self {
            local: None,
            remote,
            default,
        })
    }

    /// The instance to use for a flow: the one holding its connection,
    /// else the default.
    pub fn instance_for<'a>(&'a self, flow: &'a pb::Flow) -> &'a str {
        if !flow.edge_instance.is_empty() && self.knows(&flow.edge_instance) {
            &flow.edge_instance
        } else {
            &self.default
        }
    }

    fn knows(&self, instance: &str) -> bool {
        self.local.as_ref().is_some_and(|(n, _)| n == instance) || self.remote.contains_key(instance)
    }

    fn pick(&self, instance: &str) -> Result<Link<'_>, LinkError> {
        if let Some((name, edge)) = &self.local
            && name == instance
        {
            return Ok(Link::Local(edge));
        }
        self.remote
            .get(instance)
            .map(|c| Link::Remote(c.clone()))
            .ok_or_else(|| LinkError::UnknownEdge(instance.to_owned()))
    }

    pub async fn respond(&self, instance: &str, server_tx: u64, response: &Message) -> Result<(), LinkError> {
        let msg = pb::RespondRequest {
            edge_instance: instance.to_owned(),
            server_tx,
            response: Some(to_proto(response)),
        };
        let r = match self.pick(instance)? {
            Link::Local(e) => e.respond(request(msg)).await.map(drop),
            Link::Remote(mut c) => c.respond(request(msg)).await.map(drop),
        };
        r.map_err(|status| LinkError::Call {
            service: "edge",
            status,
        })
    }

    /// Sends a request; returns the client transaction id and its stream.
    pub async fn send_request(
        &self,
        instance: &str,
        req: &Message,
        flow: pb::Flow,
    ) -> Result<(u64, ClientStream), LinkError> {
        let msg = pb::SendRequestRequest {
            request: Some(to_proto(req)),
            flow: Some(flow),
        };
        let call = |status| LinkError::Call {
            service: "edge",
            status,
        };
        let mut stream = match self.pick(instance)? {
            Link::Local(e) => ClientStream::Local(
                e.send_request(Request::new(msg))
                    .await
                    .map_err(call)?
                    .into_inner()
                    .into_inner(),
            ),
            Link::Remote(mut c) => ClientStream::Remote(Box::new(
                c.send_request(Request::new(msg)).await.map_err(call)?.into_inner(),
            )),
        };
        let first = stream
            .next()
            .await
            .ok_or_else(|| call(Status::unavailable("edge ended the stream")))?;
        Ok((first.client_tx, stream))
    }

    pub async fn send_ack(&self, instance: &str, ack: &Message, flow: pb::Flow) -> Result<(), LinkError> {
        let msg = pb::SendAckRequest {
            request: Some(to_proto(ack)),
            flow: Some(flow),
        };
        let r = match self.pick(instance)? {
            Link::Local(e) => e.send_ack(request(msg)).await.map(drop),
            Link::Remote(mut c) => c.send_ack(request(msg)).await.map(drop),
        };
        r.map_err(|status| LinkError::Call {
            service: "edge",
            status,
        })
    }

    pub async fn cancel(&self, instance: &str, client_tx: u64, headers: &[(String, String)]) -> Result<(), LinkError> {
        let msg = pb::CancelRequest {
            edge_instance: instance.to_owned(),
            client_tx,
            headers: headers
                .iter()
                .map(|(n, v)| pb::Header {
                    name: n.clone(),
                    value: v.clone(),
                })
                .collect(),
        };
        let r = match self.pick(instance)? {
            Link::Local(e) => e.cancel(request(msg)).await.map(drop),
            Link::Remote(mut c) => c.cancel(request(msg)).await.map(drop),
        };
        r.map_err(|status| LinkError::Call {
            service: "edge",
            status,
        })
    }
}

enum Link<'a> {
    Local(&'a LocalEdge),
    Remote(EdgeClient<Channel>),
}

/// Round-robin over replicas whose calls have no side effects, so any
/// failure may be retried on the next replica.
pub struct Replicas<T> {
    list: Vec<T>,
    next: AtomicUsize,
}

impl<T: Clone> Replicas<T> {
    fn new(list: Vec<T>) -> Self {
        Self {
            list,
            next: AtomicUsize::new(0),
        }
    }

    /// The replicas in the order this call tries them.
    fn order(&self) -> impl Iterator<Item = T> + '_ {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.list.len();
        (0..n).map(move |i| self.list[(start + i) % n].clone())
    }

    /// The first answer of `call` on the replicas in turn; only failures
    /// that mean "try elsewhere" (unavailable, deadline) move on.
    async fn first<R, Fut>(&self, service: &str, mut call: impl FnMut(T) -> Fut) -> Result<R, Status>
    where
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let mut last = Status::unavailable(format!("no {service} replica configured"));
        for client in self.order() {
            match call(client).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if retryable(&s) => last = s,
                Err(s) => return Err(s),
            }
        }
        Err(last)
    }
}

fn retryable(status: &Status) -> bool {
    matches!(status.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
}

/// The location service.
pub enum Locations {
    Local(Arc<dyn Registrar>),
    Remote(Replicas<RegistrarClient<Channel>>),
}

impl Locations {
    pub fn remote(addresses: &[String]) -> Result<Self, LinkError> {
        let clients = addresses
            .iter()
            .map(|a| channel(a).map(RegistrarClient::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Locations::Remote(Replicas::new(clients)))
    }

    pub async fn lookup(&self, aor: &str) -> Result<Vec<rpb::Binding>, LinkError> {
        let msg = rpb::LookupRequest { aor: aor.to_owned() };
        let call = |status| LinkError::Call {
            service: "registrar",
            status,
        };
        let reply = match self {
            Locations::Local(r) => r.lookup(request(msg)).await.map(tonic::Response::into_inner),
            Locations::Remote(replicas) => {
                replicas
                    .first("registrar-svc", |mut c| {
                        let msg = msg.clone();
                        async move { c.lookup(request(msg)).await }
                    })
                    .await
            }
        };
        Ok(reply.map_err(call)?.bindings)
    }
}

/// sdp-svc.
pub enum Negotiators {
    Local(Arc<dyn SdpNegotiator>),
    Remote(Replicas<SdpNegotiatorClient<Channel>>),
}

impl Negotiators {
    pub fn remote(addresses: &[String]) -> Result<Self, LinkError> {
        let clients = addresses
            .iter()
            .map(|a| channel(a).map(SdpNegotiatorClient::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Negotiators::Remote(Replicas::new(clients)))
    }

    pub async fn offer(&self, msg: spb::OfferRequest) -> Result<spb::OfferReply, Status> {
        match self {
            Negotiators::Local(n) => n.offer(request(msg)).await.map(tonic::Response::into_inner),
            Negotiators::Remote(replicas) => {
                replicas
                    .first("sdp-svc", |mut c| {
                        let msg = msg.clone();
                        async move { c.offer(request(msg)).await }
                    })
                    .await
            }
        }
    }

    pub async fn answer(&self, msg: spb::AnswerRequest) -> Result<spb::AnswerReply, Status> {
        match self {
            Negotiators::Local(n) => n.answer(request(msg)).await.map(tonic::Response::into_inner),
            Negotiators::Remote(replicas) => {
                replicas
                    .first("sdp-svc", |mut c| {
                        let msg = msg.clone();
                        async move { c.answer(request(msg)).await }
                    })
                    .await
            }
        }
    }

    pub async fn end(&self, msg: spb::EndRequest) {
        let r = match self {
            Negotiators::Local(n) => n.end(request(msg)).await.map(drop),
            Negotiators::Remote(replicas) => match replicas.order().next() {
                Some(mut c) => c.end(request(msg)).await.map(drop),
                None => Ok(()),
            },
        };
        if let Err(status) = r {
            tracing::debug!(%status, "sdp-svc End failed");
        }
    }
}
