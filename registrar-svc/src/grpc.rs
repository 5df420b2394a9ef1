//! The registrar behind the contracts: `RequestHandler` for REGISTER and
//! `Registrar` for lookups.

use std::sync::Arc;

use proto::convert::{from_proto, to_proto};
use proto::edge::v1 as pb;
use proto::edge::v1::request_handler_server::RequestHandler;
use proto::registrar::v1 as rpb;
use proto::registrar::v1::registrar_server::Registrar as RegistrarRpc;
use proto::trace::Trace;
use sip_message::Method;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use crate::binding::FlowRef;
use crate::service::Registrar;

/// The gRPC face of a [`Registrar`]; in all-in-one mode the bus calls the
/// same trait implementation in process.
#[derive(Clone)]
pub struct RegistrarService {
    inner: Arc<Registrar>,
}

impl RegistrarService {
    pub fn new(inner: Arc<Registrar>) -> Self {
        Self { inner }
    }
}

#[tonic::async_trait]
impl RequestHandler for RegistrarService {
    async fn handle(&self, request: Request<pb::IncomingRequest>) -> Result<Response<pb::HandleReply>, Status> {
        let trace = Trace::extract(request.metadata()).unwrap_or_default();
        let span = info_span!("register", trace_id = %trace.trace_id(), server_tx = request.get_ref().server_tx);
        self.handle_request(request.into_inner()).instrument(span).await
    }
}

impl RegistrarService {
    async fn handle_request(&self, req: pb::IncomingRequest) -> Result<Response<pb::HandleReply>, Status> {
        let msg = req.message.ok_or_else(|| Status::invalid_argument("no message"))?;
        let msg = from_proto(msg).map_err(|e| Status::invalid_argument(format!("message: {e}")))?;
        if msg.method() != Some(&Method::Register) {
            return Err(Status::invalid_argument("registrar-svc only handles REGISTER"));
        }
        let flow = req.flow.unwrap_or_default();
        let flow = FlowRef {
            transport: flow.transport,
            remote: flow.remote,
            local: flow.local,
            connection: flow.connection,
            edge_instance: flow.edge_instance,
        };
        // Run to completion even if the caller gives up (deadline): a
        // REGISTER stopped between its store write and its timers would
        // leave a binding without expiry timer or event.
        let inner = self.inner.clone();
        let response = tokio::spawn(async move { inner.register(&msg, flow).await }.in_current_span())
            .await
            .map_err(|_| Status::internal("REGISTER processing failed"))?;
        tracing::debug!(status = response.status().unwrap_or(0), "REGISTER answered");
        Ok(Response::new(pb::HandleReply {
            response: Some(to_proto(&response)),
        }))
    }
}

#[tonic::async_trait]
impl RegistrarRpc for RegistrarService {
    async fn lookup(&self, request: Request<rpb::LookupRequest>) -> Result<Response<rpb::LookupReply>, Status> {
        let aor = request.into_inner().aor;
        let bindings = self
            .inner
            .lookup(&aor)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let now = state_store::now_ms();
        let bindings = bindings
            .into_iter()
            .map(|b| rpb::Binding {
                contact: b.contact,
                uri: b.uri,
                expires_in: (b.expires_at_ms.saturating_sub(now) / 1000) as u32,
                q: u32::from(b.q),
                instance: b.instance.unwrap_or_default(),
                reg_id: b.reg_id.unwrap_or(0),
                path: b.path,
                flow: Some(pb::Flow {
                    transport: b.flow.transport,
                    remote: b.flow.remote,
                    local: b.flow.local,
                    connection: b.flow.connection,
                    edge_instance: b.flow.edge_instance,
                }),
                call_id: b.call_id,
                cseq: b.cseq,
            })
            .collect();
        Ok(Response::new(rpb::LookupReply { bindings }))
    }
}
