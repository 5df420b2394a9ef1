//! session-svc: calls as a back-to-back user agent.
//!
//! A call is two legs (caller ↔ sipbus ↔ callee) whose state lives in the
//! store, so any replica handles any request of any call; concurrent
//! requests on one call are serialised by version checks on its record.
//! SDP goes through sdp-svc, and session supplements join every call.

mod call;
pub mod compose;
pub mod config;
mod dialog;
pub mod events;
pub mod links;
mod media;
pub mod service;
pub mod state;
pub mod supplement;

pub use config::SessionConfig;
pub use links::Negotiators;
pub use service::{Core, Directory, SessionService};
pub use supplement::Supplements;

/// A fresh tag (RFC 3261 19.3: at least 32 bits of randomness).
pub(crate) fn random_tag() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// A fresh session id.
pub(crate) fn random_id() -> String {
    format!("{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
}
