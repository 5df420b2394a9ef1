//! The ACK of a 2xx. The caller's ACK for the call's 2xx is relayed to the
//! callee (with the answer, for a late offer); ACKs of re-INVITEs were sent
//! on the other leg when their 2xx arrived, or wait for the sender's
//! (deferred: the sender's ACK carries the answer).

use sip_message::Message;
use tracing::{debug, warn};

use crate::core::{Core, no_answer_timer};
use crate::media::{self, sdp_of, set_sdp};
use crate::session::{AckPending, Phase, Session, Side};

pub(crate) async fn ack(core: &Core, ack: Message) {
    let Ok(call_id) = ack.call_id() else { return };
    let Ok(Some((s, version))) = core.sessions.find(call_id, ack.to_tag().unwrap_or("")).await else {
        debug!("ACK for no known session");
        return;
    };
    let side = s.side_of(&ack);
    let cseq = ack.cseq().map(|c| c.seq).unwrap_or(0);
    if let Some(p) = s.ack_pending.clone()
        && side == Some(p.from)
        && cseq == p.cseq_in
    {
        return deferred(core, (s, version), &p, &ack).await;
    }
    if side != Some(Side::A) || cseq != s.legs.a.invite_cseq || s.phase != Phase::Confirmed {
        return;
    }
    // Already relayed (this is a retransmission, or a request the caller
    // sent after it waited and then ACKed the callee: in_dialog::relay).
    // A second ACK would reach the callee after that request and pass for
    // the ACK of its answer. The callee's retransmitted 2xx are ACKed by
    // the setup's last task.
    if s.caller_acked && !s.media.late_offer {
        return;
    }
    let late_answer = if s.media.late_offer && !s.caller_acked {
        answer_in(core, &s, Side::B, &ack).await
    } else {
        None
    };
    let mut s = s;
    if let Some(answered) = &late_answer {
        s.media.record_answer(Side::B, answered);
    }
    // Sent before the record says so: a request the caller sent after
    // this ACK waits for `caller_acked`, and must find the callee ACKed.
    core.ack_callee(&s).await;
    let id = s.id.clone();
    let written = core
        .sessions
        .update_from(&id, Some((s, version)), |st| {
            st.caller_acked = true;
            if let Some(answered) = &late_answer {
                st.media.record_answer(Side::B, answered);
            }
            Some(())
        })
        .await;
    if let Err(e) = written {
        warn!(error = %e, "caller's ACK not recorded: the ACK timer will end the call");
        return;
    }
    if let Err(e) = core.sessions.store().cancel(&no_answer_timer(&id)).await {
        debug!(error = %e, "ACK timer not cancelled");
    }
}

/// The ACK of a re-INVITE whose 2xx carried the other leg's offer: its
/// answer goes on in the other leg's ACK.
async fn deferred(core: &Core, (s, version): (Session, u64), p: &AckPending, ack: &Message) {
    let other = p.from.other();
    let answered = answer_in(core, &s, other, ack).await;
    let id = s.id.clone();
    let cleared = core
        .sessions
        .update_from(&id, Some((s, version)), |st| {
            st.ack_pending = None;
            if let Some(x) = &answered {
                st.media.record_answer(other, x);
            }
            Some(())
        })
        .await;
    let Ok(Some((s, _, ()))) = cleared else { return };
    let mut out = s.legs[other].dialog.ack(p.cseq_out);
    if let Some(x) = &answered {
        set_sdp(&mut out, x);
    }
    core.send_ack(out, s.legs[other].flow.clone(), "deferred ACK").await;
}

/// The answer an ACK carries (RFC 3261 14.1), turned into the one for the
/// leg `to` that offered.
async fn answer_in(core: &Core, s: &Session, to: Side, ack: &Message) -> Option<sdp::Sdp> {
    let answer = sdp_of(ack).ok().flatten()?;
    match media::answer(&core.sdp, s, to, &answer).await {
        Ok(answered) => Some(answered),
        Err(e) => {
            warn!(error = %e, "answer in ACK not negotiated");
            None
        }
    }
}
