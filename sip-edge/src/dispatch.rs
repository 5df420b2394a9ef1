//! What the edge hands to the services: one trait called with each new
//! request it does not answer itself, and the edge API services use to
//! answer and to send requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sip_message::{Message, Method};

use crate::transaction::{ClientTx, ServerTx, ServerTxId, TransactionLayer, TxError};
use crate::transport::{Source, Target};

/// A new request for a service.
#[derive(Debug)]
pub struct IncomingRequest {
    /// Answer through this, now or later.
    pub tx: ServerTx,
    /// The request as received, with `received` / `rport` set on its top
    /// Via (RFC 3581).
    pub request: Message,
    pub source: Source,
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
    fn ack(&self, _ack: Message, _source: Source) {}
    /// An INVITE was cancelled by `cancel`; 487 has been sent.
    fn cancelled(&self, _tx: ServerTxId, _cancel: Message) {}
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
/// request through a client transaction, send an ACK for a 2xx.
#[derive(Clone)]
pub struct EdgeHandle {
    pub(crate) layer: TransactionLayer,
}

impl EdgeHandle {
    pub fn respond(&self, tx: ServerTxId, response: Message) -> Result<(), TxError> {
        self.layer.respond(tx, response)
    }

    pub fn send_request(&self, request: Message, target: Target) -> Result<ClientTx, TxError> {
        self.layer.send_request(request, target)
    }

    pub fn send_ack(&self, ack: Message, target: Target) -> Result<(), TxError> {
        self.layer.send_ack(ack, target)
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
    fn ack(&self, ack: Message, source: Source) {
        (**self).ack(ack, source)
    }
    fn cancelled(&self, tx: ServerTxId, cancel: Message) {
        (**self).cancelled(tx, cancel)
    }
}
