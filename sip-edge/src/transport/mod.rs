//! Transports: where bytes come from and go to: UDP, and the stream
//! transports TCP, TLS, WebSocket and secure WebSocket, behind the
//! [`Transmit`] seam so the transaction layer never notices which. What
//! arrives comes with the [`Flow`] it arrived on; what leaves goes to a
//! [`Flow`].

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use bytes::Bytes;
pub use edge_api::{ConnectionId, Flow, Transport};

#[cfg(any(test, feature = "test-util"))]
pub mod memory;
pub mod stream;
pub mod tls;
pub mod udp;
pub mod ws;

mod registry;
pub use registry::Transports;

/// Why bytes could not be handed to a transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("no {transport} socket for {remote}")]
    NoSocket { transport: Transport, remote: SocketAddr },
    #[error("send queue to {remote} is full")]
    QueueFull { remote: SocketAddr },
    #[error("connection to {remote} is closed")]
    Closed { remote: SocketAddr },
    #[error("too many connections")]
    TooManyConnections,
    /// The connection a flow names is gone (RFC 5626 5.3: a flow is not
    /// opened again towards a client's ephemeral port).
    #[error("the {transport} flow to {remote} has failed")]
    FlowFailed { transport: Transport, remote: SocketAddr },
}

/// Hands bytes to the wire without waiting: the transaction layer never
/// blocks on a socket. Implementations queue, and report a full queue.
pub trait Transmit: Send + Sync + 'static {
    fn transmit(&self, target: &Flow, data: Bytes) -> Result<(), TransportError>;
    /// The address to put in our Via sent-by for a request to `target`.
    fn sent_by(&self, target: &Flow) -> SocketAddr;
    /// Whether the connection `target` names is still open (true for a
    /// flow that names none).
    fn flow_is_open(&self, _target: &Flow) -> bool {
        true
    }
}

/// A listening address from the configuration: `udp:0.0.0.0:5060`,
/// `tcp:[::]:5060`, `tls:0.0.0.0:5061`, `ws:0.0.0.0:8080`,
/// `wss:0.0.0.0:8443`. The port may be left out for its transport's
/// default (`tls:0.0.0.0` is port 5061).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (proto, addr) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}`: expected TRANSPORT:IP:PORT, e.g. udp:0.0.0.0:5060 or tls:[::]:5061"))?;
        let transport = Transport::from_token(proto)
            .ok_or_else(|| format!("`{s}`: unknown transport `{proto}` (udp, tcp, tls, ws or wss)"))?;
        let addr = match addr.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                let ip = addr.trim_start_matches('[').trim_end_matches(']');
                let ip: std::net::IpAddr = ip
                    .parse()
                    .map_err(|_| format!("`{s}`: `{addr}` is not IP:PORT (IPv6 in brackets: [::1]:5060)"))?;
                SocketAddr::new(ip, transport.default_port())
            }
        };
        Ok(ListenAddr { transport, addr })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport.via_token().to_ascii_lowercase(), self.addr)
    }
}

impl<'de> serde::Deserialize<'de> for ListenAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where transports deliver what they receive: one SIP message (a UDP
/// datagram, or a frame from a stream) with where it came from.
pub trait Inbound: Send + Sync + 'static {
    fn on_message(&self, data: Bytes, source: Flow);
    /// A message from a connection whose source is banned for flooding:
    /// answered 503 with Retry-After when it is a request, then the
    /// connection closes.
    fn refuse(&self, data: Bytes, source: Flow, retry_after: std::time::Duration);
}

impl serde::Serialize for ListenAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        let l: ListenAddr = "tcp:[::1]:5070".parse().unwrap();
        assert_eq!(l.transport, Transport::Tcp);
        assert_eq!(l.addr, "[::1]:5070".parse().unwrap());
        assert!(
            "sctp:1.2.3.4:5060"
                .parse::<ListenAddr>()
                .unwrap_err()
                .contains("unknown transport")
        );
        assert!("udp:1.2.3.x".parse::<ListenAddr>().unwrap_err().contains("not IP:PORT"));
        let tls: ListenAddr = "tls:127.0.0.1".parse().unwrap();
        assert_eq!((tls.transport, tls.addr.port()), (Transport::Tls, 5061));
        let wss: ListenAddr = "wss:[::1]:8443".parse().unwrap();
        assert_eq!(
            (wss.transport, wss.to_string()),
            (Transport::Wss, "wss:[::1]:8443".to_owned())
        );
        assert!("nonsense".parse::<ListenAddr>().is_err());
    }
}
