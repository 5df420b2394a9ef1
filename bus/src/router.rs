//! The edge's `Dispatch`: which service owns a request, and the SIP answer
//! when it cannot be reached.

use std::collections::HashMap;
use std::sync::Arc;

use proto::edge::v1 as pb;
use sip_edge::{BoxFuture, Dispatch, EdgeHandle, IncomingRequest};
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

impl Dispatch for Router {
    fn allow(&self) -> &[Method] {
        &self.allow
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
