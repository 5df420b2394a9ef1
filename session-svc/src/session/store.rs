//! Sessions in the store: one record per call, read and written under a
//! version check.

use std::time::Duration;

use bytes::Bytes;
use state_store::{Expect, Store, StoreError};

use super::Session;

/// Calls whose callee-leg Call-ID we chose carry the session id after this
/// prefix, so a request on the callee's leg needs no index lookup.
pub const B_CALL_ID_PREFIX: &str = "sb-";

/// Times a read-modify-write is retried when another replica wrote first.
const CAS_ATTEMPTS: usize = 16;

/// How long an ended session is kept: retransmissions and late requests
/// (a BYE crossing ours) find it and get 481, not a new call (64*T1).
const ENDED_TTL: Duration = Duration::from_secs(32);

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("session record {key} is not valid: {source}")]
    Corrupt { key: String, source: serde_json::Error },
    #[error("session {0} changed {CAS_ATTEMPTS} times while being updated")]
    Contended(String),
}

fn session_key(id: &str) -> String {
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
        if s.phase.is_ended() { ENDED_TTL } else { self.ttl }
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
        let a = &s.legs.a.dialog;
        self.store
            .put(
                &leg_key(a.call_id(), a.remote_tag()),
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
            && let Some(found) = self
                .load(id)
                .await?
                .filter(|(s, _)| s.legs.b.dialog.call_id() == call_id)
        {
            return Ok(Some(found));
        }
        Ok(self
            .load(to_tag)
            .await?
            .filter(|(s, _)| s.legs.a.dialog.call_id() == call_id))
    }

    /// The session of a caller's INVITE still setting up (for its CANCEL,
    /// which has no To tag).
    pub async fn find_setup(&self, call_id: &str, from_tag: &str) -> Result<Option<(Session, u64)>, StateError> {
        let Some(v) = self.store.get(&leg_key(call_id, from_tag)).await? else {
            return Ok(None);
        };
        match std::str::from_utf8(&v.value) {
            Ok(id) => Ok(self
                .load(id)
                .await?
                .filter(|(s, _)| s.legs.a.dialog.call_id() == call_id)),
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
            if s.last_replica != telemetry::replica() {
                s.last_replica = telemetry::replica().to_owned();
            }
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
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::session::Side;
    use crate::testing::request_in;

    #[tokio::test]
    async fn found_from_either_legs_call_id_and_tags_pick_the_leg() {
        let sessions = Sessions::new(Store::memory(), Duration::from_secs(60), Duration::from_secs(60));
        let s = Session::for_tests("abc");
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
        assert_eq!(a.side_of(&request_in("caller-call", "theirs-a", "abc")), Some(Side::A));
        assert_eq!(a.side_of(&request_in("sb-abc", "theirs-b", "ours-b")), Some(Side::B));
        assert_eq!(a.side_of(&request_in("caller-call", "theirs-a", "wrong")), None);
        assert!(sessions.find("unknown", "nope").await.unwrap().is_none());
        // Creating the same session twice is refused (ids never collide
        // silently).
        assert!(sessions.create(&s).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_updates_lose_nothing() {
        let sessions = Sessions::new(Store::memory(), Duration::from_secs(60), Duration::from_secs(60));
        sessions.create(&Session::for_tests("n")).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let sessions = sessions.clone();
            tasks.push(tokio::spawn(async move {
                sessions
                    .update("n", |s| {
                        let bye = s.legs.b.dialog.request(sip_message::Method::Info);
                        Some(bye.cseq().unwrap().seq)
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
        assert_eq!(seen, (2..=9).collect::<Vec<u32>>());
        let (s, _) = sessions.load("n").await.unwrap().unwrap();
        assert_eq!(s.legs.b.dialog.local_cseq(), 9);
    }
}
