//! The store timers of calls, fired by whichever replica claims them (and
//! by another if that one dies before completing): setup timers,
//! supplements' timers, and the refreshes and hang-ups supplements asked
//! for.

use std::sync::Arc;
use std::time::Duration;

use state_store::{ClaimedTimer, now_ms};
use tokio::sync::Semaphore;
use tracing::{Instrument, info_span, warn};

use crate::core::{ACTION_QUEUE, Core, Deferred, NO_ANSWER_QUEUE, SUPPLEMENT_QUEUE};
use crate::{in_dialog, setup};

/// How many timers a replica fires at once: a refresh waits for its
/// response (up to 32 s), and must not hold up the rest.
const IN_FLIGHT: usize = 64;

/// How long a claimed timer stays this replica's before another may fire
/// it: longer than a refresh's transaction (Timer B / F, 32 s), so a slow
/// phone does not get two refreshes.
const LEASE: Duration = Duration::from_secs(40);

/// Runs until the task is dropped (the timers it started finish on their
/// own; one cut short fires again elsewhere when its lease runs out).
pub async fn run(core: Arc<Core>) {
    let every = Duration::from_millis(core.config.timer_poll_ms.max(10));
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        tokio::time::sleep(every).await;
        for queue in [NO_ANSWER_QUEUE, SUPPLEMENT_QUEUE, ACTION_QUEUE] {
            // Only as many as can start now: a claimed timer's lease runs.
            let free = slots.available_permits();
            if free == 0 {
                break;
            }
            let claimed = match core.sessions.store().claim_due(queue, now_ms(), LEASE, free).await {
                Ok(c) => c,
                Err(e) => {
                    warn!(queue, error = %e, "timers not claimed");
                    continue;
                }
            };
            for timer in claimed {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let core = core.clone();
                let span = info_span!("timer", id = %timer.id);
                tokio::spawn(Box::pin(
                    async move {
                        let handled = fire(&core, queue, &timer).await;
                        // Not handled (the store failed): the lease runs
                        // out and the timer fires again, here or elsewhere.
                        if handled && let Err(e) = core.sessions.store().complete(&timer).await {
                            warn!(error = %e, "timer not completed");
                        }
                        drop(slot);
                    }
                    .instrument(span),
                ));
            }
        }
    }
}

/// `false` when the timer must fire again.
async fn fire(core: &Core, queue: &str, timer: &ClaimedTimer) -> bool {
    let Ok(payload) = std::str::from_utf8(&timer.payload) else {
        return true;
    };
    match queue {
        NO_ANSWER_QUEUE => setup::no_answer(core, payload).await,
        SUPPLEMENT_QUEUE => {
            // `supp:<session>:<supplement>`, the supplement in the payload.
            let Some(session) = timer.id.split(':').nth(1) else {
                return true;
            };
            supplement_timer(core, session, payload).await
        }
        _ => match serde_json::from_str::<Deferred>(payload) {
            Ok(Deferred::Refresh { session, side }) => in_dialog::refresh(core, &session, side).await,
            Ok(Deferred::HangUp { session, reason }) => in_dialog::hang_up(core, &session, &reason).await,
            Err(e) => {
                warn!(error = %e, "unreadable action dropped");
                true
            }
        },
    }
}

/// A supplement's timer: the supplement runs with the session's state, and
/// what it changed and asked for is kept.
async fn supplement_timer(core: &Core, id: &str, name: &str) -> bool {
    let (mut s, version) = match core.sessions.load(id).await {
        Ok(Some(found)) => found,
        Ok(None) => return true,
        Err(_) => return false,
    };
    if s.phase.is_ended() {
        return true;
    }
    let before = s.data.clone();
    let actions = core.supplements.timer(&mut s, name).await;
    let mut version = version;
    if core.save_states(&mut s, &mut version, &before).await.is_err() {
        return false;
    }
    core.perform(id, actions).await;
    true
}
