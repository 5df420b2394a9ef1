//! Completed non-INVITE server transactions over UDP (RFC 3261 17.2.2,
//! timer J).
//!
//! All such a transaction still does is answer retransmissions of its
//! request with its final response, for 64*T1 (32 s). At 20,000 requests a
//! second that is 640,000 of them at once, so each is one allocation of
//! packed bytes: its deadline, its key, where its responses go, and its
//! response without the fields a retransmission of the request gives again
//! ([`ResponseTail`]). A REGISTER's 200 costs about 200 bytes with the
//! table slots (the `completed_transaction_memory` test measures it).

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;
use hashbrown::HashTable;
use sip_message::{Message, ResponseTail};
use tokio::time::Instant;

use super::key::{MergeKey, TxKey};
use super::tails::SharedTails;
use crate::transport::{Flow, Transport};

type Hasher64 = foldhash::fast::RandomState;

/// What a record costs beyond its packed bytes: the allocator's header and
/// rounding (about 16), the table's slot (24 bytes and a control byte, at
/// a load between 7/16 and 7/8), the queue's (8, up to twice that while it
/// grows) and the merge fingerprint's.
pub(super) const RECORD_OVERHEAD: usize = 16 + 40 + 12 + 14;

/// Offsets in a record (the digest's first half is the table's hash, kept
/// in the slot: growing the table then reads no record).
const DIGEST: usize = 0;
const DEADLINE: usize = 8;
const FINGERPRINT: usize = 12;
const REST: usize = 20;

const TAIL: u8 = 0;
const WHOLE: u8 = 1;
/// A tail kept once for many records ([`SharedTails`]).
const SHARED: u8 = 2;
const NO_TAG: u8 = u8::MAX;

/// Deadlines in ticks of 10 ms since the set began, compared with wrapping
/// arithmetic: 32 bits last 497 days, a transaction 32 s.
const TICK_MS: u128 = 10;

/// One completed transaction, packed: `[key digest's second half:
/// u64][deadline tick: u32][merge fingerprint: u64][remote][local][response]`, where the
/// response is `TAIL code:u16 reason-length:u8 reason tag-length:u8 tag
/// rest`, `SHARED` the same with a shared tail's index (u32) for `rest`, or
/// `WHOLE bytes`. The key is kept as a 128-bit seeded digest:
/// two keys that collide would be one chance in 2^128, and what a
/// collision could do is replay a response to its own requester.
type Record = Box<[u8]>;

/// A table slot: the digest's first half (the hash) and the record.
type Slot = (u64, Record);

fn is(slot: &Slot, digest: (u64, u64)) -> bool {
    slot.0 == digest.0 && read_u64(&slot.1, DIGEST) == digest.1
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Reads back what [`pack`] wrote; `None` only if a record were corrupt.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(read_u32(b, 0))
    }

    fn addr(&mut self) -> Option<Option<SocketAddr>> {
        let ip: IpAddr = match self.u8()? {
            0 => return Some(None),
            4 => {
                let b: [u8; 4] = self.take(4)?.try_into().ok()?;
                Ipv4Addr::from(b).into()
            }
            _ => {
                let b: [u8; 16] = self.take(16)?.try_into().ok()?;
                Ipv6Addr::from(b).into()
            }
        };
        Some(Some(SocketAddr::new(ip, self.u16()?)))
    }

    fn str(&mut self, len: usize) -> Option<&'a str> {
        std::str::from_utf8(self.take(len)?).ok()
    }
}

fn put_addr(out: &mut Vec<u8>, addr: Option<SocketAddr>) {
    let Some(addr) = addr else {
        out.push(0);
        return;
    };
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_le_bytes());
}

/// Packs the response: split when its shape allows (its tail shared when
/// it repeats), whole otherwise.
fn put_response(out: &mut Vec<u8>, response: &Message, tails: &mut SharedTails) {
    let tail = response
        .response_tail()
        .filter(|t| t.reason.len() <= usize::from(u8::MAX) && t.to_tag.is_none_or(|g| g.len() < usize::from(NO_TAG)));
    match tail {
        Some(ResponseTail {
            code,
            reason,
            to_tag,
            rest,
        }) => {
            let shared = tails.share(&rest);
            out.push(if shared.is_some() { SHARED } else { TAIL });
            out.extend_from_slice(&code.to_le_bytes());
            out.push(reason.len() as u8);
            out.extend_from_slice(reason.as_bytes());
            match to_tag {
                Some(tag) => {
                    out.push(tag.len() as u8);
                    out.extend_from_slice(tag.as_bytes());
                }
                None => out.push(NO_TAG),
            }
            match shared {
                Some(index) => out.extend_from_slice(&index.to_le_bytes()),
                None => out.extend_from_slice(&rest),
            }
        }
        None => {
            out.push(WHOLE);
            response.write_to(out);
        }
    }
}

/// The completed transactions, in a table by key digest and a queue by
/// deadline (every one lasts 64*T1, so completion order is expiry order).
pub(super) struct CompletedSet {
    records: HashTable<Slot>,
    /// The table hashes of the records, oldest first.
    queue: VecDeque<u64>,
    /// Fingerprints of the merge keys of completed transactions, so a
    /// merged request is still told apart (RFC 3261 8.2.2.2) while one is
    /// completed. 64 seeded bits: a false match is a 1 in 2^64 chance per
    /// held transaction.
    merged: HashSet<u64, Hasher64>,
    tails: SharedTails,
    seeds: (Hasher64, Hasher64, Hasher64),
    base: Instant,
    bytes: usize,
}

impl CompletedSet {
    pub(super) fn new() -> Self {
        Self {
            records: HashTable::new(),
            queue: VecDeque::new(),
            merged: HashSet::default(),
            tails: SharedTails::new(),
            seeds: Default::default(),
            base: Instant::now(),
            bytes: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// The bytes the records hold, by [`RECORD_OVERHEAD`]'s estimate.
    pub(super) fn bytes(&self) -> usize {
        self.bytes + self.tails.bytes()
    }

    fn digest(&self, key: &TxKey) -> (u64, u64) {
        (self.seeds.0.hash_one(key), self.seeds.1.hash_one(key))
    }

    fn fingerprint(&self, merge: &MergeKey) -> u64 {
        self.seeds.2.hash_one(merge).max(1)
    }

    /// Whether a completed transaction has this merge key.
    pub(super) fn has_merge(&self, merge: &MergeKey) -> bool {
        !self.merged.is_empty() && self.merged.contains(&self.fingerprint(merge))
    }

    fn tick(&self, at: Instant) -> u32 {
        (at.saturating_duration_since(self.base).as_millis() / TICK_MS) as u32
    }

    /// Keeps a UDP transaction that sent its final `response`, until
    /// `deadline` (which must not precede the deadlines already held).
    pub(super) fn insert(
        &mut self,
        key: &TxKey,
        merge: Option<&MergeKey>,
        target: &Flow,
        response: &Message,
        deadline: Instant,
    ) {
        let digest = self.digest(key);
        let fingerprint = merge.map_or(0, |m| self.fingerprint(m));
        let mut out = Vec::with_capacity(224);
        out.extend_from_slice(&digest.1.to_le_bytes());
        out.extend_from_slice(&self.tick(deadline).to_le_bytes());
        out.extend_from_slice(&fingerprint.to_le_bytes());
        put_addr(&mut out, Some(target.remote));
        put_addr(&mut out, target.local);
        put_response(&mut out, response, &mut self.tails);
        let record: Record = out.into_boxed_slice();
        if fingerprint != 0 {
            self.merged.insert(fingerprint);
        }
        self.bytes += record.len() + RECORD_OVERHEAD;
        let held = self.records.entry(digest.0, |s| is(s, digest), |s| s.0);
        if let hashbrown::hash_table::Entry::Occupied(mut old) = held {
            // Not expected (a retransmission finds the record first), but
            // the newer answer wins.
            let old = std::mem::replace(&mut old.get_mut().1, record);
            self.forget(&old);
        } else {
            held.insert((digest.0, record));
        }
        self.queue.push_back(digest.0);
    }

    /// The response for a retransmission of a completed transaction's
    /// request, and where it goes.
    pub(super) fn replay(&self, key: &TxKey, request: &Message) -> Option<(Flow, Bytes)> {
        let digest = self.digest(key);
        let (_, record) = self.records.find(digest.0, |s| is(s, digest))?;
        let (remote, local, packed) = unpack(record)?;
        let data = match packed {
            Packed::Whole(bytes) => Bytes::copy_from_slice(bytes),
            Packed::Split {
                code,
                reason,
                to_tag,
                rest,
            } => {
                let rest = match rest {
                    Rest::Inline(bytes) => bytes,
                    Rest::Shared(index) => self.tails.get(index)?,
                };
                Bytes::from(request.rebuild_response(code, reason, to_tag, rest))
            }
        };
        let target = Flow {
            transport: Transport::Udp,
            remote,
            local,
            connection: None,
            edge: None,
        };
        Some((target, data))
    }

    /// Drops what is due.
    pub(super) fn expire(&mut self, now: Instant) {
        let now = self.tick(now);
        let due = |r: &[u8]| now.wrapping_sub(read_u32(r, DEADLINE)) as i32 >= 0;
        while let Some(&hash) = self.queue.front() {
            match self.records.find_entry(hash, |s| s.0 == hash) {
                Ok(entry) if !due(&entry.get().1) => break,
                Ok(entry) => {
                    let ((_, record), _) = entry.remove();
                    self.forget(&record);
                }
                // Replaced and forgotten already.
                Err(_) => {}
            }
            self.queue.pop_front();
        }
        if self.records.is_empty() && self.records.capacity() > 1024 {
            // A burst is over: give its memory back.
            self.records.shrink_to_fit(|s| s.0);
            self.queue.shrink_to_fit();
            self.merged.shrink_to_fit();
        }
    }

    fn forget(&mut self, record: &[u8]) {
        self.bytes = self.bytes.saturating_sub(record.len() + RECORD_OVERHEAD);
        let fingerprint = read_u64(record, FINGERPRINT);
        if fingerprint != 0 {
            self.merged.remove(&fingerprint);
        }
        if let Some(index) = shared_tail(record) {
            self.tails.release(index);
        }
    }
}

/// The shared tail a record points to, if any.
fn shared_tail(record: &[u8]) -> Option<u32> {
    match unpack(record)?.2 {
        Packed::Split {
            rest: Rest::Shared(index),
            ..
        } => Some(index),
        _ => None,
    }
}

/// A record's response, as [`put_response`] packed it.
enum Packed<'a> {
    Whole(&'a [u8]),
    Split {
        code: u16,
        reason: &'a str,
        to_tag: Option<&'a str>,
        rest: Rest<'a>,
    },
}

enum Rest<'a> {
    Inline(&'a [u8]),
    Shared(u32),
}

/// Reads a record back: remote, local and the response. `None` only if a
/// record were corrupt.
fn unpack(record: &[u8]) -> Option<(SocketAddr, Option<SocketAddr>, Packed<'_>)> {
    let mut r = Reader(record.get(REST..)?);
    let remote = r.addr()??;
    let local = r.addr()?;
    let kind = r.u8()?;
    if kind == WHOLE {
        return Some((remote, local, Packed::Whole(r.0)));
    }
    let code = r.u16()?;
    let reason_len = r.u8()?;
    let reason = r.str(usize::from(reason_len))?;
    let to_tag = match r.u8()? {
        NO_TAG => None,
        len => Some(r.str(usize::from(len))?),
    };
    let rest = match kind {
        SHARED => Rest::Shared(r.u32()?),
        _ => Rest::Inline(r.0),
    };
    Some((
        remote,
        local,
        Packed::Split {
            code,
            reason,
            to_tag,
            rest,
        },
    ))
}
