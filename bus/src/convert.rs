//! Flows between their domain form ([`edge_api::Flow`]) and the contract's
//! `sipbus.edge.v1.Flow`; messages convert in `proto::convert`. What
//! arrives over gRPC is checked here: a flow that does not parse is
//! refused, never guessed.

use edge_api::{ConnectionId, EdgeId, Flow, Transport};
use proto::edge::v1 as pb;

/// Why a flow from another process is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("flow.{field}: {reason}")]
pub struct FlowError {
    pub field: &'static str,
    pub reason: &'static str,
}

pub fn transport_to_proto(t: Transport) -> pb::Transport {
    match t {
        Transport::Udp => pb::Transport::Udp,
        Transport::Tcp => pb::Transport::Tcp,
        Transport::Tls => pb::Transport::Tls,
        Transport::Ws => pb::Transport::Ws,
        Transport::Wss => pb::Transport::Wss,
    }
}

pub fn flow_to_proto(flow: &Flow) -> pb::Flow {
    pb::Flow {
        transport: transport_to_proto(flow.transport) as i32,
        remote: flow.remote.to_string(),
        local: flow.local.map(|l| l.to_string()).unwrap_or_default(),
        connection: flow.connection.map_or(0, |c| c.0),
        edge_instance: flow.edge.as_ref().map(|e| e.as_str().to_owned()).unwrap_or_default(),
    }
}

pub fn flow_from_proto(flow: &pb::Flow) -> Result<Flow, FlowError> {
    let bad = |field, reason| FlowError { field, reason };
    let transport = match pb::Transport::try_from(flow.transport) {
        Ok(pb::Transport::Udp) => Transport::Udp,
        Ok(pb::Transport::Tcp) => Transport::Tcp,
        Ok(pb::Transport::Tls) => Transport::Tls,
        Ok(pb::Transport::Ws) => Transport::Ws,
        Ok(pb::Transport::Wss) => Transport::Wss,
        Ok(pb::Transport::Unspecified) | Err(_) => return Err(bad("transport", "unknown transport")),
    };
    let remote = flow.remote.parse().map_err(|_| bad("remote", "expected ip:port"))?;
    let local = match flow.local.as_str() {
        "" => None,
        l => Some(l.parse().map_err(|_| bad("local", "expected ip:port"))?),
    };
    Ok(Flow {
        transport,
        remote,
        local,
        connection: (flow.connection != 0).then_some(ConnectionId(flow.connection)),
        edge: (!flow.edge_instance.is_empty()).then(|| EdgeId::new(&flow.edge_instance)),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn flows_round_trip_and_bad_ones_are_refused() {
        let flow = Flow {
            transport: Transport::Tcp,
            remote: "[2001:db8::1]:5060".parse().unwrap(),
            local: Some("192.0.2.1:5060".parse().unwrap()),
            connection: Some(ConnectionId(9)),
            edge: Some(EdgeId::new("edge-1")),
        };
        assert_eq!(flow_from_proto(&flow_to_proto(&flow)).unwrap(), flow);
        let bare = Flow::to(Transport::Udp, "192.0.2.2:5080".parse().unwrap());
        assert_eq!(flow_from_proto(&flow_to_proto(&bare)).unwrap(), bare);
        let mut bad = flow_to_proto(&bare);
        bad.remote = "nowhere".into();
        assert_eq!(flow_from_proto(&bad).unwrap_err().field, "remote");
        bad = flow_to_proto(&bare);
        bad.transport = pb::Transport::Unspecified as i32;
        assert_eq!(flow_from_proto(&bad).unwrap_err().field, "transport");
        bad.transport = 99;
        assert_eq!(flow_from_proto(&bad).unwrap_err().field, "transport");
        for t in Transport::ALL {
            let flow = Flow::to(t, "192.0.2.2:5080".parse().unwrap());
            assert_eq!(flow_from_proto(&flow_to_proto(&flow)).unwrap(), flow);
        }
    }
}
