//! sip-edge: the part of sipbus that speaks SIP on sockets. It terminates
//! transports (UDP and TCP; TLS and WebSocket plug into the same seams),
//! frames and validates messages, runs the RFC 3261 transaction layer
//! (with RFC 6026), answers what needs no service (OPTIONS, 405, 501, and
//! every protocol error), and hands each new request to the services
//! through [`Dispatch`]. It keeps no dialog state.
//!
//! Layers never reach upward: transports know nothing of transactions,
//! transactions nothing of services.

#![forbid(unsafe_code)]

pub mod config;
pub mod dispatch;
pub mod edge;
pub mod flood;
pub mod transaction;
pub mod transport;
pub mod validate;

/// Locks a table. A panic while a lock was held must not leave the edge
/// with a poisoned lock forever; every table stays consistent per
/// operation.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub use config::EdgeConfig;
pub use dispatch::{BoxFuture, Dispatch, EdgeHandle, IncomingRequest, NoServices};
pub use edge::{RunningEdge, StartError, start};
pub use transaction::{
    Canceller, ClientEvent, ClientTx, Origin, ServerTx, ServerTxId, TimerConfig, TransactionLayer, TxError,
};
pub use transport::{ConnectionId, Flow, ListenAddr, Transport};
