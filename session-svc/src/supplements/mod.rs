//! The session supplement extension point: [`SessionSupplement`], one Rust
//! trait on SIP values with a typed state per supplement and session. The
//! built-ins in this folder implement it (one file each, one line in
//! [`BUILTINS`]); [`external::ExternalSupplement`] implements it over the
//! `sipbus.session.v1.SessionSupplement` gRPC service, whose comments are
//! the semantics. The chain cannot tell them apart.

pub mod caller_id;
pub(crate) mod chain;
mod draft;
pub mod external;
pub mod rfc3326;
pub mod session_timer;

use std::time::Duration;

use async_trait::async_trait;
use extension::{Builtin, Builtins};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sip_message::{Message, Refusal};

pub use chain::Supplements;
pub use draft::Draft;

/// Why sipbus would refuse a supplement's edit of header `name` (`value`
/// `None` for a removal), or `None` when it is applied: the rule every
/// supplement's edits meet, for tools that check an external one.
pub fn edit_refusal(name: &str, value: Option<&str>) -> Option<&'static str> {
    draft::check(name, value).err().map(draft::Refused::reason)
}

use crate::config::SessionConfig;
use crate::session::Side;

/// What a supplement knows of the session it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Stable for the whole call.
    pub id: String,
    /// The caller's From URI and the called Request-URI of the first
    /// INVITE.
    pub caller: String,
    pub callee: String,
    /// The authenticated user that placed the call, or empty.
    pub endpoint: String,
}

/// Something a supplement asks sipbus to do for the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Arms (or moves) the supplement's timer: [`SessionSupplement::timer`]
    /// runs when it fires, on one replica.
    SetTimer(Duration),
    CancelTimer,
    /// Refreshes the dialog on a leg (UPDATE when the phone takes it, else
    /// a re-INVITE with the last description sent there).
    Refresh(Side),
    /// Ends the call: BYE on both legs with this Reason (RFC 3326).
    HangUp(String),
}

/// One callback's context: the session, the supplement's own state (read
/// from the session record before, written back after), and what it asks
/// sipbus to do.
pub struct Cx<'a, S> {
    pub session: &'a SessionInfo,
    pub state: &'a mut S,
    actions: &'a mut Vec<Action>,
}

impl<'a, S> Cx<'a, S> {
    pub fn new(session: &'a SessionInfo, state: &'a mut S, actions: &'a mut Vec<Action>) -> Self {
        Self {
            session,
            state,
            actions,
        }
    }

    pub fn set_timer(&mut self, after: Duration) {
        self.actions.push(Action::SetTimer(after));
    }

    pub fn cancel_timer(&mut self) {
        self.actions.push(Action::CancelTimer);
    }

    pub fn refresh(&mut self, side: Side) {
        self.actions.push(Action::Refresh(side));
    }

    pub fn hang_up(&mut self, reason: &str) {
        self.actions.push(Action::HangUp(reason.to_owned()));
    }
}

/// What becomes of a request a supplement heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// Stop the chain and answer the request with this.
    Stop(Refusal),
}

/// A session supplement. Every callback has a default that does nothing,
/// so a supplement implements only what it needs.
///
/// Callbacks of requests and responses only come for the methods the
/// supplement's configuration names (all, by default); `begin` and `end`
/// always come, `end` also when the call failed. Outgoing callbacks may run
/// twice for one message (a retried send): edits must be idempotent.
#[async_trait]
pub trait SessionSupplement: Send + Sync + 'static {
    /// The supplement's state for one session, stored with it (any replica
    /// sees it); `Default` before the first callback.
    type State: Serialize + DeserializeOwned + Default + Send + Sync + 'static;

    /// The supplement arms a timer ([`Cx::set_timer`]). Only these have
    /// their timer cancelled when a session ends (a store round trip
    /// spared for the rest), and only theirs are armed.
    const TIMER: bool = false;

    async fn begin(&self, _cx: &mut Cx<'_, Self::State>) {}

    async fn end(&self, _cx: &mut Cx<'_, Self::State>) {}

    /// A request arrived on `side`. The chain runs in order; a `Stop`
    /// answers the request and it goes no further.
    async fn incoming_request(&self, _cx: &mut Cx<'_, Self::State>, _side: Side, _request: &Message) -> Verdict {
        Verdict::Continue
    }

    /// A response arrived on `side`. Every supplement hears it; none can
    /// stop it.
    async fn incoming_response(&self, _cx: &mut Cx<'_, Self::State>, _side: Side, _response: &Message) {}

    /// sipbus is about to send a request on `side`.
    async fn outgoing_request(&self, _cx: &mut Cx<'_, Self::State>, _side: Side, _draft: &mut Draft<'_>) {}

    /// sipbus is about to send a response on `side`.
    async fn outgoing_response(&self, _cx: &mut Cx<'_, Self::State>, _side: Side, _draft: &mut Draft<'_>) {}

    /// The supplement's timer fired.
    async fn timer(&self, _cx: &mut Cx<'_, Self::State>) {}
}

/// The built-in supplements, by the name a configuration uses. A new
/// built-in is a file in this folder and one line here.
pub static BUILTINS: Builtins<dyn chain::Erased, SessionConfig> = Builtins(&[
    Builtin {
        name: "caller-id",
        build: caller_id::build,
    },
    Builtin {
        name: "reason",
        build: rfc3326::build,
    },
    Builtin {
        name: "session-timer",
        build: session_timer::build,
    },
]);
