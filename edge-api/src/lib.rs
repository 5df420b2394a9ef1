//! edge-api: the contract between sip-edge and the services behind it, in
//! Rust types. The edge hands each request a service owns to that service's
//! [`RequestHandler`]; services answer, send requests and cancel them
//! through the [`Edge`] trait. Both travel as values in process and as
//! `sipbus.edge.v1` over gRPC (the adapters are in the `bus` crate), so a
//! service cannot tell the two apart.
//!
//! A [`Flow`] says where a message came from and how to reach that peer
//! again; it is the one description of a flow from the edge to the store
//! and back.

#![forbid(unsafe_code)]

mod edge;
mod flow;
mod handler;
mod trace;
mod tx;

pub use edge::{ClientEvent, ClientTx, Edge, EdgeError, Origin};
pub use flow::{ConnectionId, EDGE_HOST, EdgeId, Flow, Transport};
pub use handler::{HandlerError, IncomingRequest, Reply, RequestHandler};
pub use trace::Trace;
pub use tx::{ClientTxId, ClientTxRef, ServerTxId, ServerTxRef};
