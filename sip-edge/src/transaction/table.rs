//! The server transaction table: keys to transactions, merged-request and
//! 2xx-ACK indexes, and the expiry queues of task-less non-INVITE
//! transactions.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::key::{AckKey, MergeKey, TxKey};
use super::{Map, ServerInput, ServerTxId};
use crate::transport::Flow;

/// A non-INVITE server transaction needs no task: its only timers (the
/// 64*T1 guard and timer J) have the same length for every transaction, so
/// FIFO queues expire them in order.
pub(super) enum NonInvite {
    Trying,
    Proceeding(Bytes),
    Completed(Bytes),
}

/// The ways into an INVITE transaction's task. Network events (request
/// retransmissions, ACKs) go through a bounded queue and may be dropped
/// when it is full, as the network may drop them; the transaction user's
/// responses and CANCELs go through their own queue and are never lost.
#[derive(Clone)]
pub(super) struct InviteInputs {
    pub(super) net: mpsc::Sender<ServerInput>,
    pub(super) tu: mpsc::UnboundedSender<ServerInput>,
    /// 0: no final response yet; 2: a 2xx went out; 3: a failure went out.
    pub(super) final_class: Arc<AtomicU8>,
}

pub(super) enum Kind {
    /// INVITE transactions run as a task (timers G, H, I, L and 100 Trying).
    Invite(InviteInputs),
    NonInvite {
        target: Flow,
        state: NonInvite,
    },
}

pub(super) struct Entry {
    pub(super) key: TxKey,
    pub(super) merge: Option<MergeKey>,
    pub(super) kind: Kind,
}

impl Entry {
    /// The inputs of an INVITE transaction's task.
    pub(super) fn invite_inputs(&self) -> Option<InviteInputs> {
        match &self.kind {
            Kind::Invite(inputs) => Some(inputs.clone()),
            Kind::NonInvite { .. } => None,
        }
    }
}

#[derive(Default)]
pub(super) struct ServerTable {
    pub(super) by_key: Map<TxKey, ServerTxId>,
    pub(super) txs: Map<ServerTxId, Entry>,
    pub(super) merged: Map<MergeKey, ServerTxId>,
    pub(super) accepted: Map<AckKey, ServerTxId>,
    /// Non-INVITE transactions by creation time: removed at 64*T1 when
    /// they never got a final response.
    pub(super) guard_queue: VecDeque<(Instant, ServerTxId)>,
    /// Completed non-INVITE transactions: removed when timer J fires.
    pub(super) completed_queue: VecDeque<(Instant, ServerTxId)>,
}

impl ServerTable {
    pub(super) fn len(&self) -> usize {
        self.txs.len()
    }

    pub(super) fn get_by_key(&self, key: &TxKey) -> Option<(ServerTxId, &Entry)> {
        let id = *self.by_key.get(key)?;
        self.txs.get(&id).map(|e| (id, e))
    }

    pub(super) fn insert(&mut self, id: ServerTxId, entry: Entry) {
        self.by_key.insert(entry.key.clone(), id);
        if let Some(m) = &entry.merge {
            self.merged.insert(m.clone(), id);
        }
        self.txs.insert(id, entry);
    }

    /// Removes a transaction and every index entry that still points to it.
    pub(super) fn remove(&mut self, id: ServerTxId) -> Option<Entry> {
        let entry = self.txs.remove(&id)?;
        if self.by_key.get(&entry.key) == Some(&id) {
            self.by_key.remove(&entry.key);
        }
        if let Some(m) = &entry.merge {
            if self.merged.get(m) == Some(&id) {
                self.merged.remove(m);
            }
        }
        Some(entry)
    }

    /// Expires what is due; returns how many non-INVITE transactions ended
    /// without a final response.
    pub(super) fn expire(&mut self, now: Instant) -> usize {
        let mut unanswered = 0;
        while let Some(&(at, id)) = self.completed_queue.front() {
            if at > now {
                break;
            }
            self.completed_queue.pop_front();
            if matches!(
                self.txs.get(&id),
                Some(Entry {
                    kind: Kind::NonInvite {
                        state: NonInvite::Completed(_),
                        ..
                    },
                    ..
                })
            ) {
                self.remove(id);
            }
        }
        while let Some(&(at, id)) = self.guard_queue.front() {
            if at > now {
                break;
            }
            self.guard_queue.pop_front();
            if matches!(
                self.txs.get(&id),
                Some(Entry {
                    kind: Kind::NonInvite {
                        state: NonInvite::Trying | NonInvite::Proceeding(_),
                        ..
                    },
                    ..
                })
            ) {
                self.remove(id);
                unanswered += 1;
            }
        }
        unanswered
    }
}
