//! Flows: a transport, the peer's address, the edge address and connection
//! that reach it, and the edge instance that holds that connection.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A SIP transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    /// SIP over WebSocket (RFC 7118), plain.
    Ws,
    /// SIP over WebSocket over TLS.
    Wss,
}

impl Transport {
    pub const ALL: [Transport; 5] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
    ];

    /// Reliable transports get no retransmissions (RFC 3261 17).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// Encrypted hop: what a `sips:` request needs (RFC 5630).
    pub fn is_secure(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// WebSocket: the peer connects to us, we never connect to it (RFC 7118).
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }

    /// The token used in Via (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// The `transport=` URI parameter that brings a peer back over this
    /// transport; `None` for UDP, the default. WSS is `ws` (RFC 7118 5.2:
    /// the security comes from the `sips:` scheme).
    pub fn uri_param(self) -> Option<&'static str> {
        match self {
            Transport::Udp => None,
            Transport::Tcp => Some("tcp"),
            Transport::Tls => Some("tls"),
            Transport::Ws | Transport::Wss => Some("ws"),
        }
    }

    /// From a Via transport token or `transport=` URI parameter.
    pub fn from_token(token: &str) -> Option<Transport> {
        Transport::ALL
            .into_iter()
            .find(|t| t.via_token().eq_ignore_ascii_case(token))
    }

    /// The default port (RFC 3261 19.1.2; RFC 7118 leaves WebSocket ports
    /// to the URL, and 80/443 are what browsers assume).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Udp | Transport::Tcp => 5060,
            Transport::Tls => 5061,
            Transport::Ws => 80,
            Transport::Wss => 443,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_token())
    }
}

/// One stream connection of one edge instance, for as long as it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn-{}", self.0)
    }
}

/// The name of one edge instance (`edge.instance`). Shared, not copied:
/// every flow the edge hands out carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EdgeId(Arc<str>);

impl EdgeId {
    pub fn new(name: &str) -> EdgeId {
        EdgeId(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EdgeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The Contact host a service writes when it does not know which edge
/// address a request leaves from (a new flow): the edge that sends the
/// request writes its own address there, as it does in the Via.
pub const EDGE_HOST: &str = "edge.invalid";

/// Where a message came from, and how to reach that peer again; or where to
/// send a new request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Flow {
    pub transport: Transport,
    pub remote: SocketAddr,
    /// The edge address the flow uses: where a request arrived, and where
    /// what goes back leaves from (RFC 3581 4). `None`: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<SocketAddr>,
    /// The stream connection, when the flow has one. Only `edge` knows it;
    /// when it is gone, streams connect anew to `remote` (RFC 3261 18.2.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionId>,
    /// The edge instance that received the flow and holds its connection.
    /// `None`: any edge may send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<EdgeId>,
}

impl Flow {
    /// A new flow to `remote`, from any edge, over a new connection for
    /// stream transports.
    pub fn to(transport: Transport, remote: SocketAddr) -> Flow {
        Flow {
            transport,
            remote,
            local: None,
            connection: None,
            edge: None,
        }
    }

    /// A new flow to the address a SIP URI names: an IP host (a name needs
    /// resolving first: `None`), the transport its `transport=` parameter
    /// names (TLS for a `sips:` URI, RFC 5630), port 5060 (5061 for TLS)
    /// unless given. WebSocket peers are reached only over their own
    /// connection, so a `transport=ws` URI gives no new flow.
    pub fn to_uri(uri: &str) -> Option<Flow> {
        let Ok(sip_message::Uri::Sip(u)) = sip_message::Uri::parse(uri) else {
            return None;
        };
        let ip = u.host.ip()?;
        let named = match u.transport() {
            Some(t) => Some(Transport::from_token(t)?),
            None => None,
        };
        let transport = match (named, u.secure) {
            (Some(t), _) if t.is_websocket() => return None,
            // A sips: URI never means a plain datagram (RFC 5630 3.1.3).
            (Some(Transport::Udp), true) => return None,
            // sips: with transport=tcp means TLS over that TCP (RFC 5630 3.1.3).
            (Some(Transport::Tcp) | None, true) => Transport::Tls,
            (Some(t), _) => t,
            (None, false) => Transport::Udp,
        };
        Some(Flow::to(
            transport,
            SocketAddr::new(ip, u.port.unwrap_or(transport.default_port())),
        ))
    }

    /// sipbus's Contact for messages on this flow: `user` at the edge
    /// address the flow uses (or `host` when configured), with the
    /// `transport=` parameter of a stream flow so the peer comes back over
    /// it: `;transport=tcp`, `;transport=tls`, `;transport=ws`.
    pub fn contact(flow: Option<&Flow>, user: &str, host: &str) -> String {
        let local = flow
            .and_then(|f| f.local)
            .map_or_else(|| EDGE_HOST.to_owned(), |l| l.to_string());
        let host = if host.is_empty() { local.as_str() } else { host };
        match flow.and_then(|f| f.transport.uri_param()) {
            Some(t) => format!("<sip:{user}@{host};transport={t}>"),
            None => format!("<sip:{user}@{host}>"),
        }
    }

    /// The same flow, owned by `edge`.
    pub fn on_edge(mut self, edge: &EdgeId) -> Flow {
        self.edge = Some(edge.clone());
        self
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.transport, self.remote)?;
        if let Some(c) = self.connection {
            write!(f, " {c}")?;
        }
        if let Some(e) = &self.edge {
            write!(f, " on {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn stored_form_is_small_and_round_trips() {
        let flow = Flow {
            transport: Transport::Tcp,
            remote: "192.0.2.1:5060".parse().unwrap(),
            local: Some("[::1]:5060".parse().unwrap()),
            connection: Some(ConnectionId(7)),
            edge: Some(EdgeId::new("edge-1")),
        };
        let json = serde_json::to_string(&flow).unwrap();
        assert_eq!(
            json,
            r#"{"transport":"tcp","remote":"192.0.2.1:5060","local":"[::1]:5060","connection":7,"edge":"edge-1"}"#
        );
        assert_eq!(serde_json::from_str::<Flow>(&json).unwrap(), flow);
        let bare = Flow::to(Transport::Udp, "192.0.2.1:5080".parse().unwrap());
        assert_eq!(
            serde_json::to_string(&bare).unwrap(),
            r#"{"transport":"udp","remote":"192.0.2.1:5080"}"#
        );
        assert_eq!(Transport::from_token("TCP"), Some(Transport::Tcp));
        let gw = Flow::to_uri("sip:10.0.0.9:5080;transport=TCP").unwrap();
        assert_eq!(
            (gw.transport, gw.remote),
            (Transport::Tcp, "10.0.0.9:5080".parse().unwrap())
        );
        assert_eq!(Flow::to_uri("sip:bob@192.0.2.1").unwrap().remote.port(), 5060);
        assert!(Flow::to_uri("sip:gateway.example.com").is_none());
        assert!(Flow::to_uri("tel:+15551234").is_none());
        assert_eq!(Transport::from_token("sctp"), None);
        assert_eq!(Transport::from_token("wss"), Some(Transport::Wss));
        let tls = Flow::to_uri("sips:bob@192.0.2.1").unwrap();
        assert_eq!((tls.transport, tls.remote.port()), (Transport::Tls, 5061));
        let tls = Flow::to_uri("sip:bob@192.0.2.1:5071;transport=tls").unwrap();
        assert_eq!((tls.transport, tls.remote.port()), (Transport::Tls, 5071));
        assert!(Flow::to_uri("sip:bob@192.0.2.1;transport=ws").is_none());
        assert!(Flow::to_uri("sip:bob@192.0.2.1;transport=quic").is_none());
        assert!(Flow::to_uri("sips:bob@192.0.2.1;transport=udp").is_none());
        let on_tls = Flow::to(Transport::Tls, "192.0.2.1:5061".parse().unwrap());
        assert_eq!(
            Flow::contact(Some(&on_tls), "b2b", "sip.example.com"),
            "<sip:b2b@sip.example.com;transport=tls>"
        );
        let on_ws = Flow::to(Transport::Wss, "192.0.2.1:5061".parse().unwrap());
        assert!(Flow::contact(Some(&on_ws), "b2b", "h").ends_with(";transport=ws>"));
    }
}
