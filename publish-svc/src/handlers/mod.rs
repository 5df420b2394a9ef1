//! The publication handler extension point: [`PublicationHandler`], one
//! Rust trait, implemented by the built-ins in this folder (one file each,
//! one line in [`BUILTINS`] and [`DEFAULTS`]) and by
//! [`external::ExternalHandler`] over `sipbus.publish.v1.PublicationHandler`.
//! publish-svc cannot tell them apart.

pub mod external;
pub mod message_summary;
pub mod presence;

use async_trait::async_trait;
use extension::{Builtin, Builtins, DefaultBuiltin};
use sip_message::Refusal;

use crate::config::PublishConfig;
use crate::publication::Publication;
use crate::state::Composed;

/// Which resource of which package a call is about.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Lower case.
    pub package: &'a str,
    /// `sip:user@domain`.
    pub resource: &'a str,
}

/// A handler's verdict on a published body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Store this body (the published one, or a normalised form).
    Store(String),
    /// Refuse the PUBLISH.
    Reject(Refusal),
}

/// What happened to a publication (RFC 3903 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Initialized,
    Refreshed,
    Modified,
    Removed,
    Expired,
}

/// A publication handler. Only `compose` must be thought about; the
/// defaults accept any body and compose to the newest publication.
#[async_trait]
pub trait PublicationHandler: Send + Sync + 'static {
    /// A body arrived (initial or modify): validate and normalise it.
    async fn publication(&self, _scope: Scope<'_>, publication: &Publication) -> Accepted {
        Accepted::Store(publication.body.clone())
    }

    /// A publication changed; for the handler's own bookkeeping.
    async fn changed(&self, _scope: Scope<'_>, _publication: &Publication, _change: Change) {}

    /// The state of `resource` from its live publications (oldest first,
    /// never empty).
    async fn compose(&self, _scope: Scope<'_>, publications: &[Publication]) -> Composed {
        newest(publications)
    }
}

/// "The newest publication wins": the composition of packages whose
/// state cannot be merged.
pub fn newest(publications: &[Publication]) -> Composed {
    publications
        .iter()
        .max_by_key(|p| p.seq)
        .map(|p| Composed {
            content_type: p.content_type.clone(),
            body: p.body.clone(),
        })
        .unwrap_or(Composed {
            content_type: String::new(),
            body: String::new(),
        })
}

/// The built-ins, by configuration name.
pub static BUILTINS: Builtins<dyn PublicationHandler, PublishConfig> = Builtins(&[
    Builtin {
        name: presence::NAME,
        build: presence::build,
    },
    Builtin {
        name: message_summary::NAME,
        build: message_summary::build,
    },
]);

/// Built-ins that run unless the configuration names them, with their
/// packages and body types.
pub const DEFAULTS: &[DefaultBuiltin] = &[
    DefaultBuiltin {
        name: presence::NAME,
        events: &["presence"],
        types: &[crate::bodies::pidf::CONTENT_TYPE],
    },
    DefaultBuiltin {
        name: message_summary::NAME,
        events: &["message-summary"],
        types: &[crate::bodies::summary::CONTENT_TYPE],
    },
];
