//! `[registrar]`: which domains and users it serves, how long bindings
//! live, and how REGISTERs authenticate.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sip_auth::{Algorithm, Authenticator, Secret};

use crate::guard::FailurePolicy;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RegistrarConfig {
    /// Domains whose addresses-of-record are kept here; a REGISTER for any
    /// other domain gets 404.
    pub domains: Vec<String>,
    /// Users allowed to register (and authenticate).
    pub users: Vec<UserConfig>,
    pub expires: ExpiresConfig,
    pub auth: AuthConfig,
    /// Bindings one address-of-record may hold at once.
    pub max_bindings: usize,
    /// How often this replica looks for expired bindings, in milliseconds.
    pub expiry_poll_ms: u64,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            domains: vec!["localhost".into()],
            users: Vec::new(),
            expires: ExpiresConfig::default(),
            auth: AuthConfig::default(),
            max_bindings: 16,
            expiry_poll_ms: 1000,
        }
    }
}

/// `[[registrar.users]]`: a password, or HA1 digests per algorithm.
#[derive(Clone, Deserialize, Serialize)]
pub struct UserConfig {
    pub user: String,
    /// Defaults to the first of `registrar.domains`.
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    #[serde(default, skip_serializing)]
    pub ha1_md5: Option<String>,
    #[serde(default, skip_serializing)]
    pub ha1_sha256: Option<String>,
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("user", &self.user)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// `[registrar.expires]`, in seconds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ExpiresConfig {
    /// When the request names none.
    pub default_s: u32,
    /// Below this (and above 0): 423 Interval Too Brief with Min-Expires.
    pub min_s: u32,
    /// Above this: shortened to it.
    pub max_s: u32,
}

impl Default for ExpiresConfig {
    fn default() -> Self {
        Self {
            default_s: 3600,
            min_s: 60,
            max_s: 7200,
        }
    }
}

/// `[registrar.auth]`.
#[derive(Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct AuthConfig {
    /// Challenge every REGISTER (the default). Off only for tests and
    /// networks that authenticate elsewhere.
    pub enabled: bool,
    /// Defaults to the request's domain.
    pub realm: Option<String>,
    /// Key for nonces; every replica must share it. Empty: a random key
    /// per process (fine for all-in-one, not for several replicas).
    #[serde(skip_serializing)]
    pub nonce_key: String,
    pub nonce_lifetime_s: u64,
    /// Offered in this order (RFC 8760: SHA-256 first).
    pub algorithms: Vec<Algorithm>,
    /// `[registrar.auth.failures]`: wrong passwords per user name before
    /// the name is locked out, and for how long.
    pub failures: FailurePolicy,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("enabled", &self.enabled)
            .field("realm", &self.realm)
            .field("nonce_lifetime_s", &self.nonce_lifetime_s)
            .field("algorithms", &self.algorithms)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            realm: None,
            nonce_key: String::new(),
            nonce_lifetime_s: 300,
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            failures: FailurePolicy::default(),
        }
    }
}

impl RegistrarConfig {
    /// Checks what serde cannot; every problem names its key.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.domains.is_empty() {
            errors.push("registrar.domains: at least one domain is needed".to_owned());
        }
        let e = &self.expires;
        if e.min_s == 0 || e.min_s > e.max_s || e.default_s < e.min_s || e.default_s > e.max_s {
            errors.push("registrar.expires: need 0 < min_s <= default_s <= max_s".to_owned());
        }
        if self.auth.algorithms.is_empty() {
            errors.push("registrar.auth.algorithms: at least one algorithm is needed".to_owned());
        }
        let f = &self.auth.failures;
        if f.max_failures > 0 && (f.window_s == 0 || f.lockout_s == 0 || f.lockout_s > 86_400) {
            errors.push(
                "registrar.auth.failures: window_s and lockout_s must be above 0 (lockout_s at most 86400) unless max_failures is 0"
                    .to_owned(),
            );
        }
        if self.auth.nonce_lifetime_s == 0 || self.auth.nonce_lifetime_s > 86_400 {
            errors.push("registrar.auth.nonce_lifetime_s: must be from 1 to 86400".to_owned());
        }
        if self.max_bindings == 0 {
            errors.push("registrar.max_bindings: must be greater than 0".to_owned());
        }
        for (i, u) in self.users.iter().enumerate() {
            if u.user.is_empty() {
                errors.push(format!("registrar.users[{i}].user: empty"));
            }
            if u.password.is_none() && u.ha1_md5.is_none() && u.ha1_sha256.is_none() {
                errors.push(format!("registrar.users[{i}]: needs password, ha1_md5 or ha1_sha256"));
            }
            if let Some(d) = &u.domain {
                if !self.domains.iter().any(|x| x.eq_ignore_ascii_case(d)) {
                    errors.push(format!(
                        "registrar.users[{i}].domain: `{d}` is not in registrar.domains"
                    ));
                }
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

impl RegistrarConfig {
    /// Every user's secret by (user, domain), domains lowercased; a user
    /// without a domain is in the first of `domains`. session-svc checks
    /// callers against the same table.
    pub fn secrets(&self) -> HashMap<(String, String), Secret> {
        let default_domain = self.domains.first().cloned().unwrap_or_default().to_ascii_lowercase();
        self.users
            .iter()
            .map(|u| {
                let domain = u
                    .domain
                    .clone()
                    .unwrap_or_else(|| default_domain.clone())
                    .to_ascii_lowercase();
                let secret = match &u.password {
                    Some(p) => Secret::Password(p.clone()),
                    None => Secret::Ha1 {
                        md5: u.ha1_md5.clone(),
                        sha256: u.ha1_sha256.clone(),
                    },
                };
                ((u.user.clone(), domain), secret)
            })
            .collect()
    }

    /// A digest challenger for `realm` with the configured nonce key (a
    /// random one for this process when none is set: fine for one process,
    /// not for replicas), lifetime and algorithms.
    pub fn authenticator(&self, realm: &str) -> Authenticator {
        let key = if self.auth.nonce_key.is_empty() {
            (0..32).map(|_| fastrand::u8(..)).collect::<Vec<u8>>()
        } else {
            self.auth.nonce_key.as_bytes().to_vec()
        };
        Authenticator::new(
            realm,
            &key,
            Duration::from_secs(self.auth.nonce_lifetime_s),
            self.auth.algorithms.clone(),
        )
    }
}
