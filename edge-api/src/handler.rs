//! The request handler: what the edge calls on the service that owns a
//! request's method.

use std::time::Duration;

use async_trait::async_trait;
use sip_message::Message;

use crate::flow::Flow;
use crate::trace::Trace;
use crate::tx::ServerTxRef;

/// A new request for a service.
#[derive(Debug, Clone)]
pub struct IncomingRequest {
    /// The server transaction to answer on, later if need be.
    pub tx: ServerTxRef,
    /// The request, with `received` / `rport` already set on its top Via
    /// (RFC 3581).
    pub request: Message,
    pub flow: Flow,
    pub trace: Trace,
}

/// What a service did with a request.
#[derive(Debug)]
// A return value that lives for one call: boxing the response would cost an
// allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    /// Answer the transaction with this response now.
    Now(Message),
    /// The service answers later, through the edge API.
    Later,
}

/// Why a request got no reply from a service.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    /// The service refused what it was given (a message another process
    /// sent that does not validate).
    #[error("refused: {0}")]
    Invalid(String),
    /// The request never reached the service: another replica may take it.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The service failed; the request may have been applied.
    #[error("failed: {0}")]
    Failed(String),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
}

impl HandlerError {
    /// Only a request that certainly did not arrive may be sent to another
    /// replica: one that may have been applied is never sent twice.
    pub fn never_arrived(&self) -> bool {
        matches!(self, HandlerError::Unreachable(_))
    }
}

/// Implemented by every service that owns requests (registrar-svc,
/// session-svc, and the event services). The edge may call any replica.
#[async_trait]
pub trait RequestHandler: Send + Sync + 'static {
    async fn handle(&self, request: IncomingRequest) -> Result<Reply, HandlerError>;

    /// An ACK no transaction absorbed (the ACK of a 2xx, RFC 3261
    /// 13.2.2.4), for the service that owns INVITE. Nothing is answered.
    async fn ack(&self, _ack: Message, _flow: Flow) -> Result<(), HandlerError> {
        Ok(())
    }

    /// A CANCEL matched an INVITE transaction of this service: the edge has
    /// already answered the CANCEL with 200 and the INVITE with 487 (RFC
    /// 3261 9.2).
    async fn cancelled(&self, _tx: ServerTxRef, _cancel: Message) -> Result<(), HandlerError> {
        Ok(())
    }
}
