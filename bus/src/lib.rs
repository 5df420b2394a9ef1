//! The bus between sip-edge and the services, and between the services.
//!
//! Every contract is a Rust trait on domain types (the edge's in
//! `edge-api`, each service's in its crate). A client holds replicas of the
//! trait: the implementation itself in process (a direct call, no
//! protobuf), or a gRPC adapter from [`grpc`] in split mode; nothing else
//! knows which. [`Replicas`] applies one retry rule to all of them, and the
//! [`Router`] hands each request from the edge to the service that owns its
//! method.

#![forbid(unsafe_code)]

pub mod convert;
mod edges;
pub mod grpc;
mod replicas;
mod router;

pub use edges::Edges;
pub use replicas::{CallError, NeverArrived, Replica, ReplicaSource, Replicas, SourceError};
pub use router::{HandlerPool, Router};
