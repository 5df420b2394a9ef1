//! registrar-svc: REGISTER (RFC 3261 10.3 with digest authentication, RFC
//! 5626 instance bindings, RFC 3327 Path) and the location service other
//! services look bindings up in. Stateless between requests: bindings,
//! their expiry timers and change events live in the store.

#![forbid(unsafe_code)]

pub mod admin;
pub mod binding;
pub mod config;
mod directory;
mod events;
mod grpc;
pub mod guard;
mod httpdate;
pub mod location;
mod service;

pub use config::RegistrarConfig;
pub use directory::{Directory, listed, user_of};
pub use events::{EVENT_STREAM, EventKind};
pub use grpc::RegistrarService;
pub use guard::{FailurePolicy, Guard};
pub use location::{Location, LocationClient, LocationError, LocationService};
pub use service::Registrar;
