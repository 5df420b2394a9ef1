//! `[session]`: how calls are routed and which supplements join them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Challenge every new INVITE (407) with the registrar's users, realm
    /// and nonce key (`[registrar.auth]`); the authenticated user is the
    /// call's endpoint. Off only for tests and trusted networks.
    pub authenticate: bool,
    /// Seconds a call may ring before every branch is cancelled and the
    /// caller gets 480.
    pub no_answer_s: u64,
    /// Seconds the caller's ACK may take after its 200 before both legs
    /// are hung up (RFC 3261 13.3.1.4: 64*T1).
    pub ack_wait_s: u64,
    /// Bindings rung in parallel at most (the highest q first).
    pub max_branches: usize,
    /// What a call to a domain that is not ours gets.
    pub non_local: NonLocal,
    /// `sip:host:port[;transport=tcp]` for `non_local = "outbound"`.
    pub outbound: String,
    /// Host (and port) written into the Contact sipbus sends on each leg;
    /// empty: the edge address the leg's flow uses.
    pub contact_host: String,
    /// Seconds a session record outlives its last change when no BYE ends
    /// it (a phone that vanished); refreshed on every in-dialog request.
    pub max_idle_s: u64,
    /// Supplements, in configuration order (ties in priority keep it).
    pub supplements: Vec<SupplementConfig>,
    /// Per-endpoint (authenticated user or caller user part) identity
    /// trust; `default` for the rest.
    pub identity: BTreeMap<String, IdentityTrust>,
    /// How often this replica polls the store for due no-answer timers.
    pub timer_poll_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            authenticate: true,
            no_answer_s: 60,
            ack_wait_s: 32,
            max_branches: 10,
            non_local: NonLocal::Reject404,
            outbound: String::new(),
            contact_host: String::new(),
            max_idle_s: 12 * 3600,
            supplements: vec![
                SupplementConfig::builtin("caller-id", 100),
                SupplementConfig::builtin("reason", 100),
            ],
            identity: BTreeMap::new(),
            timer_poll_ms: 250,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NonLocal {
    /// Forward to `outbound`.
    Outbound,
    /// 403 Forbidden.
    #[serde(rename = "403")]
    Reject403,
    /// 404 Not Found.
    #[serde(rename = "404")]
    Reject404,
}

/// One `[[session.supplements]]`: a built-in (`caller-id`, `reason`) or an
/// external gRPC server (`url`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SupplementConfig {
    pub name: String,
    /// `http://host:port` of an external supplement; empty for built-ins.
    #[serde(default)]
    pub url: String,
    /// Methods it hears; empty: all.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Lower runs first.
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// External only: the deadline of each call.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// External only: what a failed or late call does.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// With `on_failure = "reject"`: the status the request gets.
    #[serde(default = "default_reject_status")]
    pub reject_status: u16,
}

fn default_priority() -> i32 {
    100
}
fn default_timeout_ms() -> u64 {
    500
}
fn default_reject_status() -> u16 {
    503
}

impl SupplementConfig {
    fn builtin(name: &str, priority: i32) -> Self {
        Self {
            name: name.to_owned(),
            url: String::new(),
            methods: Vec::new(),
            priority,
            timeout_ms: default_timeout_ms(),
            on_failure: OnFailure::Skip,
            reject_status: default_reject_status(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Carry on as if the supplement were not there.
    #[default]
    Skip,
    /// Answer the triggering request with `reject_status`.
    Reject,
}

/// RFC 3325 trust for one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityTrust {
    /// Keep the P-Asserted-Identity / Remote-Party-ID it sends (otherwise
    /// they are removed and the identity is asserted from From).
    pub trust_inbound: bool,
    /// Send P-Asserted-Identity towards it.
    pub send_pai: bool,
    /// Send Remote-Party-ID towards it.
    pub send_rpid: bool,
}

impl Default for IdentityTrust {
    fn default() -> Self {
        Self {
            trust_inbound: false,
            send_pai: true,
            send_rpid: false,
        }
    }
}
