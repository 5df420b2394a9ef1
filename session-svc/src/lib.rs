//! session-svc: calls as a back-to-back user agent.
//!
//! A call is two legs (caller ↔ sipbus ↔ callee), each an RFC 3261 dialog
//! (`sip-dialog`), whose state lives in the store, so any replica handles
//! any request of any call; concurrent requests on one call are serialised
//! by version checks on its record. SDP goes through sdp-svc, and session
//! supplements join every call.
//!
//! - [`setup`]: a new call (routing, forking, the caller's answers, the
//!   setup timers);
//! - [`in_dialog`]: requests inside a call (ACK, CANCEL, BYE, relayed
//!   requests and offers, what sipbus sends when a supplement asks);
//! - [`supplements`]: the extension point and its built-ins;
//! - [`session`]: the record; [`media`]: its SDP; [`events`]: dialog
//!   states for BLF; [`timers`]: the store timers; [`core`]: what they
//!   share. `service` is the request handler on top.

#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod core;
pub mod events;
mod in_dialog;
pub mod media;
pub mod service;
pub mod session;
mod setup;
pub mod supplements;
pub mod timers;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use config::SessionConfig;
pub use core::{Core, Directory};
pub use service::SessionService;
pub use session::{Side, Sides};
pub use supplements::{Action, Cx, Draft, SessionInfo, SessionSupplement, Supplements, Verdict};

/// Every problem that would stop session-svc at start, each naming its
/// key.
pub fn check(config: &SessionConfig) -> Vec<extension::ConfigProblem> {
    let mut problems = Supplements::check(config);
    if config.non_local == config::NonLocal::Outbound && edge_api::Flow::to_uri(&config.outbound).is_none() {
        problems.push(extension::ConfigProblem {
            key: "session.outbound".into(),
            reason: format!(
                "`{}` is not sip:IP[:PORT][;transport=tcp] (needed with non_local = \"outbound\")",
                config.outbound
            ),
        });
    }
    problems
}

/// A fresh tag (RFC 3261 19.3: at least 32 bits of randomness).
pub(crate) fn random_tag() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// A fresh session id.
pub(crate) fn random_id() -> String {
    format!("{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
}
