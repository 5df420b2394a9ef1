//! A call as the store keeps it: both legs (each an RFC 3261 dialog and the
//! flow that reaches its phone), the forked branches, the negotiated SDP
//! and the supplements' data. Any replica loads it, changes it under a
//! version check, and writes it back; nothing lives only in a replica's
//! memory once a request has been answered.

mod media;
mod store;

use std::collections::BTreeMap;
use std::ops::{Index, IndexMut};

use edge_api::{ClientTxRef, Flow, ServerTxRef};
use serde::{Deserialize, Serialize};
use sip_dialog::Dialog;
use sip_message::{Known, Message, ResponseHead};

pub use media::{MediaState, SdpText};
pub use store::{B_CALL_ID_PREFIX, Sessions, StateError};

/// Which side of the back-to-back user agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// Towards the caller.
    A,
    /// Towards the callee.
    B,
}

impl Side {
    pub const BOTH: [Side; 2] = [Side::A, Side::B];

    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// One value per side, indexed by [`Side`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sides<T> {
    pub a: T,
    pub b: T,
}

impl<T> Index<Side> for Sides<T> {
    type Output = T;

    fn index(&self, side: Side) -> &T {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }
}

impl<T> IndexMut<Side> for Sides<T> {
    fn index_mut(&mut self, side: Side) -> &mut T {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }
}

/// Where a call is.
///
/// ```text
/// Trying --18x--> Early --2xx--> Confirmed --BYE / hang-up--> Ended
///    \______________\__CANCEL, failure, no answer__________--> Ended
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// INVITE received, branches sent, nothing heard yet.
    Trying,
    /// A provisional with a tag was relayed to the caller.
    Early,
    /// A branch answered 2xx and the caller got it.
    Confirmed,
    Ended(EndReason),
}

impl Phase {
    pub fn is_setting_up(self) -> bool {
        matches!(self, Phase::Trying | Phase::Early)
    }

    pub fn is_ended(self) -> bool {
        matches!(self, Phase::Ended(_))
    }
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndReason {
    /// The caller cancelled (CANCEL, or BYE before the answer).
    Cancelled,
    /// Every branch refused the call, or none could be reached.
    Rejected,
    /// Nobody answered, the caller never ACKed the answer.
    Timeout,
    /// A BYE from this side.
    Bye(Side),
    /// sipbus hung up both legs (a supplement asked: a missed session
    /// refresh, say).
    HungUp,
    /// sipbus could not go on (an unusable answer, no branch reachable).
    Error,
}

/// One side of the call: its dialog, how to reach its phone, the CSeq of
/// the INVITE that made it, and whether the phone takes UPDATE.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Leg {
    pub dialog: Dialog,
    /// None on the callee's leg until a branch answers.
    pub flow: Option<Flow>,
    pub invite_cseq: u32,
    /// The phone listed UPDATE in Allow (RFC 3311).
    pub allows_update: bool,
}

/// One forked callee-leg INVITE.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Branch {
    pub tx: ClientTxRef,
    pub target: String,
    pub flow: Flow,
    /// Got its final response.
    pub done: bool,
}

/// A re-INVITE without offer was answered 2xx with an offer by the other
/// leg: that leg's ACK waits for the sender's ACK and its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AckPending {
    pub from: Side,
    /// The re-INVITE's CSeq on the sender's leg and on the other leg.
    pub cseq_in: u32,
    pub cseq_out: u32,
}

/// The caller's INVITE: its transaction and what answers it, so any
/// replica answers it without the request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallerInvite {
    pub tx: ServerTxRef,
    pub head: ResponseHead,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// Stable for the whole call; also sipbus's tag on the caller's leg.
    pub id: String,
    pub phase: Phase,
    /// The caller's From URI and the called Request-URI.
    pub caller: String,
    pub callee: String,
    /// The authenticated user that placed the call, or empty.
    pub endpoint: String,
    /// The caller asked for privacy of its identity (RFC 3323 Privacy:
    /// id, user or header): the busy lamp of the callee does not show it.
    #[serde(default)]
    pub caller_private: bool,
    /// Boxed, like `media`: a session is moved and copied through many
    /// awaits, and tasks are as large as what they hold across them.
    pub legs: Box<Sides<Leg>>,
    pub invite: CallerInvite,
    pub branches: Vec<Branch>,
    /// The caller's ACK for the 2xx arrived.
    pub caller_acked: bool,
    pub ack_pending: Option<AckPending>,
    pub media: Box<MediaState>,
    /// When an offer (re-INVITE / UPDATE) was relayed that has no final
    /// response yet: another offer now is glare (491). A pending offer
    /// whose relaying replica died expires.
    pub offer_pending_since_ms: Option<u64>,
    /// Supplement names, in the order this session runs them.
    pub chain: Vec<String>,
    /// Supplement name → its state.
    pub data: BTreeMap<String, serde_json::Value>,
    /// Unix milliseconds the INVITE arrived.
    #[serde(default)]
    pub started_ms: u64,
    /// The session-svc replica that wrote the record last (for operators:
    /// `sipbus ctl calls`).
    #[serde(default)]
    pub last_replica: String,
}

/// A pending offer older than this is taken as abandoned (its relaying
/// replica died): more than an INVITE may wait for its final response.
const PENDING_MAX_MS: u64 = 200_000;

/// What supplements changed in their state: name and new value (`None`:
/// removed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateChanges(Vec<(String, Option<serde_json::Value>)>);

impl StateChanges {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Applies the changes to `s` (a newer copy of the record), leaving
    /// the states nobody here changed as another replica wrote them.
    pub fn apply(&self, s: &mut Session) {
        for (name, value) in &self.0 {
            match value {
                Some(v) => s.data.insert(name.clone(), v.clone()),
                None => s.data.remove(name),
            };
        }
    }
}

impl Session {
    /// An offer relayed or sent on this call has no final response yet
    /// (and is recent enough to be alive).
    pub fn offer_pending(&self, now_ms: u64) -> bool {
        self.offer_pending_since_ms
            .is_some_and(|since| now_ms.saturating_sub(since) < PENDING_MAX_MS)
    }

    /// The supplement states that differ from `before`.
    pub fn state_changes(&self, before: &BTreeMap<String, serde_json::Value>) -> StateChanges {
        StateChanges(
            before
                .keys()
                .chain(self.data.keys())
                .filter(|k| before.get(*k) != self.data.get(*k))
                .map(|k| (k.clone(), self.data.get(k).cloned()))
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect(),
        )
    }

    /// Which leg a request belongs to (its Call-ID and tags).
    pub fn side_of(&self, request: &Message) -> Option<Side> {
        Side::BOTH.into_iter().find(|s| self.legs[*s].dialog.matches(request))
    }

    /// A response to the caller's INVITE with sipbus's tag; a
    /// dialog-creating one (101-299) carries the INVITE's Record-Route
    /// (RFC 3261 12.1.1), so the caller's route set matches sipbus's.
    pub fn caller_response(&self, code: u16, reason: &str) -> Message {
        let mut resp = self.invite.head.response(code, reason, Some(&self.id));
        if (101..300).contains(&code) {
            for rr in self.legs.a.dialog.route_set() {
                resp.push_header(Known::RecordRoute, rr);
            }
        }
        resp
    }
}

#[cfg(test)]
impl Session {
    /// A session with both legs' identifiers set, as unit tests need it:
    /// the caller's leg `caller-call` (tags `theirs-a` / the id), the
    /// callee's `sb-<id>` (tags `ours-b` / `theirs-b`).
    pub(crate) fn for_tests(id: &str) -> Session {
        let invite = crate::testing::invite_from("caller-call", "theirs-a");
        let mut b = Dialog::uac(
            &format!("{B_CALL_ID_PREFIX}{id}"),
            "ours-b",
            "<sip:alice@example.com>",
            "<sip:bob@example.com>",
            1,
        );
        let ok = crate::testing::answer_from(&format!("{B_CALL_ID_PREFIX}{id}"), "ours-b", "theirs-b");
        b.establish(&ok).expect("a test 200 establishes the dialog");
        Session {
            id: id.into(),
            phase: Phase::Trying,
            caller: "sip:alice@example.com".into(),
            callee: "sip:bob@example.com".into(),
            endpoint: String::new(),
            caller_private: false,
            legs: Box::new(Sides {
                a: Leg {
                    dialog: Dialog::uas(&invite, id).expect("a test INVITE makes a dialog"),
                    flow: None,
                    invite_cseq: 1,
                    allows_update: true,
                },
                b: Leg {
                    dialog: b,
                    flow: None,
                    invite_cseq: 1,
                    allows_update: true,
                },
            }),
            invite: CallerInvite {
                tx: ServerTxRef {
                    edge: edge_api::EdgeId::new("edge"),
                    id: edge_api::ServerTxId(1),
                },
                head: invite.response_head(),
            },
            branches: Vec::new(),
            caller_acked: false,
            ack_pending: None,
            media: Box::default(),
            offer_pending_since_ms: None,
            chain: Vec::new(),
            data: BTreeMap::new(),
            started_ms: 0,
            last_replica: String::new(),
        }
    }
}
