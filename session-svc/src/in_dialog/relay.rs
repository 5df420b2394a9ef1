//! A request relayed to the other leg and its final response relayed back.
//! An offer (re-INVITE, UPDATE) while another is pending is glare: 491.

use edge_api::ServerTxRef;
use sdp_svc::Offered;
use sip_message::{Known, Message, Method, Refusal};
use tracing::{debug, warn};

use crate::core::{Core, copy_retry_fields, no_answer_timer};
use crate::media::{self, sdp_of, set_sdp};
use crate::session::{AckPending, Phase, Session, Side};

/// Header fields relayed from a request on one leg to the same request on
/// the other (the rest is the dialog's, or hop-by-hop).
const RELAYED: [&str; 9] = [
    "Event",
    "Subscription-State",
    "Refer-To",
    "Referred-By",
    "Replaces",
    "Content-Disposition",
    "Info-Package",
    "Allow-Events",
    "Supported",
];

fn relay_headers(from: &Message, to: &mut Message) {
    for name in RELAYED {
        let header = name.into();
        let values: Vec<String> = from.header_fields(&header).map(str::to_owned).collect();
        for v in values {
            to.push_header_as_spelled(name, &v);
        }
    }
}

/// Copies the body of `from` (with its Content-Type) onto `to`.
fn copy_body(from: &Message, to: &mut Message) {
    if from.body().is_empty() {
        return;
    }
    if let Some(ct) = from.known_header(Known::ContentType) {
        to.set_header(Known::ContentType, ct);
    }
    to.set_body(from.body().clone());
}

fn is_offer(method: Option<&Method>) -> bool {
    matches!(method, Some(Method::Invite | Method::Update))
}

pub(super) async fn relay(core: &Core, tx: &ServerTxRef, (s, version): (Session, u64), side: Side, req: Message) {
    let offer = is_offer(req.method());
    let method = req.method().cloned().unwrap_or(Method::Options);
    let other = side.other();
    let id = s.id.clone();
    let now = state_store::now_ms();
    let claimed = core
        .sessions
        .update_from(&id, Some((s, version)), |st| {
            if st.phase != Phase::Confirmed {
                return None;
            }
            // The caller's ACK never came (lost, or slower than
            // super::after_callers_ack waits): the caller has the 2xx, so
            // sipbus ACKs the callee.
            let ack_in_flight = side == Side::A && !st.caller_acked;
            // With a late offer that ACK carries the answer: an offer now
            // would cross it.
            if offer && (st.offer_pending(now) || (ack_in_flight && st.media.late_offer)) {
                return Some(None);
            }
            // Checked before; records the number.
            let _ = st.legs[side].dialog.receive(&req);
            if offer {
                st.offer_pending_since_ms = Some(now);
            }
            let ack_first = ack_in_flight && !st.media.late_offer;
            if ack_first {
                st.caller_acked = true;
            }
            Some(Some((st.legs[other].dialog.request(method.clone()), ack_first)))
        })
        .await;
    let (mut s, version, out) = match claimed {
        Ok(Some((s, version, Some((out, ack_first))))) => {
            if ack_first {
                // The callee's 2xx is ACKed here, before the request; the
                // caller's ACK, when it lands, finds it done.
                core.ack_callee(&s).await;
                if let Err(e) = core.sessions.store().cancel(&no_answer_timer(&s.id)).await {
                    debug!(error = %e, "ACK timer not cancelled");
                }
            }
            (s, version, out)
        }
        Ok(Some((_, _, None))) => return core.refuse(tx, &req, &Refusal::glare()).await,
        Ok(None) => return core.refuse(tx, &req, &Refusal::no_dialog()).await,
        Err(e) => {
            warn!(error = %e, "request not applied");
            return core.refuse(tx, &req, &Refusal::store_unavailable()).await;
        }
    };
    let before = s.media.clone();
    let data_before = s.data.clone();
    let relayed = relay_claimed(core, &mut s, side, &req, out).await;
    let changes = s.state_changes(&data_before);
    if offer || !changes.is_empty() {
        // A refused offer leaves the session as it was (RFC 3264 8).
        let media_now = if relayed.accepted { s.media.clone() } else { before };
        let ack_pending = relayed.ack_pending.clone();
        // From the copy just written: no read unless another replica
        // wrote since (the closure redoes everything relaying changed).
        let _ = core
            .sessions
            .update_from(&id, Some((s, version)), |st| {
                changes.apply(st);
                if !offer {
                    return Some(());
                }
                st.offer_pending_since_ms = None;
                st.media = media_now.clone();
                st.ack_pending = ack_pending.clone();
                // Target refresh (RFC 3261 12.2): each side's new Contact.
                if let Some((mine, theirs)) = &relayed.targets {
                    st.legs[side].dialog.refresh_target(mine);
                    st.legs[other].dialog.refresh_target(theirs);
                }
                Some(())
            })
            .await;
    }
    core.respond(tx, relayed.response).await;
}

/// What relaying a request came to.
struct Relayed {
    /// The response for the sender.
    response: Message,
    /// A 2xx: the offer (if any) was accepted.
    accepted: bool,
    /// For a 2xx to INVITE / UPDATE: the request and the 2xx, whose
    /// Contacts are the new remote targets of the sender's and the other
    /// leg.
    targets: Option<(Message, Message)>,
    /// A re-INVITE without offer whose 2xx carried one: the other leg's ACK
    /// waits for the sender's, which brings the answer.
    ack_pending: Option<AckPending>,
}

impl Relayed {
    fn refused(req: &Message, r: &Refusal) -> Relayed {
        Relayed {
            response: r.response_to(req, None),
            accepted: false,
            targets: None,
            ack_pending: None,
        }
    }
}

/// Sends the relayed request and turns the other leg's final response into
/// the response for `side`.
async fn relay_claimed(core: &Core, s: &mut Session, side: Side, req: &Message, mut out: Message) -> Relayed {
    let method = req.method().cloned().unwrap_or(Method::Options);
    let other = side.other();
    let offer_method = is_offer(Some(&method));
    let cseq_out = out.cseq().map(|c| c.seq).unwrap_or(0);
    if let Err(r) = core.incoming_request(s, side, req).await {
        return Relayed::refused(req, &r);
    }
    if method != Method::Bye && method != Method::Ack {
        out.push_header(Known::Contact, &core.contact(s, other));
    }
    relay_headers(req, &mut out);
    // Only an offer's body is SDP to negotiate; any other is relayed as is.
    let offer = if offer_method {
        match sdp_of(req) {
            Ok(o) => o,
            Err(e) => return Relayed::refused(req, &e.refusal()),
        }
    } else {
        None
    };
    match (&offer, offer_method) {
        (Some(body), true) => match media::offer(&core.sdp, s, side, body, false).await {
            Ok(Offered::Forward { sdp, handlers }) => {
                set_sdp(&mut out, &sdp);
                s.media.record_offer(side, body, &sdp, handlers);
            }
            Ok(Offered::Reject(r)) => return Relayed::refused(req, &r),
            Err(e @ media::MediaError::Invalid(_)) => return Relayed::refused(req, &e.refusal()),
            Err(e) => {
                warn!(error = %e, "re-offer not negotiated");
                return Relayed::refused(req, &Refusal::server_error("media negotiation"));
            }
        },
        _ => copy_body(req, &mut out),
    }
    core.outgoing(s, other, &mut out).await;
    let Some(flow) = s.legs[other].flow.clone() else {
        return Relayed::refused(req, &Refusal::service_unavailable("other leg unreachable"));
    };
    let client = match core.edges.send_request(out, flow.clone()).await {
        Ok(client) => client,
        Err(e) => {
            warn!(error = %e, "request not relayed");
            return Relayed::refused(req, &Refusal::service_unavailable("other leg unreachable"));
        }
    };
    // The responses of an INVITE go on for 2xx retransmissions; the edge
    // absorbs them once the ACK below (or the deferred one) is sent.
    let Some(fin) = core.final_response(client).await else {
        return Relayed::refused(req, &Refusal::request_timeout());
    };
    core.incoming_response(s, other, &fin).await;
    let code = fin.status().unwrap_or(500);
    let success = (200..300).contains(&code);
    let mut resp = req.make_response(code, fin.reason().unwrap_or(""), None);
    let mut ack_pending = None;
    let mut targets = None;
    if success && offer_method {
        resp.push_header(Known::Contact, &core.contact(s, side));
        targets = Some((req.clone(), fin.clone()));
        let theirs = sdp_of(&fin).ok().flatten();
        match (offer.is_some(), theirs) {
            // The other leg answered the offer: the sender gets the answer.
            (true, Some(answer)) => match media::answer(&core.sdp, s, side, &answer).await {
                Ok(answered) => {
                    set_sdp(&mut resp, &answered);
                    s.media.record_answer(side, &answered);
                }
                Err(e) => warn!(error = %e, "re-answer not negotiated"),
            },
            // A re-INVITE without offer: the other leg offers in its 2xx;
            // the sender answers in its ACK (RFC 3261 14.1).
            (false, Some(their_offer)) if method == Method::Invite => {
                match media::offer(&core.sdp, s, other, &their_offer, false).await {
                    Ok(Offered::Forward { sdp, handlers }) => {
                        set_sdp(&mut resp, &sdp);
                        s.media.record_offer(other, &their_offer, &sdp, handlers);
                        ack_pending = Some(AckPending {
                            from: side,
                            cseq_in: req.cseq().map(|c| c.seq).unwrap_or(0),
                            cseq_out,
                        });
                    }
                    _ => warn!("offer in a 2xx not negotiated"),
                }
            }
            _ => {}
        }
    } else {
        copy_body(&fin, &mut resp);
    }
    if method == Method::Invite && success && ack_pending.is_none() {
        // The other leg's 2xx is ACKed now: the legs are separate dialogs
        // and the sender's ACK carries nothing it needs.
        let ack = s.legs[other].dialog.ack(cseq_out);
        core.send_ack(ack, Some(flow), "ACK of a re-INVITE").await;
    }
    copy_retry_fields(&fin, &mut resp);
    core.outgoing(s, side, &mut resp).await;
    Relayed {
        response: resp,
        accepted: success,
        targets,
        ack_pending,
    }
}
