//! The edge API: what a service asks of the edge instance that holds a
//! transaction or a flow.

use async_trait::async_trait;
use sip_message::Message;
use tokio::sync::mpsc;

use crate::flow::{EdgeId, Flow};
use crate::tx::{ClientTxId, ClientTxRef, ServerTxId};

/// Where a response handed to a service came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Received from the peer.
    Peer,
    /// Made by the edge: 408 after timer B / F (RFC 3261 8.1.3.1).
    Timeout,
    /// Made by the edge: 503 after a transport error (RFC 3261 8.1.3.1).
    TransportError,
}

/// One response of a client transaction.
#[derive(Debug, Clone)]
pub struct ClientEvent {
    pub response: Message,
    pub origin: Origin,
}

/// A request sent through a client transaction: its id (for
/// [`Edge::cancel`]) and its responses in order. For INVITE the responses
/// go on after a 2xx for 64*T1 (RFC 6026 Accepted): 2xx retransmissions
/// and 2xx of other forks, each to be ACKed.
#[derive(Debug)]
pub struct ClientTx {
    pub id: ClientTxRef,
    responses: mpsc::Receiver<ClientEvent>,
}

impl ClientTx {
    pub fn new(id: ClientTxRef, responses: mpsc::Receiver<ClientEvent>) -> ClientTx {
        ClientTx { id, responses }
    }

    /// The next response; `None` once the transaction has ended (or the
    /// edge went away).
    pub async fn next(&mut self) -> Option<ClientEvent> {
        self.responses.recv().await
    }

    /// Reads the rest in the background: the outcome changes nothing for
    /// the caller, and a reader keeps a remote edge's stream flowing until
    /// the transaction ends.
    pub fn finish_in_background(mut self) {
        tokio::spawn(async move { while self.next().await.is_some() {} });
    }
}

/// Why the edge refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    #[error("server transaction {0} does not exist (finished or never created)")]
    NoTransaction(ServerTxId),
    #[error("server transaction {0} already sent its final response")]
    AlreadyAnswered(ServerTxId),
    #[error("edge overloaded: {0}")]
    Overloaded(String),
    #[error("message refused: {0}")]
    Invalid(String),
    #[error("transport: {0}")]
    Transport(String),
    #[error("no edge instance `{0}` is known here")]
    UnknownEdge(EdgeId),
    #[error("edge unreachable: {0}")]
    Unreachable(String),
}

/// One edge instance, as a service sees it: in process, or over gRPC.
#[async_trait]
pub trait Edge: Send + Sync + 'static {
    /// Sends a response on a server transaction of this edge.
    async fn respond(&self, tx: ServerTxId, response: Message) -> Result<(), EdgeError>;
    /// Sends a request (without the edge's Via: the edge adds its own, and
    /// Max-Forwards when missing) through a new client transaction.
    async fn send_request(&self, request: Message, flow: Flow) -> Result<ClientTx, EdgeError>;
    /// Sends the ACK of a 2xx (its own transaction-less request, RFC 3261
    /// 13.2.2.4).
    async fn send_ack(&self, ack: Message, flow: Flow) -> Result<(), EdgeError>;
    /// Cancels an INVITE client transaction of this edge: the CANCEL goes
    /// out once a provisional response has arrived (RFC 3261 9.1), not at
    /// all after a final one, with `headers` added (Reason, RFC 3326).
    async fn cancel(&self, tx: ClientTxId, headers: Vec<(String, String)>) -> Result<(), EdgeError>;
}
