//! Edge configuration: the `[edge]` table of the sipbus config file.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sip_message::Limits;

use crate::flood::FloodConfig;
use crate::transaction::TimerConfig;
use crate::transport::ListenAddr;
use crate::transport::stream::TcpSettings;
use crate::transport::tls::{ClientAuth, TlsConfig};
use crate::transport::ws::{WsConfig, WsSettings};

/// `[edge]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct EdgeConfig {
    /// Where to listen: `udp:IP:PORT`, `tcp:IP:PORT`, `tls:IP:PORT`,
    /// `ws:IP:PORT`, `wss:IP:PORT`; IPv4 or `[IPv6]`.
    pub listen: Vec<ListenAddr>,
    /// This edge instance's name, carried in every flow so services can
    /// send back through it. Default: a random one per process.
    pub instance: Option<String>,
    /// IP written in our Via sent-by; default: the listening IP, or the
    /// route's source address when listening on a wildcard.
    pub advertise: Option<IpAddr>,
    /// Option tags we support (Supported in OPTIONS answers; anything else
    /// in Require gets 420).
    pub supported: Vec<String>,
    /// UDP receive tasks per socket.
    pub udp_workers: usize,
    /// `SO_RCVBUF` and `SO_SNDBUF` of UDP sockets: a burst the server
    /// cannot read at once waits here instead of being dropped. The kernel
    /// grants at most `net.core.rmem_max`; sipbus warns when it grants less.
    pub udp_buffer_bytes: usize,
    pub timers: TimersConfig,
    /// `[edge.limits]`: bounds on everything a peer sends.
    pub limits: Limits,
    pub overload: OverloadConfig,
    /// `[edge.flood]`: per-source rate limits, bans, connection limits.
    pub flood: FloodConfig,
    pub tcp: TcpConfig,
    /// `[edge.tls]`: certificates for `tls:` and `wss:` listeners and for
    /// connections we open to `sips:` targets.
    pub tls: TlsConfig,
    pub websocket: WsConfig,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                ListenAddr {
                    transport: crate::Transport::Udp,
                    addr: ([0, 0, 0, 0], 5060).into(),
                },
                ListenAddr {
                    transport: crate::Transport::Tcp,
                    addr: ([0, 0, 0, 0], 5060).into(),
                },
            ],
            instance: None,
            advertise: None,
            supported: Vec::new(),
            udp_workers: 2,
            udp_buffer_bytes: 4 << 20,
            timers: TimersConfig::default(),
            limits: Limits::default(),
            overload: OverloadConfig::default(),
            flood: FloodConfig::default(),
            tcp: TcpConfig::default(),
            tls: TlsConfig::default(),
            websocket: WsConfig::default(),
        }
    }
}

/// `[edge.timers]`, in milliseconds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct TimersConfig {
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
    /// How long an INVITE may wait for the application's final response.
    pub invite_guard_ms: u64,
}

impl Default for TimersConfig {
    fn default() -> Self {
        let t = TimerConfig::default();
        Self {
            t1_ms: t.t1.as_millis() as u64,
            t2_ms: t.t2.as_millis() as u64,
            t4_ms: t.t4.as_millis() as u64,
            invite_guard_ms: t.invite_guard.as_millis() as u64,
        }
    }
}

/// `[edge.overload]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct OverloadConfig {
    /// MiB of transaction state (server and client) before new requests
    /// get 503 and sending new requests fails. A completed non-INVITE
    /// transaction over UDP lives 32 s after its answer (timer J) in about
    /// 200 bytes, so the default holds 40,000 transactions a second with
    /// room to spare; one in progress costs about 0.5 KiB, an INVITE about
    /// 4 KiB.
    pub transaction_memory_mib: usize,
    /// Requests handed to services and not yet answered before new ones get
    /// 503.
    pub max_inflight_requests: usize,
    /// Retry-After seconds on 503.
    pub retry_after_s: u32,
}

impl OverloadConfig {
    pub fn transaction_memory_bytes(&self) -> usize {
        self.transaction_memory_mib.saturating_mul(1 << 20)
    }
}

impl Default for OverloadConfig {
    fn default() -> Self {
        Self {
            transaction_memory_mib: 512,
            max_inflight_requests: 10_000,
            retry_after_s: 5,
        }
    }
}

/// `[edge.tcp]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct TcpConfig {
    pub idle_timeout_s: u64,
    pub incomplete_message_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub write_queue: usize,
    pub max_connections: usize,
}

impl Default for TcpConfig {
    fn default() -> Self {
        let t = TcpSettings::default();
        Self {
            idle_timeout_s: t.idle_timeout.as_secs(),
            incomplete_message_timeout_ms: t.incomplete_message_timeout.as_millis() as u64,
            connect_timeout_ms: t.connect_timeout.as_millis() as u64,
            write_queue: t.write_queue,
            max_connections: t.max_connections,
        }
    }
}

/// A value that passed deserialisation but makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("edge.{key}: {problem}")]
pub struct ConfigError {
    pub key: &'static str,
    pub problem: String,
}

impl EdgeConfig {
    /// Checks relations serde cannot: ranges and orderings.
    pub fn check(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut bad = |key, problem: &str| {
            errors.push(ConfigError {
                key,
                problem: problem.to_owned(),
            })
        };
        if self.listen.is_empty() {
            bad("listen", "at least one address is needed");
        }
        if self.timers.t1_ms == 0 {
            bad("timers.t1_ms", "must be greater than 0");
        }
        if self.timers.t2_ms < self.timers.t1_ms {
            bad("timers.t2_ms", "must be at least timers.t1_ms");
        }
        if self.udp_workers == 0 || self.udp_workers > 64 {
            bad("udp_workers", "must be from 1 to 64");
        }
        if !(512..=16 << 20).contains(&self.limits.max_message_bytes) {
            bad("limits.max_message_bytes", "must be from 512 to 16777216");
        }
        if self.limits.max_body_bytes > self.limits.max_message_bytes {
            bad("limits.max_body_bytes", "must not exceed limits.max_message_bytes");
        }
        if !(1..=1 << 20).contains(&self.overload.transaction_memory_mib) {
            bad("overload.transaction_memory_mib", "must be from 1 to 1048576");
        }
        if !(64 << 10..=1 << 30).contains(&self.udp_buffer_bytes) {
            bad("udp_buffer_bytes", "must be from 65536 to 1073741824");
        }
        if self.overload.max_inflight_requests == 0 {
            bad("overload.max_inflight_requests", "must be greater than 0");
        }
        for (key, problem) in self.flood.problems() {
            bad(key, problem);
        }
        if self.tcp.write_queue == 0 {
            bad("tcp.write_queue", "must be greater than 0");
        }
        let serves_tls = self.listen.iter().any(|l| l.transport.is_secure());
        if serves_tls && (self.tls.cert_file.is_none() || self.tls.key_file.is_none()) {
            bad(
                "tls.cert_file",
                "tls: and wss: listeners need tls.cert_file and tls.key_file",
            );
        }
        if self.tls.client_auth != ClientAuth::None && self.tls.client_ca_file.is_none() {
            bad(
                "tls.client_ca_file",
                "client_auth optional or required needs a CA bundle",
            );
        }
        if self.tls.handshake_timeout_ms > 60_000 {
            bad("tls.handshake_timeout_ms", "must be at most 60000 (0: the default)");
        }
        if self.websocket.ping_interval_s > 3600 {
            bad("websocket.ping_interval_s", "must be at most 3600 (0: no pings)");
        }
        for origin in &self.websocket.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) || origin.ends_with('/') {
                bad(
                    "websocket.allowed_origins",
                    "origins look like https://app.example.com (scheme and host, no path)",
                );
            }
        }
        for tag in &self.supported {
            if !sip_message::text::is_token(tag) {
                bad("supported", "option tags must be tokens");
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    pub fn timer_config(&self) -> TimerConfig {
        TimerConfig {
            t1: Duration::from_millis(self.timers.t1_ms),
            t2: Duration::from_millis(self.timers.t2_ms),
            t4: Duration::from_millis(self.timers.t4_ms),
            invite_guard: Duration::from_millis(self.timers.invite_guard_ms),
        }
    }

    pub fn message_limits(&self) -> Limits {
        self.limits.clone()
    }

    pub fn ws_settings(&self) -> WsSettings {
        WsSettings {
            allowed_origins: self.websocket.allowed_origins.clone(),
            ping_interval: (self.websocket.ping_interval_s > 0)
                .then(|| Duration::from_secs(self.websocket.ping_interval_s)),
            idle_timeout: Duration::from_secs(self.tcp.idle_timeout_s),
            max_message_bytes: self.limits.max_message_bytes,
            write_queue: self.tcp.write_queue,
        }
    }

    pub fn tcp_settings(&self) -> TcpSettings {
        TcpSettings {
            idle_timeout: Duration::from_secs(self.tcp.idle_timeout_s),
            incomplete_message_timeout: Duration::from_millis(self.tcp.incomplete_message_timeout_ms),
            connect_timeout: Duration::from_millis(self.tcp.connect_timeout_ms),
            write_queue: self.tcp.write_queue,
            max_connections: self.tcp.max_connections,
            limits: self.message_limits(),
        }
    }
}
