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
    let late_answer = match sdp_of(&ack) {
        Ok(Some(answer)) if s.media.late_offer && !s.caller_acked => {
            match media::answer(&core.sdp, &s, Side::B, &answer).await {
                Ok(a) => Some((answer, a)),
                Err(e) => {
                    warn!(error = %e, "answer in ACK not negotiated");
                    None
                }
            }
        }
        _ => None,
    };
    let id = s.id.clone();
    let Ok(Some((s, _, ()))) = core
        .sessions
        .update_from(&id, Some((s, version)), |st| {
            st.caller_acked = true;
            if let Some((answer, answered)) = &late_answer {
                st.media.record_answer(Side::B, answer.clone(), answered.clone());
            }
            Some(())
        })
        .await
    else {
        return;
    };
    core.ack_callee(&s).await;
    if let Err(e) = core.sessions.store().cancel(&no_answer_timer(&s.id)).await {
        debug!(error = %e, "ACK timer not cancelled");
    }
}

/// The ACK of a re-INVITE whose 2xx carried the other leg's offer: its
/// answer goes on in the other leg's ACK.
async fn deferred(core: &Core, (s, version): (Session, u64), p: &AckPending, ack: &Message) {
    let other = p.from.other();
    let answered = match sdp_of(ack) {
        Ok(Some(a)) => match media::answer(&core.sdp, &s, other, &a).await {
            Ok(x) => Some((a, x)),
            Err(e) => {
                warn!(error = %e, "answer in ACK not negotiated");
                None
            }
        },
        _ => None,
    };
    let id = s.id.clone();
    let cleared = core
        .sessions
        .update_from(&id, Some((s, version)), |st| {
            st.ack_pending = None;
            if let Some((a, x)) = &answered {
                st.media.record_answer(other, a.clone(), x.clone());
            }
            Some(())
        })
        .await;
    let Ok(Some((s, _, ()))) = cleared else { return };
    let mut out = s.legs[other].dialog.ack(p.cseq_out);
    if let Some((_, x)) = &answered {
        set_sdp(&mut out, x);
    }
    let Some(flow) = s.legs[other].flow.clone() else { return };
    if let Err(e) = core.edges.send_ack(out, flow).await {
        warn!(error = %e, "deferred ACK not sent");
    }
}
