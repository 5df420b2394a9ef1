//! Dialog state events (RFC 4235 states), one per leg and change, on the
//! store's event log: the dialog event package (BLF) is built on them.

use serde::Serialize;
use state_store::Store;
use tracing::debug;

use crate::session::{EndReason, Session, Side};

/// The event log dialog events go to.
pub const DIALOG_EVENTS: &str = "sipbus:dialog:events";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DialogState {
    Trying,
    Early,
    Confirmed,
    Terminated,
}

/// Which leg an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LegName {
    /// Towards the caller.
    A,
    /// Towards the callee.
    B,
}

/// RFC 4235 `direction`, from the phone's point of view: the caller's leg
/// is `initiator`, the callee's `recipient`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Initiator,
    Recipient,
}

/// RFC 4235 `event` of a terminated dialog, from the phone's point of
/// view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Termination {
    Cancelled,
    Rejected,
    Timeout,
    LocalBye,
    RemoteBye,
    Error,
}

impl Termination {
    /// How `reason` reads on `leg`: a BYE is local for the phone that sent
    /// it and remote for the other; a hang-up by sipbus is remote for both.
    pub fn of(reason: EndReason, leg: Side) -> Termination {
        match reason {
            EndReason::Cancelled => Termination::Cancelled,
            EndReason::Rejected => Termination::Rejected,
            EndReason::Timeout => Termination::Timeout,
            EndReason::Bye(by) if by == leg => Termination::LocalBye,
            EndReason::Bye(_) | EndReason::HungUp => Termination::RemoteBye,
            EndReason::Error => Termination::Error,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct DialogEvent<'a> {
    pub session: &'a str,
    pub leg: LegName,
    pub call_id: &'a str,
    /// The phone's tag and sipbus's tag on this leg.
    pub remote_tag: &'a str,
    pub local_tag: &'a str,
    pub direction: Direction,
    pub state: DialogState,
    /// The phone on this leg and the party it talks to (empty when that
    /// party asked for privacy).
    pub party: &'a str,
    pub peer: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Termination>,
    pub at_ms: u64,
}

fn encode(s: &Session, side: Side, state: DialogState, reason: Option<EndReason>) -> Option<bytes::Bytes> {
    let dialog = &s.legs[side].dialog;
    // The callee's lamp does not name a caller that asked for privacy.
    let caller_shown = if s.caller_private { "" } else { s.caller.as_str() };
    let (leg, direction, party, peer) = match side {
        Side::A => (LegName::A, Direction::Initiator, s.caller.as_str(), s.callee.as_str()),
        Side::B => (LegName::B, Direction::Recipient, s.callee.as_str(), caller_shown),
    };
    let ev = DialogEvent {
        session: &s.id,
        leg,
        call_id: dialog.call_id(),
        remote_tag: dialog.remote_tag(),
        local_tag: dialog.local_tag(),
        direction,
        state,
        party,
        peer,
        reason: reason.map(|r| Termination::of(r, side)),
        at_ms: state_store::now_ms(),
    };
    serde_json::to_vec(&ev).ok().map(bytes::Bytes::from)
}

/// Publishes the state of one leg.
pub async fn publish(store: &Store, s: &Session, side: Side, state: DialogState) {
    let Some(ev) = encode(s, side, state, None) else {
        return;
    };
    if let Err(e) = store.publish(DIALOG_EVENTS, ev).await {
        debug!(error = %e, "dialog event not published");
    }
}

/// Publishes one state for both legs, in one round trip; `Terminated`
/// with how the call ended.
pub async fn publish_both(store: &Store, s: &Session, state: DialogState, reason: Option<EndReason>) {
    let evs: Vec<bytes::Bytes> = Side::BOTH
        .into_iter()
        .filter_map(|side| encode(s, side, state, reason))
        .collect();
    if let Err(e) = store.publish_many(DIALOG_EVENTS, &evs).await {
        debug!(error = %e, "dialog events not published");
    }
}
