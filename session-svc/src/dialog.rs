//! Requests inside a call, on any replica: ACK and CANCEL notices, BYE,
//! offers (re-INVITE, UPDATE) with glare, and everything else relayed to
//! the other leg with its final response relayed back.

use edge_api::{Flow, ServerTxRef};
use sip_message::{Known, Message, Method};
use tracing::{debug, info, warn};

use crate::compose::{self, contact, set_sdp};
use crate::events;
use crate::media::{self, MediaError, Offered};
use crate::service::{Core, end_setup, no_answer_timer};
use crate::state::{AckPending, Phase, Session, Side};

/// Answers `req` with a bare status.
async fn reply(core: &Core, tx: &ServerTxRef, req: &Message, code: u16, reason: &str) {
    core.respond(tx, req.make_response(code, reason, None)).await;
}

/// Sends a request on a leg and forgets its outcome.
async fn send_and_forget(core: &Core, request: Message, flow: Option<Flow>, what: &str) {
    let Some(flow) = flow else {
        warn!(what, "no flow to send on");
        return;
    };
    match core.edges.send_request(request, flow).await {
        Ok(tx) => tx.finish_in_background(),
        Err(e) => warn!(error = %e, what, "request not sent"),
    }
}

/// The ACK of a 2xx. The caller's ACK for the call's 2xx is relayed to the
/// callee (with the answer, for a late offer); ACKs of re-INVITEs were sent
/// on the other leg when their 2xx arrived.
pub(crate) async fn ack(core: &Core, ack: Message) {
    let Ok(call_id) = ack.call_id() else { return };
    let Ok(Some((s, version))) = core.sessions.find(call_id, ack.to_tag().unwrap_or("")).await else {
        debug!("ACK for no known session");
        return;
    };
    let side = s.side_of(call_id, ack.from_tag().unwrap_or(""), ack.to_tag().unwrap_or(""));
    let cseq = ack.cseq().map(|c| c.seq).unwrap_or(0);
    if let Some(p) = s.ack_pending.clone()
        && side == Some(p.from)
        && cseq == p.cseq_in
    {
        return deferred_ack(core, (s, version), &p, &ack).await;
    }
    if side != Some(Side::A) || cseq != s.a_invite_cseq || s.phase != Phase::Confirmed {
        return;
    }
    let late_answer = if s.media.late_offer && !s.a_acked {
        match compose::sdp_of(&ack) {
            Some(answer) => match media::answer(&core.sdp, &s, Side::B, answer).await {
                Ok(a) => Some((answer.to_owned(), a)),
                Err(e) => {
                    warn!(error = %e, "answer in ACK not negotiated");
                    None
                }
            },
            None => None,
        }
    } else {
        None
    };
    let id = s.id.clone();
    let Ok(Some((s, _, ()))) = core
        .sessions
        .update_from(&id, Some((s, version)), |st| {
            st.a_acked = true;
            if let Some((answer, answered)) = &late_answer {
                st.media.answer = answer.clone();
                st.media.answered = answered.clone();
                st.media.last_to_b = answered.clone();
            }
            Some(())
        })
        .await
    else {
        return;
    };
    ack_b(core, &s).await;
    if let Err(e) = core.sessions.store().cancel(&no_answer_timer(&s.id)).await {
        debug!(error = %e, "ACK timer not cancelled");
    }
}

/// The ACK of a re-INVITE whose 2xx carried the other leg's offer: its
/// answer goes on in the other leg's ACK.
async fn deferred_ack(core: &Core, (s, version): (Session, u64), p: &AckPending, ack: &Message) {
    let other = p.from.other();
    let answer = compose::sdp_of(ack).map(str::to_owned);
    let answered = match &answer {
        Some(a) => match media::answer(&core.sdp, &s, other, a).await {
            Ok(x) => Some(x),
            Err(e) => {
                warn!(error = %e, "answer in ACK not negotiated");
                None
            }
        },
        None => None,
    };
    let id = s.id.clone();
    let cleared = core
        .sessions
        .update_from(&id, Some((s, version)), |st| {
            st.ack_pending = None;
            if let (Some(a), Some(x)) = (&answer, &answered) {
                st.media.answer = a.clone();
                st.media.answered = x.clone();
                match other {
                    Side::A => st.media.last_to_a = x.clone(),
                    Side::B => st.media.last_to_b = x.clone(),
                }
            }
            Some(())
        })
        .await;
    let Ok(Some((s, _, ()))) = cleared else { return };
    let mut out = compose::in_dialog(s.leg(other), Method::Ack, p.cseq_out, "");
    if let Some(x) = &answered {
        set_sdp(&mut out, x);
    }
    let Some(flow) = s.leg(other).flow.clone() else { return };
    if let Err(e) = core.edges.send_ack(out, flow).await {
        warn!(error = %e, "deferred ACK not sent");
    }
}

/// Sends (or sends again) the callee's ACK for the call's 2xx.
pub(crate) async fn ack_b(core: &Core, s: &Session) {
    let mut ack = compose::in_dialog(&s.b, Method::Ack, s.b_invite_cseq, "");
    if s.media.late_offer && !s.media.last_to_b.is_empty() {
        set_sdp(&mut ack, &s.media.last_to_b);
    }
    let Some(flow) = s.b.flow.clone() else { return };
    if let Err(e) = core.edges.send_ack(ack, flow).await {
        warn!(error = %e, "ACK to the callee not sent");
    }
}

/// The caller cancelled the INVITE of server transaction `tx`; the edge
/// already answered 200 and 487. A CANCEL that finds no session yet is
/// caught later: the call's first response to the caller is refused.
pub(crate) async fn cancelled(core: &Core, tx: ServerTxRef, cancel: Message) {
    let (Ok(call_id), Some(from_tag)) = (cancel.call_id(), cancel.from_tag()) else {
        return;
    };
    let Ok(Some((s, _))) = core.sessions.find_setup(call_id, from_tag).await else {
        return;
    };
    if s.a_tx != tx {
        return;
    }
    let Ok(Some(mut s)) = end_setup(core, &s.id).await else {
        return;
    };
    let _ = core.supplements.incoming_request(&mut s, Side::A, &cancel).await;
    core.cancel_branches(&mut s, None).await;
    info!(session = %s.id, "call cancelled by the caller");
    core.finish(&s, "cancelled").await;
}

/// Any other request with a To tag.
pub(crate) async fn request(core: &Core, tx: ServerTxRef, _flow: Flow, req: Message) {
    let edge = &tx;
    let (Ok(call_id), Some(from_tag), Some(to_tag), Ok(cseq)) =
        (req.call_id(), req.from_tag(), req.to_tag(), req.cseq())
    else {
        reply(core, edge, &req, 400, "Bad Request (dialog identifiers)").await;
        return;
    };
    let found = match core.sessions.find(call_id, to_tag).await {
        Ok(f) => f,
        Err(e) => {
            warn!(error = %e, "session not loaded");
            reply(core, edge, &req, 503, "Service Unavailable (session store)").await;
            return;
        }
    };
    let Some((s, version)) = found else {
        reply(core, edge, &req, 481, "Call/Transaction Does Not Exist").await;
        return;
    };
    let Some(side) = s.side_of(call_id, from_tag, to_tag) else {
        reply(core, edge, &req, 481, "Call/Transaction Does Not Exist (tags)").await;
        return;
    };
    let method = req.method().cloned().unwrap_or(Method::Options);
    // RFC 3261 12.2.2: lower than the last one is an error (an equal one is
    // a retransmission, which the edge's transaction absorbs).
    if cseq.seq < s.leg(side).remote_cseq {
        reply(core, edge, &req, 500, "Server Internal Error (CSeq out of order)").await;
        return;
    }
    match method {
        Method::Bye => bye(core, edge, (s, version), side, req).await,
        _ if s.phase == Phase::Ended => {
            reply(core, edge, &req, 481, "Call/Transaction Does Not Exist (ended)").await;
        }
        _ if s.phase != Phase::Confirmed => {
            // Early-dialog requests other than BYE are not relayed yet.
            reply(core, edge, &req, 491, "Request Pending (call not answered yet)").await;
        }
        _ => relay(core, edge, (s, version), side, req).await,
    }
}

/// BYE from either side: 200 at once, BYE on the other leg, session over.
/// A caller's BYE on an early dialog ends the setup like a CANCEL.
async fn bye(core: &Core, edge: &ServerTxRef, (s, version): (Session, u64), side: Side, req: Message) {
    let ok = req.make_response(200, "OK", None);
    let (s, version) = if matches!(s.phase, Phase::Trying | Phase::Early) && side == Side::A {
        match end_setup(core, &s.id).await {
            Ok(Some(mut s)) => {
                core.respond(edge, ok.clone()).await;
                let _ = core.supplements.incoming_request(&mut s, Side::A, &req).await;
                core.cancel_branches(&mut s, None).await;
                core.respond_invite(&mut s, 487, "Request Terminated").await;
                core.finish(&s, "cancelled").await;
                return;
            }
            // Answered meanwhile: hang up the answered call instead.
            Ok(None) => match core.sessions.load(&s.id).await {
                Ok(Some(current)) => current,
                _ => {
                    reply(core, edge, &req, 481, "Call/Transaction Does Not Exist").await;
                    return;
                }
            },
            Err(_) => {
                reply(core, edge, &req, 500, "Server Internal Error (session store)").await;
                return;
            }
        }
    } else {
        (s, version)
    };
    let cseq = req.cseq().map(|c| c.seq).unwrap_or(0);
    let other = side.other();
    let id = s.id.clone();
    let ended = core
        .sessions
        .update_from(&id, Some((s, version)), |st| {
            if st.phase != Phase::Confirmed {
                return None;
            }
            st.phase = Phase::Ended;
            let leg = st.leg_mut(side);
            leg.remote_cseq = leg.remote_cseq.max(cseq);
            st.leg_mut(other).local_cseq += 1;
            Some(st.leg(other).local_cseq)
        })
        .await;
    let (mut s, cseq_out) = match ended {
        Ok(Some((s, _, cseq))) => (s, cseq),
        Ok(None) => {
            reply(core, edge, &req, 481, "Call/Transaction Does Not Exist (ended)").await;
            return;
        }
        Err(e) => {
            warn!(error = %e, "BYE not applied");
            reply(core, edge, &req, 500, "Server Internal Error (session store)").await;
            return;
        }
    };
    info!(session = %s.id, by = ?side, "call ended");
    if !s.a_acked {
        // The callee's 2xx was never ACKed (the caller hung up before its
        // ACK came): ACK it before the BYE (RFC 3261 13.2.2.4).
        ack_b(core, &s).await;
    }
    let mut ok = ok;
    let _ = core.supplements.incoming_request(&mut s, side, &req).await;
    core.supplements.outgoing(&mut s, side, &mut ok).await;
    core.respond(edge, ok.clone()).await;
    let mut out = compose::in_dialog(s.leg(other), Method::Bye, cseq_out, "");
    core.supplements.outgoing(&mut s, other, &mut out).await;
    // The BYE's outcome changes nothing here.
    send_and_forget(core, out, s.leg(other).flow.clone(), "BYE to the other leg").await;
    events::publish_bye(core.sessions.store(), &s, side).await;
    core.supplements.end(&s).await;
    media::end(&core.sdp, &s).await;
    debug!("session ended; its record expires shortly");
}

/// A pending offer older than this is taken as abandoned (its relaying
/// replica died): more than an INVITE may wait for its final response.
const PENDING_MAX_MS: u64 = 200_000;

/// Relays a request to the other leg and its final response back. An
/// offer (re-INVITE, UPDATE) while another is pending is glare: 491.
async fn relay(core: &Core, edge: &ServerTxRef, (s, version): (Session, u64), side: Side, req: Message) {
    let method = req.method().cloned().unwrap_or(Method::Options);
    let offer_method = matches!(method, Method::Invite | Method::Update);
    let cseq_in = req.cseq().map(|c| c.seq).unwrap_or(0);
    let other = side.other();
    let id = s.id.clone();
    let now = state_store::now_ms();
    let claimed = core
        .sessions
        .update_from(&id, Some((s, version)), |st| {
            if st.phase != Phase::Confirmed {
                return None;
            }
            let pending = st
                .offer_pending_since_ms
                .is_some_and(|since| now.saturating_sub(since) < PENDING_MAX_MS);
            if offer_method && pending {
                return Some(None);
            }
            let leg = st.leg_mut(side);
            leg.remote_cseq = leg.remote_cseq.max(cseq_in);
            st.leg_mut(other).local_cseq += 1;
            let cseq_out = st.leg(other).local_cseq;
            if offer_method {
                st.offer_pending_since_ms = Some(now);
            }
            Some(Some(cseq_out))
        })
        .await;
    let (mut s, cseq_out) = match claimed {
        Ok(Some((s, _, Some(c)))) => (s, c),
        Ok(Some((_, _, None))) => {
            reply(core, edge, &req, 491, "Request Pending").await;
            return;
        }
        Ok(None) => {
            reply(core, edge, &req, 481, "Call/Transaction Does Not Exist").await;
            return;
        }
        Err(e) => {
            warn!(error = %e, "request not applied");
            reply(core, edge, &req, 500, "Server Internal Error (session store)").await;
            return;
        }
    };
    let before = s.media.clone();
    let relayed = relay_claimed(core, &mut s, side, &req, cseq_out).await;
    if offer_method {
        // A refused offer leaves the session as it was (RFC 3264 8).
        let media_now = if relayed.accepted { s.media.clone() } else { before };
        let data = s.data.clone();
        let targets = relayed.targets.clone();
        let ack_pending = relayed.ack_pending.clone();
        let _ = core
            .sessions
            .update(&s.id, |st| {
                st.offer_pending_since_ms = None;
                st.media = media_now.clone();
                st.data = data.clone();
                st.ack_pending = ack_pending.clone();
                // Target refresh (RFC 3261 12.2): each side's new Contact.
                if let Some((mine, theirs)) = &targets {
                    if !mine.is_empty() {
                        st.leg_mut(side).remote_target = mine.clone();
                    }
                    if !theirs.is_empty() {
                        st.leg_mut(other).remote_target = theirs.clone();
                    }
                }
                Some(())
            })
            .await;
    }
    core.respond(edge, relayed.response).await;
}

/// What relaying a request came to.
struct Relayed {
    /// The response for the sender.
    response: Message,
    /// A 2xx: the offer (if any) was accepted.
    accepted: bool,
    /// For a 2xx to INVITE / UPDATE: the Contacts of the request and of the
    /// 2xx (the new remote targets of the sender's and the other leg).
    targets: Option<(String, String)>,
    /// A re-INVITE without offer whose 2xx carried one: the other leg's ACK
    /// waits for the sender's, which brings the answer.
    ack_pending: Option<AckPending>,
}

/// Sends the relayed request and turns the other leg's final response into
/// the response for `side`.
async fn relay_claimed(core: &Core, s: &mut Session, side: Side, req: &Message, cseq_out: u32) -> Relayed {
    let refused = |response| Relayed {
        response,
        accepted: false,
        targets: None,
        ack_pending: None,
    };
    let method = req.method().cloned().unwrap_or(Method::Options);
    let other = side.other();
    let offer_method = matches!(method, Method::Invite | Method::Update);
    if let Err(stop) = core.supplements.incoming_request(s, side, req).await {
        return refused(stop.0);
    }
    let mut out = compose::in_dialog(
        s.leg(other),
        method.clone(),
        cseq_out,
        &contact(&s.id, s.leg(other).flow.as_ref(), &core.config.contact_host),
    );
    compose::relay_headers(req, &mut out);
    let offer = compose::sdp_of(req).map(str::to_owned);
    match (&offer, offer_method) {
        (Some(body), true) => match media::offer(&core.sdp, s, side, body, false).await {
            Ok(Offered::Forward { sdp, handlers }) => {
                s.media.offer = body.clone();
                s.media.forwarded = sdp.clone();
                s.media.handlers = handlers;
                match other {
                    Side::A => s.media.last_to_a = sdp.clone(),
                    Side::B => s.media.last_to_b = sdp.clone(),
                }
                set_sdp(&mut out, &sdp);
            }
            Ok(Offered::Reject { status, warning }) => {
                let mut r = req.make_response(status, "Not Acceptable Here", None);
                if !warning.is_empty() {
                    r.push_header_as_spelled("Warning", &warning);
                }
                return refused(r);
            }
            Err(MediaError::Invalid(why)) => {
                return refused(req.make_response(488, &format!("Not Acceptable Here (SDP: {why})"), None));
            }
            Err(e) => {
                warn!(error = %e, "re-offer not negotiated");
                return refused(req.make_response(500, "Server Internal Error (media negotiation)", None));
            }
        },
        _ => compose::copy_body(req, &mut out),
    }
    core.supplements.outgoing(s, other, &mut out).await;
    let Some(flow) = s.leg(other).flow.clone() else {
        return refused(req.make_response(503, "Service Unavailable (other leg unreachable)", None));
    };
    let mut client = match core.edges.send_request(out, flow.clone()).await {
        Ok(client) => client,
        Err(e) => {
            warn!(error = %e, "request not relayed");
            return refused(req.make_response(503, "Service Unavailable (other leg unreachable)", None));
        }
    };
    let fin = loop {
        let Some(event) = client.next().await else {
            return refused(req.make_response(408, "Request Timeout", None));
        };
        if event.response.status().unwrap_or(0) >= 200 {
            break event.response;
        }
    };
    // The responses of an INVITE go on for 2xx retransmissions; the edge
    // absorbs them once the ACK below (or the deferred one) is sent.
    client.finish_in_background();
    core.supplements.incoming_response(s, other, &fin).await;
    let code = fin.status().unwrap_or(500);
    let success = (200..300).contains(&code);
    let mut resp = req.make_response(code, fin.reason().unwrap_or(""), None);
    let mut ack_pending = None;
    let mut targets = None;
    if success && offer_method {
        resp.push_header(
            Known::Contact,
            &contact(&s.id, s.leg(side).flow.as_ref(), &core.config.contact_host),
        );
        targets = Some((compose::first_contact(req), compose::first_contact(&fin)));
        match (offer.is_some(), compose::sdp_of(&fin)) {
            // The other leg answered the offer: the sender gets the answer.
            (true, Some(answer)) => match media::answer(&core.sdp, s, side, answer).await {
                Ok(answered) => {
                    s.media.answer = answer.to_owned();
                    s.media.answered = answered.clone();
                    match side {
                        Side::A => s.media.last_to_a = answered.clone(),
                        Side::B => s.media.last_to_b = answered.clone(),
                    }
                    set_sdp(&mut resp, &answered);
                }
                Err(e) => warn!(error = %e, "re-answer not negotiated"),
            },
            // A re-INVITE without offer: the other leg offers in its 2xx;
            // the sender answers in its ACK (RFC 3261 14.1).
            (false, Some(their_offer)) if method == Method::Invite => {
                match media::offer(&core.sdp, s, other, their_offer, false).await {
                    Ok(Offered::Forward { sdp, handlers }) => {
                        s.media.offer = their_offer.to_owned();
                        s.media.forwarded = sdp.clone();
                        s.media.handlers = handlers;
                        match side {
                            Side::A => s.media.last_to_a = sdp.clone(),
                            Side::B => s.media.last_to_b = sdp.clone(),
                        }
                        set_sdp(&mut resp, &sdp);
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
        compose::copy_body(&fin, &mut resp);
    }
    if method == Method::Invite && success && ack_pending.is_none() {
        // The other leg's 2xx is ACKed now: the legs are separate dialogs
        // and the sender's ACK carries nothing it needs.
        let ack = compose::in_dialog(s.leg(other), Method::Ack, cseq_out, "");
        if let Err(e) = core.edges.send_ack(ack, flow).await {
            warn!(error = %e, "ACK of a re-INVITE not sent");
        }
    }
    for name in ["Retry-After", "Warning"] {
        if let Some(v) = fin.header(name) {
            resp.push_header_as_spelled(name, v);
        }
    }
    core.supplements.outgoing(s, side, &mut resp).await;
    Relayed {
        response: resp,
        accepted: success,
        targets,
        ack_pending,
    }
}
