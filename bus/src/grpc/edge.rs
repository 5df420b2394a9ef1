//! `sipbus.edge.v1.Edge`: served by every sip-edge in split mode over its
//! own [`Edge`], and called by services through [`RemoteEdge`].

use std::sync::Arc;

use async_trait::async_trait;
use edge_api::{ClientEvent, ClientTx, ClientTxId, ClientTxRef, Edge, EdgeError, EdgeId, Flow, Origin, ServerTxId};
use proto::convert::{from_proto, outgoing_from_proto, to_proto};
use proto::edge::v1 as pb;
use proto::edge::v1::edge_client::EdgeClient;
use sip_message::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::convert::{flow_from_proto, flow_to_proto};

/// The gRPC face of one edge instance.
#[derive(Clone)]
pub struct EdgeService {
    edge: Arc<dyn Edge>,
    id: EdgeId,
}

impl EdgeService {
    pub fn new(edge: Arc<dyn Edge>, id: EdgeId) -> Self {
        Self { edge, id }
    }

    pub fn into_server(self) -> pb::edge_server::EdgeServer<Self> {
        pb::edge_server::EdgeServer::new(self)
    }

    fn mine(&self, instance: &str, what: &str) -> Result<(), Status> {
        if instance == self.id.as_str() {
            return Ok(());
        }
        Err(Status::failed_precondition(format!(
            "{what} of edge `{instance}` sent to edge `{}`",
            self.id
        )))
    }
}

fn status_of(e: EdgeError) -> Status {
    match e {
        EdgeError::NoTransaction(_) => Status::not_found(e.to_string()),
        EdgeError::AlreadyAnswered(_) | EdgeError::UnknownEdge(_) => Status::failed_precondition(e.to_string()),
        EdgeError::Invalid(_) => Status::invalid_argument(e.to_string()),
        EdgeError::Overloaded(_) | EdgeError::Transport(_) | EdgeError::Unreachable(_) => {
            Status::unavailable(e.to_string())
        }
    }
}

fn flow_of(flow: Option<pb::Flow>) -> Result<Flow, Status> {
    let flow = flow.ok_or_else(|| Status::invalid_argument("no flow"))?;
    flow_from_proto(&flow).map_err(|e| Status::invalid_argument(e.to_string()))
}

#[tonic::async_trait]
impl pb::edge_server::Edge for EdgeService {
    async fn respond(&self, request: Request<pb::RespondRequest>) -> Result<Response<pb::RespondReply>, Status> {
        let req = request.into_inner();
        self.mine(&req.edge_instance, "server transaction")?;
        let response = req.response.ok_or_else(|| Status::invalid_argument("no response"))?;
        // Checked as the edge checks what it receives.
        let response = from_proto(response).map_err(|e| Status::invalid_argument(format!("response: {e}")))?;
        self.edge
            .respond(ServerTxId(req.server_tx), response)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::RespondReply {}))
    }

    type SendRequestStream = ReceiverStream<Result<pb::ClientResponse, Status>>;

    async fn send_request(
        &self,
        request: Request<pb::SendRequestRequest>,
    ) -> Result<Response<Self::SendRequestStream>, Status> {
        let req = request.into_inner();
        let flow = flow_of(req.flow)?;
        // A connection is only this edge's to use when the flow says so.
        if flow.connection.is_some() {
            self.mine(flow.edge.as_ref().map_or("", |e| e.as_str()), "connection")?;
        }
        let message = req.request.ok_or_else(|| Status::invalid_argument("no request"))?;
        // Validated by the transaction layer once it has its Via.
        let message = outgoing_from_proto(message).map_err(|e| Status::invalid_argument(format!("request: {e}")))?;
        let mut tx = self.edge.send_request(message, flow).await.map_err(status_of)?;
        let client_tx = tx.id.id.0;
        let (out, rx) = mpsc::channel(8);
        let first = pb::ClientResponse {
            response: None,
            local: false,
            client_tx,
        };
        let _ = out.try_send(Ok(first));
        tokio::spawn(async move {
            while let Some(event) = tx.next().await {
                let item = pb::ClientResponse {
                    response: Some(to_proto(&event.response)),
                    local: event.origin != Origin::Peer,
                    client_tx,
                };
                if out.send(Ok(item)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn send_ack(&self, request: Request<pb::SendAckRequest>) -> Result<Response<pb::SendAckReply>, Status> {
        let req = request.into_inner();
        let flow = flow_of(req.flow)?;
        let message = req.request.ok_or_else(|| Status::invalid_argument("no request"))?;
        let message = outgoing_from_proto(message).map_err(|e| Status::invalid_argument(format!("ack: {e}")))?;
        self.edge.send_ack(message, flow).await.map_err(status_of)?;
        Ok(Response::new(pb::SendAckReply {}))
    }

    async fn cancel(&self, request: Request<pb::CancelRequest>) -> Result<Response<pb::CancelReply>, Status> {
        let req = request.into_inner();
        self.mine(&req.edge_instance, "client transaction")?;
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
        self.edge
            .cancel(ClientTxId(req.client_tx), headers)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::CancelReply {}))
    }
}

/// An edge instance in another process.
#[derive(Clone)]
pub struct RemoteEdge {
    client: EdgeClient<Channel>,
    id: EdgeId,
}

impl RemoteEdge {
    pub fn new(channel: Channel, id: EdgeId) -> Self {
        Self {
            client: EdgeClient::new(channel),
            id,
        }
    }
}

fn edge_error(status: Status) -> EdgeError {
    match status.code() {
        tonic::Code::InvalidArgument => EdgeError::Invalid(status.message().to_owned()),
        _ => EdgeError::Unreachable(format!("{}: {}", status.code(), status.message())),
    }
}

/// Deadline of one unary call to an edge.
const CALL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

fn request<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.set_timeout(CALL_DEADLINE);
    proto::trace::inject_current(r.metadata_mut());
    r
}

#[async_trait]
impl Edge for RemoteEdge {
    async fn respond(&self, tx: ServerTxId, response: Message) -> Result<(), EdgeError> {
        let msg = pb::RespondRequest {
            edge_instance: self.id.as_str().to_owned(),
            server_tx: tx.0,
            response: Some(to_proto(&response)),
        };
        match self.client.clone().respond(request(msg)).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Err(EdgeError::NoTransaction(tx)),
            Err(s) if s.code() == tonic::Code::FailedPrecondition => Err(EdgeError::AlreadyAnswered(tx)),
            Err(s) => Err(edge_error(s)),
        }
    }

    async fn send_request(&self, req: Message, flow: Flow) -> Result<ClientTx, EdgeError> {
        let msg = pb::SendRequestRequest {
            request: Some(to_proto(&req)),
            flow: Some(flow_to_proto(&flow)),
        };
        let mut stream = self
            .client
            .clone()
            .send_request({
                let mut r = Request::new(msg);
                proto::trace::inject_current(r.metadata_mut());
                r
            })
            .await
            .map_err(edge_error)?
            .into_inner();
        let first = stream
            .message()
            .await
            .map_err(edge_error)?
            .ok_or_else(|| EdgeError::Unreachable("edge ended the stream".into()))?;
        let (tx, rx) = mpsc::channel(32);
        tokio::spawn(async move {
            while let Ok(Some(item)) = stream.message().await {
                let Some(response) = item.response else { continue };
                // What another process sends is checked before it is used.
                let response = match from_proto(response) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "edge relayed a response that does not parse");
                        continue;
                    }
                };
                let origin = match (item.local, response.status()) {
                    (false, _) => Origin::Peer,
                    (true, Some(503)) => Origin::TransportError,
                    (true, _) => Origin::Timeout,
                };
                if tx.send(ClientEvent { response, origin }).await.is_err() {
                    break;
                }
            }
        });
        let id = ClientTxRef {
            edge: self.id.clone(),
            id: ClientTxId(first.client_tx),
        };
        Ok(ClientTx::new(id, rx))
    }

    async fn send_ack(&self, ack: Message, flow: Flow) -> Result<(), EdgeError> {
        let msg = pb::SendAckRequest {
            request: Some(to_proto(&ack)),
            flow: Some(flow_to_proto(&flow)),
        };
        self.client
            .clone()
            .send_ack(request(msg))
            .await
            .map(drop)
            .map_err(edge_error)
    }

    async fn cancel(&self, tx: ClientTxId, headers: Vec<(String, String)>) -> Result<(), EdgeError> {
        let msg = pb::CancelRequest {
            edge_instance: self.id.as_str().to_owned(),
            client_tx: tx.0,
            headers: headers
                .into_iter()
                .map(|(name, value)| pb::Header { name, value })
                .collect(),
        };
        self.client
            .clone()
            .cancel(request(msg))
            .await
            .map(drop)
            .map_err(edge_error)
    }
}
