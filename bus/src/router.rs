//! The edge's `Dispatch`: which service owns a request, and the SIP answer
//! when it cannot be reached.

use std::collections::HashMap;
use std::sync::Arc;

use proto::edge::v1 as pb;
use sip_edge::{BoxFuture, Dispatch, EdgeHandle, IncomingRequest, ServerTxId, Source};
use sip_message::{Known, Method};
use tracing::{Instrument, debug, info_span, warn};

use crate::convert::{flow_of, from_proto, to_proto};
use crate::pool::{HandlerPool, PoolError};
use proto::trace::Trace;

/// Routes requests by method to the service pools.
pub struct Router {
    routes: HashMap<Method, Arc<HandlerPool>>,
    allow: Vec<Method>,
    edge_instance: String,
    retry_after: String,
}

impl Router {
    pub fn new(edge_instance: &str, retry_after_s: u32) -> Self {
        Self {
            routes: HashMap::new(),
            allow: Vec::new(),
            edge_instance: edge_instance.to_owned(),
            retry_after: retry_after_s.to_string(),
        }
    }

    /// Sends every request of `method` to `pool`.
    pub fn route(mut self, method: Method, pool: Arc<HandlerPool>) -> Self {
        self.allow.push(method.clone());
        self.routes.insert(method, pool);
        self
    }
}

impl Router {
    /// Hands a notice (an ACK of a 2xx, or a CANCEL that matched an INVITE
    /// transaction) to the service that owns INVITE. Nothing is answered:
    /// the edge already did what SIP requires.
    fn notify(&self, message: sip_message::Message, source: Option<&Source>, server_tx: u64) {
        let Some(pool) = self.routes.get(&Method::Invite).cloned() else {
            return;
        };
        let notice = pb::IncomingRequest {
            server_tx,
            message: Some(to_proto(&message)),
            flow: source.map(|s| flow_of(s, &self.edge_instance)),
        };
        let trace = Trace::new();
        let method = message.method().cloned().unwrap_or(Method::Ack);
        let span = info_span!("notify", %method, trace_id = %trace.trace_id());
        tokio::spawn(
            async move {
                if let Err(e) = pool.call(notice, &trace).await {
                    warn!(error = %e, "notice not delivered");
                }
            }
            .instrument(span),
        );
    }
}

impl Dispatch for Router {
    fn allow(&self) -> &[Method] {
        &self.allow
    }

    fn ack(&self, ack: sip_message::Message, source: Source) {
        self.notify(ack, Some(&source), 0);
    }

    fn cancelled(&self, tx: ServerTxId, cancel: sip_message::Message) {
        // The INVITE's flow is what matters, and the service has it.
        self.notify(cancel, None, tx.0);
    }

    fn dispatch(&self, req: IncomingRequest, _edge: EdgeHandle) -> BoxFuture {
        let method = req.request.method().cloned().unwrap_or(Method::Options);
        let pool = self.routes.get(&method).cloned();
        let incoming = pb::IncomingRequest {
            server_tx: req.tx.id().0,
            message: Some(to_proto(&req.request)),
            flow: Some(flow_of(&req.source, &self.edge_instance)),
        };
        let retry_after = self.retry_after.clone();
        // One trace per request, carried to the service in gRPC metadata.
        let trace = Trace::new();
        let span = info_span!("route", %method, tx = %req.tx.id(), trace_id = %trace.trace_id());
        Box::pin(
            async move {
                let tx = req.tx;
                let answer = match pool {
                    Some(pool) => pool.call(incoming, &trace).await,
                    None => Err(PoolError::Empty),
                };
                let response = match answer {
                    Ok(pb::HandleReply { response: Some(m) }) => match from_proto(m) {
                        Ok(m) => m,
                        Err(e) => {
                            warn!(error = %e, "service sent an invalid response");
                            req.request.make_response(
                                500,
                                "Server Internal Error (invalid response from service)",
                                Some(tx.to_tag()),
                            )
                        }
                    },
                    // The service answers later through the edge API.
                    Ok(pb::HandleReply { response: None }) => return,
                    Err(e) => {
                        warn!(error = %e, "no service answered");
                        let mut r = req.request.make_response(
                            503,
                            "Service Unavailable (no replica answered)",
                            Some(tx.to_tag()),
                        );
                        r.push_header(Known::RetryAfter, &retry_after);
                        r
                    }
                };
                debug!(status = response.status().unwrap_or(0), "answered");
                if let Err(e) = tx.respond(response) {
                    warn!(error = %e, "response not sent");
                }
            }
            .instrument(span),
        )
    }
}
