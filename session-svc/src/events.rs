//! Dialog state events (RFC 4235 states), one per leg and change, on the
//! store's event log: the dialog event package (BLF) is built on them.

use serde::Serialize;
use state_store::Store;
use tracing::debug;

use crate::state::{Session, Side};

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

#[derive(Debug, Serialize)]
pub struct DialogEvent<'a> {
    pub session: &'a str,
    /// "a" (towards the caller) or "b" (towards the callee).
    pub leg: &'static str,
    pub call_id: &'a str,
    /// The phone's tag and sipbus's tag on this leg.
    pub remote_tag: &'a str,
    pub local_tag: &'a str,
    /// From the phone's point of view (RFC 4235 `direction`): the caller's
    /// leg is `initiator`, the callee's `recipient`.
    pub direction: &'static str,
    pub state: DialogState,
    /// The phone on this leg and the party it talks to.
    pub party: &'a str,
    pub peer: &'a str,
    /// For `terminated`: RFC 4235 event (cancelled, rejected, timeout,
    /// local-bye, remote-bye, error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    pub at_ms: u64,
}

fn encode(s: &Session, side: Side, state: DialogState, reason: Option<&str>) -> Option<bytes::Bytes> {
    let leg = s.leg(side);
    let (name, direction, party, peer) = match side {
        Side::A => ("a", "initiator", s.caller.as_str(), s.callee.as_str()),
        Side::B => ("b", "recipient", s.callee.as_str(), s.caller.as_str()),
    };
    let ev = DialogEvent {
        session: &s.id,
        leg: name,
        call_id: &leg.call_id,
        remote_tag: &leg.remote_tag,
        local_tag: &leg.local_tag,
        direction,
        state,
        party,
        peer,
        reason,
        at_ms: state_store::now_ms(),
    };
    serde_json::to_vec(&ev).ok().map(bytes::Bytes::from)
}

/// Publishes the state of one leg.
pub async fn publish(store: &Store, s: &Session, side: Side, state: DialogState, reason: Option<&str>) {
    let Some(ev) = encode(s, side, state, reason) else {
        return;
    };
    if let Err(e) = store.publish(DIALOG_EVENTS, ev).await {
        debug!(error = %e, "dialog event not published");
    }
}

/// Publishes one state for both legs, in one round trip.
pub async fn publish_both(store: &Store, s: &Session, state: DialogState, reason: Option<&str>) {
    let evs: Vec<bytes::Bytes> = [Side::A, Side::B]
        .into_iter()
        .filter_map(|side| encode(s, side, state, reason))
        .collect();
    if let Err(e) = store.publish_many(DIALOG_EVENTS, &evs).await {
        debug!(error = %e, "dialog events not published");
    }
}

/// Publishes the end of a call hung up by `by`: `local-bye` for that leg,
/// `remote-bye` for the other (RFC 4235, from each phone's point of view).
pub async fn publish_bye(store: &Store, s: &Session, by: Side) {
    let evs: Vec<bytes::Bytes> = [(by, "local-bye"), (by.other(), "remote-bye")]
        .into_iter()
        .filter_map(|(side, reason)| encode(s, side, DialogState::Terminated, Some(reason)))
        .collect();
    if let Err(e) = store.publish_many(DIALOG_EVENTS, &evs).await {
        debug!(error = %e, "dialog events not published");
    }
}
