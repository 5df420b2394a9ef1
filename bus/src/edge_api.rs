//! The edge API over gRPC (`sipbus.edge.v1.Edge`), served by every sip-edge
//! in split mode: services answer a server transaction later, or send a
//! request through a client transaction and read its responses as a stream.
//! In all-in-one mode services use the same `EdgeHandle` in process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use proto::convert::{from_proto, outgoing_from_proto, to_proto};
use proto::edge::v1 as pb;
use proto::edge::v1::edge_server::Edge;
use sip_edge::{Canceller, EdgeHandle, FlowId, Origin, ServerTxId, Target, TransportKind, TxError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// The gRPC face of one edge instance.
#[derive(Clone)]
pub struct EdgeApi {
    handle: EdgeHandle,
    instance: String,
    clients: Arc<ClientTable>,
}

/// INVITE client transactions in progress, by the id handed to the service,
/// so a later Edge.Cancel finds them.
struct ClientTable {
    next: AtomicU64,
    live: Mutex<HashMap<u64, Canceller>>,
}

impl Default for ClientTable {
    fn default() -> Self {
        Self {
            // Ids outlive a restart in the services' records: a restarted
            // edge must not hand out the ids of the old one.
            next: AtomicU64::new(fastrand::u64(1..u64::MAX / 2)),
            live: Mutex::default(),
        }
    }
}

impl ClientTable {
    fn insert(&self, canceller: Canceller) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, canceller);
        id
    }

    fn remove(&self, id: u64) {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    fn get(&self, id: u64) -> Option<Canceller> {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }
}

impl EdgeApi {
    pub fn new(handle: EdgeHandle, instance: &str) -> Self {
        Self {
            handle,
            instance: instance.to_owned(),
            clients: Arc::default(),
        }
    }

    /// The edge instance name this API serves.
    pub fn instance(&self) -> &str {
        &self.instance
    }
}

fn status_of(e: TxError) -> Status {
    match e {
        TxError::NoTransaction(_) => Status::not_found(e.to_string()),
        TxError::Busy(_) | TxError::Overloaded => Status::unavailable(e.to_string()),
        TxError::AlreadyAnswered(_) => Status::failed_precondition(e.to_string()),
        TxError::NotAResponse | TxError::NotARequest | TxError::InvalidRequest(_) => {
            Status::invalid_argument(e.to_string())
        }
        TxError::Transport(_) => Status::unavailable(e.to_string()),
    }
}

fn target_of(flow: &pb::Flow) -> Result<Target, Status> {
    let transport = match pb::Transport::try_from(flow.transport) {
        Ok(pb::Transport::Udp) => TransportKind::Udp,
        Ok(pb::Transport::Tcp) => TransportKind::Tcp,
        _ => return Err(Status::invalid_argument("flow.transport: only UDP and TCP today")),
    };
    let remote: SocketAddr = flow
        .remote
        .parse()
        .map_err(|_| Status::invalid_argument("flow.remote: expected ip:port"))?;
    let flow_id = (flow.connection != 0).then_some(FlowId(flow.connection));
    let local = flow.local.parse().ok();
    Ok(Target {
        transport,
        remote,
        flow: flow_id,
        local,
    })
}

#[tonic::async_trait]
impl Edge for EdgeApi {
    async fn respond(&self, request: Request<pb::RespondRequest>) -> Result<Response<pb::RespondReply>, Status> {
        let req = request.into_inner();
        if req.edge_instance != self.instance {
            return Err(Status::failed_precondition(format!(
                "server transaction of edge `{}` sent to edge `{}`",
                req.edge_instance, self.instance
            )));
        }
        let response = req.response.ok_or_else(|| Status::invalid_argument("no response"))?;
        let response = from_proto(response).map_err(|e| Status::invalid_argument(format!("response: {e}")))?;
        self.handle
            .respond(ServerTxId(req.server_tx), response)
            .map_err(status_of)?;
        Ok(Response::new(pb::RespondReply {}))
    }

    type SendRequestStream = ReceiverStream<Result<pb::ClientResponse, Status>>;

    async fn send_request(
        &self,
        request: Request<pb::SendRequestRequest>,
    ) -> Result<Response<Self::SendRequestStream>, Status> {
        let req = request.into_inner();
        let flow = req.flow.ok_or_else(|| Status::invalid_argument("no flow"))?;
        if flow.connection != 0 && flow.edge_instance != self.instance {
            return Err(Status::failed_precondition(
                "that connection belongs to another edge instance",
            ));
        }
        let target = target_of(&flow)?;
        let message = req.request.ok_or_else(|| Status::invalid_argument("no request"))?;
        let message = outgoing_from_proto(message).map_err(|e| Status::invalid_argument(format!("request: {e}")))?;
        let mut tx = self.handle.send_request(message, target).map_err(status_of)?;
        let client_tx = self.clients.insert(tx.canceller());
        let (out, rx) = mpsc::channel(8);
        let first = pb::ClientResponse {
            response: None,
            local: false,
            client_tx,
        };
        let _ = out.try_send(Ok(first));
        let clients = self.clients.clone();
        tokio::spawn(async move {
            while let Some(event) = tx.next().await {
                let local = event.origin != Origin::Peer;
                let item = pb::ClientResponse {
                    response: Some(to_proto(&event.response)),
                    local,
                    client_tx,
                };
                if out.send(Ok(item)).await.is_err() {
                    break;
                }
            }
            clients.remove(client_tx);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn send_ack(&self, request: Request<pb::SendAckRequest>) -> Result<Response<pb::SendAckReply>, Status> {
        let req = request.into_inner();
        let flow = req.flow.ok_or_else(|| Status::invalid_argument("no flow"))?;
        let target = target_of(&flow)?;
        let message = req.request.ok_or_else(|| Status::invalid_argument("no request"))?;
        let message = outgoing_from_proto(message).map_err(|e| Status::invalid_argument(format!("ack: {e}")))?;
        self.handle.send_ack(message, target).map_err(status_of)?;
        Ok(Response::new(pb::SendAckReply {}))
    }

    async fn cancel(&self, request: Request<pb::CancelRequest>) -> Result<Response<pb::CancelReply>, Status> {
        let req = request.into_inner();
        if req.edge_instance != self.instance {
            return Err(Status::failed_precondition(format!(
                "client transaction of edge `{}` sent to edge `{}`",
                req.edge_instance, self.instance
            )));
        }
        let mut headers = Vec::with_capacity(req.headers.len());
        for h in req.headers {
            if !sip_message::text::is_token(&h.name) || h.value.contains(['\r', '\n']) {
                return Err(Status::invalid_argument(format!(
                    "header `{}`: not a valid header field",
                    h.name
                )));
            }
            headers.push((h.name, h.value));
        }
        // A transaction that already ended has nothing left to cancel.
        if let Some(canceller) = self.clients.get(req.client_tx) {
            canceller.cancel(headers);
        }
        Ok(Response::new(pb::CancelReply {}))
    }
}
