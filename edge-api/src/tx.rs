//! References to transactions of an edge instance: what a service keeps to
//! answer a request later, or to cancel a request it sent.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::flow::EdgeId;

/// A server transaction of one edge instance, for as long as it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServerTxId(pub u64);

impl fmt::Display for ServerTxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stx-{}", self.0)
    }
}

/// A client transaction of one edge instance. Ids start at a random value
/// per process: a restarted edge never hands out the ids services may
/// still hold from the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientTxId(pub u64);

impl fmt::Display for ClientTxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ctx-{}", self.0)
    }
}

/// A server transaction and the edge instance it lives on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServerTxRef {
    pub edge: EdgeId,
    pub id: ServerTxId,
}

/// A client transaction and the edge instance it lives on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClientTxRef {
    pub edge: EdgeId,
    pub id: ClientTxId,
}

impl fmt::Display for ServerTxRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.edge)
    }
}

impl fmt::Display for ClientTxRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.edge)
    }
}
