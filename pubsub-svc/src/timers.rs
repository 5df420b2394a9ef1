//! Subscription timers in the store (exactly one replica fires each):
//! expiry (`psexp:<id>`), and pacing (`pspace:<id>`: a coalesced change,
//! a Retry-After, or the end of a sender's lease, after which another
//! replica sends what is due).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use state_store::now_ms;
use tracing::warn;

use crate::core::Core;
use crate::handlers::Termination;
use crate::notify::{self, Next};
use crate::subscription::{self, Sending};

/// One expiry timer per subscription: their count is the subscriptions'.
pub const EXPIRY: &str = "psexp";
const PACE: &str = "pspace";

pub(crate) async fn arm_expiry(core: &Core, id: &str, due_ms: u64) {
    schedule(core, EXPIRY, id, due_ms).await;
}

pub(crate) async fn pace(core: &Core, id: &str, due_ms: u64) {
    schedule(core, PACE, id, due_ms).await;
}

async fn schedule(core: &Core, queue: &str, id: &str, due_ms: u64) {
    if let Err(e) = core
        .store
        .schedule(&format!("{queue}:{id}"), due_ms, Bytes::from(id.to_owned()))
        .await
    {
        warn!(error = %e, subscription = id, queue, "subscription timer not armed");
    }
}

pub(crate) async fn disarm(core: &Core, id: &str) {
    for q in [EXPIRY, PACE] {
        let _ = core.store.cancel(&format!("{q}:{id}")).await;
    }
}

/// Fires due timers until the task is dropped.
pub async fn run(core: Arc<Core>) {
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for queue in [EXPIRY, PACE] {
            let claimed = match core
                .store
                .claim_due(queue, now_ms(), Duration::from_secs(60), 200)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "subscription timers not claimed; retrying");
                    continue;
                }
            };
            for timer in claimed {
                let core = core.clone();
                tokio::spawn(async move {
                    let id = String::from_utf8_lossy(&timer.payload).into_owned();
                    if queue == EXPIRY {
                        expire(&core, &id).await;
                    } else {
                        paced(&core, &id).await;
                    }
                    let _ = core.store.complete(&timer).await;
                });
            }
        }
    }
}

async fn expire(core: &Arc<Core>, id: &str) {
    let Ok(Some((sub, _))) = subscription::load(&core.store, id).await else {
        return;
    };
    // Refreshed meanwhile: its refresh moved the timer.
    if sub.expires_at_ms > now_ms() {
        return;
    }
    notify::run(core, id, Next::End(Termination::Timeout)).await;
}

async fn paced(core: &Arc<Core>, id: &str) {
    let Ok(Some((sub, _))) = subscription::load(&core.store, id).await else {
        return;
    };
    let next = match (sub.ending, sub.dirty) {
        (Some(r), _) => Next::End(r),
        (None, true) if sub.full => Next::Full,
        (None, true) => Next::State,
        (None, false) => {
            // A sender died with its NOTIFY unanswered: whether it arrived
            // is unknown, so the state goes again.
            if matches!(sub.sending, Sending::InFlight { until_ms, .. } if until_ms <= now_ms()) {
                Next::Full
            } else {
                return;
            }
        }
    };
    notify::run(core, id, next).await;
}
