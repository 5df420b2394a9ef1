//! The bus between sip-edge and the services. The edge hands each request
//! to a [`Router`], which finds the service that owns its method and calls
//! one replica through the `sipbus.edge.v1.RequestHandler` contract: in
//! process (the service's own trait implementation, no socket) or over
//! gRPC. Either way the service sees the same messages, and the caller the
//! same errors.

#![forbid(unsafe_code)]

pub mod convert;
mod edge_api;
mod pool;
mod router;

pub use edge_api::EdgeApi;
pub use pool::{Handler, HandlerPool, PoolError, ReplicaSource, follow, handlers_for, resolve};
pub use proto::trace::Trace;
pub use router::Router;
