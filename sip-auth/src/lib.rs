//! SIP digest authentication, usable by every service (RFC 3261 section 22,
//! RFC 7616, RFC 8760).
//!
//! - MD5 and SHA-256 challenges (SHA-256 first: RFC 8760 8), `qop=auth`.
//! - Nonces carry their own issue time and an HMAC over it and the realm, so
//!   any replica sharing the key verifies any nonce without shared state;
//!   an old nonce with otherwise correct credentials gets `stale=true`.
//! - Users from configuration (password or HA1 per algorithm) or any other
//!   lookup the caller provides.
//! - Nothing here logs, and `Debug` of secrets prints no secret.
//!
//! Without shared state there is no nonce-count tracking: a captured
//! request can be replayed within the nonce lifetime (keep it short).

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
    /// Valid credentials for this user.
    Authenticated { user: String },
    /// No credentials for our realm: challenge (401 / 407).
    Missing,
    /// Right password, old nonce: challenge again with `stale=true`.
    Stale,
    /// Wrong credentials, unknown user, foreign or forged nonce: 403.
    Rejected(Rejection),
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
    #[error("unknown user")]
    UnknownUser,
    #[error("digest uri does not match the Request-URI")]
    UriMismatch,
    #[error("wrong response (password)")]
    WrongResponse,
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
        let nonce = self.nonce(now);
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

    /// `<issue time, 16 hex digits><HMAC-SHA-256(key, time ":" realm), 32 hex>`.
    fn nonce(&self, issued: u64) -> String {
        format!("{issued:016x}{}", self.mac(issued))
    }

    fn mac(&self, issued: u64) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(format!("{issued:016x}:{}", self.realm).as_bytes());
        to_hex(&mac.finalize().into_bytes()[..16])
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
        let Some(ha1) = lookup(&user).and_then(|s| s.ha1(alg, &user, &self.realm)) else {
            return Verdict::Rejected(Rejection::UnknownUser);
        };
        let ha2 = alg.hex(&format!("{method}:{uri}"));
        let expected = match qop {
            Some(q) => {
                let (Some(nc), Some(cnonce)) = (get("nc"), get("cnonce")) else {
                    return Verdict::Rejected(Rejection::Malformed);
                };
                alg.hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{q}:{ha2}"))
            }
            None => alg.hex(&format!("{ha1}:{nonce}:{ha2}")),
        };
        if !constant_time_eq(expected.as_bytes(), response.to_ascii_lowercase().as_bytes()) {
            return Verdict::Rejected(Rejection::WrongResponse);
        }
        if now.saturating_sub(issued) > self.nonce_lifetime.as_secs() || issued > now + 60 {
            return Verdict::Stale;
        }
        Verdict::Authenticated { user }
    }

    /// The issue time of a nonce we made, or `None` for a forged one.
    fn check_nonce(&self, nonce: &str) -> Option<u64> {
        if nonce.len() != 48 || !nonce.is_ascii() {
            return None;
        }
        let issued = u64::from_str_radix(&nonce[..16], 16).ok()?;
        constant_time_eq(self.mac(issued).as_bytes(), &nonce.as_bytes()[16..]).then_some(issued)
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

/// What a verdict comes to: the user it proves, or the refusal that
/// answers the request (a fresh challenge when credentials are missing,
/// `stale=true` when only the nonce was old, 403 when they are wrong).
pub fn auth_challenge(auth: &Authenticator, verdict: Verdict, kind: Challenger) -> Result<String, Refusal> {
    match verdict {
        Verdict::Authenticated { user } => Ok(user),
        Verdict::Missing | Verdict::Stale => {
            let stale = verdict == Verdict::Stale;
            let (code, reason, header) = match kind {
                Challenger::Server => (401, "Unauthorized", Known::WwwAuthenticate),
                Challenger::Proxy => (407, "Proxy Authentication Required", Known::ProxyAuthenticate),
            };
            Err(auth
                .challenges(stale)
                .into_iter()
                .fold(Refusal::new(code, reason), |r, c| r.with_header(header, c)))
        }
        Verdict::Rejected(_) => Err(Refusal::forbidden("bad credentials")),
    }
}

impl Authenticator {
    /// Authenticates `request` as `kind` would: reads its credentials,
    /// checks them against `lookup`, and gives the user they prove or the
    /// refusal that answers the request (see [`auth_challenge`]; 400 when
    /// the credentials do not parse).
    pub fn authenticate(
        &self,
        request: &Message,
        kind: Challenger,
        lookup: impl Fn(&str) -> Option<Secret>,
    ) -> Result<String, Refusal> {
        let header = kind.credentials_header();
        let creds = request
            .credentials(header)
            .map_err(|_| Refusal::bad_request(header.as_str()))?;
        let method = request.method().map(|m| m.as_str()).unwrap_or("");
        let verdict = self.verify(&creds, method, request.request_uri().unwrap_or(""), lookup);
        auth_challenge(self, verdict, kind)
    }
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
                Verdict::Authenticated { user: "alice".into() }
            );
            let wrong = answer(alg, &nonce, "guess", "sip:example.com");
            let creds = [AuthParams::parse(&wrong).unwrap()];
            assert_eq!(
                a.verify_at(now, &creds, "REGISTER", "sip:example.com", users),
                Verdict::Rejected(Rejection::WrongResponse)
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

        let forged = format!("{:016x}{}", unix_now(), "0".repeat(32));
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
        assert_eq!(
            auth().verify(&creds, "REGISTER", "sip:example.com", users),
            Verdict::Authenticated { user: "alice".into() }
        );
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
        assert_eq!(
            a.verify(&creds, "REGISTER", "sip:example.com", lookup),
            Verdict::Authenticated { user: "alice".into() }
        );
        // No SHA-256 HA1 stored: that algorithm cannot succeed.
        let header = answer(Algorithm::Sha256, &nonce, "secret", "sip:example.com");
        let creds = [AuthParams::parse(&header).unwrap()];
        assert_eq!(
            a.verify(&creds, "REGISTER", "sip:example.com", lookup),
            Verdict::Rejected(Rejection::UnknownUser)
        );
        assert!(!format!("{:?}", Secret::Password("secret".into())).contains("secret\""));
        assert!(!format!("{a:?}").contains("key"));
    }
}
