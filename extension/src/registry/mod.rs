//! The extension registry: modules that join a point at run time through
//! `sipbus.extension.v1.Registry` and stay while they renew their lease.
//!
//! - [`book`]: the registrations of a point in the store, one record
//!   changed by compare-and-set, so every replica sees one list.
//! - [`Leased`]: what one replica makes of them: an [`crate::External`] per
//!   module whose instances follow the leases, reread every `refresh_ms`.
//! - [`RegistryService`]: the gRPC service, with its token check; each
//!   point's service plugs in as a [`Host`] that checks registrations
//!   against its own modules and lists its chain.

pub mod book;
mod leased;
mod service;
mod stats;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use leased::{Leased, LeasedModule};
pub use service::{RegistryService, check_token, point_to_proto};

use crate::config::{ModuleConfig, Point};
use crate::window::Tally;

/// `[registry]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// The shared secret registry callers send (`authorization: Bearer
    /// <token>`). Empty: only callers on a loopback address may register
    /// (all-in-one on one machine); set it for anything else.
    pub token: String,
    /// How often a replica rereads the registrations.
    pub refresh_ms: u64,
    /// Bounds on the lease a registration gets.
    pub min_lease_s: u32,
    pub max_lease_s: u32,
    /// How long a lapsed module stays known, so sessions that began with it
    /// apply its failure policy instead of silently skipping it.
    pub retain_lapsed_s: u64,
}

/// The shortest lease is this many rereads long, so that a lease renewed
/// at a third of its time is never seen lapsed between two rereads.
const LEASE_IN_REREADS: u64 = 3;

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            token: String::new(),
            refresh_ms: 1000,
            min_lease_s: 3,
            max_lease_s: 300,
            retain_lapsed_s: 86_400,
        }
    }
}

impl RegistryConfig {
    pub fn check(&self) -> Vec<crate::ConfigProblem> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, reason: &str| {
            problems.push(crate::ConfigProblem {
                key: format!("registry.{key}"),
                reason: reason.to_owned(),
            })
        };
        if self.refresh_ms == 0 || self.refresh_ms > 60_000 {
            bad("refresh_ms", "must be between 1 and 60000");
        }
        if self.min_lease_s == 0 || self.min_lease_s > self.max_lease_s {
            bad("min_lease_s", "must be above 0 and at most max_lease_s");
        }
        if u64::from(self.min_lease_s) * 1000 < LEASE_IN_REREADS * self.refresh_ms {
            bad(
                "min_lease_s",
                "must be at least three times refresh_ms, or a renewed lease could be seen lapsed between two rereads",
            );
        }
        if !self.token.is_empty() && self.token.len() < 16 {
            bad("token", "shorter than 16 characters: too easy to guess");
        }
        problems
    }

    pub fn retain(&self) -> Duration {
        Duration::from_secs(self.retain_lapsed_s)
    }
}

/// Where a module in a chain comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    BuiltIn,
    Configured,
    Registered,
}

/// One module of a chain, for `sipbus extensions`.
#[derive(Debug, Clone)]
pub struct Row {
    pub kind: Kind,
    pub module: ModuleConfig,
    /// Where calls go (external modules).
    pub addresses: Vec<String>,
    /// Registered modules: until the last lease runs out (zero: lapsed).
    pub lease_left: Option<Duration>,
    /// External modules: the last minute (this replica's, until the
    /// registry adds the other replicas' to it).
    pub tally: Option<Tally>,
}

impl Row {
    /// A configured module: built in, or external with its stats.
    pub fn configured(module: &ModuleConfig, external: Option<&crate::External>) -> Row {
        Row {
            kind: if module.is_external() {
                Kind::Configured
            } else {
                Kind::BuiltIn
            },
            module: module.clone(),
            addresses: external.map(crate::External::addresses).unwrap_or_default(),
            lease_left: None,
            tally: external.map(|e| e.stats().tally()),
        }
    }
}

/// Why a point refuses a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// A name or package another module has (ALREADY_EXISTS).
    Taken(String),
    /// Something the point cannot use (INVALID_ARGUMENT).
    Invalid(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Taken(s) | Refused::Invalid(s) => f.write_str(s),
        }
    }
}

/// A point's service, as the registry sees it.
#[async_trait]
pub trait Host: Send + Sync {
    fn point(&self) -> Point;
    /// What the point refuses in a registration beyond the shared checks
    /// (a method that is not one, a name or package another module has).
    fn check(&self, module: &ModuleConfig) -> Vec<Refused>;
    /// The chain as a session or subscription starting now gets it, then
    /// lapsed modules.
    fn rows(&self) -> Vec<Row>;
    /// Rereads the registrations (after this replica changed them).
    async fn refresh(&self);
}
