//! The setup timer (`noanswer:<session>`), on whichever replica claims it:
//! nobody answered in `no_answer_s`, or the caller never ACKed its 200 in
//! `ack_wait_s` (the same timer, moved at the answer).

use sip_message::Refusal;
use tracing::info;

use crate::core::Core;
use crate::session::EndReason;

/// The timer fired. `false` when the store could not be read: the timer
/// must fire again.
pub(crate) async fn no_answer(core: &Core, id: &str) -> bool {
    let mut s = match core.end_setup(id, None, EndReason::Timeout).await {
        Ok(Some(s)) => s,
        Ok(None) => return ack_timeout(core, id).await,
        Err(_) => return false,
    };
    info!(session = id, "no answer: cancelling");
    core.abandon_setup(&mut s, Some(&Refusal::temporarily_unavailable("no answer")))
        .await;
    true
}

/// The caller never ACKed its 200: the call is ended with a BYE on each
/// leg (RFC 3261 13.3.1.4), the callee's 2xx ACKed first. `false` when
/// the store could not be read.
async fn ack_timeout(core: &Core, id: &str) -> bool {
    let ended = core.end_answered(id, EndReason::Timeout, |s| !s.caller_acked).await;
    let (mut s, byes) = match ended {
        Ok(Some(found)) => found,
        Ok(None) => return true,
        Err(_) => return false,
    };
    info!(session = id, "no ACK from the caller: hanging up both legs");
    core.hang_up_answered(&mut s, byes, None).await;
    true
}
