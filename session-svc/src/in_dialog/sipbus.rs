//! Requests sipbus itself sends in a call when a supplement asks (they
//! come through the action queue, on whichever replica claims them): a
//! refresh of one leg (RFC 4028), and a hang-up of both.

use sip_message::{Known, Method, Refusal};
use tracing::{info, warn};

use super::relay::PENDING_MAX_MS;
use crate::core::Core;
use crate::media::set_sdp;
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
                let pending = st
                    .offer_pending_since_ms
                    .is_some_and(|since| now.saturating_sub(since) < PENDING_MAX_MS);
                if pending {
                    return None;
                }
                st.offer_pending_since_ms = Some(now);
            }
            let method = if update { Method::Update } else { Method::Invite };
            Some(st.legs[side].dialog.request(method))
        })
        .await;
    let (mut s, mut out) = match claimed {
        Ok(Some((s, _, out))) => (s, out),
        Ok(None) => return true,
        Err(_) => return false,
    };
    let invite = out.method() == Some(&Method::Invite);
    out.push_header(Known::Contact, &core.contact(&s, side));
    if invite && let Some(sdp) = &s.media.last_sent[side] {
        set_sdp(&mut out, sdp);
    }
    let cseq = out.cseq().map(|c| c.seq).unwrap_or(0);
    core.outgoing(&mut s, side, &mut out).await;
    let flow = s.legs[side].flow.clone();
    let status = match flow {
        Some(flow) => match core.edges.send_request(out, flow.clone()).await {
            Ok(mut client) => {
                let mut fin = None;
                while let Some(event) = client.next().await {
                    if event.response.status().unwrap_or(0) >= 200 {
                        fin = Some(event.response);
                        break;
                    }
                }
                client.finish_in_background();
                match fin {
                    Some(resp) => {
                        let code = resp.status().unwrap_or(500);
                        if (200..300).contains(&code) {
                            core.incoming_response(&mut s, side, &resp).await;
                            if invite && let Err(e) = core.edges.send_ack(s.legs[side].dialog.ack(cseq), flow).await {
                                warn!(error = %e, "ACK of a refresh not sent");
                            }
                        }
                        code
                    }
                    None => 408,
                }
            }
            Err(e) => {
                warn!(error = %e, "refresh not sent");
                503
            }
        },
        None => 503,
    };
    let data = s.data.clone();
    let _ = core
        .sessions
        .update(id, |st| {
            if invite {
                st.offer_pending_since_ms = None;
            }
            st.data = data.clone();
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
    match core.end_setup(id, EndReason::HungUp).await {
        Ok(Some(mut s)) => {
            core.cancel_branches(&mut s, None).await;
            core.refuse_caller(&mut s, &Refusal::temporarily_unavailable("hung up"))
                .await;
            core.finish(&s).await;
            return true;
        }
        Ok(None) => {}
        Err(_) => return false,
    }
    let ended = core
        .sessions
        .update(id, |st| {
            if st.phase != Phase::Confirmed {
                return None;
            }
            st.phase = Phase::Ended(EndReason::HungUp);
            Some(Side::BOTH.map(|side| st.legs[side].dialog.request(Method::Bye)))
        })
        .await;
    let (mut s, byes) = match ended {
        Ok(Some((s, _, byes))) => (s, byes),
        Ok(None) => return true,
        Err(_) => return false,
    };
    info!(session = id, reason, "hanging up both legs");
    core.bye_both(&mut s, byes, Some(reason)).await;
    core.finish(&s).await;
    true
}
