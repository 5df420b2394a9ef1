//! The edge's `Dispatch`: which service owns a request, and the SIP answer
//! when none can be reached.

use std::collections::HashMap;
use std::sync::Arc;

use edge_api::{Flow, HandlerError, Reply, RequestHandler, ServerTxRef, Trace};
use sip_edge::{BoxFuture, Dispatch, EdgeHandle, IncomingRequest, ServerTxId};
use sip_message::{Known, Message, Method, Refusal};
use tracing::{Instrument, debug, info_span, warn};

use crate::replicas::{CallError, NeverArrived, Replicas};

/// The replicas of one service, as the router calls them.
pub type HandlerPool = Replicas<Arc<dyn RequestHandler>>;

impl NeverArrived for HandlerError {
    fn never_arrived(&self) -> bool {
        HandlerError::never_arrived(self)
    }
}

/// Routes requests by method to the service pools.
pub struct Router {
    routes: HashMap<Method, Arc<HandlerPool>>,
    /// Requests of a method whose Request-URI user starts with a prefix
    /// go to another pool: the prefix is the owner kind a service writes
    /// into the Contact of the dialogs it creates (pubsub-svc's outgoing
    /// subscriptions get their NOTIFYs, session-svc the rest).
    by_prefix: Vec<(Method, &'static str, Arc<HandlerPool>)>,
    allow: Vec<Method>,
    retry_after: String,
}

impl Router {
    pub fn new(retry_after_s: u32) -> Self {
        Self {
            routes: HashMap::new(),
            by_prefix: Vec::new(),
            allow: Vec::new(),
            retry_after: retry_after_s.to_string(),
        }
    }

    /// Sends every request of `method` to `pool`.
    pub fn route(mut self, method: Method, pool: Arc<HandlerPool>) -> Self {
        self.allow.push(method.clone());
        self.routes.insert(method, pool);
        self
    }

    /// Sends requests of `method` whose Request-URI user starts with
    /// `prefix` to `pool` (the others follow [`Router::route`]).
    pub fn route_prefix(mut self, method: Method, prefix: &'static str, pool: Arc<HandlerPool>) -> Self {
        if !self.allow.contains(&method) {
            self.allow.push(method.clone());
        }
        self.by_prefix.push((method, prefix, pool));
        self
    }

    fn pool_for(&self, method: &Method, request: &Message) -> Option<Arc<HandlerPool>> {
        let user = request
            .request_uri()
            .and_then(|u| u.split_once(':'))
            .and_then(|(_, rest)| rest.split_once('@'))
            .map(|(user, _)| user);
        if let Some(user) = user
            && let Some((_, _, pool)) = self
                .by_prefix
                .iter()
                .find(|(m, prefix, _)| m == method && user.starts_with(prefix))
        {
            return Some(pool.clone());
        }
        self.routes.get(method).cloned()
    }

    /// Hands a notice to the service that owns INVITE. Nothing is
    /// answered: the edge already did what SIP requires.
    fn notify(&self, notice: Notice) {
        let Some(pool) = self.routes.get(&Method::Invite).cloned() else {
            return;
        };
        let span = info_span!("notify", method = notice.method());
        tokio::spawn(
            async move {
                let delivered = pool
                    .call(|h| {
                        let notice = notice.clone();
                        async move {
                            match notice {
                                Notice::Ack { ack, flow } => h.ack(ack, flow).await,
                                Notice::Cancelled { tx, cancel } => h.cancelled(tx, cancel).await,
                            }
                        }
                    })
                    .await;
                if let Err(e) = delivered {
                    warn!(error = %e, "notice not delivered");
                }
            }
            .instrument(span),
        );
    }
}

/// What the owner of INVITE hears without a transaction to answer.
#[derive(Clone)]
enum Notice {
    /// An ACK of a 2xx (or any ACK no transaction absorbed).
    Ack { ack: Message, flow: Flow },
    /// A CANCEL matched INVITE transaction `tx`.
    Cancelled { tx: ServerTxRef, cancel: Message },
}

impl Notice {
    fn method(&self) -> &'static str {
        match self {
            Notice::Ack { .. } => "ACK",
            Notice::Cancelled { .. } => "CANCEL",
        }
    }
}

impl Dispatch for Router {
    fn allow(&self) -> &[Method] {
        &self.allow
    }

    fn ack(&self, ack: Message, flow: Flow) {
        self.notify(Notice::Ack { ack, flow });
    }

    fn cancelled(&self, tx: ServerTxId, cancel: Message, flow: Flow) {
        let Some(edge) = flow.edge else { return };
        let tx = ServerTxRef { edge, id: tx };
        self.notify(Notice::Cancelled { tx, cancel });
    }

    fn dispatch(&self, req: IncomingRequest, edge: EdgeHandle) -> BoxFuture {
        let method = req.request.method().cloned().unwrap_or(Method::Options);
        let pool = self.pool_for(&method, &req.request);
        let retry_after = self.retry_after.clone();
        // One trace per request, carried to the service: the exported
        // span's when traces are exported.
        let trace = telemetry::trace::current_traceparent()
            .and_then(|t| Trace::parse(&t))
            .unwrap_or_default();
        let span = info_span!(
            "route",
            %method,
            tx = %req.tx.id(),
            trace_id = %trace.trace_id(),
            sip.status_code = tracing::field::Empty,
        );
        let tx_ref = ServerTxRef {
            edge: edge.id().clone(),
            id: req.tx.id(),
        };
        Box::pin(
            async move {
                let IncomingRequest { tx, request, flow } = req;
                let answer = match pool {
                    Some(pool) => {
                        pool.call(|h| {
                            let incoming = edge_api::IncomingRequest {
                                tx: tx_ref.clone(),
                                request: request.clone(),
                                flow: flow.clone(),
                                trace: trace.clone(),
                            };
                            async move { h.handle(incoming).await }
                        })
                        .await
                    }
                    None => Err(CallError::Empty),
                };
                let response = match answer {
                    Ok(Reply::Now(m)) => m,
                    // The service answers later through the edge API.
                    Ok(Reply::Later) => return,
                    Err(e) => {
                        warn!(error = %e, "no service answered");
                        Refusal::new(503, "Service Unavailable (no replica answered)")
                            .with_header(Known::RetryAfter, retry_after)
                            .response_to(&request, Some(tx.to_tag()))
                    }
                };
                let status = response.status().unwrap_or(0);
                tracing::Span::current().record("sip.status_code", status);
                debug!(status, "answered");
                if let Err(e) = tx.respond(response) {
                    warn!(error = %e, "response not sent");
                }
            }
            .instrument(span),
        )
    }
}
