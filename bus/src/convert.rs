//! Between the edge's `Source` and the contract's `Flow`; messages convert
//! in `proto::convert`.

pub use proto::convert::{ConvertError, from_proto, to_proto};
use proto::edge::v1 as pb;
use sip_edge::{Source, TransportKind};

pub fn transport_to_proto(t: TransportKind) -> pb::Transport {
    match t {
        TransportKind::Udp => pb::Transport::Udp,
        TransportKind::Tcp => pb::Transport::Tcp,
        _ => pb::Transport::Unspecified,
    }
}

pub fn flow_of(source: &Source, edge_instance: &str) -> pb::Flow {
    pb::Flow {
        transport: transport_to_proto(source.transport) as i32,
        remote: source.remote.to_string(),
        local: source.local.to_string(),
        connection: source.flow.map_or(0, |f| f.0),
        edge_instance: edge_instance.to_owned(),
    }
}
