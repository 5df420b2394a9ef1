//! publish-svc: the event state compositor of RFC 3903. PUBLISH creates,
//! refreshes, modifies and removes publications (entity tags, expiry on
//! store timers); the publication handler of each event package validates
//! bodies and composes every live publication of a resource into its
//! state; each change of that state is written with the publications and
//! announced on the store's event log, where pubsub-svc picks it up.
//! Stateless between requests: any replica serves any PUBLISH.

#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod bodies;
pub mod config;
pub mod handlers;
mod publication;
mod service;
pub mod state;

pub use config::PublishConfig;
pub use handlers::{Accepted, Change, PublicationHandler};
pub use publication::Publication;
pub use service::EXPIRY_QUEUE;
pub use service::{PublishService, Publisher};
pub use state::{Composed, RESOURCE_CHANGES, ResourceChange};

/// An unguessable token (entity tags): 128 bits from the OS, hex;
/// `None` when the OS has no randomness to give (the request fails rather
/// than hand out a guessable tag).
pub fn unguessable() -> Option<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}
