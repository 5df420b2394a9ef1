//! Flood protection, before any parsing: every message and connection is
//! counted against its source address (an IPv6 source against its /64)
//! over a sliding window. A source over the limit is banned for a while:
//! its datagrams are dropped unread, its stream messages answered 503
//! with Retry-After and the connection closed, its new connections closed
//! at once. Per-source limits on open connections and on TLS handshakes in
//! progress keep one address from holding the edge's sockets. Allow-listed
//! prefixes (trunks, load balancers, the host itself) skip all of it.
//!
//! Like Kamailio's pike, but on by default: one table behind a mutex,
//! bounded in size, swept of idle sources once a window.

mod config;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use config::{Cidr, FloodConfig};
use hashbrown::HashMap;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::lock;

/// What the guard says about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Banned for this much longer (this message may be the one that set
    /// the ban off).
    Banned(Duration),
}

/// A source as counted: an IPv4 address, or an IPv6 prefix.
type SourceKey = IpAddr;

#[derive(Debug, Default)]
struct Source {
    /// Which window `current` counts (milliseconds since start / window).
    epoch: u64,
    current: u32,
    previous: u32,
    /// Milliseconds since start; 0: not banned.
    banned_until: u64,
    connections: u32,
    handshakes: u32,
}

impl Source {
    /// Idle: nothing counted in the last two windows, no ban, nothing open.
    fn idle(&self, epoch: u64, now: u64) -> bool {
        self.epoch + 1 < epoch && self.banned_until <= now && self.connections == 0 && self.handshakes == 0
    }
}

struct Table {
    sources: HashMap<SourceKey, Source, foldhash::fast::RandomState>,
    banned: usize,
    last_sweep: u64,
    full_warned: bool,
}

/// The flood guard of one edge.
pub struct FloodGuard {
    config: FloodConfig,
    started: Instant,
    table: Mutex<Table>,
}

impl FloodGuard {
    pub fn new(config: FloodConfig) -> Arc<FloodGuard> {
        Arc::new(FloodGuard {
            config,
            started: Instant::now(),
            table: Mutex::new(Table {
                sources: HashMap::default(),
                banned: 0,
                last_sweep: 0,
                full_warned: false,
            }),
        })
    }

    /// No limits at all (tests of other things).
    pub fn off() -> Arc<FloodGuard> {
        FloodGuard::new(FloodConfig {
            enabled: false,
            ..FloodConfig::default()
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether per-source limits apply to `ip` at all.
    fn exempt(&self, ip: IpAddr) -> bool {
        !self.config.enabled || self.config.allow.iter().any(|c| c.contains(ip))
    }

    fn key(&self, ip: IpAddr) -> SourceKey {
        match config::canonical(ip) {
            v4 @ IpAddr::V4(_) => v4,
            v6 => config::mask(v6, self.config.ipv6_prefix),
        }
    }

    /// Counts one message from `ip`.
    pub fn message(&self, ip: IpAddr) -> Admit {
        if self.exempt(ip) {
            return Admit::Yes;
        }
        let now = self.now_ms();
        let window = self.config.window_ms;
        let epoch = now / window;
        let key = self.key(ip);
        let mut t = lock(&self.table);
        self.sweep(&mut t, now);
        let Some(s) = self.entry(&mut t, key) else {
            return Admit::Yes;
        };
        match epoch.saturating_sub(s.epoch) {
            0 => {}
            1 => {
                s.previous = s.current;
                s.current = 0;
            }
            _ => {
                s.previous = 0;
                s.current = 0;
            }
        }
        s.epoch = epoch;
        s.current = s.current.saturating_add(1);
        // The sliding window: all of this window's count and the part of
        // the previous one the window still covers.
        let into = now % window;
        let rate = u64::from(s.current) + u64::from(s.previous) * (window - into) / window;
        let was_banned = s.banned_until > now;
        if rate > u64::from(self.config.max_messages) {
            // Flooding on while banned keeps the ban going.
            s.banned_until = now + self.config.ban_s * 1000;
            if !was_banned {
                t.banned += 1;
                telemetry::metrics::flood_ban();
                warn!(source = %key, rate, window_ms = window, ban_s = self.config.ban_s, "flood: source banned");
                telemetry::metrics::flood_refused(telemetry::metrics::FloodRefused::Rate);
                return Admit::Banned(Duration::from_secs(self.config.ban_s));
            }
        }
        if s.banned_until > now {
            telemetry::metrics::flood_refused(telemetry::metrics::FloodRefused::Banned);
            return Admit::Banned(Duration::from_millis(s.banned_until - now));
        }
        Admit::Yes
    }

    /// A stream connection from `ip` wants in: the slot that counts it
    /// while it is open, or why not.
    pub fn connection(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        self.open(ip, Kind::Connection)
    }

    /// A TLS handshake from `ip` begins: the slot that counts it until it
    /// ends, or why not.
    pub fn handshake(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        self.open(ip, Kind::Handshake)
    }

    fn open(self: &Arc<Self>, ip: IpAddr, kind: Kind) -> Result<Slot, Refused> {
        if self.exempt(ip) {
            return Ok(Slot {
                guard: None,
                key: ip,
                kind,
            });
        }
        let now = self.now_ms();
        let key = self.key(ip);
        let mut t = lock(&self.table);
        self.sweep(&mut t, now);
        let Some(s) = self.entry(&mut t, key) else {
            return Ok(Slot { guard: None, key, kind });
        };
        if s.banned_until > now {
            telemetry::metrics::flood_refused(telemetry::metrics::FloodRefused::Banned);
            return Err(Refused::Banned);
        }
        let (held, max, refused, reason) = match kind {
            Kind::Connection => (
                &mut s.connections,
                self.config.max_connections_per_address,
                Refused::Connections,
                telemetry::metrics::FloodRefused::Connections,
            ),
            Kind::Handshake => (
                &mut s.handshakes,
                self.config.max_handshakes_per_address,
                Refused::Handshakes,
                telemetry::metrics::FloodRefused::Handshakes,
            ),
        };
        if *held >= max {
            telemetry::metrics::flood_refused(reason);
            return Err(refused);
        }
        *held += 1;
        Ok(Slot {
            guard: Some(self.clone()),
            key,
            kind,
        })
    }

    fn close(&self, key: SourceKey, kind: Kind) {
        let mut t = lock(&self.table);
        if let Some(s) = t.sources.get_mut(&key) {
            match kind {
                Kind::Connection => s.connections = s.connections.saturating_sub(1),
                Kind::Handshake => s.handshakes = s.handshakes.saturating_sub(1),
            }
        }
    }

    /// The source's entry, made when there is room.
    fn entry<'t>(&self, t: &'t mut Table, key: SourceKey) -> Option<&'t mut Source> {
        let room = t.sources.len() < self.config.max_sources;
        if !room && !t.sources.contains_key(&key) {
            if !t.full_warned {
                t.full_warned = true;
                warn!(
                    max_sources = self.config.max_sources,
                    "flood: source table full (a spoofed-source flood?): new sources pass uncounted"
                );
            }
            return None;
        }
        Some(t.sources.entry(key).or_default())
    }

    /// Once a window: forgets idle sources, ends bans, updates the gauges.
    fn sweep(&self, t: &mut Table, now: u64) {
        if now.saturating_sub(t.last_sweep) < self.config.window_ms {
            return;
        }
        t.last_sweep = now;
        let epoch = now / self.config.window_ms;
        let mut ended = Vec::new();
        t.sources.retain(|key, s| {
            if s.banned_until != 0 && s.banned_until <= now {
                s.banned_until = 0;
                ended.push(*key);
            }
            !s.idle(epoch, now)
        });
        t.banned = t.banned.saturating_sub(ended.len());
        for key in ended {
            info!(source = %key, "flood: ban ended");
        }
        if t.sources.len() < self.config.max_sources {
            t.full_warned = false;
        }
        telemetry::metrics::flood_table(t.sources.len(), t.banned);
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        lock(&self.table).sources.len()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connection,
    Handshake,
}

/// Why a connection was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("source is banned for flooding")]
    Banned,
    #[error("too many connections from this source")]
    Connections,
    #[error("too many TLS handshakes in progress from this source")]
    Handshakes,
}

/// A connection or handshake counted against its source until dropped.
pub struct Slot {
    guard: Option<Arc<FloodGuard>>,
    key: SourceKey,
    kind: Kind,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(g) = &self.guard {
            g.close(self.key, self.kind);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max_messages: u32) -> Arc<FloodGuard> {
        FloodGuard::new(FloodConfig {
            max_messages,
            allow: vec!["192.0.2.200/30".parse().unwrap()],
            max_connections_per_address: 2,
            max_handshakes_per_address: 1,
            ..FloodConfig::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_over_the_rate_is_banned_and_others_are_not() {
        let g = guard(10);
        for _ in 0..10 {
            assert_eq!(g.message(ip("192.0.2.1")), Admit::Yes);
        }
        assert!(matches!(g.message(ip("192.0.2.1")), Admit::Banned(d) if d == Duration::from_secs(60)));
        assert!(matches!(g.message(ip("192.0.2.1")), Admit::Banned(_)));
        assert_eq!(g.message(ip("192.0.2.2")), Admit::Yes, "another address");
        for _ in 0..100 {
            assert_eq!(g.message(ip("192.0.2.201")), Admit::Yes, "allow-listed");
        }
        assert_eq!(g.connection(ip("192.0.2.1")).err(), Some(Refused::Banned));
    }

    #[test]
    fn ipv6_sources_count_per_prefix() {
        let g = guard(5);
        for i in 0..5 {
            assert_eq!(g.message(ip(&format!("2001:db8:1:2::{i}"))), Admit::Yes);
        }
        assert!(matches!(g.message(ip("2001:db8:1:2:ffff::1")), Admit::Banned(_)));
        assert_eq!(g.message(ip("2001:db8:1:3::1")), Admit::Yes, "the next /64");
        // A v4-mapped address is the v4 source.
        for _ in 0..5 {
            assert_eq!(g.message(ip("::ffff:198.51.100.1")), Admit::Yes);
        }
        assert!(matches!(g.message(ip("198.51.100.1")), Admit::Banned(_)));
    }

    #[test]
    fn connections_and_handshakes_per_address() {
        let g = guard(100);
        let a = g.connection(ip("192.0.2.1")).unwrap();
        let _b = g.connection(ip("192.0.2.1")).unwrap();
        assert_eq!(g.connection(ip("192.0.2.1")).err(), Some(Refused::Connections));
        assert!(g.connection(ip("192.0.2.2")).is_ok());
        drop(a);
        let _c = g.connection(ip("192.0.2.1")).unwrap();
        let h = g.handshake(ip("192.0.2.1")).unwrap();
        assert_eq!(g.handshake(ip("192.0.2.1")).err(), Some(Refused::Handshakes));
        drop(h);
        assert!(g.handshake(ip("192.0.2.1")).is_ok());
        let off = FloodGuard::off();
        let held: Vec<_> = (0..100).map(|_| off.connection(ip("192.0.2.1")).unwrap()).collect();
        assert_eq!(held.len(), 100);
    }

    #[test]
    fn the_table_is_bounded() {
        let g = FloodGuard::new(FloodConfig {
            max_sources: 100,
            allow: Vec::new(),
            ..FloodConfig::default()
        });
        for i in 0..1000u32 {
            let a = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            assert_eq!(g.message(a), Admit::Yes);
        }
        assert_eq!(g.tracked(), 100);
    }

    #[test]
    fn the_window_slides() {
        let g = FloodGuard::new(FloodConfig {
            window_ms: 100,
            max_messages: 10,
            allow: Vec::new(),
            ..FloodConfig::default()
        });
        // 4 per 100 ms for half a second: at most 8 in any 100 ms.
        for _ in 0..5 {
            for _ in 0..4 {
                assert_eq!(g.message(ip("192.0.2.9")), Admit::Yes);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // 11 at once is over.
        let answers: Vec<Admit> = (0..11).map(|_| g.message(ip("192.0.2.8"))).collect();
        assert!(matches!(answers[10], Admit::Banned(_)));
    }
}
