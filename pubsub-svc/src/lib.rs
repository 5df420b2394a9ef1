//! pubsub-svc: SUBSCRIBE/NOTIFY as notifier (RFC 6665). Subscriptions
//! live in the store with their dialogs (sip-dialog), expiry timers are
//! store timers, resource changes come from the store's event logs through
//! consumer groups: any replica serves any refresh, unsubscribe or NOTIFY
//! answer, and each change gives each subscription one NOTIFY. Event
//! packages are subscription handlers: the built-in `message-summary`
//! (RFC 3842), `presence` (RFC 3856, PIDF from publications or derived
//! from registrations and calls) and `dialog` (RFC 4235), and external
//! ones over gRPC.

#![forbid(unsafe_code)]

pub mod admin;
pub mod changes;
pub mod config;
mod core;
pub mod dialogs;
pub mod handlers;
mod notify;
mod service;
mod subscribe;
mod subscription;
pub mod timers;
mod unsolicited;
pub mod upstream;

pub use crate::config::PubsubConfig;
pub use crate::core::Core;
pub use handlers::{Decision, NotifiedCx, StateCx, SubView, SubscriptionHandler, Termination};
pub use service::PubsubService;

/// A subscription id, also sipbus's dialog tag: unique, not guessable
/// enough to matter (a refresh must also match Call-ID and the watcher's
/// tag).
pub(crate) fn random_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// FNV-1a: a digest that is the same in every replica and release (NOTIFY
/// bodies, outgoing subscriptions' keys).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
