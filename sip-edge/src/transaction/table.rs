//! The server transaction table: keys to transactions, merged-request and
//! 2xx-ACK indexes, the expiry queue of task-less non-INVITE transactions,
//! the completed ones (`completed.rs`) and what all of it costs in bytes.

use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::completed::CompletedSet;
use super::key::{AckKey, MergeKey, TxKey};
use super::{Map, ServerInput, ServerTxId};
use crate::transport::Flow;

/// A non-INVITE server transaction needs no task: its only timers (the
/// 64*T1 guard and timer J) have the same length for every transaction, so
/// FIFO queues expire them in order. Once completed over UDP it moves to
/// the [`CompletedSet`]; over streams it ends there (timer J is zero).
pub(super) enum NonInvite {
    Trying,
    Proceeding(Bytes),
}

/// What an entry costs beyond its strings: the entry, its slots in the
/// key and id maps and the guard queue. Measured with a counting allocator
/// (`completed_transaction_memory`) rather than trusted.
const ENTRY_BYTES: usize = 2 * std::mem::size_of::<TxKey>() + std::mem::size_of::<Entry>() + 64;

/// An INVITE transaction's task: its future, two channels, the request it
/// keeps until it answers, and the To tag.
pub(super) const INVITE_TASK_BYTES: usize = 3 * 1024;

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
        /// Ends the transaction if it gets no final response (64*T1).
        guard: Instant,
    },
}

pub(super) struct Entry {
    pub(super) key: TxKey,
    pub(super) merge: Option<MergeKey>,
    pub(super) kind: Kind,
    /// Bytes charged to the table for this entry (see [`Entry::cost`]).
    pub(super) cost: usize,
}

impl Entry {
    /// The estimated bytes of a transaction in progress whose request is
    /// `request_bytes` long; INVITE transactions keep theirs in a task.
    pub(super) fn new(key: TxKey, merge: Option<MergeKey>, kind: Kind, request_bytes: usize) -> Entry {
        let strings = |k: &TxKey| match k {
            TxKey::Rfc3261 { branch, sent_by, .. } => 2 * (branch.len() + sent_by.len()),
            TxKey::Rfc2543 {
                request_uri,
                from_tag,
                call_id,
                via,
                ..
            } => 2 * (request_uri.len() + from_tag.len() + call_id.len() + via.len()),
        };
        let merge_bytes = merge.as_ref().map_or(0, |m| 48 + m.from_tag.len() + m.call_id.len());
        let task = match kind {
            Kind::Invite(_) => INVITE_TASK_BYTES + 2 * request_bytes,
            Kind::NonInvite { .. } => 0,
        };
        let cost = ENTRY_BYTES + strings(&key) + merge_bytes + task;
        Entry { key, merge, kind, cost }
    }

    /// The inputs of an INVITE transaction's task.
    pub(super) fn invite_inputs(&self) -> Option<InviteInputs> {
        match &self.kind {
            Kind::Invite(inputs) => Some(inputs.clone()),
            Kind::NonInvite { .. } => None,
        }
    }
}

pub(super) struct ServerTable {
    pub(super) by_key: Map<TxKey, ServerTxId>,
    pub(super) txs: Map<ServerTxId, Entry>,
    pub(super) merged: Map<MergeKey, ServerTxId>,
    pub(super) accepted: Map<AckKey, ServerTxId>,
    /// When the in-progress non-INVITE transactions are next checked for
    /// their 64*T1 guard (once a second: a queue entry per transaction
    /// would outlive most of them and cost more than their completed
    /// state).
    next_guard_check: Instant,
    /// Completed non-INVITE transactions over UDP, until timer J.
    pub(super) completed: CompletedSet,
    /// Bytes charged for `txs` (see [`Entry::new`]).
    bytes: usize,
}

impl ServerTable {
    pub(super) fn new() -> Self {
        Self {
            by_key: Map::default(),
            txs: Map::default(),
            merged: Map::default(),
            accepted: Map::default(),
            next_guard_check: Instant::now(),
            completed: CompletedSet::new(),
            bytes: 0,
        }
    }

    /// Transactions held, completed ones included.
    pub(super) fn len(&self) -> usize {
        self.txs.len() + self.completed.len()
    }

    /// Bytes of transaction state held, estimated.
    pub(super) fn bytes(&self) -> usize {
        self.bytes + self.completed.bytes()
    }

    /// Charges a provisional response a non-INVITE transaction keeps.
    pub(super) fn charge(&mut self, id: ServerTxId, bytes: usize) {
        if let Some(e) = self.txs.get_mut(&id) {
            e.cost += bytes;
            self.bytes += bytes;
        }
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
        self.bytes += entry.cost;
        self.txs.insert(id, entry);
    }

    /// Removes a transaction and every index entry that still points to it.
    pub(super) fn remove(&mut self, id: ServerTxId) -> Option<Entry> {
        let entry = self.txs.remove(&id)?;
        self.bytes = self.bytes.saturating_sub(entry.cost);
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
        self.completed.expire(now);
        if now < self.next_guard_check {
            return 0;
        }
        self.next_guard_check = now + Duration::from_secs(1);
        let overdue: Vec<ServerTxId> = self
            .txs
            .iter()
            .filter(|(_, e)| matches!(e.kind, Kind::NonInvite { guard, .. } if guard <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in &overdue {
            self.remove(*id);
        }
        overdue.len()
    }
}
