//! A call as the store keeps it: both legs, the forked branches, the
//! negotiated SDP and the supplements' data. Any replica loads it, changes
//! it under a version check, and writes it back; nothing lives only in a
//! replica's memory once a request has been answered.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use edge_api::{ClientTxRef, Flow, ServerTxRef};
use serde::{Deserialize, Serialize};
use state_store::{Expect, Store, StoreError};

/// Calls whose B-leg Call-ID we chose carry the session id after this
/// prefix, so a request on the B-leg needs no index lookup.
pub const B_CALL_ID_PREFIX: &str = "sb-";

/// Times a read-modify-write is retried when another replica wrote first.
const CAS_ATTEMPTS: usize = 16;

/// How long an ended session is kept: retransmissions and late requests
/// (a BYE crossing ours) find it and get 481, not a new call (64*T1).
const ENDED_TTL: Duration = Duration::from_secs(32);

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// INVITE received, branches sent, nothing heard yet.
    Trying,
    /// A provisional with a tag was relayed to the caller.
    Early,
    /// A branch answered 2xx and the caller got it.
    Confirmed,
    /// Over: BYE, CANCEL, failure or no answer.
    Ended,
}

/// One side of the back-to-back user agent, from sipbus's point of view.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Leg {
    pub call_id: String,
    /// sipbus's tag on this leg.
    pub local_tag: String,
    /// The peer's tag; empty on the B-leg until a branch answers.
    pub remote_tag: String,
    /// The header values (URI with display name, no tag) of sipbus's side
    /// and the peer's side, as From / To of requests sipbus sends.
    pub local_uri: String,
    pub remote_uri: String,
    /// The peer's Contact URI: the Request-URI of requests to it.
    pub remote_target: String,
    /// Route header values for requests to it.
    pub route_set: Vec<String>,
    /// The CSeq of sipbus's last request on this leg.
    pub local_cseq: u32,
    /// The highest CSeq seen from the peer.
    pub remote_cseq: u32,
    /// How to reach the peer; none on the callee's leg until it answers.
    pub flow: Option<Flow>,
}

/// One forked B-leg INVITE.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Branch {
    /// Its client transaction.
    pub tx: ClientTxRef,
    pub target: String,
    pub flow: Flow,
    /// Got its final response.
    pub done: bool,
}

/// The SDP of the session (text: the sdp model is UTF-8).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Media {
    /// The last offer / answer exchange: as received from the offerer, as
    /// forwarded, as the other leg answered, and the answer sent back.
    pub offer: String,
    pub forwarded: String,
    pub answer: String,
    pub answered: String,
    /// Handler per m= index.
    pub handlers: Vec<String>,
    /// The last description sent on each leg (for o= versions).
    pub last_to_a: String,
    pub last_to_b: String,
    /// The caller's initial INVITE had no SDP: the offer comes in the 2xx
    /// and the answer in the ACK (RFC 3261 13.2.1).
    pub late_offer: bool,
    /// The o= session ids sipbus uses on each leg.
    pub origin_a: u64,
    pub origin_b: u64,
    /// The branch whose early SDP the caller got (only that one's is
    /// relayed).
    #[serde(default)]
    pub early_branch: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub phase: Phase,
    pub caller: String,
    pub callee: String,
    pub endpoint: String,
    pub a: Leg,
    pub b: Leg,
    /// The caller's INVITE without its body, so any replica can answer it.
    pub a_request: String,
    /// The caller's INVITE transaction.
    pub a_tx: ServerTxRef,
    pub a_invite_cseq: u32,
    /// The CSeq of the B-leg INVITE sipbus sent (all branches share it).
    pub b_invite_cseq: u32,
    pub branches: Vec<Branch>,
    /// The caller's ACK for the 2xx arrived.
    pub a_acked: bool,
    /// A re-INVITE whose other-leg ACK waits for the sender's.
    pub ack_pending: Option<AckPending>,
    pub media: Media,
    /// When an offer (re-INVITE / UPDATE) was relayed that has no final
    /// response yet: another offer now is glare (491). A pending offer
    /// whose relaying replica died expires.
    pub offer_pending_since_ms: Option<u64>,
    /// Supplement names, in the order this session runs them.
    pub chain: Vec<String>,
    /// Supplement name → its named values.
    pub data: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

impl Session {
    pub fn leg(&self, side: Side) -> &Leg {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    pub fn leg_mut(&mut self, side: Side) -> &mut Leg {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// The caller's INVITE (without body), to answer it from any replica.
    pub fn a_invite(&self) -> Option<sip_message::Message> {
        sip_message::Message::parse(Bytes::from(self.a_request.clone())).ok()
    }

    /// A response to the caller's INVITE with sipbus's tag; a
    /// dialog-creating one (101-299) carries the INVITE's Record-Route
    /// (RFC 3261 12.1.1), so the caller's route set matches sipbus's.
    pub fn a_response(&self, code: u16, reason: &str) -> Option<sip_message::Message> {
        Some(self.a_response_to(&self.a_invite()?, code, reason))
    }

    /// [`Session::a_response`] from the INVITE at hand (the replica that
    /// received it keeps it; others parse the stored copy).
    pub fn a_response_to(&self, invite: &sip_message::Message, code: u16, reason: &str) -> sip_message::Message {
        let mut resp = invite.make_response(code, reason, Some(&self.a.local_tag));
        if (101..300).contains(&code) {
            for rr in invite.known_fields(sip_message::Known::RecordRoute) {
                resp.push_header(sip_message::Known::RecordRoute, rr);
            }
        }
        resp
    }

    /// Which leg a message with this Call-ID and these tags belongs to:
    /// `from_tag` is the peer's tag, `to_tag` sipbus's.
    pub fn side_of(&self, call_id: &str, from_tag: &str, to_tag: &str) -> Option<Side> {
        [Side::A, Side::B].into_iter().find(|s| {
            let l = self.leg(*s);
            l.call_id == call_id && l.remote_tag == from_tag && l.local_tag == to_tag
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("session record {key} is not valid JSON: {source}")]
    Corrupt { key: String, source: serde_json::Error },
    #[error("session {0} changed {CAS_ATTEMPTS} times while being updated")]
    Contended(String),
}

pub fn session_key(id: &str) -> String {
    format!("sess:{id}")
}

/// The caller's INVITE by Call-ID and From tag (two INVITEs may share a
/// Call-ID: a proxy forking to two of our users).
fn leg_key(call_id: &str, from_tag: &str) -> String {
    format!("leg:{call_id}:{from_tag}")
}

/// The session store. A session is one record, `sess:<id>`; its id is
/// also sipbus's tag on the caller's leg and part of the callee leg's
/// Call-ID, so requests inside a call find it in one read. Only a CANCEL
/// (no To tag) needs the index from the caller's Call-ID, which lives as
/// long as a call may ring.
#[derive(Clone)]
pub struct Sessions {
    store: Store,
    ttl: Duration,
    index_ttl: Duration,
}

impl Sessions {
    pub fn new(store: Store, ttl: Duration, index_ttl: Duration) -> Self {
        Self { store, ttl, index_ttl }
    }

    fn ttl_for(&self, s: &Session) -> Duration {
        if s.phase == Phase::Ended { ENDED_TTL } else { self.ttl }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn encode(s: &Session) -> Bytes {
        // Serialising plain data to JSON cannot fail.
        Bytes::from(serde_json::to_vec(s).unwrap_or_default())
    }

    /// Stores a new session and the index from the caller's Call-ID;
    /// returns the record's version.
    pub async fn create(&self, s: &Session) -> Result<u64, StateError> {
        let version = self
            .store
            .put(&session_key(&s.id), Self::encode(s), Expect::Absent, Some(self.ttl))
            .await?;
        self.store
            .put(
                &leg_key(&s.a.call_id, &s.a.remote_tag),
                Bytes::from(s.id.clone()),
                Expect::Any,
                Some(self.index_ttl),
            )
            .await?;
        Ok(version)
    }

    pub async fn load(&self, id: &str) -> Result<Option<(Session, u64)>, StateError> {
        let key = session_key(id);
        let Some(v) = self.store.get(&key).await? else {
            return Ok(None);
        };
        let s = serde_json::from_slice(&v.value).map_err(|source| StateError::Corrupt { key, source })?;
        Ok(Some((s, v.version)))
    }

    /// The session of a request inside a call, from its Call-ID and To
    /// tag (either leg).
    pub async fn find(&self, call_id: &str, to_tag: &str) -> Result<Option<(Session, u64)>, StateError> {
        // The callee leg's Call-ID names the session; a caller's Call-ID may
        // look the same (another sipbus upstream), so the tag is tried too.
        if let Some(id) = call_id.strip_prefix(B_CALL_ID_PREFIX)
            && let Some(found) = self.load(id).await?.filter(|(s, _)| s.b.call_id == call_id)
        {
            return Ok(Some(found));
        }
        Ok(self.load(to_tag).await?.filter(|(s, _)| s.a.call_id == call_id))
    }

    /// The session of a caller's INVITE still setting up (for its CANCEL,
    /// which has no To tag).
    pub async fn find_setup(&self, call_id: &str, from_tag: &str) -> Result<Option<(Session, u64)>, StateError> {
        let Some(v) = self.store.get(&leg_key(call_id, from_tag)).await? else {
            return Ok(None);
        };
        match std::str::from_utf8(&v.value) {
            Ok(id) => Ok(self.load(id).await?.filter(|(s, _)| s.a.call_id == call_id)),
            Err(_) => Ok(None),
        }
    }

    /// Applies `change` under a version check, reloading and retrying when
    /// another replica wrote in between. `change` returns `None` to leave
    /// the record alone. Returns the session as written, its version, and
    /// what `change` returned.
    pub async fn update<R>(
        &self,
        id: &str,
        change: impl FnMut(&mut Session) -> Option<R>,
    ) -> Result<Option<(Session, u64, R)>, StateError> {
        self.update_from(id, None, change).await
    }

    /// [`Sessions::update`] starting from a copy believed current (just
    /// read or written): no read unless another replica wrote since.
    pub async fn update_from<R>(
        &self,
        id: &str,
        mut current: Option<(Session, u64)>,
        mut change: impl FnMut(&mut Session) -> Option<R>,
    ) -> Result<Option<(Session, u64, R)>, StateError> {
        let key = session_key(id);
        for _ in 0..CAS_ATTEMPTS {
            let (mut s, version) = match current.take() {
                Some(c) => c,
                None => match self.load(id).await? {
                    Some(c) => c,
                    None => return Ok(None),
                },
            };
            let Some(r) = change(&mut s) else {
                return Ok(None);
            };
            match self
                .store
                .put(&key, Self::encode(&s), Expect::Version(version), Some(self.ttl_for(&s)))
                .await
            {
                Ok(v) => return Ok(Some((s, v, r))),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StateError::Contended(id.to_owned()))
    }
}

#[cfg(test)]
impl Session {
    /// A session with both legs' identifiers set, as unit tests need it.
    pub(crate) fn for_tests(id: &str) -> Session {
        Session {
            id: id.into(),
            phase: Phase::Trying,
            caller: String::new(),
            callee: String::new(),
            endpoint: String::new(),
            a: Leg {
                call_id: "caller-call".into(),
                local_tag: "ours-a".into(),
                remote_tag: "theirs-a".into(),
                ..Leg::default()
            },
            b: Leg {
                call_id: format!("{B_CALL_ID_PREFIX}{id}"),
                local_tag: "ours-b".into(),
                remote_tag: "theirs-b".into(),
                ..Leg::default()
            },
            a_request: String::new(),
            a_tx: ServerTxRef {
                edge: edge_api::EdgeId::new("edge"),
                id: edge_api::ServerTxId(1),
            },
            a_invite_cseq: 1,
            b_invite_cseq: 1,
            branches: Vec::new(),
            a_acked: false,
            ack_pending: None,
            media: Media::default(),
            offer_pending_since_ms: None,
            chain: Vec::new(),
            data: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> Session {
        Session::for_tests(id)
    }

    #[tokio::test]
    async fn found_from_either_legs_call_id_and_tags_pick_the_leg() {
        let sessions = Sessions::new(Store::memory(), Duration::from_secs(60), Duration::from_secs(60));
        let s = session("abc");
        sessions.create(&s).await.unwrap();
        // The caller's CANCEL has no To tag: the index; its other requests
        // name the session in the tag; the callee leg's Call-ID names it.
        let (a, _) = sessions.find_setup("caller-call", "theirs-a").await.unwrap().unwrap();
        assert!(sessions.find_setup("caller-call", "other-tag").await.unwrap().is_none());
        let (t, _) = sessions.find("caller-call", "abc").await.unwrap().unwrap();
        let (b, _) = sessions.find("sb-abc", "theirs").await.unwrap().unwrap();
        assert_eq!(t.id, "abc");
        // A tag naming a session of another call is not this call.
        assert!(sessions.find("other-call", "abc").await.unwrap().is_none());
        assert_eq!((a.id.as_str(), b.id.as_str()), ("abc", "abc"));
        assert_eq!(a.side_of("caller-call", "theirs-a", "ours-a"), Some(Side::A));
        assert_eq!(a.side_of("sb-abc", "theirs-b", "ours-b"), Some(Side::B));
        assert_eq!(a.side_of("caller-call", "theirs-a", "wrong"), None);
        assert!(sessions.find("unknown", "nope").await.unwrap().is_none());
        // Creating the same session twice is refused (ids never collide
        // silently).
        assert!(sessions.create(&s).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_updates_lose_nothing() {
        let sessions = Sessions::new(Store::memory(), Duration::from_secs(60), Duration::from_secs(60));
        sessions.create(&session("n")).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let sessions = sessions.clone();
            tasks.push(tokio::spawn(async move {
                sessions
                    .update("n", |s| {
                        s.b.local_cseq += 1;
                        Some(s.b.local_cseq)
                    })
                    .await
            }));
        }
        let mut seen = Vec::new();
        for t in tasks {
            let (_, _, cseq) = t.await.unwrap().unwrap().unwrap();
            seen.push(cseq);
        }
        seen.sort_unstable();
        // Every update saw a different CSeq: none was lost.
        assert_eq!(seen, (1..=8).collect::<Vec<u32>>());
        let (s, _) = sessions.load("n").await.unwrap().unwrap();
        assert_eq!(s.b.local_cseq, 8);
    }
}
