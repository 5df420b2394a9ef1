//! RFC 3261 timer values (table 4 of section 17), in one options struct so
//! every instance and every test can choose its own.

use std::time::Duration;

/// T1, T2, T4 and the guards derived from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate (default 500 ms).
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE
    /// responses (default 4 s).
    pub t2: Duration,
    /// Maximum time a message stays in the network (default 5 s).
    pub t4: Duration,
    /// How long an INVITE server transaction waits for the application's
    /// final response before answering 500 itself, and how long a client
    /// INVITE transaction waits in Proceeding (like proxy timer C).
    pub invite_guard: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            invite_guard: Duration::from_secs(180),
        }
    }
}

impl TimerConfig {
    /// 64*T1: timers B, F, H, J (unreliable), L, M.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: at least 32 s on unreliable transports, 0 on reliable ones.
    pub fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            Duration::from_secs(32).max(self.t1x64())
        }
    }

    /// Timer I (T4) and K (T4): 0 on reliable transports.
    pub fn t4_unless_reliable(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.t4 }
    }

    /// Timer J: 64*T1 on unreliable transports, 0 on reliable ones.
    pub fn timer_j(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.t1x64() }
    }
}
