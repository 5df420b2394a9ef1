//! `sipbus.edge.v1.RequestHandler`: served by each service over its own
//! [`RequestHandler`], called by the edge's router through
//! [`RemoteHandler`]. ACK and CANCEL notices travel through the same RPC
//! (see the contract).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use edge_api::{EdgeId, Flow, HandlerError, IncomingRequest, Reply, RequestHandler, ServerTxId, ServerTxRef, Trace};
use proto::convert::{from_proto, to_proto};
use proto::edge::v1 as pb;
use proto::edge::v1::request_handler_client::RequestHandlerClient;
use sip_message::{Message, Method};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::convert::{flow_from_proto, flow_to_proto};
use crate::grpc::never_arrived;

/// Serves a service's [`RequestHandler`] to edges in other processes.
#[derive(Clone)]
pub struct HandlerService {
    handler: Arc<dyn RequestHandler>,
}

impl HandlerService {
    pub fn new(handler: Arc<dyn RequestHandler>) -> Self {
        Self { handler }
    }

    pub fn into_server(self) -> pb::request_handler_server::RequestHandlerServer<Self> {
        pb::request_handler_server::RequestHandlerServer::new(self)
    }
}

fn status_of(e: HandlerError) -> Status {
    match e {
        HandlerError::Invalid(_) => Status::invalid_argument(e.to_string()),
        HandlerError::Unreachable(_) => Status::unavailable(e.to_string()),
        HandlerError::Failed(_) => Status::internal(e.to_string()),
        HandlerError::Timeout(_) => Status::deadline_exceeded(e.to_string()),
    }
}

fn invalid(what: impl std::fmt::Display) -> Status {
    Status::invalid_argument(what.to_string())
}

#[tonic::async_trait]
impl pb::request_handler_server::RequestHandler for HandlerService {
    async fn handle(&self, request: Request<pb::IncomingRequest>) -> Result<Response<pb::HandleReply>, Status> {
        if telemetry::health::is_draining() {
            // Refused before any work, so the caller may send it to
            // another replica (see `never_arrived`).
            return Err(Status::unavailable(super::DRAINING));
        }
        if !telemetry::health::store_ok() {
            // Likewise: work that needs the store would fail here.
            return Err(Status::unavailable(super::STORE_DOWN));
        }
        let trace = proto::trace::extract(request.metadata()).unwrap_or_default();
        let req = request.into_inner();
        let message = req.message.ok_or_else(|| invalid("no message"))?;
        // Checked as the edge checks what the network sends.
        let message = from_proto(message).map_err(|e| invalid(format!("message: {e}")))?;
        let pb_flow = req.flow.ok_or_else(|| invalid("no flow"))?;
        let edge = || {
            (!pb_flow.edge_instance.is_empty())
                .then(|| EdgeId::new(&pb_flow.edge_instance))
                .ok_or_else(|| invalid("flow.edge_instance: missing"))
        };
        let reply = match message.method() {
            Some(Method::Ack) => {
                let flow = flow_from_proto(&pb_flow).map_err(invalid)?;
                self.handler.ack(message, flow).await.map(|()| Reply::Later)
            }
            Some(Method::Cancel) => {
                let tx = ServerTxRef {
                    edge: edge()?,
                    id: ServerTxId(req.server_tx),
                };
                self.handler.cancelled(tx, message).await.map(|()| Reply::Later)
            }
            Some(_) => {
                let flow = flow_from_proto(&pb_flow).map_err(invalid)?;
                let tx = ServerTxRef {
                    edge: edge()?,
                    id: ServerTxId(req.server_tx),
                };
                self.handler
                    .handle(IncomingRequest {
                        tx,
                        request: message,
                        flow,
                        trace,
                    })
                    .await
            }
            None => return Err(invalid("not a request")),
        };
        let response = match reply.map_err(status_of)? {
            Reply::Now(m) => Some(to_proto(&m)),
            Reply::Later => None,
        };
        Ok(Response::new(pb::HandleReply { response }))
    }
}

/// A service replica in another process.
#[derive(Clone)]
pub struct RemoteHandler {
    client: RequestHandlerClient<Channel>,
    deadline: Duration,
}

impl RemoteHandler {
    pub fn new(channel: Channel, deadline: Duration) -> Self {
        Self {
            client: RequestHandlerClient::new(channel),
            deadline,
        }
    }

    async fn call(&self, msg: pb::IncomingRequest, trace: Option<&Trace>) -> Result<Reply, HandlerError> {
        let mut request = Request::new(msg);
        request.set_timeout(self.deadline);
        if let Some(t) = trace {
            proto::trace::inject(t, request.metadata_mut());
        }
        let reply = self.client.clone().handle(request).await.map_err(|s| {
            if never_arrived(&s) {
                HandlerError::Unreachable(s.to_string())
            } else if matches!(s.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled) {
                HandlerError::Timeout(self.deadline)
            } else {
                HandlerError::Failed(format!("{}: {}", s.code(), s.message()))
            }
        })?;
        match reply.into_inner().response {
            // What another process sends is checked before it is used.
            Some(m) => from_proto(m)
                .map(Reply::Now)
                .map_err(|e| HandlerError::Invalid(format!("response: {e}"))),
            None => Ok(Reply::Later),
        }
    }
}

#[async_trait]
impl RequestHandler for RemoteHandler {
    async fn handle(&self, request: IncomingRequest) -> Result<Reply, HandlerError> {
        let msg = pb::IncomingRequest {
            server_tx: request.tx.id.0,
            message: Some(to_proto(&request.request)),
            flow: Some(flow_to_proto(&request.flow)),
        };
        self.call(msg, Some(&request.trace)).await
    }

    async fn ack(&self, ack: Message, flow: Flow) -> Result<(), HandlerError> {
        let msg = pb::IncomingRequest {
            server_tx: 0,
            message: Some(to_proto(&ack)),
            flow: Some(flow_to_proto(&flow)),
        };
        self.call(msg, None).await.map(drop)
    }

    async fn cancelled(&self, tx: ServerTxRef, cancel: Message) -> Result<(), HandlerError> {
        let msg = pb::IncomingRequest {
            server_tx: tx.id.0,
            message: Some(to_proto(&cancel)),
            // A CANCEL notice names only the edge of its INVITE.
            flow: Some(pb::Flow {
                edge_instance: tx.edge.as_str().to_owned(),
                ..Default::default()
            }),
        };
        self.call(msg, None).await.map(drop)
    }
}
