//! Response tails many completed transactions share.
//!
//! What is left of a final response once the fields its request gives back
//! are taken out is often the same for thousands of transactions: every
//! 200 to an OPTIONS keep-alive carries the same Allow, Accept and
//! Supported. Such a tail is kept once and counted; a tail is shared from
//! its second sighting among the last few, so tails that never repeat (a
//! REGISTER's 200 names its contact) cost nothing here.

use std::collections::HashMap;
use std::hash::BuildHasher;

type Hasher64 = foldhash::fast::RandomState;

/// Hashes of recently seen tails, the candidates for sharing.
const RECENT: usize = 64;

struct Shared {
    bytes: Box<[u8]>,
    hash: u64,
    refs: u32,
}

/// Shared tails by index, refcounted by the records that point to them.
pub(super) struct SharedTails {
    slots: Vec<Option<Shared>>,
    free: Vec<u32>,
    by_hash: HashMap<u64, u32, Hasher64>,
    recent: [u64; RECENT],
    next_recent: usize,
    hasher: Hasher64,
    bytes: usize,
}

impl SharedTails {
    pub(super) fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            by_hash: HashMap::default(),
            recent: [0; RECENT],
            next_recent: 0,
            hasher: Hasher64::default(),
            bytes: 0,
        }
    }

    /// The bytes of the shared tails.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The index of `tail` when it is (or now becomes) shared, one more
    /// reference taken; `None` when the caller should keep it inline.
    pub(super) fn share(&mut self, tail: &[u8]) -> Option<u32> {
        let hash = self.hasher.hash_one(tail).max(1);
        if let Some(&index) = self.by_hash.get(&hash)
            && let Some(Some(shared)) = self.slots.get_mut(index as usize)
            && *shared.bytes == *tail
        {
            shared.refs += 1;
            return Some(index);
        }
        if self.by_hash.contains_key(&hash) || !self.recent.contains(&hash) {
            // A first sighting (or a hash another tail holds): inline.
            self.recent[self.next_recent] = hash;
            self.next_recent = (self.next_recent + 1) % RECENT;
            return None;
        }
        let shared = Shared {
            bytes: tail.into(),
            hash,
            refs: 1,
        };
        self.bytes += tail.len() + std::mem::size_of::<Shared>();
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(shared);
                i
            }
            None => {
                self.slots.push(Some(shared));
                u32::try_from(self.slots.len() - 1).ok()?
            }
        };
        self.by_hash.insert(hash, index);
        Some(index)
    }

    pub(super) fn get(&self, index: u32) -> Option<&[u8]> {
        self.slots.get(index as usize)?.as_ref().map(|s| &*s.bytes)
    }

    /// Drops one reference; the last one frees the tail.
    pub(super) fn release(&mut self, index: u32) {
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return;
        };
        let Some(shared) = slot.as_mut() else { return };
        shared.refs -= 1;
        if shared.refs > 0 {
            return;
        }
        let hash = shared.hash;
        self.bytes = self
            .bytes
            .saturating_sub(shared.bytes.len() + std::mem::size_of::<Shared>());
        *slot = None;
        self.free.push(index);
        if self.by_hash.get(&hash) == Some(&index) {
            self.by_hash.remove(&hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_is_shared_from_its_second_sighting_and_freed_with_its_last_user() {
        let mut t = SharedTails::new();
        let tail = b"Allow: OPTIONS, INVITE\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(t.share(tail), None, "first sighting: inline");
        let a = t.share(tail).expect("second sighting: shared");
        assert_eq!(t.share(tail), Some(a));
        assert_eq!(t.get(a), Some(&tail[..]));
        assert_eq!(t.share(b"Contact: <sip:one@192.0.2.1>\r\n\r\n"), None);
        t.release(a);
        assert_eq!(t.get(a), Some(&tail[..]), "one user left");
        t.release(a);
        assert_eq!(t.get(a), None);
        assert_eq!(t.bytes(), 0);
        // Seen recently, so shared again at once, in the freed slot.
        assert_eq!(t.share(tail), Some(a));
    }
}
