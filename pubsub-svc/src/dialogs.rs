//! Each user's calls as the dialog package shows them, kept from
//! session-svc's dialog events (its `events.rs` writes them; the fields
//! below are that contract): one record per address of record, its
//! dialogs' RFC 4235 states. States only move forward, so events handled
//! out of order by several replicas never show a call going back.

use std::time::Duration;

use bytes::Bytes;
use publish_svc::bodies::escape;
use serde::{Deserialize, Serialize};
use state_store::{Expect, Store, StoreError};

pub const CONTENT_TYPE: &str = "application/dialog-info+xml";
pub const NS: &str = "urn:ietf:params:xml:ns:dialog-info";

/// session-svc's dialog event log.
pub const DIALOG_EVENTS: &str = "sipbus:dialog:events";

/// How long a terminated dialog stays in the state: long enough for the
/// NOTIFY that says so.
const TERMINATED_KEPT_MS: u64 = 10_000;
/// Dialogs kept per user (the oldest terminated ones go first).
const MAX_DIALOGS: usize = 32;
/// A user's record outlives its last event by this much: a call's
/// events stop when the call ends, and sessions are bounded in time.
const RECORD_TTL: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DialogState {
    Trying,
    Early,
    Confirmed,
    Terminated,
}

impl DialogState {
    fn as_str(self) -> &'static str {
        match self {
            DialogState::Trying => "trying",
            DialogState::Early => "early",
            DialogState::Confirmed => "confirmed",
            DialogState::Terminated => "terminated",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Initiator,
    Recipient,
}

/// One event of session-svc's log (fields sipbus does not use are
/// ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct DialogEvent {
    pub session: String,
    pub leg: String,
    pub call_id: String,
    pub remote_tag: String,
    pub local_tag: String,
    pub direction: Direction,
    pub state: DialogState,
    /// The phone on this leg and the party it talks to (URIs).
    pub party: String,
    pub peer: String,
    #[serde(default)]
    pub reason: Option<String>,
    pub at_ms: u64,
}

/// One dialog of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `session/leg`: unique and stable for the dialog's life.
    pub id: String,
    // Emptied in the tombstone of a dialog that ended unwatched (see
    // `apply`), and then left out of the record.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub call_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_tag: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remote_tag: String,
    pub direction: Direction,
    pub state: DialogState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at_ms: u64,
}

/// A user's dialogs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dialogs {
    pub entries: Vec<Entry>,
}

fn key(aor: &str) -> String {
    format!("dlg:{{{aor}}}")
}

pub async fn load(store: &Store, aor: &str) -> Result<Dialogs, StoreError> {
    Ok(load_versioned(store, aor).await?.0)
}

async fn load_versioned(store: &Store, aor: &str) -> Result<(Dialogs, Option<u64>), StoreError> {
    Ok(match store.get(&key(aor)).await? {
        Some(v) => (serde_json::from_slice(&v.value).unwrap_or_default(), Some(v.version)),
        None => (Dialogs::default(), None),
    })
}

/// What an event did to the user's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The dialog package's state changed.
    pub changed: bool,
    /// Whether the user is in a call changed (presence's on-the-phone).
    pub in_call_changed: bool,
}

/// Applies one event to `aor`'s record, in a compare-and-set. A dialog
/// that ends while nobody `watched` the user leaves only a tombstone (its
/// id, state and time: what keeps its late, reordered events from bringing
/// it back): a busy user's record stays a few hundred bytes instead of
/// thirty-two full dialogs decoded and encoded at every event.
pub async fn apply(store: &Store, aor: &str, ev: &DialogEvent, watched: bool) -> Result<Applied, StoreError> {
    for _ in 0..16 {
        let (mut d, version) = load_versioned(store, aor).await?;
        let was_in_call = d.in_a_call();
        let id = format!("{}/{}", ev.session, ev.leg);
        let changed = match d.entries.iter_mut().find(|e| e.id == id) {
            Some(e) if ev.state <= e.state => false,
            Some(e) => {
                e.state = ev.state;
                e.remote_tag.clone_from(&ev.remote_tag);
                e.reason.clone_from(&ev.reason);
                e.at_ms = ev.at_ms;
                if ev.state == DialogState::Terminated && !watched {
                    e.tombstone();
                }
                true
            }
            None => {
                d.entries.push(Entry {
                    id,
                    call_id: ev.call_id.clone(),
                    local_tag: ev.local_tag.clone(),
                    remote_tag: ev.remote_tag.clone(),
                    direction: ev.direction,
                    state: ev.state,
                    peer: ev.peer.clone(),
                    reason: ev.reason.clone(),
                    at_ms: ev.at_ms,
                });
                true
            }
        };
        if !changed {
            return Ok(Applied {
                changed: false,
                in_call_changed: false,
            });
        }
        d.prune(ev.at_ms);
        let json = serde_json::to_vec(&d).map_err(|_| StoreError::Protocol { op: "encode dialogs" })?;
        let expect = version.map_or(Expect::Absent, Expect::Version);
        match store.put(&key(aor), Bytes::from(json), expect, Some(RECORD_TTL)).await {
            Ok(_) => {
                return Ok(Applied {
                    changed: true,
                    in_call_changed: was_in_call != d.in_a_call(),
                });
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict { key: key(aor) })
}

impl Entry {
    fn tombstone(&mut self) {
        for field in [
            &mut self.call_id,
            &mut self.local_tag,
            &mut self.remote_tag,
            &mut self.peer,
        ] {
            field.clear();
        }
        self.reason = None;
    }
}

impl Dialogs {
    /// In a call: a dialog confirmed and not yet over.
    pub fn in_a_call(&self) -> bool {
        self.entries.iter().any(|e| e.state == DialogState::Confirmed)
    }

    /// Drops dialogs terminated long enough ago, then the oldest
    /// terminated ones beyond the bound.
    fn prune(&mut self, now_ms: u64) {
        self.entries
            .retain(|e| e.state != DialogState::Terminated || e.at_ms + TERMINATED_KEPT_MS > now_ms);
        while self.entries.len() > MAX_DIALOGS {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| (e.state != DialogState::Terminated, e.at_ms))
                .map(|(i, _)| i);
            match oldest {
                Some(i) => {
                    self.entries.remove(i);
                }
                None => break,
            }
        }
    }

    /// The full-state `dialog-info` document (RFC 4235 4.1) for `entity`.
    pub fn dialog_info(&self, entity: &str, version: u32, now_ms: u64) -> String {
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<dialog-info xmlns=\"{NS}\" version=\"{version}\" state=\"full\" entity=\"{}\">\n",
            escape(entity)
        );
        for e in &self.entries {
            if e.state == DialogState::Terminated && (e.at_ms + TERMINATED_KEPT_MS <= now_ms || e.call_id.is_empty()) {
                continue;
            }
            let event = match (&e.reason, e.state) {
                (Some(r), DialogState::Terminated) => format!(" event=\"{}\"", escape(r)),
                _ => String::new(),
            };
            let direction = match e.direction {
                Direction::Initiator => "initiator",
                Direction::Recipient => "recipient",
            };
            out.push_str(&format!(
                "  <dialog id=\"{}\" call-id=\"{}\" local-tag=\"{}\" remote-tag=\"{}\" direction=\"{direction}\">\n    <state{event}>{}</state>\n",
                escape(&e.id),
                escape(&e.call_id),
                escape(&e.local_tag),
                escape(&e.remote_tag),
                e.state.as_str()
            ));
            if !e.peer.is_empty() {
                out.push_str(&format!(
                    "    <remote><identity>{}</identity><target uri=\"{}\"/></remote>\n",
                    escape(&e.peer),
                    escape(&e.peer)
                ));
            }
            out.push_str("  </dialog>\n");
        }
        out.push_str("</dialog-info>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(id: &str, state: DialogState, peer: &str) -> Entry {
        Entry {
            id: id.into(),
            call_id: "c@x".into(),
            local_tag: "l".into(),
            remote_tag: "r".into(),
            direction: Direction::Recipient,
            state,
            peer: peer.into(),
            reason: (state == DialogState::Terminated).then(|| "remote-bye".into()),
            at_ms: 1000,
        }
    }

    /// An event of bob's side of call `session`.
    fn bob_event(session: &str, call_id: &str, state: DialogState) -> DialogEvent {
        DialogEvent {
            session: session.into(),
            leg: "b".into(),
            call_id: call_id.into(),
            remote_tag: "r".into(),
            local_tag: "l".into(),
            direction: Direction::Recipient,
            state,
            party: "sip:bob@example.com".into(),
            peer: "sip:alice@example.com".into(),
            reason: (state == DialogState::Terminated).then(|| "bye".into()),
            at_ms: state_store::now_ms(),
        }
    }

    #[tokio::test]
    async fn states_only_move_forward() {
        let store = Store::memory();
        let ev = |state| bob_event("s1", "c", state);
        let aor = "sip:bob@example.com";
        assert!(
            apply(&store, aor, &ev(DialogState::Confirmed), true)
                .await
                .unwrap()
                .in_call_changed
        );
        // An early event handled late changes nothing.
        assert!(!apply(&store, aor, &ev(DialogState::Early), true).await.unwrap().changed);
        assert!(load(&store, aor).await.unwrap().in_a_call());
        assert!(
            apply(&store, aor, &ev(DialogState::Terminated), true)
                .await
                .unwrap()
                .in_call_changed
        );
        let d = load(&store, aor).await.unwrap();
        assert!(!d.in_a_call());
        assert_eq!(
            d.entries[0].call_id, "c",
            "a watched ending keeps its details for the NOTIFY"
        );
    }

    #[tokio::test]
    async fn an_unwatched_ending_leaves_a_tombstone_that_still_orders_events() {
        let store = Store::memory();
        let ev = |state| bob_event("s2", "call-with-a-long-id@192.0.2.1", state);
        let aor = "sip:bob@example.com";
        apply(&store, aor, &ev(DialogState::Confirmed), true).await.unwrap();
        apply(&store, aor, &ev(DialogState::Terminated), false).await.unwrap();
        // The confirmed event handled late (another replica) is refused.
        assert!(
            !apply(&store, aor, &ev(DialogState::Confirmed), true)
                .await
                .unwrap()
                .changed
        );
        let d = load(&store, aor).await.unwrap();
        assert!(!d.in_a_call());
        assert!(d.entries[0].call_id.is_empty() && d.entries[0].peer.is_empty());
        let raw = store.get(&key(aor)).await.unwrap().unwrap().value;
        assert!(raw.len() < 100, "{}", String::from_utf8_lossy(&raw));
        let doc = d.dialog_info(aor, 1, state_store::now_ms());
        assert!(!doc.contains("<dialog "), "a tombstone is not a dialog to show: {doc}");
    }

    proptest::proptest! {
        #[test]
        fn dialog_info_is_well_formed_for_any_input(entity in ".{0,40}", peer in ".{0,40}", id in ".{0,20}", version: u32) {
            let d = Dialogs { entries: vec![entry(&id, DialogState::Confirmed, &peer), entry("t", DialogState::Terminated, "")] };
            let doc = d.dialog_info(&entity, version, 2000);
            let parsed = roxmltree::Document::parse(&doc);
            proptest::prop_assert!(parsed.is_ok(), "{}", doc);
            let parsed = parsed.unwrap();
            let root = parsed.root_element();
            let v = version.to_string();
            proptest::prop_assert_eq!(root.attribute("version"), Some(v.as_str()));
            proptest::prop_assert_eq!(root.children().filter(|c| c.has_tag_name((NS, "dialog"))).count(), 2);
        }
    }
}
