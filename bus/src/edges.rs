//! Every edge instance a service can reach, by name: a request goes out
//! through the edge that holds its flow's connection (or received it), an
//! answer through the edge that holds the transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use edge_api::{ClientTx, ClientTxRef, Edge, EdgeError, EdgeId, Flow, ServerTxRef};
use sip_message::Message;
use tracing::{Instrument, debug_span};

use crate::grpc::{RemoteEdge, channel};

pub struct Edges {
    by_id: HashMap<EdgeId, Arc<dyn Edge>>,
    /// Where requests on a flow no known edge holds leave from.
    default: Option<EdgeId>,
}

impl Edges {
    /// The edge of this process (all-in-one).
    pub fn local(id: EdgeId, edge: Arc<dyn Edge>) -> Self {
        Self {
            by_id: HashMap::from([(id.clone(), edge)]),
            default: Some(id),
        }
    }

    /// Edges in other processes: instance name → `http://host:port` of its
    /// API; the first is the default.
    pub fn remote(instances: &[(String, String)], connect_timeout: Duration) -> Result<Self, String> {
        let mut by_id: HashMap<EdgeId, Arc<dyn Edge>> = HashMap::new();
        for (name, address) in instances {
            let id = EdgeId::new(name);
            let ch = channel(address, connect_timeout).map_err(|e| format!("{name} = `{address}`: {e}"))?;
            by_id.insert(id.clone(), Arc::new(RemoteEdge::new(ch, id)));
        }
        Ok(Self {
            by_id,
            default: instances.first().map(|(n, _)| EdgeId::new(n)),
        })
    }

    fn get(&self, id: &EdgeId) -> Result<&Arc<dyn Edge>, EdgeError> {
        self.by_id.get(id).ok_or_else(|| EdgeError::UnknownEdge(id.clone()))
    }

    /// The edge a flow leaves through: the one that holds it, else the
    /// default, which reaches the peer anew (RFC 3261 18.2.2: the edge
    /// that held the connection is gone or unknown here).
    fn for_flow(&self, mut flow: Flow) -> Result<(&Arc<dyn Edge>, Flow), EdgeError> {
        if let Some(edge) = flow.edge.as_ref().and_then(|e| self.by_id.get(e)) {
            return Ok((edge, flow));
        }
        let default = self
            .default
            .as_ref()
            .ok_or_else(|| EdgeError::Unreachable("no edge configured".into()))?;
        flow.edge = None;
        flow.connection = None;
        Ok((self.get(default)?, flow))
    }

    pub async fn respond(&self, tx: &ServerTxRef, response: Message) -> Result<(), EdgeError> {
        let span = debug_span!(
            "edge.respond",
            otel.kind = "client",
            sip.status_code = response.status().unwrap_or(0),
            edge = %tx.edge.as_str(),
        );
        self.get(&tx.edge)?.respond(tx.id, response).instrument(span).await
    }

    pub async fn send_request(&self, request: Message, flow: Flow) -> Result<ClientTx, EdgeError> {
        let (edge, flow) = self.for_flow(flow)?;
        let span = debug_span!(
            "edge.send_request",
            otel.kind = "client",
            sip.method = request.method().map_or("", |m| m.as_str()),
            net.transport = flow.transport.via_token(),
            net.peer = %flow.remote,
        );
        edge.send_request(request, flow).instrument(span).await
    }

    pub async fn send_ack(&self, ack: Message, flow: Flow) -> Result<(), EdgeError> {
        let (edge, flow) = self.for_flow(flow)?;
        let span = debug_span!("edge.send_ack", otel.kind = "client", net.peer = %flow.remote);
        edge.send_ack(ack, flow).instrument(span).await
    }

    pub async fn cancel(&self, tx: &ClientTxRef, headers: Vec<(String, String)>) -> Result<(), EdgeError> {
        let span = debug_span!("edge.cancel", otel.kind = "client");
        self.get(&tx.edge)?.cancel(tx.id, headers).instrument(span).await
    }
}
