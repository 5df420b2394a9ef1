//! What the edge hands to the services: one trait called with each new
//! request it does not answer itself, and the edge API services use to
//! answer and to send requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use edge_api::{ClientTxId, ClientTxRef, Edge, EdgeError, EdgeId};
use sip_message::{Message, Method};

use crate::transaction::{ServerTx, ServerTxId, TransactionLayer, TxError};
use crate::transport::Flow;

/// A new request for a service.
#[derive(Debug)]
pub struct IncomingRequest {
    /// Answer through this, now or later.
    pub tx: ServerTx,
    /// The request as received, with `received` / `rport` set on its top
    /// Via (RFC 3581).
    pub request: Message,
    /// Where it came from, on this edge.
    pub flow: Flow,
}

pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The services behind the edge. The edge calls `dispatch` for every new
/// request whose method is in `allow`; the returned future may take as
/// long as it needs (the transaction keeps its timers meanwhile), and
/// holds one of the bounded in-flight slots until it completes.
pub trait Dispatch: Send + Sync + 'static {
    /// Methods the services handle; the edge answers 405 (known methods)
    /// or 501 (unknown ones) to the rest, and lists these in Allow.
    fn allow(&self) -> &[Method];
    fn dispatch(&self, request: IncomingRequest, edge: EdgeHandle) -> BoxFuture;
    /// An ACK for a 2xx, or any ACK no transaction absorbed.
    fn ack(&self, _ack: Message, _flow: Flow) {}
    /// An INVITE was cancelled by `cancel`; 487 has been sent. `flow` is
    /// the INVITE's.
    fn cancelled(&self, _tx: ServerTxId, _cancel: Message, _flow: Flow) {}
}

/// Until services exist: nothing is allowed beyond what the edge answers
/// itself (OPTIONS).
pub struct NoServices;

impl Dispatch for NoServices {
    fn allow(&self) -> &[Method] {
        &[]
    }

    fn dispatch(&self, _request: IncomingRequest, _edge: EdgeHandle) -> BoxFuture {
        Box::pin(async {})
    }
}

/// The edge API for services: respond on a server transaction, send a
/// request through a client transaction, send an ACK for a 2xx, cancel.
/// In process it is the [`Edge`] of this instance.
#[derive(Clone)]
pub struct EdgeHandle {
    pub(crate) layer: TransactionLayer,
    pub(crate) id: EdgeId,
}

impl EdgeHandle {
    /// This edge instance's name, as flows and transaction references
    /// carry it.
    pub fn id(&self) -> &EdgeId {
        &self.id
    }

    /// Transactions in progress: (server, client).
    pub fn transaction_counts(&self) -> (usize, usize) {
        self.layer.counts()
    }
}

impl<D: Dispatch> Dispatch for Arc<D> {
    fn allow(&self) -> &[Method] {
        (**self).allow()
    }
    fn dispatch(&self, request: IncomingRequest, edge: EdgeHandle) -> BoxFuture {
        (**self).dispatch(request, edge)
    }
    fn ack(&self, ack: Message, flow: Flow) {
        (**self).ack(ack, flow)
    }
    fn cancelled(&self, tx: ServerTxId, cancel: Message, flow: Flow) {
        (**self).cancelled(tx, cancel, flow)
    }
}

impl From<TxError> for EdgeError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::NoTransaction(id) => EdgeError::NoTransaction(id),
            TxError::AlreadyAnswered(id) => EdgeError::AlreadyAnswered(id),
            TxError::Busy(_) | TxError::Overloaded => EdgeError::Overloaded(e.to_string()),
            TxError::NotAResponse | TxError::NotARequest | TxError::InvalidRequest(_) => {
                EdgeError::Invalid(e.to_string())
            }
            TxError::Transport(t) => EdgeError::Transport(t.to_string()),
        }
    }
}

impl EdgeHandle {
    /// A flow is sent on its connection only by the edge that holds it.
    fn own(&self, flow: Flow) -> Result<Flow, EdgeError> {
        match (&flow.edge, flow.connection) {
            (Some(edge), Some(_)) if *edge == self.id => Ok(flow),
            (edge, Some(c)) => Err(EdgeError::Invalid(format!(
                "{c} is not a connection of edge {} (the flow names {})",
                self.id,
                edge.as_ref().map_or("no edge", |e| e.as_str())
            ))),
            (_, None) => Ok(flow),
        }
    }
}

#[async_trait]
impl Edge for EdgeHandle {
    async fn respond(&self, tx: ServerTxId, response: Message) -> Result<(), EdgeError> {
        Ok(self.layer.respond(tx, response)?)
    }

    async fn send_request(&self, request: Message, flow: Flow) -> Result<edge_api::ClientTx, EdgeError> {
        let tx = self.layer.send_request(request, self.own(flow)?)?;
        let id = ClientTxRef {
            edge: self.id.clone(),
            id: tx.id(),
        };
        Ok(edge_api::ClientTx::new(id, tx.into_responses()))
    }

    async fn send_ack(&self, ack: Message, flow: Flow) -> Result<(), EdgeError> {
        Ok(self.layer.send_ack(ack, self.own(flow)?)?)
    }

    async fn cancel(&self, tx: ClientTxId, headers: Vec<(String, String)>) -> Result<(), EdgeError> {
        self.layer.cancel(tx, headers);
        Ok(())
    }
}
