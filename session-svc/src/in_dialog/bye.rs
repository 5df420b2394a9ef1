//! BYE from either side: 200 at once, BYE on the other leg, session over.
//! A caller's BYE on an early dialog ends the setup like a CANCEL.

use edge_api::ServerTxRef;
use sip_message::{Message, Method, Refusal};
use tracing::{debug, info, warn};

use crate::core::Core;
use crate::session::{EndReason, Phase, Session, Side};

pub(super) async fn bye(core: &Core, tx: &ServerTxRef, (s, version): (Session, u64), side: Side, req: Message) {
    let ok = req.make_response(200, "OK", None);
    let id = s.id.clone();
    let (s, version) = if s.phase.is_setting_up() && side == Side::A {
        match core.end_setup(&id, Some((s, version)), EndReason::Cancelled).await {
            Ok(Some(mut s)) => {
                core.respond(tx, ok).await;
                let _ = core.incoming_request(&mut s, Side::A, &req).await;
                core.abandon_setup(&mut s, Some(&Refusal::request_terminated())).await;
                return;
            }
            // Answered meanwhile: hang up the answered call instead.
            Ok(None) => match core.sessions.load(&id).await {
                Ok(Some(current)) => current,
                _ => return core.refuse(tx, &req, &Refusal::no_dialog()).await,
            },
            Err(_) => return core.refuse(tx, &req, &Refusal::store_unavailable()).await,
        }
    } else {
        (s, version)
    };
    let other = side.other();
    let ended = core
        .sessions
        .update_from(&id, Some((s, version)), |st| {
            if st.phase != Phase::Confirmed {
                return None;
            }
            st.phase = Phase::Ended(EndReason::Bye(side));
            // Checked before; records the number.
            let _ = st.legs[side].dialog.receive(&req);
            Some(st.legs[other].dialog.request(Method::Bye))
        })
        .await;
    let (mut s, mut out) = match ended {
        Ok(Some((s, _, out))) => (s, out),
        Ok(None) => return core.refuse(tx, &req, &Refusal::no_dialog()).await,
        Err(e) => {
            warn!(error = %e, "BYE not applied");
            return core.refuse(tx, &req, &Refusal::store_unavailable()).await;
        }
    };
    info!(session = %s.id, by = ?side, "call ended");
    if !s.caller_acked {
        // The callee's 2xx was never ACKed (the caller hung up before its
        // ACK came): ACK it before the BYE (RFC 3261 13.2.2.4).
        core.ack_callee(&s).await;
    }
    let mut ok = ok;
    let _ = core.incoming_request(&mut s, side, &req).await;
    core.outgoing(&mut s, side, &mut ok).await;
    core.respond(tx, ok).await;
    core.outgoing(&mut s, other, &mut out).await;
    // The BYE's outcome changes nothing here.
    core.send_and_forget(out, s.legs[other].flow.clone(), "BYE to the other leg")
        .await;
    core.finish(&s).await;
    debug!("session ended; its record expires shortly");
}
