//! session-svc behind the contract: every request of a call arrives at
//! [`RequestHandler::handle`] on any replica; the work is spawned and
//! answered through the edge API, so a long call setup never holds the
//! bus.

use std::sync::Arc;

use async_trait::async_trait;
use edge_api::{Flow, HandlerError, IncomingRequest, Reply, RequestHandler, ServerTxRef};
use sip_message::{Message, Method, Refusal};
use tracing::{Instrument, info_span};

use crate::core::Core;
use crate::{in_dialog, setup};

/// The request handler session-svc serves (in process or over gRPC).
#[derive(Clone)]
pub struct SessionService {
    core: Arc<Core>,
}

impl SessionService {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// Methods the edge routes here.
    pub fn methods() -> Vec<Method> {
        vec![
            Method::Invite,
            Method::Bye,
            Method::Update,
            Method::Info,
            Method::Message,
            Method::Refer,
            Method::Notify,
        ]
    }
}

#[async_trait]
impl RequestHandler for SessionService {
    async fn handle(&self, req: IncomingRequest) -> Result<Reply, HandlerError> {
        let IncomingRequest {
            tx,
            request,
            flow,
            trace,
        } = req;
        let method = request
            .method()
            .cloned()
            .ok_or_else(|| HandlerError::Invalid("not a request".into()))?;
        let call_id = request.call_id().unwrap_or("").to_owned();
        let span = info_span!("session", %method, %call_id, trace_id = %trace.trace_id(), server_tx = %tx.id);
        let core = self.core.clone();
        match method {
            Method::Invite if request.to_tag().is_none() => {
                tokio::spawn(Box::pin(setup::invite(core, tx, flow, request).instrument(span)));
            }
            Method::Message if request.to_tag().is_none() => {
                tokio::spawn(Box::pin(
                    setup::pager::message(core, tx, flow, request).instrument(span),
                ));
            }
            _ if request.to_tag().is_none() => {
                let resp = Refusal::no_dialog().response_to(&request, Some(&crate::random_tag()));
                return Ok(Reply::Now(resp));
            }
            _ => {
                tokio::spawn(Box::pin(
                    async move { in_dialog::request(&core, tx, request).await }.instrument(span),
                ));
            }
        }
        Ok(Reply::Later)
    }

    async fn ack(&self, ack: Message, _flow: Flow) -> Result<(), HandlerError> {
        let span = info_span!("session", method = "ACK", call_id = ack.call_id().unwrap_or(""));
        let core = self.core.clone();
        tokio::spawn(Box::pin(
            async move { in_dialog::ack(&core, ack).await }.instrument(span),
        ));
        Ok(())
    }

    async fn cancelled(&self, tx: ServerTxRef, cancel: Message) -> Result<(), HandlerError> {
        let span = info_span!("session", method = "CANCEL", call_id = cancel.call_id().unwrap_or(""));
        let core = self.core.clone();
        tokio::spawn(Box::pin(
            async move { in_dialog::cancelled(&core, tx, cancel).await }.instrument(span),
        ));
        Ok(())
    }
}
