//! Requests sipbus itself sends in a call when a supplement asks (they
//! come through the action queue, on whichever replica claims them): a
//! refresh of one leg (RFC 4028), and a hang-up of both.

use sip_message::{Known, Method, Refusal};
use tracing::info;

use crate::core::{ALLOW, Core};
use crate::media::set_stored_sdp;
use crate::session::{EndReason, Phase, Side};

/// Why a refresh that failed ends the call (RFC 4028 10).
const REFRESH_FAILED: &str = "SIP;cause=408;text=\"Session refresh failed\"";

/// Refreshes the dialog on `side`: UPDATE without a body when the phone
/// takes it, else a re-INVITE with the description it last got (an offer:
/// not while another is pending, which refreshes the session anyway).
/// `false` when the store could not be read.
pub(crate) async fn refresh(core: &Core, id: &str, side: Side) -> bool {
    let now = state_store::now_ms();
    let claimed = core
        .sessions
        .update(id, |st| {
            if st.phase != Phase::Confirmed {
                return None;
            }
            let update = st.legs[side].allows_update;
            if !update {
                if st.offer_pending(now) {
                    return None;
                }
                st.offer_pending_since_ms = Some(now);
            }
            let method = if update { Method::Update } else { Method::Invite };
            Some(st.legs[side].dialog.request(method))
        })
        .await;
    let (mut s, version, mut out) = match claimed {
        Ok(Some((s, version, out))) => (s, version, out),
        Ok(None) => return true,
        Err(_) => return false,
    };
    let data_before = s.data.clone();
    let invite = out.method() == Some(&Method::Invite);
    out.push_header(Known::Contact, &core.contact(&s, side));
    out.push_header(Known::Allow, ALLOW);
    if invite && let Some(sdp) = &s.media.last_sent[side] {
        set_stored_sdp(&mut out, sdp);
    }
    let cseq = out.cseq().map(|c| c.seq).unwrap_or(0);
    core.outgoing(&mut s, side, &mut out).await;
    let flow = s.legs[side].flow.clone();
    let answer = match flow.clone() {
        Some(flow) => match core.edges.send_request(out, flow).await {
            Ok(client) => core.final_response(client).await,
            Err(e) => {
                info!(error = %e, "refresh not sent");
                None
            }
        },
        None => None,
    };
    let status = answer.as_ref().and_then(|r| r.status()).unwrap_or(408);
    let ok = answer.filter(|_| (200..300).contains(&status));
    if let Some(resp) = &ok {
        core.incoming_response(&mut s, side, resp).await;
        if invite {
            core.send_ack(s.legs[side].dialog.ack(cseq), flow, "ACK of a refresh")
                .await;
        }
    }
    let changes = s.state_changes(&data_before);
    // From the copy just written: no read unless another replica wrote
    // since (the closure redoes what the refresh changed).
    let _ = core
        .sessions
        .update_from(id, Some((s, version)), |st| {
            if invite {
                st.offer_pending_since_ms = None;
            }
            // The 2xx of a target-refresh request carries the phone's
            // Contact now (RFC 3261 12.2.1.2).
            if let Some(resp) = &ok {
                st.legs[side].dialog.refresh_target(resp);
            }
            changes.apply(st);
            Some(())
        })
        .await;
    // RFC 4028 10: a refresh answered 408 or 481 (or not at all) ends the
    // session.
    if matches!(status, 408 | 481) {
        info!(session = id, ?side, status, "refresh failed: hanging up");
        return hang_up(core, id, REFRESH_FAILED).await;
    }
    true
}

/// Ends the call on both legs, with `reason` in the BYEs (or, while it
/// rings, cancels it and answers the caller 480). `false` when the store
/// could not be read.
pub(crate) async fn hang_up(core: &Core, id: &str, reason: &str) -> bool {
    match core.end_setup(id, None, EndReason::HungUp).await {
        Ok(Some(mut s)) => {
            core.abandon_setup(&mut s, Some(&Refusal::temporarily_unavailable("hung up")))
                .await;
            return true;
        }
        Ok(None) => {}
        Err(_) => return false,
    }
    let (mut s, byes) = match core.end_answered(id, EndReason::HungUp, |_| true).await {
        Ok(Some(found)) => found,
        Ok(None) => return true,
        Err(_) => return false,
    };
    info!(session = id, reason, "hanging up both legs");
    core.hang_up_answered(&mut s, byes, Some(reason)).await;
    true
}
