//! The edge API over gRPC (`sipbus.edge.v1.Edge`), served by every sip-edge
//! in split mode: services answer a server transaction later, or send a
//! request through a client transaction and read its responses as a stream.
//! In all-in-one mode services use the same `EdgeHandle` in process.

use std::net::SocketAddr;

use proto::convert::{from_proto, outgoing_from_proto, to_proto};
use proto::edge::v1 as pb;
use proto::edge::v1::edge_server::Edge;
use sip_edge::{EdgeHandle, FlowId, Origin, ServerTxId, Target, TransportKind, TxError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// The gRPC face of one edge instance.
pub struct EdgeApi {
    handle: EdgeHandle,
    instance: String,
}

impl EdgeApi {
    pub fn new(handle: EdgeHandle, instance: &str) -> Self {
        Self {
            handle,
            instance: instance.to_owned(),
        }
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
        let (out, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            while let Some(event) = tx.next().await {
                let local = event.origin != Origin::Peer;
                let item = pb::ClientResponse {
                    response: Some(to_proto(&event.response)),
                    local,
                };
                if out.send(Ok(item)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
