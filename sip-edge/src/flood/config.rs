//! `[edge.flood]`: the limits, on by default, sized so a busy office
//! behind one NAT address never meets them and a flood from one address
//! is cut off within a window.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct FloodConfig {
    /// Off: no per-source limits at all (only the global ones).
    pub enabled: bool,
    /// The sliding window the rate is measured over, in milliseconds.
    pub window_ms: u64,
    /// Messages one source may send within a window; more and it is
    /// banned.
    pub max_messages: u32,
    /// How long a ban lasts; a source that keeps flooding stays banned.
    pub ban_s: u64,
    /// IPv6 sources are counted per prefix of this length (one host
    /// usually holds a whole /64).
    pub ipv6_prefix: u8,
    /// Sources tracked at once, so a spoofed-source flood cannot grow the
    /// table without bound. When it is full, sources not yet in it pass
    /// uncounted until idle entries age out (logged): refusing them would
    /// lock out every new client during such a flood.
    pub max_sources: usize,
    /// Stream connections one source may hold open.
    pub max_connections_per_address: u32,
    /// TLS (and WSS) handshakes one source may have in progress.
    pub max_handshakes_per_address: u32,
    /// Sources no per-source limit applies to: trunks, load balancers,
    /// the host itself. Addresses or CIDR prefixes.
    pub allow: Vec<Cidr>,
}

impl Default for FloodConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window_ms: 2_000,
            // 250 messages a second, sustained over 2 s.
            max_messages: 500,
            ban_s: 60,
            ipv6_prefix: 64,
            max_sources: 100_000,
            max_connections_per_address: 64,
            max_handshakes_per_address: 16,
            allow: vec![
                Cidr::new(IpAddr::from([127, 0, 0, 0]), 8),
                Cidr::new(IpAddr::from(std::net::Ipv6Addr::LOCALHOST), 128),
            ],
        }
    }
}

impl FloodConfig {
    /// Problems with the values, each naming its key.
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut bad = Vec::new();
        if !(100..=60_000).contains(&self.window_ms) {
            bad.push(("flood.window_ms", "must be from 100 to 60000"));
        }
        if self.max_messages == 0 {
            bad.push(("flood.max_messages", "must be greater than 0"));
        }
        if self.ban_s == 0 || self.ban_s > 86_400 {
            bad.push(("flood.ban_s", "must be from 1 to 86400"));
        }
        if !(1..=128).contains(&self.ipv6_prefix) {
            bad.push(("flood.ipv6_prefix", "must be from 1 to 128"));
        }
        if !(1..=10_000_000).contains(&self.max_sources) {
            bad.push(("flood.max_sources", "must be from 1 to 10000000"));
        }
        if self.max_connections_per_address == 0 {
            bad.push(("flood.max_connections_per_address", "must be greater than 0"));
        }
        if self.max_handshakes_per_address == 0 {
            bad.push(("flood.max_handshakes_per_address", "must be greater than 0"));
        }
        bad
    }
}

/// An address prefix: `192.0.2.0/24`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

impl Cidr {
    /// `net` with its host bits cleared.
    pub fn new(net: IpAddr, len: u8) -> Cidr {
        let len = len.min(max_len(net));
        Cidr {
            net: mask(net, len),
            len,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.len) == self.net
    }
}

fn max_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// An IPv4-mapped IPv6 address is the IPv4 address it maps.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `ip` with all but its first `len` bits cleared.
pub(crate) fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
            IpAddr::from((bits & m).to_be_bytes())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = u128::MAX.checked_shl(128 - u32::from(len.min(128))).unwrap_or(0);
            IpAddr::from((bits & m).to_be_bytes())
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, len) = match s.split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None => (s, None),
        };
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("`{s}`: not an address or prefix (192.0.2.0/24, 2001:db8::/32)"))?;
        let ip = canonical(ip);
        let len = match len {
            None => max_len(ip),
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max_len(ip))
                .ok_or_else(|| format!("`{s}`: prefix length must be 0 to {}", max_len(ip)))?,
        };
        Ok(Cidr::new(ip, len))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let c: Cidr = "192.0.2.77/24".parse().unwrap();
        assert_eq!(c.to_string(), "192.0.2.0/24");
        assert!(c.contains("192.0.2.1".parse().unwrap()));
        assert!(c.contains("::ffff:192.0.2.9".parse().unwrap()), "mapped");
        assert!(!c.contains("192.0.3.1".parse().unwrap()));
        let one: Cidr = "2001:db8::1".parse().unwrap();
        assert!(one.contains("2001:db8::1".parse().unwrap()));
        assert!(!one.contains("2001:db8::2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.5".parse().unwrap()));
        assert!(!all.contains("2001:db8::1".parse().unwrap()));
        for bad in ["192.0.2.0/33", "2001:db8::/129", "example.com", "1.2.3.4/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert!(FloodConfig::default().problems().is_empty());
    }
}
