//! An in-memory transport for tests: every transmitted message lands in a
//! channel the test reads, so transaction behaviour can be checked with a
//! scripted peer and virtual time.

use std::net::SocketAddr;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Flow, Transmit, TransportError};

/// Records what the layer sends.
pub struct MemoryTransmit {
    tx: mpsc::UnboundedSender<(Flow, Bytes)>,
    local: SocketAddr,
}

impl MemoryTransmit {
    pub fn new(local: SocketAddr) -> (Self, mpsc::UnboundedReceiver<(Flow, Bytes)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx, local }, rx)
    }
}

impl Transmit for MemoryTransmit {
    fn transmit(&self, target: &Flow, data: Bytes) -> Result<(), TransportError> {
        self.tx
            .send((target.clone(), data))
            .map_err(|_| TransportError::Closed { remote: target.remote })
    }

    fn sent_by(&self, _target: &Flow) -> SocketAddr {
        self.local
    }
}
