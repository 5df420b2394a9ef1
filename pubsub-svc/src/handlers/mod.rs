//! The subscription handler extension point: [`SubscriptionHandler`], one
//! Rust trait, implemented by the built-in packages in this folder (one
//! file each, one line in [`BUILTINS`] and [`DEFAULTS`]) and by
//! [`external::ExternalHandler`] over `sipbus.pubsub.v1.SubscriptionHandler`.
//! pubsub-svc cannot tell them apart.

pub mod dialog;
pub mod external;
pub mod message_summary;
pub mod presence;

use async_trait::async_trait;
use bytes::Bytes;
use extension::{Builtin, Builtins, DefaultBuiltin};
use registrar_svc::LocationClient;
use sip_message::{Message, Refusal};
use state_store::Store;

use crate::config::PubsubConfig;

/// One subscription as a handler sees it.
#[derive(Debug, Clone, Copy)]
pub struct SubView<'a> {
    pub id: &'a str,
    /// Lower case.
    pub package: &'a str,
    /// `sip:user@domain`.
    pub resource: &'a str,
    /// `sip:user@domain` of the authenticated watcher, else its From URI.
    pub watcher: &'a str,
    pub content_type: &'a str,
}

/// What sipbus knows that built-in packages read their state from: the
/// store (publications, dialogs) and the location service.
pub struct Sources {
    pub store: Store,
    pub locations: LocationClient,
}

/// A request for the current state of a resource.
#[derive(Clone, Copy)]
pub struct StateCx<'a> {
    pub package: &'a str,
    pub resource: &'a str,
    /// One of the handler's types.
    pub content_type: &'a str,
    /// The subscription (empty for unsolicited NOTIFYs) and the number of
    /// this NOTIFY on it, from 0.
    pub subscription: &'a str,
    pub version: u32,
    pub sources: &'a Sources,
}

/// A NOTIFY of an outgoing subscription, for the local resource it
/// brings the state of.
#[derive(Clone, Copy)]
pub struct NotifiedCx<'a> {
    pub package: &'a str,
    pub resource: &'a str,
    pub sources: &'a Sources,
}

/// A handler's decision on a new subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Active,
    /// Authorization pending: NOTIFYs carry no state.
    Pending,
    Reject(Refusal),
}

/// Why a subscription ended (the reason of its last NOTIFY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Termination {
    /// Expires: 0, or a fetch.
    Unsubscribed,
    Timeout,
    /// A NOTIFY was answered 481 or 408 or not at all.
    Deactivated,
    Rejected,
}

impl Termination {
    /// The Subscription-State reason (RFC 6665 4.1.3); none for an
    /// unsubscribe.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Termination::Unsubscribed => None,
            Termination::Timeout => Some("timeout"),
            Termination::Deactivated => Some("deactivated"),
            Termination::Rejected => Some("rejected"),
        }
    }
}

/// A subscription handler. Only `state` must be written; the defaults
/// follow the package's authorization policy and keep no bookkeeping.
#[async_trait]
pub trait SubscriptionHandler: Send + Sync + 'static {
    /// A new subscription: `allowed` is the policy's verdict.
    async fn subscribe(&self, _sub: SubView<'_>, _request: &Message, allowed: bool) -> Decision {
        if allowed {
            Decision::Active
        } else {
            Decision::Reject(Refusal::forbidden("not authorized to watch this resource"))
        }
    }

    async fn established(&self, _sub: SubView<'_>) {}
    async fn refreshed(&self, _sub: SubView<'_>) {}
    async fn terminated(&self, _sub: SubView<'_>, _why: Termination) {}

    /// The resource's state as a body of `cx.content_type`; `None` when it
    /// cannot be had now (the NOTIFY waits for the next change).
    async fn state(&self, cx: StateCx<'_>) -> Option<Bytes>;

    /// Subscriber role: a NOTIFY arrived on an outgoing subscription; the
    /// handler keeps its state (its `state` gives it to local watchers).
    async fn notified(&self, _cx: NotifiedCx<'_>, _notify: &Message) {}
}

/// The built-ins, by configuration name.
pub static BUILTINS: Builtins<dyn SubscriptionHandler, PubsubConfig> = Builtins(&[
    Builtin {
        name: message_summary::NAME,
        build: message_summary::build,
    },
    Builtin {
        name: presence::NAME,
        build: presence::build,
    },
    Builtin {
        name: dialog::NAME,
        build: dialog::build,
    },
]);

/// Built-ins that run unless the configuration names them.
pub const DEFAULTS: &[DefaultBuiltin] = &[
    DefaultBuiltin {
        name: message_summary::NAME,
        events: &["message-summary"],
        types: &[publish_svc::bodies::summary::CONTENT_TYPE],
    },
    DefaultBuiltin {
        name: presence::NAME,
        events: &["presence"],
        types: &[publish_svc::bodies::pidf::CONTENT_TYPE],
    },
    DefaultBuiltin {
        name: dialog::NAME,
        events: &["dialog"],
        types: &[crate::dialogs::CONTENT_TYPE],
    },
];

/// A built-in that takes no settings.
pub(crate) fn no_settings(settings: &extension::Settings<'_>, name: &str) -> Result<(), extension::ConfigProblem> {
    if settings.parse::<toml::Table>()?.is_empty() {
        Ok(())
    } else {
        Err(settings.problem(format!("the {name} handler takes no settings")))
    }
}
