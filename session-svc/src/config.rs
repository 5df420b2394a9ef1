//! `[session]`: how calls are routed and which supplements join them.

use std::collections::BTreeMap;

use extension::ModuleConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
    /// Supplements, built-in by name or external by url, in configuration
    /// order (ties in priority keep it). Listing them replaces the default
    /// list (`caller-id`, `reason`).
    pub supplements: Vec<ModuleConfig>,
    /// Per-endpoint (authenticated user or caller user part) identity
    /// trust for the `caller-id` supplement; `default` for the rest.
    pub identity: BTreeMap<String, IdentityTrust>,
    /// How often this replica polls the store for due timers.
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
            supplements: vec![ModuleConfig::builtin("caller-id"), ModuleConfig::builtin("reason")],
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
