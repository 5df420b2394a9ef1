//! The store timers of calls, fired by whichever replica claims them (and
//! by another if that one dies before completing): setup timers,
//! supplements' timers, and the refreshes and hang-ups supplements asked
//! for.

use std::sync::Arc;
use std::time::Duration;

use state_store::{ClaimedTimer, now_ms};
use tracing::{Instrument, info_span, warn};

use crate::core::{ACTION_QUEUE, Core, Deferred, NO_ANSWER_QUEUE, SUPPLEMENT_QUEUE};
use crate::{in_dialog, setup};

/// Runs until the task is dropped.
pub async fn run(core: Arc<Core>) {
    let every = Duration::from_millis(core.config.timer_poll_ms.max(10));
    loop {
        tokio::time::sleep(every).await;
        for queue in [NO_ANSWER_QUEUE, SUPPLEMENT_QUEUE, ACTION_QUEUE] {
            let claimed = match core
                .sessions
                .store()
                .claim_due(queue, now_ms(), Duration::from_secs(10), 64)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    warn!(queue, error = %e, "timers not claimed");
                    continue;
                }
            };
            for timer in claimed {
                let span = info_span!("timer", id = %timer.id);
                let handled = fire(&core, queue, &timer).instrument(span).await;
                // Not handled (the store failed): the lease runs out and the
                // timer fires again, here or on another replica.
                if handled && let Err(e) = core.sessions.store().complete(&timer).await {
                    warn!(error = %e, "timer not completed");
                }
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
    let actions = core.supplements.timer(&mut s, name).await;
    let data = s.data.clone();
    let written = core
        .sessions
        .update_from(id, Some((s, version)), |st| {
            st.data = data.clone();
            Some(())
        })
        .await;
    if written.is_err() {
        return false;
    }
    core.perform(id, actions).await;
    true
}
