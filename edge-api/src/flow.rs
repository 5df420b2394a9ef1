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
}

impl Transport {
    /// Reliable transports get no retransmissions (RFC 3261 17).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The token used in Via (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    /// From a Via transport token or `transport=` URI parameter.
    pub fn from_token(token: &str) -> Option<Transport> {
        if token.eq_ignore_ascii_case("udp") {
            Some(Transport::Udp)
        } else if token.eq_ignore_ascii_case("tcp") {
            Some(Transport::Tcp)
        } else {
            None
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
    /// resolving first: `None`), port 5060 unless given, TCP with
    /// `transport=tcp`.
    pub fn to_uri(uri: &str) -> Option<Flow> {
        let Ok(sip_message::Uri::Sip(u)) = sip_message::Uri::parse(uri) else {
            return None;
        };
        let ip = u.host.ip()?;
        let tcp = u.transport().is_some_and(|t| t.eq_ignore_ascii_case("tcp"));
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        Some(Flow::to(transport, SocketAddr::new(ip, u.port.unwrap_or(5060))))
    }

    /// sipbus's Contact for messages on this flow: `user` at the edge
    /// address the flow uses (or `host` when configured), with
    /// `;transport=tcp` on a TCP flow so the peer comes back over TCP.
    pub fn contact(flow: Option<&Flow>, user: &str, host: &str) -> String {
        let local = flow
            .and_then(|f| f.local)
            .map_or_else(|| EDGE_HOST.to_owned(), |l| l.to_string());
        let host = if host.is_empty() { local.as_str() } else { host };
        let tcp = flow.is_some_and(|f| f.transport == Transport::Tcp);
        let transport = if tcp { ";transport=tcp" } else { "" };
        format!("<sip:{user}@{host}{transport}>")
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
    }
}
