//! How many messages were parsed since start (`parse-counter` feature):
//! tests count parses per call to hold sipbus to one parse per message
//! received from the network and none for a message it built.

use std::sync::atomic::{AtomicU64, Ordering};

static PARSES: AtomicU64 = AtomicU64::new(0);

pub(crate) fn count() {
    PARSES.fetch_add(1, Ordering::Relaxed);
}

/// Structural parses (every parse starts with one) since the process
/// started.
pub fn parse_count() -> u64 {
    PARSES.load(Ordering::Relaxed)
}
