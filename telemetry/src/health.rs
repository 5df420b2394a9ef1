//! Whether this process should get traffic: what `/readyz` and gRPC health
//! answer. Not ready while starting, while draining after SIGTERM, and
//! while the store does not answer; live as long as the process answers.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// Why a process is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    Starting,
    StoreUnreachable,
    Draining,
}

impl NotReady {
    pub fn as_str(self) -> &'static str {
        match self {
            NotReady::Starting => "starting",
            NotReady::StoreUnreachable => "store unreachable",
            NotReady::Draining => "draining",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    started: bool,
    store_ok: bool,
    draining: bool,
}

impl State {
    fn readiness(self) -> Result<(), NotReady> {
        if self.draining {
            Err(NotReady::Draining)
        } else if !self.started {
            Err(NotReady::Starting)
        } else if !self.store_ok {
            Err(NotReady::StoreUnreachable)
        } else {
            Ok(())
        }
    }
}

static STATE: LazyLock<watch::Sender<State>> = LazyLock::new(|| {
    watch::Sender::new(State {
        started: false,
        store_ok: true,
        draining: false,
    })
});

/// Ready for traffic, or why not.
pub fn readiness() -> Result<(), NotReady> {
    STATE.borrow().readiness()
}

/// Changes of readiness, for servers that push it (gRPC health).
pub struct Changes(watch::Receiver<State>);

impl Changes {
    /// The readiness now, then after each change.
    pub async fn next(&mut self) -> Result<(), NotReady> {
        // The sender is a static: it never closes.
        let _ = self.0.changed().await;
        self.0.borrow_and_update().readiness()
    }
}

pub fn changes() -> Changes {
    let mut rx = STATE.subscribe();
    rx.mark_changed();
    Changes(rx)
}

/// Every module started.
pub fn set_started() {
    STATE.send_modify(|s| s.started = true);
}

/// What the last probe of the store found.
pub fn set_store_ok(ok: bool) {
    STATE.send_if_modified(|s| std::mem::replace(&mut s.store_ok, ok) != ok);
}

/// Read on every request: an atomic, not the watch channel's lock.
static DRAINING: AtomicBool = AtomicBool::new(false);

/// SIGTERM arrived: stop taking new work.
pub fn set_draining() {
    DRAINING.store(true, Ordering::Relaxed);
    STATE.send_modify(|s| s.draining = true);
    crate::metrics().draining.set(1);
}

pub fn store_ok() -> bool {
    STATE.borrow().store_ok
}

pub fn is_draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}
