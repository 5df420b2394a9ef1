//! `[pubsub]`: authentication, per-package Expires bounds, pacing and
//! authorization policy, the handler list.

use std::collections::BTreeMap;

use extension::{ConfigProblem, ModuleConfig, Packages, Point};
use serde::{Deserialize, Serialize};

use crate::handlers::{BUILTINS, DEFAULTS, SubscriptionHandler};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PubsubConfig {
    /// Digest authentication of SUBSCRIBE with the registrar's users and
    /// nonce key (`[registrar.auth]`, a 407 challenge); the authenticated
    /// user is the watcher.
    pub authenticate: bool,
    /// Host (and port) for the Contact of sipbus's side of subscriptions;
    /// empty: the edge address the subscription came in on.
    pub contact_host: String,
    /// Settings by event package (`[pubsub.packages.presence]`); a package
    /// not named gets the defaults.
    pub packages: BTreeMap<String, PackageSettings>,
    /// Subscription handlers: `[[pubsub.handlers]]`, one per event
    /// package. The built-ins `message-summary`, `presence` and `dialog`
    /// run unless listed.
    pub handlers: Vec<ModuleConfig>,
    /// Users (`alice` or `sip:alice@example.com`) whose phones get
    /// message-waiting NOTIFYs without subscribing: on every change of
    /// their mailbox and when a phone registers.
    pub unsolicited_mwi: Vec<String>,
    /// Subscriptions sipbus makes to external notifiers (the subscriber
    /// role): `[[pubsub.upstream]]`.
    pub upstream: Vec<Upstream>,
    /// A resource change another replica took but never finished (it
    /// died) is taken over after this long, and so is a NOTIFY it was
    /// sending. Above the longest a NOTIFY
    /// may wait for its answer (64*T1 = 32 s) by default; shorter only
    /// costs duplicate NOTIFYs when a subscriber is that slow.
    pub reclaim_after_ms: u64,
    /// How often the store's event logs are polled when idle.
    pub poll_ms: u64,
    /// Resource changes handled at once by one replica.
    pub max_concurrent_changes: usize,
}

impl Default for PubsubConfig {
    fn default() -> Self {
        Self {
            authenticate: true,
            contact_host: String::new(),
            packages: BTreeMap::new(),
            handlers: Vec::new(),
            upstream: Vec::new(),
            unsolicited_mwi: Vec::new(),
            reclaim_after_ms: 40_000,
            poll_ms: 20,
            max_concurrent_changes: 256,
        }
    }
}

/// An outgoing subscription: sipbus subscribes to `target` for `package`
/// and hands each NOTIFY's state to the package's handler as the state of
/// the local `resource` (a voicemail server's message summary for a
/// mailbox).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub package: String,
    /// The local resource: a user of the first domain, or `sip:user@domain`.
    pub resource: String,
    /// The SUBSCRIBE's Request-URI at the notifier.
    pub target: String,
    /// Where the SUBSCRIBE goes, `sip:IP:PORT` (`;transport=tcp`); empty:
    /// the target's host, which must then be an address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub outbound: String,
    #[serde(default = "default_upstream_expires")]
    pub expires_s: u32,
    /// Credentials for the notifier's challenge; empty: none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// Seconds before trying again after a refusal or a lost notifier.
    #[serde(default = "default_upstream_retry")]
    pub retry_s: u32,
}

fn default_upstream_expires() -> u32 {
    3600
}
fn default_upstream_retry() -> u32 {
    30
}

/// Who may watch a resource (RFC 6665 5.4.7: a notifier decides; the
/// package's handler has the last word).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Authorization {
    /// Any watcher of one of our domains (and anyone when SUBSCRIBE is not
    /// authenticated).
    #[default]
    Domain,
    /// Only the resource's own user (its mailbox, its phones).
    Owner,
    /// Anyone.
    Open,
}

/// `[pubsub.packages.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PackageSettings {
    pub default_expires_s: u32,
    pub min_expires_s: u32,
    pub max_expires_s: u32,
    /// Changes closer together than this are coalesced: the next NOTIFY
    /// waits and carries the newest state.
    pub min_interval_ms: u64,
    pub authorization: Authorization,
}

impl Default for PackageSettings {
    fn default() -> Self {
        Self {
            default_expires_s: 3600,
            min_expires_s: 60,
            max_expires_s: 86_400,
            min_interval_ms: 200,
            authorization: Authorization::Domain,
        }
    }
}

impl PubsubConfig {
    /// A package's settings: configured, or the package's defaults
    /// (message-summary is its owner's only; dialog NOTIFYs are not paced).
    pub fn package(&self, name: &str) -> PackageSettings {
        if let Some(s) = self.packages.get(name) {
            return s.clone();
        }
        match name {
            "message-summary" => PackageSettings {
                authorization: Authorization::Owner,
                ..PackageSettings::default()
            },
            "dialog" => PackageSettings {
                min_interval_ms: 0,
                ..PackageSettings::default()
            },
            _ => PackageSettings::default(),
        }
    }

    /// Every problem that would stop a start, without connecting anywhere.
    pub fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = match self.handlers(None) {
            Ok(_) => Vec::new(),
            Err(p) => p,
        };
        for (name, s) in &self.packages {
            let key = format!("pubsub.packages.{name}");
            if s.min_expires_s == 0 || s.min_expires_s > s.max_expires_s {
                problems.push(ConfigProblem {
                    key: format!("{key}.min_expires_s"),
                    reason: format!("must be above 0 and at most max_expires_s ({})", s.max_expires_s),
                });
            }
            if !(s.min_expires_s..=s.max_expires_s).contains(&s.default_expires_s) {
                problems.push(ConfigProblem {
                    key: format!("{key}.default_expires_s"),
                    reason: "must lie between min_expires_s and max_expires_s".into(),
                });
            }
        }
        for (i, u) in self.upstream.iter().enumerate() {
            let key = format!("pubsub.upstream[{i}]");
            let mut bad = |field: &str, reason: String| {
                problems.push(ConfigProblem {
                    key: format!("{key}.{field}"),
                    reason,
                })
            };
            if !DEFAULTS.iter().any(|d| d.events.contains(&u.package.as_str()))
                && !self.handlers.iter().any(|h| h.events.contains(&u.package))
            {
                bad("package", format!("`{}` has no subscription handler", u.package));
            }
            if !u.target.starts_with("sip:") && !u.target.starts_with("sips:") {
                bad("target", format!("`{}` is not a SIP URI", u.target));
            }
            let hop = if u.outbound.is_empty() { &u.target } else { &u.outbound };
            if edge_api::Flow::to_uri(hop).is_none() {
                bad(
                    "outbound",
                    format!("`{hop}` has no IP address to send to (set outbound = \"sip:IP:PORT\")"),
                );
            }
            if u.expires_s < 60 || u.retry_s == 0 {
                bad("expires_s", "expires_s must be at least 60 and retry_s above 0".into());
            }
        }
        if self.reclaim_after_ms < 1000 {
            problems.push(ConfigProblem {
                key: "pubsub.reclaim_after_ms".into(),
                reason: "below 1000: live replicas would take each other's changes".into(),
            });
        }
        if self.poll_ms == 0 || self.max_concurrent_changes == 0 {
            problems.push(ConfigProblem {
                key: "pubsub.poll_ms, pubsub.max_concurrent_changes".into(),
                reason: "must be above 0".into(),
            });
        }
        problems
    }

    pub fn handlers(
        &self,
        connect: extension::Connect<'_, dyn SubscriptionHandler>,
    ) -> Result<Packages<dyn SubscriptionHandler>, Vec<ConfigProblem>> {
        Packages::build(
            Point::SubscriptionHandler,
            "pubsub.handlers",
            &self.handlers,
            DEFAULTS,
            &BUILTINS,
            self,
            connect,
        )
    }
}
