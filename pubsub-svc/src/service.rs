//! pubsub-svc behind the contract: SUBSCRIBE arrives at
//! [`RequestHandler::handle`] on any replica; the answer and the NOTIFYs go
//! out through the edge API.

use std::sync::Arc;

use async_trait::async_trait;
use edge_api::{HandlerError, IncomingRequest, Reply, RequestHandler};
use sip_message::Method;
use tracing::{Instrument, info_span};

use crate::core::Core;
use crate::{subscribe, upstream};

#[derive(Clone)]
pub struct PubsubService {
    core: Arc<Core>,
}

impl PubsubService {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

#[async_trait]
impl RequestHandler for PubsubService {
    async fn handle(&self, req: IncomingRequest) -> Result<Reply, HandlerError> {
        let IncomingRequest {
            tx,
            request,
            flow,
            trace,
        } = req;
        let call_id = request.call_id().unwrap_or("").to_owned();
        if request.method() == Some(&Method::Notify) {
            let span = info_span!("notified", %call_id, trace_id = %trace.trace_id(), server_tx = %tx.id);
            tokio::spawn(upstream::notified(self.core.clone(), tx, request).instrument(span));
            return Ok(Reply::Later);
        }
        if request.method() != Some(&Method::Subscribe) {
            return Err(HandlerError::Invalid("pubsub-svc handles SUBSCRIBE and NOTIFY".into()));
        }
        let span = info_span!("subscribe", %call_id, trace_id = %trace.trace_id(), server_tx = %tx.id);
        let core = self.core.clone();
        if request.to_tag().is_none() {
            tokio::spawn(subscribe::subscribe(core, tx, flow, request).instrument(span));
        } else {
            tokio::spawn(subscribe::refresh(core, tx, flow, request).instrument(span));
        }
        Ok(Reply::Later)
    }
}
