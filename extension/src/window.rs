//! Calls, failures and latency of one external module over the last
//! minute, for `sipbus extensions`: sixty one-second buckets, each with a
//! latency histogram, so a p99 costs no sample list and memory stays fixed.
//! A [`Tally`] of the minute adds up across replicas (histograms add), so
//! a listing can show the whole service, not one replica.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Seconds the window covers.
const SECONDS: usize = 60;
/// Histogram buckets: four per power of two of microseconds (a bucket's
/// bound is within 19 % of any latency in it), up to 2^32 µs.
const SUB: u32 = 4;
const BUCKETS: usize = 32 * SUB as usize;

#[derive(Clone)]
struct Second {
    /// Which second (since the window's epoch) this bucket holds.
    at: u64,
    calls: u64,
    failures: u64,
    latency: [u32; BUCKETS],
}

impl Second {
    const EMPTY: Second = Second {
        at: u64::MAX,
        calls: 0,
        failures: 0,
        latency: [0; BUCKETS],
    };
}

/// What the window holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    pub calls: u64,
    pub failures: u64,
    /// The 99th percentile, as the upper bound of its bucket.
    pub p99: Duration,
}

/// The calls of a minute with their latency histogram: what replicas
/// share to make one figure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub calls: u64,
    pub failures: u64,
    /// Calls per latency bucket (trailing empty buckets left out).
    pub latency: Vec<u64>,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.calls += other.calls;
        self.failures += other.failures;
        // Another replica's histogram is bounded like ours.
        let n = other.latency.len().min(BUCKETS);
        if self.latency.len() < n {
            self.latency.resize(n, 0);
        }
        for (a, b) in self.latency.iter_mut().zip(&other.latency[..n]) {
            *a += b;
        }
    }

    pub fn minute(&self) -> Minute {
        let timed: u64 = self.latency.iter().sum();
        let mut p99 = Duration::ZERO;
        if timed > 0 {
            // The smallest bucket with at least 99 % of timed calls at or
            // below.
            let need = timed - timed / 100;
            let mut seen = 0;
            for (i, n) in self.latency.iter().enumerate() {
                seen += n;
                if seen >= need {
                    p99 = upper_bound(i);
                    break;
                }
            }
        }
        Minute {
            calls: self.calls,
            failures: self.failures,
            p99,
        }
    }
}

/// A one-minute sliding window of calls.
pub struct Window {
    seconds: Mutex<Vec<Second>>,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            seconds: Mutex::new(vec![Second::EMPTY; SECONDS]),
        }
    }
}

fn bucket(latency: Duration) -> usize {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
    let log = 63 - us.leading_zeros();
    // The two bits below the top one pick the quarter.
    let sub = if log >= 2 {
        (us >> (log - 2)) & 3
    } else {
        (us << (2 - log)) & 3
    };
    ((log * SUB) as usize + sub as usize).min(BUCKETS - 1)
}

fn upper_bound(bucket: usize) -> Duration {
    let log = (bucket as u32) / SUB;
    let sub = u64::from((bucket as u32) % SUB);
    let base = 1u64 << log;
    Duration::from_micros(base + (base * (sub + 1)) / u64::from(SUB))
}

impl Window {
    /// Records one call at second `now_s` (any monotonic second count),
    /// with its latency when it was made.
    pub fn record(&self, now_s: u64, latency: Option<Duration>, failed: bool) {
        let mut seconds = self.seconds.lock().unwrap_or_else(|p| p.into_inner());
        let slot = Self::slot(&mut seconds, now_s);
        slot.calls += 1;
        slot.failures += u64::from(failed);
        if let Some(l) = latency {
            slot.latency[bucket(l)] += 1;
        }
    }

    /// A call already recorded turned out to have failed.
    pub fn fail(&self, now_s: u64) {
        let mut seconds = self.seconds.lock().unwrap_or_else(|p| p.into_inner());
        Self::slot(&mut seconds, now_s).failures += 1;
    }

    fn slot(seconds: &mut [Second], now_s: u64) -> &mut Second {
        let slot = &mut seconds[(now_s % SECONDS as u64) as usize];
        if slot.at != now_s {
            *slot = Second::EMPTY;
            slot.at = now_s;
        }
        slot
    }

    /// The minute up to `now_s`, to add to other replicas'.
    pub fn tally(&self, now_s: u64) -> Tally {
        let seconds = self.seconds.lock().unwrap_or_else(|p| p.into_inner());
        let mut t = Tally {
            latency: vec![0; BUCKETS],
            ..Tally::default()
        };
        for s in seconds
            .iter()
            .filter(|s| s.at <= now_s && now_s - s.at < SECONDS as u64)
        {
            t.calls += s.calls;
            t.failures += s.failures;
            for (h, n) in t.latency.iter_mut().zip(s.latency.iter()) {
                *h += u64::from(*n);
            }
        }
        while t.latency.last() == Some(&0) {
            t.latency.pop();
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_latencies_within_a_fifth() {
        for us in [1u64, 2, 3, 5, 7, 100, 999, 1000, 1500, 40_000, 1_000_000] {
            let d = Duration::from_micros(us);
            let bound = upper_bound(bucket(d));
            assert!(bound >= d, "{us}: {bound:?}");
            assert!(bound.as_micros() as f64 <= us as f64 * 1.26 + 1.0, "{us}: {bound:?}");
        }
    }

    #[test]
    fn a_minute_slides_and_finds_the_tail() {
        let w = Window::default();
        for i in 0..990 {
            w.record(10, Some(Duration::from_micros(1000 + i % 7)), false);
        }
        for _ in 0..10 {
            w.record(11, Some(Duration::from_millis(80)), true);
        }
        let m = w.tally(11).minute();
        assert_eq!((m.calls, m.failures), (1000, 10));
        assert!(
            m.p99 >= Duration::from_micros(1006) && m.p99 < Duration::from_millis(2),
            "{m:?}"
        );
        w.record(12, Some(Duration::from_millis(80)), true);
        assert!(w.tally(12).minute().p99 >= Duration::from_millis(80));
        // Uncalled failures and late-found ones count, without a latency.
        w.record(12, None, true);
        w.fail(12);
        let m = w.tally(12).minute();
        assert_eq!((m.calls, m.failures), (1002, 13));
        // A minute later the first second has left the window.
        let m = w.tally(70).minute();
        assert_eq!((m.calls, m.failures), (12, 13));
        assert_eq!(w.tally(200).minute(), Minute::default());
    }

    #[test]
    fn tallies_of_replicas_add_up() {
        let (a, b) = (Window::default(), Window::default());
        for _ in 0..99 {
            a.record(5, Some(Duration::from_micros(500)), false);
        }
        b.record(5, Some(Duration::from_millis(300)), true);
        let mut t = a.tally(5);
        assert!(t.minute().p99 < Duration::from_millis(1));
        t.add(&b.tally(5));
        let m = t.minute();
        assert_eq!((m.calls, m.failures), (100, 1));
        // 99 of 100 at or below the fast bucket: the p99 stays fast; one
        // more slow call moves it.
        assert!(m.p99 < Duration::from_millis(1), "{m:?}");
        t.add(&b.tally(5));
        assert!(t.minute().p99 >= Duration::from_millis(300));
        // What another process sends is bounded.
        t.add(&Tally {
            calls: 1,
            failures: 0,
            latency: vec![1; 10_000],
        });
        assert_eq!(t.latency.len(), BUCKETS);
    }
}
