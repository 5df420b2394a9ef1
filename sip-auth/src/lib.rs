//! SIP digest authentication, usable by every service (RFC 3261 section 22,
//! RFC 7616, RFC 8760).
//!
//! - MD5 and SHA-256 challenges (SHA-256 first: RFC 8760 8), `qop=auth`.
//! - Nonces carry their own issue time, a random salt and an HMAC over
//!   them and the realm, so any replica sharing the key verifies any nonce
//!   without shared state; an old nonce with otherwise correct credentials
//!   gets `stale=true`.
//! - Users from configuration (password or HA1 per algorithm) or any other
//!   lookup the caller provides.
//! - An unknown user costs the same work as a wrong password and yields the
//!   same verdict ([`Verdict::Wrong`]): nothing downstream can tell them
//!   apart, so neither can a prober.
//! - Nothing here logs, and `Debug` of secrets prints no secret.
//!
//! What needs shared state (the nonce counts that refuse a replayed
//! request, failures per user) is the caller's: [`Proof`] carries what it
//! needs.

#![forbid(unsafe_code)]

pub mod client;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};
use sip_message::typed::AuthParams;
use sip_message::{Known, Message, Refusal};

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum Algorithm {
    #[serde(rename = "MD5")]
    Md5,
    #[serde(rename = "SHA-256")]
    Sha256,
}

impl Algorithm {
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    fn from_token(t: &str) -> Option<Algorithm> {
        if t.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if t.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Lower-case hex of the digest of `data`.
    pub fn hex(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => to_hex(&Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => to_hex(&Sha256::digest(data.as_bytes())),
        }
    }
}

/// What the server knows of a user's secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Password(String),
    /// Precomputed `H(user:realm:password)` per algorithm, lower-case hex.
    Ha1 {
        md5: Option<String>,
        sha256: Option<String>,
    },
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Password(_) => f.write_str("Secret::Password(***)"),
            Secret::Ha1 { .. } => f.write_str("Secret::Ha1(***)"),
        }
    }
}

impl Secret {
    fn ha1(&self, alg: Algorithm, user: &str, realm: &str) -> Option<String> {
        match self {
            Secret::Password(p) => Some(alg.hex(&format!("{user}:{realm}:{p}"))),
            Secret::Ha1 { md5, sha256 } => match alg {
                Algorithm::Md5 => md5.clone(),
                Algorithm::Sha256 => sha256.clone(),
            },
        }
    }
}

/// The outcome of checking a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid credentials: who, and the nonce use to record.
    Authenticated(Proof),
    /// No credentials for our realm: challenge (401 / 407).
    Missing,
    /// Right password, old nonce: challenge again with `stale=true`.
    Stale,
    /// A wrong password or no such user, deliberately one verdict: 403,
    /// and a failure counted against the name.
    Wrong { user: String },
    /// Credentials that cannot be right whoever sent them: 403.
    Rejected(Rejection),
}

/// What valid credentials prove, and what a replay check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub user: String,
    /// One of ours (checked): at most 64 ASCII characters.
    pub nonce: String,
    /// The nonce count; 0 without `qop` (such a nonce is good once).
    pub nc: u32,
    /// Seconds the nonce stays acceptable from now: how long a record of
    /// its use must live to refuse a replay.
    pub valid_for_s: u64,
}

/// Why credentials were rejected (for logs and metrics; never the secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed credentials")]
    Malformed,
    #[error("unsupported algorithm or qop")]
    Unsupported,
    #[error("nonce was not issued by us")]
    BadNonce,
    #[error("digest uri does not match the Request-URI")]
    UriMismatch,
}

/// Issues challenges and verifies credentials for one realm.
#[derive(Clone)]
pub struct Authenticator {
    realm: String,
    key: Vec<u8>,
    nonce_lifetime: Duration,
    algorithms: Vec<Algorithm>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("realm", &self.realm)
            .field("nonce_lifetime", &self.nonce_lifetime)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

type HmacSha256 = Hmac<Sha256>;

impl Authenticator {
    /// `key` is shared by every replica (from configuration); `algorithms`
    /// in the order challenges are offered.
    pub fn new(realm: &str, key: &[u8], nonce_lifetime: Duration, algorithms: Vec<Algorithm>) -> Self {
        Self {
            realm: realm.to_owned(),
            key: key.to_vec(),
            nonce_lifetime,
            algorithms,
        }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// WWW-Authenticate (or Proxy-Authenticate) values, one per algorithm.
    pub fn challenges(&self, stale: bool) -> Vec<String> {
        self.challenges_at(unix_now(), stale)
    }

    fn challenges_at(&self, now: u64, stale: bool) -> Vec<String> {
        let nonce = self.nonce(now, fastrand::u64(..));
        self.algorithms
            .iter()
            .map(|alg| {
                let mut c = format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
                    self.realm,
                    alg.token()
                );
                if stale {
                    c.push_str(", stale=true");
                }
                c
            })
            .collect()
    }

    /// `<issue time, 16 hex><salt, 16 hex><HMAC-SHA-256(key, time salt ":"
    /// realm), 32 hex>`. The salt makes every challenge's nonce its own, so
    /// a nonce count belongs to one client.
    fn nonce(&self, issued: u64, salt: u64) -> String {
        let stamp = format!("{issued:016x}{salt:016x}");
        let mac = self.mac(&stamp);
        stamp + &mac
    }

    fn mac(&self, stamp: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(format!("{stamp}:{}", self.realm).as_bytes());
        to_hex(&mac.finalize().into_bytes()[..16])
    }

    /// HA1 for a name we do not know: the same work as a real one, from a
    /// secret nobody has, so an unknown user costs what a wrong password
    /// costs.
    fn decoy_ha1(&self, alg: Algorithm, user: &str) -> String {
        alg.hex(&format!("{user}:{}:{}", self.realm, self.mac("decoy")))
    }

    /// Checks the credentials of one Authorization / Proxy-Authorization
    /// field set. `method` and `request_uri` are the request's; `lookup`
    /// finds a user's secret.
    pub fn verify(
        &self,
        credentials: &[AuthParams<'_>],
        method: &str,
        request_uri: &str,
        lookup: impl Fn(&str) -> Option<Secret>,
    ) -> Verdict {
        self.verify_at(unix_now(), credentials, method, request_uri, lookup)
    }

    fn verify_at(
        &self,
        now: u64,
        credentials: &[AuthParams<'_>],
        method: &str,
        request_uri: &str,
        lookup: impl Fn(&str) -> Option<Secret>,
    ) -> Verdict {
        // Only credentials for our realm count (RFC 3261 22.3).
        let Some(c) = credentials
            .iter()
            .find(|c| c.is_digest() && c.get("realm").is_some_and(|r| r == self.realm.as_str()))
        else {
            return Verdict::Missing;
        };
        let get = |name: &str| c.get(name).map(|v| v.into_owned());
        let (Some(user), Some(nonce), Some(uri), Some(response)) =
            (get("username"), get("nonce"), get("uri"), get("response"))
        else {
            return Verdict::Rejected(Rejection::Malformed);
        };
        let alg = match get("algorithm") {
            // RFC 7616: no algorithm means MD5, which only counts if offered.
            None if self.algorithms.contains(&Algorithm::Md5) => Algorithm::Md5,
            None => return Verdict::Rejected(Rejection::Unsupported),
            Some(a) => match Algorithm::from_token(&a) {
                Some(a) if self.algorithms.contains(&a) => a,
                _ => return Verdict::Rejected(Rejection::Unsupported),
            },
        };
        let qop = get("qop");
        if qop.as_deref().is_some_and(|q| !q.eq_ignore_ascii_case("auth")) {
            return Verdict::Rejected(Rejection::Unsupported);
        }
        let Some(issued) = self.check_nonce(&nonce) else {
            return Verdict::Rejected(Rejection::BadNonce);
        };
        if uri != request_uri {
            return Verdict::Rejected(Rejection::UriMismatch);
        }
        let (nc, nc_text, cnonce) = match &qop {
            Some(_) => {
                let (Some(nc_text), Some(cnonce)) = (get("nc"), get("cnonce")) else {
                    return Verdict::Rejected(Rejection::Malformed);
                };
                // RFC 7616 3.4: 8 hex digits.
                let nc = (nc_text.len() == 8)
                    .then(|| u32::from_str_radix(&nc_text, 16).ok())
                    .flatten()
                    .filter(|&n| n > 0);
                let Some(nc) = nc else {
                    return Verdict::Rejected(Rejection::Malformed);
                };
                (nc, nc_text, cnonce)
            }
            None => (0, String::new(), String::new()),
        };
        // From here on an unknown user takes the path a known one takes.
        let secret = lookup(&user).and_then(|s| s.ha1(alg, &user, &self.realm));
        let known = secret.is_some();
        let ha1 = secret.unwrap_or_else(|| self.decoy_ha1(alg, &user));
        let ha2 = alg.hex(&format!("{method}:{uri}"));
        let expected = match &qop {
            Some(q) => alg.hex(&format!("{ha1}:{nonce}:{nc_text}:{cnonce}:{q}:{ha2}")),
            None => alg.hex(&format!("{ha1}:{nonce}:{ha2}")),
        };
        let matches = constant_time_eq(expected.as_bytes(), response.to_ascii_lowercase().as_bytes());
        if !(matches && known) {
            return Verdict::Wrong { user };
        }
        let lifetime = self.nonce_lifetime.as_secs();
        if now.saturating_sub(issued) > lifetime || issued > now + 60 {
            return Verdict::Stale;
        }
        Verdict::Authenticated(Proof {
            user,
            valid_for_s: (issued + lifetime).saturating_sub(now),
            nonce,
            nc,
        })
    }

    /// The issue time of a nonce we made, or `None` for a forged one.
    fn check_nonce(&self, nonce: &str) -> Option<u64> {
        if nonce.len() != 64 || !nonce.is_ascii() {
            return None;
        }
        let issued = u64::from_str_radix(&nonce[..16], 16).ok()?;
        constant_time_eq(self.mac(&nonce[..32]).as_bytes(), &nonce.as_bytes()[32..]).then_some(issued)
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who asks for credentials (RFC 3261 22.1): a registrar or other UAS
/// (401 with WWW-Authenticate, answered in Authorization), or a proxy
/// (407 with Proxy-Authenticate, answered in Proxy-Authorization; calls
/// use it, so a phone's registration credentials work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenger {
    Server,
    Proxy,
}

impl Challenger {
    /// The header the credentials come in.
    pub fn credentials_header(self) -> Known {
        match self {
            Challenger::Server => Known::Authorization,
            Challenger::Proxy => Known::ProxyAuthorization,
        }
    }
}

impl Authenticator {
    /// The challenge that answers a request without (usable) credentials:
    /// 401 with WWW-Authenticate or 407 with Proxy-Authenticate, one per
    /// algorithm; `stale` when only the nonce was old (or already used).
    pub fn challenge(&self, kind: Challenger, stale: bool) -> Refusal {
        let (code, reason, header) = match kind {
            Challenger::Server => (401, "Unauthorized", Known::WwwAuthenticate),
            Challenger::Proxy => (407, "Proxy Authentication Required", Known::ProxyAuthenticate),
        };
        self.challenges(stale)
            .into_iter()
            .fold(Refusal::new(code, reason), |r, c| r.with_header(header, c))
    }

    /// Checks `request`'s credentials as `kind` reads them (see
    /// [`Authenticator::verify`]); 400 when they do not parse.
    pub fn verdict(
        &self,
        request: &Message,
        kind: Challenger,
        lookup: impl Fn(&str) -> Option<Secret>,
    ) -> Result<Verdict, Refusal> {
        let header = kind.credentials_header();
        let creds = request
            .credentials(header)
            .map_err(|_| Refusal::bad_request(header.as_str()))?;
        let method = request.method().map(|m| m.as_str()).unwrap_or("");
        Ok(self.verify(&creds, method, request.request_uri().unwrap_or(""), lookup))
    }
}

/// The one answer to credentials that do not prove a user, whatever the
/// reason (wrong password, no such user, locked out, forged nonce): a
/// prober learns nothing from which.
pub fn bad_credentials() -> Refusal {
    Refusal::forbidden("bad credentials")
}

#[cfg(test)]
mod tests {
    use sip_message::typed::AuthParams;

    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(
            "example.com",
            b"k",
            Duration::from_secs(300),
            vec![Algorithm::Sha256, Algorithm::Md5],
        )
    }

    fn nonce_of(challenge: &str) -> String {
        let c = AuthParams::parse(challenge).unwrap();
        c.get("nonce").unwrap().into_owned()
    }

    /// Credentials as a client computes them.
    fn answer(alg: Algorithm, nonce: &str, password: &str, uri: &str) -> String {
        let ha1 = alg.hex(&format!("alice:example.com:{password}"));
        let ha2 = alg.hex(&format!("REGISTER:{uri}"));
        let resp = alg.hex(&format!("{ha1}:{nonce}:00000001:xyz:auth:{ha2}"));
        format!(
            "Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm={}, qop=auth, nc=00000001, cnonce=\"xyz\"",
            alg.token()
        )
    }

    fn users(name: &str) -> Option<Secret> {
        (name == "alice").then(|| Secret::Password("secret".into()))
    }

    #[test]
    fn md5_ha1_matches_the_rfc_2617_example() {
        // RFC 2617 3.5's example, adapted: known HA1, response without qop.
        let ha1 = Algorithm::Md5.hex("Mufasa:testrealm@host.com:Circle Of Life");
        assert_eq!(ha1, "939e7578ed9e3c518a452acee763bce9");
    }

    #[test]
    fn both_algorithms_verify_and_wrong_password_is_rejected() {
        let a = auth();
        let now = unix_now();
        let challenges = a.challenges_at(now, false);
        assert_eq!(challenges.len(), 2);
        assert!(challenges[0].contains("algorithm=SHA-256"));
        let nonce = nonce_of(&challenges[0]);
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let header = answer(alg, &nonce, "secret", "sip:example.com");
            let creds = [AuthParams::parse(&header).unwrap()];
            assert_eq!(
                a.verify_at(now, &creds, "REGISTER", "sip:example.com", users),
                Verdict::Authenticated(Proof {
                    user: "alice".into(),
                    nonce: nonce.clone(),
                    nc: 1,
                    valid_for_s: 300,
                })
            );
            let wrong = answer(alg, &nonce, "guess", "sip:example.com");
            let creds = [AuthParams::parse(&wrong).unwrap()];
            assert_eq!(
                a.verify_at(now, &creds, "REGISTER", "sip:example.com", users),
                Verdict::Wrong { user: "alice".into() }
            );
        }
    }

    #[test]
    fn stale_forged_foreign_and_missing() {
        let a = auth();
        let then = unix_now() - 3600;
        let old = nonce_of(&a.challenges_at(then, false)[0]);
        let header = answer(Algorithm::Md5, &old, "secret", "sip:example.com");
        let creds = [AuthParams::parse(&header).unwrap()];
        assert_eq!(a.verify(&creds, "REGISTER", "sip:example.com", users), Verdict::Stale);

        let forged = format!("{:016x}{}", unix_now(), "0".repeat(48));
        let header = answer(Algorithm::Md5, &forged, "secret", "sip:example.com");
        let creds = [AuthParams::parse(&header).unwrap()];
        assert_eq!(
            a.verify(&creds, "REGISTER", "sip:example.com", users),
            Verdict::Rejected(Rejection::BadNonce)
        );

        let other = Authenticator::new(
            "example.com",
            b"other key",
            Duration::from_secs(300),
            vec![Algorithm::Md5],
        );
        let theirs = nonce_of(&other.challenges(false)[0]);
        let header = answer(Algorithm::Md5, &theirs, "secret", "sip:example.com");
        let creds = [AuthParams::parse(&header).unwrap()];
        assert_eq!(
            a.verify(&creds, "REGISTER", "sip:example.com", users),
            Verdict::Rejected(Rejection::BadNonce)
        );

        assert_eq!(a.verify(&[], "REGISTER", "sip:example.com", users), Verdict::Missing);
        let foreign = AuthParams::parse("Digest username=\"alice\", realm=\"elsewhere\", nonce=\"x\"").unwrap();
        assert_eq!(
            a.verify(&[foreign], "REGISTER", "sip:example.com", users),
            Verdict::Missing
        );

        let nonce = nonce_of(&a.challenges(false)[0]);
        let header = answer(Algorithm::Md5, &nonce, "secret", "sip:other.com");
        let creds = [AuthParams::parse(&header).unwrap()];
        assert_eq!(
            a.verify(&creds, "REGISTER", "sip:example.com", users),
            Verdict::Rejected(Rejection::UriMismatch)
        );
    }

    #[test]
    fn unknown_user_and_wrong_password_are_one_verdict() {
        let a = auth();
        let nonce = nonce_of(&a.challenges(false)[0]);
        let wrong = answer(Algorithm::Sha256, &nonce, "guess", "sip:example.com");
        let creds = [AuthParams::parse(&wrong).unwrap()];
        let nobody = |_: &str| None;
        assert_eq!(
            a.verify(&creds, "REGISTER", "sip:example.com", nobody),
            Verdict::Wrong { user: "alice".into() }
        );
        assert_eq!(
            a.verify(&creds, "REGISTER", "sip:example.com", users),
            Verdict::Wrong { user: "alice".into() }
        );
    }

    #[test]
    fn every_challenge_has_its_own_nonce_and_nc_is_checked() {
        let a = auth();
        let now = unix_now();
        let (n1, n2) = (
            nonce_of(&a.challenges_at(now, false)[0]),
            nonce_of(&a.challenges_at(now, false)[0]),
        );
        assert_ne!(n1, n2, "same second, different nonces");
        assert_eq!(n1.len(), 64);
        let header = answer(Algorithm::Md5, &n1, "secret", "sip:example.com");
        for bad_nc in ["00000000", "1", "0000000g"] {
            let h = header.replace("nc=00000001", &format!("nc={bad_nc}"));
            let creds = [AuthParams::parse(&h).unwrap()];
            assert_eq!(
                a.verify(&creds, "REGISTER", "sip:example.com", users),
                Verdict::Rejected(Rejection::Malformed),
                "{bad_nc}"
            );
        }
    }

    #[test]
    fn no_algorithm_means_md5_only_when_md5_is_offered() {
        let sha_only = Authenticator::new("example.com", b"k", Duration::from_secs(300), vec![Algorithm::Sha256]);
        let nonce = nonce_of(&sha_only.challenges(false)[0]);
        let header = answer(Algorithm::Md5, &nonce, "secret", "sip:example.com").replace(", algorithm=MD5", "");
        let creds = [AuthParams::parse(&header).unwrap()];
        assert_eq!(
            sha_only.verify(&creds, "REGISTER", "sip:example.com", users),
            Verdict::Rejected(Rejection::Unsupported),
            "no downgrade to MD5"
        );
        let header = answer(
            Algorithm::Md5,
            &nonce_of(&auth().challenges(false)[0]),
            "secret",
            "sip:example.com",
        )
        .replace(", algorithm=MD5", "");
        let creds = [AuthParams::parse(&header).unwrap()];
        assert!(matches!(
            auth().verify(&creds, "REGISTER", "sip:example.com", users),
            Verdict::Authenticated(p) if p.user == "alice"
        ));
    }

    #[test]
    fn ha1_secrets_and_no_secret_in_debug() {
        let a = auth();
        let nonce = nonce_of(&a.challenges(false)[0]);
        let md5 = Algorithm::Md5.hex("alice:example.com:secret");
        let lookup = |_: &str| {
            Some(Secret::Ha1 {
                md5: Some(md5.clone()),
                sha256: None,
            })
        };
        let header = answer(Algorithm::Md5, &nonce, "secret", "sip:example.com");
        let creds = [AuthParams::parse(&header).unwrap()];
        assert!(matches!(
            a.verify(&creds, "REGISTER", "sip:example.com", lookup),
            Verdict::Authenticated(p) if p.user == "alice"
        ));
        // No SHA-256 HA1 stored: that algorithm cannot succeed.
        let header = answer(Algorithm::Sha256, &nonce, "secret", "sip:example.com");
        let creds = [AuthParams::parse(&header).unwrap()];
        assert_eq!(
            a.verify(&creds, "REGISTER", "sip:example.com", lookup),
            Verdict::Wrong { user: "alice".into() }
        );
        assert!(!format!("{:?}", Secret::Password("secret".into())).contains("secret\""));
        assert!(!format!("{a:?}").contains("key"));
    }
}
