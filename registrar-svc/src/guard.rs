//! What credentials leave behind, kept in the store so every replica
//! enforces the same thing:
//!
//! - the highest nonce count each nonce was used with: a request that uses
//!   a nonce with a count not above it (a replay, RFC 7616 3.4) is not
//!   served, its sender is challenged again with `stale=true`;
//! - recent failures per user name: past the limit the name is locked out
//!   for a while (403, whatever the password), against guessing.
//!
//! Both are per-key records with a TTL: a nonce's lives as long as the
//! nonce is acceptable, a name's as long as its window or lockout, so the
//! state is bounded by the request rate the edge lets through. Unknown
//! names are counted like known ones: a lockout must not reveal which
//! names exist.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sip_auth::{Authenticator, Challenger, Proof, Secret, Verdict, bad_credentials};
use sip_message::{Message, Refusal};
use state_store::{Expect, Store, StoreError, now_ms};
use tracing::{debug, info, warn};

/// `[registrar.auth]`'s limits on failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct FailurePolicy {
    /// Failures of one user name within `window_s` that lock it out; 0
    /// turns the lockout off.
    pub max_failures: u32,
    pub window_s: u64,
    /// How long a locked-out name gets 403, right password or not.
    pub lockout_s: u64,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self {
            max_failures: 10,
            window_s: 60,
            lockout_s: 300,
        }
    }
}

/// Checks credentials with the store's memory of them.
#[derive(Clone)]
pub struct Guard {
    store: Store,
    policy: FailurePolicy,
}

/// Writes that lost a race are retried this many times.
const RETRIES: usize = 4;

/// A nonce record outlives the nonce by this much: clocks of replicas
/// differ a little.
const NONCE_SLACK_S: u64 = 60;

impl Guard {
    pub fn new(store: Store, policy: FailurePolicy) -> Guard {
        Guard { store, policy }
    }

    /// Authenticates `req` as `kind` asks (RFC 3261 22): the user its
    /// credentials prove, or the refusal that answers it: a challenge when
    /// they are missing, stale or replayed; 403 when they are wrong, the
    /// name is locked out, or the nonce is not ours; 503 when the store
    /// cannot say.
    pub async fn authenticate(
        &self,
        auth: &Authenticator,
        req: &Message,
        kind: Challenger,
        lookup: impl Fn(&str) -> Option<Secret>,
    ) -> Result<String, Refusal> {
        match auth.verdict(req, kind, lookup)? {
            Verdict::Authenticated(proof) => self.admit(auth, kind, proof).await,
            Verdict::Missing => Err(auth.challenge(kind, false)),
            Verdict::Stale => Err(auth.challenge(kind, true)),
            Verdict::Wrong { user } => {
                telemetry::metrics::auth_refused(telemetry::metrics::AuthRefused::Wrong);
                self.failed(auth.realm(), &user).await;
                Err(bad_credentials())
            }
            Verdict::Rejected(why) => {
                telemetry::metrics::auth_refused(telemetry::metrics::AuthRefused::Rejected);
                debug!(%why, "credentials rejected");
                Err(bad_credentials())
            }
        }
    }

    /// Right credentials: still refused when the name is locked out or the
    /// nonce count was used before.
    async fn admit(&self, auth: &Authenticator, kind: Challenger, proof: Proof) -> Result<String, Refusal> {
        let (locked, fresh) = tokio::join!(self.locked(auth.realm(), &proof.user), self.claim(&proof));
        if locked.map_err(store_failed)? {
            telemetry::metrics::auth_refused(telemetry::metrics::AuthRefused::LockedOut);
            info!(user = %proof.user, "locked out after repeated failures: refused");
            return Err(bad_credentials());
        }
        if !fresh.map_err(store_failed)? {
            telemetry::metrics::auth_refused(telemetry::metrics::AuthRefused::Replay);
            info!(user = %proof.user, nc = proof.nc, "nonce count used before (a replay?): challenged again");
            return Err(auth.challenge(kind, true));
        }
        Ok(proof.user)
    }

    /// Records the use of `proof`'s nonce with its count: false when that
    /// count (or a higher one) was used already.
    async fn claim(&self, proof: &Proof) -> Result<bool, StoreError> {
        let key = format!("nonce:{{{}}}", proof.nonce);
        let ttl = Duration::from_secs(proof.valid_for_s + NONCE_SLACK_S);
        for _ in 0..RETRIES {
            let (seen, expect) = match self.store.get(&key).await? {
                Some(v) => (parse_u32(&v.value), Expect::Version(v.version)),
                None => (None, Expect::Absent),
            };
            if seen.is_some_and(|n| n >= proof.nc) {
                return Ok(false);
            }
            let value = Bytes::from(proof.nc.to_string());
            match self.store.put(&key, value, expect, Some(ttl)).await {
                Ok(_) => return Ok(true),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        // Lost every race: others are using this nonce right now.
        Ok(false)
    }

    async fn locked(&self, realm: &str, user: &str) -> Result<bool, StoreError> {
        if self.policy.max_failures == 0 {
            return Ok(false);
        }
        let now = now_ms();
        Ok(self
            .store
            .get(&failures_key(realm, user))
            .await?
            .and_then(|v| Failures::decode(&v.value))
            .is_some_and(|f| f.locked_until_ms > now))
    }

    /// Counts a failure against `user`; locks the name out at the limit.
    /// A store failure here only loses the count.
    async fn failed(&self, realm: &str, user: &str) {
        let p = self.policy;
        if p.max_failures == 0 {
            return;
        }
        let key = failures_key(realm, user);
        let ttl = Duration::from_secs(p.window_s.max(p.lockout_s).max(1));
        for _ in 0..RETRIES {
            let now = now_ms();
            let (old, expect) = match self.store.get(&key).await {
                Ok(Some(v)) => (Failures::decode(&v.value), Expect::Version(v.version)),
                Ok(None) => (None, Expect::Absent),
                Err(e) => return warn!(error = %e, "authentication failure not counted"),
            };
            let next = Failures::after(old, now, p);
            if next.locked_until_ms > now && old.is_none_or(|o| o.locked_until_ms <= now) {
                telemetry::metrics::auth_lockout();
                warn!(%user, %realm, failures = p.max_failures, window_s = p.window_s, lockout_s = p.lockout_s, "too many authentication failures: name locked out");
            }
            match self.store.put(&key, next.encode(), expect, Some(ttl)).await {
                Ok(_) => return,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return warn!(error = %e, "authentication failure not counted"),
            }
        }
    }
}

fn store_failed(e: StoreError) -> Refusal {
    warn!(error = %e, "store failed while checking credentials");
    Refusal::store_unavailable()
}

fn parse_u32(v: &[u8]) -> Option<u32> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// A name from the network can be long: the key holds its digest.
fn failures_key(realm: &str, user: &str) -> String {
    let digest = Sha256::digest(format!("{realm}\0{user}").as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("authfail:{{{hex}}}")
}

/// Failures of one name: how many since when, and the lockout they led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Failures {
    count: u32,
    since_ms: u64,
    locked_until_ms: u64,
}

impl Failures {
    fn after(old: Option<Failures>, now: u64, p: FailurePolicy) -> Failures {
        let window_ms = p.window_s.saturating_mul(1000);
        let mut f = match old {
            // A lockout stands until it ends; failures meanwhile add nothing.
            Some(f) if f.locked_until_ms > now => return f,
            Some(f) if now.saturating_sub(f.since_ms) < window_ms => f,
            _ => Failures {
                count: 0,
                since_ms: now,
                locked_until_ms: 0,
            },
        };
        f.count = f.count.saturating_add(1);
        if f.count >= p.max_failures {
            f.locked_until_ms = now + p.lockout_s.saturating_mul(1000);
            f.count = 0;
            f.since_ms = now;
        }
        f
    }

    fn encode(self) -> Bytes {
        Bytes::from(format!("{} {} {}", self.count, self.since_ms, self.locked_until_ms))
    }

    fn decode(v: &[u8]) -> Option<Failures> {
        let text = std::str::from_utf8(v).ok()?;
        let mut parts = text.split(' ').map(str::parse::<u64>);
        let (Some(Ok(count)), Some(Ok(since_ms)), Some(Ok(locked_until_ms)), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(Failures {
            count: u32::try_from(count).ok()?,
            since_ms,
            locked_until_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proof(nonce: &str, nc: u32) -> Proof {
        Proof {
            user: "alice".into(),
            nonce: nonce.into(),
            nc,
            valid_for_s: 300,
        }
    }

    #[tokio::test]
    async fn a_nonce_count_is_good_once_and_only_upwards() {
        let g = Guard::new(Store::memory(), FailurePolicy::default());
        assert!(g.claim(&proof("n1", 1)).await.unwrap());
        assert!(!g.claim(&proof("n1", 1)).await.unwrap(), "replay");
        assert!(g.claim(&proof("n1", 3)).await.unwrap());
        assert!(!g.claim(&proof("n1", 2)).await.unwrap(), "backwards");
        assert!(g.claim(&proof("n2", 1)).await.unwrap(), "another nonce");
        // Without qop (nc 0) a nonce is good once.
        assert!(g.claim(&proof("n3", 0)).await.unwrap());
        assert!(!g.claim(&proof("n3", 0)).await.unwrap());
    }

    #[tokio::test]
    async fn failures_lock_a_name_out_for_a_while() {
        let policy = FailurePolicy {
            max_failures: 3,
            window_s: 60,
            lockout_s: 300,
        };
        let g = Guard::new(Store::memory(), policy);
        for _ in 0..2 {
            g.failed("r", "bob").await;
        }
        assert!(!g.locked("r", "bob").await.unwrap());
        g.failed("r", "bob").await;
        assert!(g.locked("r", "bob").await.unwrap());
        assert!(!g.locked("r", "alice").await.unwrap(), "per name");
        assert!(!g.locked("other", "bob").await.unwrap(), "per realm");
        let off = Guard::new(
            Store::memory(),
            FailurePolicy {
                max_failures: 0,
                ..policy
            },
        );
        for _ in 0..20 {
            off.failed("r", "bob").await;
        }
        assert!(!off.locked("r", "bob").await.unwrap());
    }

    #[test]
    fn failure_windows_and_lockouts() {
        let p = FailurePolicy {
            max_failures: 2,
            window_s: 10,
            lockout_s: 100,
        };
        let f = Failures::after(None, 1000, p);
        assert_eq!((f.count, f.locked_until_ms), (1, 0));
        // The window passed: counting starts again.
        let f = Failures::after(Some(f), 1000 + 10_000, p);
        assert_eq!((f.count, f.locked_until_ms), (1, 0));
        let locked = Failures::after(Some(f), 12_000, p);
        assert_eq!(locked.locked_until_ms, 112_000);
        assert_eq!(Failures::after(Some(locked), 50_000, p), locked, "no extension");
        assert_eq!(Failures::decode(&locked.encode()), Some(locked));
        assert_eq!(Failures::decode(b"1 2"), None);
        assert_eq!(Failures::decode(b"1 2 3 4"), None);
        assert!(failures_key("r", &"x".repeat(10_000)).len() < 40);
    }
}
