//! The registrar behind the contracts: [`RequestHandler`] for REGISTER, in
//! process or served over gRPC by the bus's adapter.

use std::sync::Arc;

use async_trait::async_trait;
use edge_api::{HandlerError, IncomingRequest, Reply, RequestHandler};
use sip_message::Method;
use tracing::{Instrument, info_span};

use crate::service::Registrar;

/// The request handler of registrar-svc.
#[derive(Clone)]
pub struct RegistrarService {
    inner: Arc<Registrar>,
}

impl RegistrarService {
    pub fn new(inner: Arc<Registrar>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl RequestHandler for RegistrarService {
    async fn handle(&self, req: IncomingRequest) -> Result<Reply, HandlerError> {
        let span = info_span!("register", trace_id = %req.trace.trace_id(), server_tx = %req.tx.id);
        if req.request.method() != Some(&Method::Register) {
            return Err(HandlerError::Invalid("registrar-svc only handles REGISTER".into()));
        }
        // Run to completion even if the caller gives up (deadline): a
        // REGISTER stopped between its store write and its timers would
        // leave a binding without expiry timer or event.
        let inner = self.inner.clone();
        let response = tokio::spawn(
            async move {
                let response = inner.register(&req.request, req.flow).await;
                tracing::debug!(status = response.status().unwrap_or(0), "REGISTER answered");
                response
            }
            .instrument(span),
        )
        .await
        .map_err(|_| HandlerError::Failed("REGISTER processing failed".into()))?;
        Ok(Reply::Now(response))
    }
}
