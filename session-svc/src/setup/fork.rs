//! The forked callee-leg INVITEs: sent to every place the call goes, their
//! responses relayed to the caller (the first 2xx wins, later ones are
//! hung up), and the caller's answer when they all fail.

use std::sync::Arc;

use edge_api::{ClientEvent, Flow};
use sdp_svc::Offered;
use sip_dialog::Dialog;
use sip_message::{Known, Message, Method, Refusal};
use state_store::now_ms;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, warn};

use super::allows_update;
use super::route::Plan;
use crate::core::{ALLOW, Core, contact, copy_retry_fields, no_answer_timer};
use crate::events::{self, DialogState};
use crate::media::{self, sdp_of, set_sdp, set_stored_sdp};
use crate::session::{Branch, EndReason, Phase, SdpText, Session, Side};
use crate::supplements::rfc3326::COMPLETED_ELSEWHERE;

/// The session as last written by this replica, with its version: the next
/// write needs no read unless another replica wrote since.
type Current = Option<(Session, u64)>;

/// The callee-leg INVITE, before the binding's Request-URI and Route.
fn callee_invite(s: &Session, req: &Message, contact_host: &str) -> Message {
    let b = &s.legs.b.dialog;
    let mut m = Message::request(Method::Invite, "sip:placeholder@invalid");
    m.push_header(Known::From, &format!("{};tag={}", b.local_uri(), b.local_tag()));
    m.push_header(Known::To, b.remote_uri());
    m.push_header(Known::CallId, b.call_id());
    m.push_header(Known::CSeq, &format!("{} INVITE", s.legs.b.invite_cseq));
    let mf = req.max_forwards().ok().flatten().map_or(70, |n| n.saturating_sub(1));
    m.push_header(Known::MaxForwards, &mf.to_string());
    m.push_header(Known::Contact, &contact(&s.id, s.legs.a.flow.as_ref(), contact_host));
    m.push_header(Known::Allow, ALLOW);
    if let Some(offer) = &s.media.forwarded {
        set_stored_sdp(&mut m, offer);
    }
    m
}

/// Sends the branches and relays what they answer until the call is
/// answered, fails, or is cancelled (by anyone).
pub(super) async fn drive(core: Arc<Core>, mut s: Session, version: u64, req: Message, plans: Vec<Plan>) {
    let mut template = callee_invite(&s, &req, &core.config.contact_host);
    core.outgoing(&mut s, Side::B, &mut template).await;
    // A supplement may have rewritten From (anonymity): the dialog's too.
    if let Some(f) = template.known_header(Known::From) {
        s.legs.b.dialog.set_local_uri(f);
    }
    let (tx, mut rx) = mpsc::channel::<(usize, ClientEvent)>(64);
    let mut sent = Vec::new();
    for plan in plans {
        let mut invite = template.clone();
        invite.set_request_uri(&plan.uri);
        for p in &plan.path {
            invite.push_header(Known::Route, p);
        }
        if !core.config.contact_host.is_empty() || plan.flow.local.is_some() {
            invite.set_header(
                Known::Contact,
                &contact(&s.id, Some(&plan.flow), &core.config.contact_host),
            );
        }
        match core.edges.send_request(invite.clone(), plan.flow.clone()).await {
            Ok(mut client) => {
                let idx = sent.len();
                sent.push((invite, plan.flow.clone()));
                s.branches.push(Branch {
                    tx: client.id.clone(),
                    target: plan.uri,
                    flow: plan.flow,
                    done: false,
                });
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some(item) = client.next().await {
                        if tx.send((idx, item)).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Err(e) => warn!(error = %e, target = %plan.uri, "branch not sent"),
        }
    }
    drop(tx);
    let branches = s.branches.clone();
    let b_dialog = s.legs.b.dialog.clone();
    let data = s.data.clone();
    // The record as created, plus what sending changed (`s` itself). A
    // CANCEL (or BYE) may have ended the call meanwhile: then the branches
    // just sent are cancelled here, nobody else knows them.
    let stored = core
        .sessions
        .update_from(&s.id, Some((s.clone(), version)), |st| {
            if st.phase.is_ended() {
                return None;
            }
            st.branches = branches.clone();
            st.legs.b.dialog = b_dialog.clone();
            st.data = data.clone();
            Some(())
        })
        .await;
    if matches!(stored, Ok(None)) {
        // The loop below still runs: a branch that answers anyway is ACKed
        // and hung up.
        info!("call ended while its branches were sent: cancelling them");
        s.phase = Phase::Ended(EndReason::Cancelled);
        core.cancel_branches(&mut s, None).await;
    }
    if s.branches.is_empty() && !s.phase.is_ended() {
        if let Ok(Some(mut ended)) = core.end_setup(&s.id, None, EndReason::Error).await {
            let r = Refusal::temporarily_unavailable("no branch reachable");
            core.abandon_setup(&mut ended, Some(&r)).await;
        }
        return;
    }
    let mut current: Current = match stored {
        Ok(Some((st, v, ()))) => Some((st, v)),
        Ok(None) => None,
        Err(e) => {
            warn!(error = %e, "branches not stored: CANCEL from another replica cannot reach them");
            None
        }
    };
    let mut outcome = Outcome::default();
    // Each response's work is boxed: its state is allocated while it runs,
    // not carried in this task for as long as the call rings.
    while let Some((idx, event)) = rx.recv().await {
        let resp = event.response;
        let code = resp.status().unwrap_or(0);
        let Some((invite, flow)) = sent.get(idx) else { continue };
        match code {
            100 => {}
            101..=199 => Box::pin(provisional(&core, &s.id, idx, &resp, &mut current)).await,
            200..=299 => {
                let branch = Sent { idx, invite, flow };
                Box::pin(answered(&core, &s.id, branch, &resp, &mut outcome, &mut current)).await;
                if let Some(winner) = outcome.winner.take() {
                    // What may still come for 32 s (the winner's 2xx
                    // again, a fork's 2xx) is a small task's: this one's
                    // state is not kept that long for every call.
                    tokio::spawn(Box::pin(
                        after_win(core.clone(), s.id.clone(), rx, sent, winner).in_current_span(),
                    ));
                    return;
                }
                if outcome.all_failed(sent.len()) {
                    Box::pin(all_failed(&core, &s.id, &outcome)).await;
                }
            }
            _ => {
                outcome.failed(idx, resp);
                if outcome.all_failed(sent.len()) {
                    Box::pin(all_failed(&core, &s.id, &outcome)).await;
                }
            }
        }
    }
    // Every stream ended. A branch that never gave a final answer (its edge
    // went away) counts as 408, so the caller is never left waiting.
    if outcome.winner.is_none() && !outcome.all_failed(sent.len()) {
        for (idx, (invite, _)) in sent.iter().enumerate() {
            outcome.failed(idx, Refusal::request_timeout().response_to(invite, None));
        }
        Box::pin(all_failed(&core, &s.id, &outcome)).await;
    }
}

#[derive(Default)]
struct Outcome {
    /// Final error responses, by branch.
    failures: Vec<(usize, Message)>,
    /// The branch whose 2xx won, and that 2xx's To tag.
    winner: Option<(usize, String)>,
}

impl Outcome {
    fn failed(&mut self, idx: usize, resp: Message) {
        if !self.failures.iter().any(|(i, _)| *i == idx) {
            self.failures.push((idx, resp));
        }
    }

    fn all_failed(&self, branches: usize) -> bool {
        self.winner.is_none() && self.failures.len() == branches
    }

    /// RFC 3261 16.7 step 6, simplified: a 6xx wins, else the lowest class,
    /// first come first.
    fn best(&self) -> Option<&Message> {
        let rank = |m: &Message| {
            let c = m.status().unwrap_or(500);
            if c >= 600 { 0 } else { c / 100 }
        };
        self.failures.iter().map(|(_, m)| m).min_by_key(|m| rank(m))
    }
}

/// 18x from a branch: the caller hears it (with the early answer when the
/// branch sent SDP).
async fn provisional(core: &Core, id: &str, idx: usize, resp: &Message, current: &mut Current) {
    let written = core
        .sessions
        .update_from(id, current.take(), |s| {
            if !s.phase.is_setting_up() {
                return None;
            }
            let first = s.phase == Phase::Trying;
            s.phase = Phase::Early;
            Some(first)
        })
        .await;
    let (mut s, mut version, first) = match written {
        Ok(Some(w)) => w,
        Ok(None) => {
            debug!(
                branch = idx,
                "provisional after the call was set up or ended: not relayed"
            );
            return;
        }
        Err(e) => {
            warn!(error = %e, branch = idx, "provisional not relayed: session not written");
            return;
        }
    };
    let data_before = s.data.clone();
    core.incoming_response(&mut s, Side::B, resp).await;
    let code = resp.status().unwrap_or(180);
    let mut out = s.caller_response(code, resp.reason().unwrap_or("Ringing"));
    out.push_header(Known::Contact, &core.contact(&s, Side::A));
    // The caller's dialog gets one early answer (RFC 3264: one answer per
    // offer): from the first branch that sends SDP; that branch repeats it.
    let early_owner = s.media.early_branch.is_none_or(|b| b == idx);
    let early_sdp = sdp_of(resp).ok().flatten();
    if let Some(answer) = early_sdp.filter(|_| !s.media.late_offer && early_owner) {
        if s.media.early_branch == Some(idx) {
            if let Some(answered) = &s.media.answered {
                set_stored_sdp(&mut out, answered);
            }
        } else if let Ok(answered) = media::answer(&core.sdp, &s, Side::A, &answer).await {
            set_sdp(&mut out, &answered);
            let media_written = core
                .sessions
                .update_from(id, Some((s.clone(), version)), |st| {
                    st.media.record_answer(Side::A, &answered);
                    st.media.early_branch = Some(idx);
                    Some(())
                })
                .await;
            if let Ok(Some((st, v, ()))) = media_written {
                (s, version) = (st, v);
            }
        }
    }
    if !core.answer_caller(&mut s, out).await {
        // The caller's transaction is answered already: a CANCEL the edge
        // took before this call was stored. Stop ringing.
        caller_gone(core, id).await;
        *current = None;
        return;
    }
    if first {
        events::publish_both(core.sessions.store(), &s, DialogState::Early, None).await;
    }
    debug!(branch = idx, code, "provisional relayed");
    let _ = core.save_states(&mut s, &mut version, &data_before).await;
    *current = Some((s, version));
}

/// The branch a response came from: its index, the INVITE sent and the flow.
struct Sent<'a> {
    idx: usize,
    invite: &'a Message,
    flow: &'a Flow,
}

/// A 2xx from a branch. The first one wins the call; any other (a second
/// branch, or one after the call ended) is ACKed and hung up at once
/// (RFC 3261 13.2.2.4).
async fn answered(
    core: &Core,
    id: &str,
    branch: Sent<'_>,
    resp: &Message,
    outcome: &mut Outcome,
    current: &mut Current,
) {
    let Sent { idx, invite, flow } = branch;
    let tag = resp.to_tag().unwrap_or("");
    // The SDP work first, from the session as this replica last wrote it
    // (only the branch driver changes media while the call rings), so the
    // win and its media are one write.
    let base = match current.take() {
        Some(c) => Some(c),
        None => core.sessions.load(id).await.ok().flatten(),
    };
    let Some((mut s, version)) = base else {
        hang_up_stray(core, invite, resp, flow).await;
        return;
    };
    let mut callee = s.legs.b.dialog.clone();
    if let Err(e) = callee.establish(resp) {
        // Nothing to ACK or hang up: the branch failed.
        warn!(error = %e, "2xx unusable: branch failed");
        let r = Refusal::new(502, format!("Bad Gateway (callee's 2xx: {e})"));
        outcome.failed(idx, r.response_to(invite, None));
        *current = Some((s, version));
        return;
    }
    let for_caller = negotiate_answer(core, &mut s, resp).await;
    // Supplements hear the answer and shape the caller's 200 before the
    // win is written, so what they change goes in the same write; what
    // they ask for is done once the call is won.
    let data_before = s.data.clone();
    let mut actions = core.supplements.incoming_response(&mut s, Side::B, resp).await;
    let mut ok = s.caller_response(200, "OK");
    ok.push_header(Known::Contact, &core.contact(&s, Side::A));
    ok.push_header(Known::Allow, ALLOW);
    if let Some(sdp) = &for_caller {
        set_stored_sdp(&mut ok, sdp);
    }
    actions.extend(core.supplements.outgoing(&mut s, Side::A, &mut ok).await);
    let changes = s.state_changes(&data_before);
    let media_now = s.media.clone();
    let update = allows_update(resp);
    let mut win = |st: &mut Session| {
        if !st.phase.is_setting_up() {
            return None;
        }
        st.phase = Phase::Confirmed;
        st.legs.b.dialog = callee.clone();
        st.legs.b.flow = Some(flow.clone());
        st.legs.b.allows_update = update;
        st.legs.a.dialog.confirm();
        st.media = media_now.clone();
        if let Some(b) = st.branches.get_mut(idx) {
            b.done = true;
        }
        changes.apply(st);
        Some(())
    };
    // Ok(None): lost to another branch; Err: the store could not say.
    let won = match core.sessions.update_from(id, Some((s, version)), &mut win).await {
        Err(e) => {
            // A store that did not answer may still have taken the write:
            // read back before giving the answer up.
            warn!(error = %e, "store failed writing the answer: reading back");
            match core.sessions.load(id).await {
                Ok(Some((s, v))) if s.phase == Phase::Confirmed && s.legs.b.dialog.remote_tag() == tag => {
                    Ok(Some((s, v, ())))
                }
                Ok(Some(c)) => core.sessions.update_from(id, Some(c), &mut win).await,
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        }
        won => won,
    };
    let Ok(Some((mut s, mut version, ()))) = won else {
        if won.is_err() {
            // Not lost to another branch: the store is down. The caller
            // hears so instead of waiting for an answer that never comes.
            warn!("answer not recorded: store unavailable; branch failed");
            outcome.failed(idx, Refusal::store_unavailable().response_to(invite, None));
        }
        hang_up_stray(core, invite, resp, flow).await;
        return;
    };
    // The same timer now waits for the caller's ACK (RFC 3261 13.3.1.4),
    // moved at once: the no-answer time must not end an answered call.
    let ack_due = now_ms() + core.config.ack_wait_s.saturating_mul(1000);
    if let Err(e) = core
        .sessions
        .store()
        .schedule(&no_answer_timer(id), ack_due, bytes::Bytes::from(id.to_owned()))
        .await
    {
        debug!(error = %e, "ACK timer not armed");
    }
    outcome.winner = Some((idx, tag.to_owned()));
    core.perform(id, actions).await;
    if !core.respond(&s.invite.tx, ok).await {
        // The caller cancelled as the callee answered (the edge sent 487
        // first): the callee is ACKed and hung up, the call is over.
        info!("callee answered a cancelled call: hanging up");
        if let Ok(Some((mut ended, _, ()))) = core
            .sessions
            .update(id, |st| {
                if st.phase.is_ended() {
                    return None;
                }
                st.phase = Phase::Ended(EndReason::Cancelled);
                Some(())
            })
            .await
        {
            hang_up_stray(core, invite, resp, flow).await;
            core.cancel_branches(&mut ended, Some(idx)).await;
            core.finish(&ended).await;
        }
        return;
    }
    // The CANCELs' supplement edits rarely change state; if they do, it
    // is written.
    let data_before = s.data.clone();
    core.cancel_branches(&mut s, Some(idx)).await;
    let _ = core.save_states(&mut s, &mut version, &data_before).await;
    events::publish_both(core.sessions.store(), &s, DialogState::Confirmed, None).await;
    info!(branch = idx, "call answered");
}

/// What the caller's 200 carries: the answer built from the callee's, or
/// (late offer) the callee's offer; `s.media` is updated to match.
async fn negotiate_answer(core: &Core, s: &mut Session, resp: &Message) -> Option<SdpText> {
    let body = match sdp_of(resp) {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "callee's SDP unusable");
            None
        }
    };
    match (body, s.media.late_offer) {
        (Some(offer), true) => match media::offer(&core.sdp, s, Side::B, &offer, true).await {
            Ok(Offered::Forward { sdp, handlers }) => {
                s.media.record_offer(Side::B, &offer, &sdp, handlers);
                s.media.forwarded.clone()
            }
            _ => None,
        },
        (Some(answer), false) => match media::answer(&core.sdp, s, Side::A, &answer).await {
            Ok(answered) => {
                s.media.record_answer(Side::A, &answered);
                s.media.answered.clone()
            }
            Err(e) => {
                warn!(error = %e, "answer not negotiated");
                None
            }
        },
        (None, _) => s.media.answered.clone(),
    }
}

/// After the call was won: the winner's 2xx again (our ACK was lost, or
/// the caller's has not come) is ACKed again once the caller ACKed; any
/// other 2xx (another branch, a fork behind the winner) is hung up.
async fn after_win(
    core: Arc<Core>,
    id: String,
    mut rx: mpsc::Receiver<(usize, ClientEvent)>,
    sent: Vec<(Message, Flow)>,
    (winner, winner_tag): (usize, String),
) {
    while let Some((idx, event)) = rx.recv().await {
        let resp = event.response;
        let Some((invite, flow)) = sent
            .get(idx)
            .filter(|_| resp.status().is_some_and(|c| (200..300).contains(&c)))
        else {
            continue;
        };
        if idx == winner && resp.to_tag() == Some(winner_tag.as_str()) {
            if let Ok(Some((s, _))) = core.sessions.load(&id).await
                && s.caller_acked
            {
                core.ack_callee(&s).await;
            }
        } else {
            hang_up_stray(&core, invite, &resp, flow).await;
        }
    }
}

/// ACK and BYE for a 2xx nobody wants.
async fn hang_up_stray(core: &Core, invite: &Message, resp: &Message, flow: &Flow) {
    let cseq = invite.cseq().map(|c| c.seq).unwrap_or(1);
    let (Ok(call_id), Some(from_tag), Some(from), Some(to)) = (
        invite.call_id(),
        invite.from_tag(),
        invite.known_header(Known::From),
        invite.known_header(Known::To),
    ) else {
        return;
    };
    let mut stray = Dialog::uac(call_id, from_tag, from, to, cseq);
    if let Err(e) = stray.establish(resp) {
        debug!(error = %e, "unwanted 2xx cannot be ACKed");
        return;
    }
    core.send_ack(stray.ack(cseq), Some(flow.clone()), "ACK of an unwanted 2xx")
        .await;
    let mut bye = stray.request(Method::Bye);
    bye.push_header(Known::Reason, COMPLETED_ELSEWHERE);
    core.send_and_forget(bye, Some(flow.clone()), "BYE of an unwanted 2xx")
        .await;
}

/// Every branch failed: the caller gets the best of their answers.
async fn all_failed(core: &Core, id: &str, outcome: &Outcome) {
    let Some(best) = outcome.best() else { return };
    let Ok(Some(mut s)) = core.end_setup(id, None, EndReason::Rejected).await else {
        return;
    };
    core.incoming_response(&mut s, Side::B, best).await;
    let (code, reason) = map_failure(best);
    let mut resp = s.caller_response(code, &reason);
    if (300..400).contains(&code) {
        for c in best.known_fields(Known::Contact) {
            resp.push_header(Known::Contact, c);
        }
    }
    copy_retry_fields(best, &mut resp);
    core.answer_caller(&mut s, resp).await;
    info!(code, "call failed");
    core.finish(&s).await;
}

/// The caller's answer for a callee's failure: relayed, except what only
/// makes sense on the callee's hop.
fn map_failure(resp: &Message) -> (u16, String) {
    let code = resp.status().unwrap_or(500);
    let reason = resp.reason().unwrap_or("").to_owned();
    match code {
        // Credentials the caller cannot give, and a callee's overload that
        // must not read as ours (RFC 3261 16.7 says the same of 503).
        401 | 407 | 503 => (480, "Temporarily Unavailable".to_owned()),
        408 => (480, "Temporarily Unavailable (no response)".to_owned()),
        _ => (
            code,
            if reason.is_empty() {
                "Call Failed".to_owned()
            } else {
                reason
            },
        ),
    }
}

/// The caller's INVITE transaction was answered behind our back (487 for a
/// CANCEL whose notice found no session yet): end the setup.
async fn caller_gone(core: &Core, id: &str) {
    if let Ok(Some(mut s)) = core.end_setup(id, None, EndReason::Cancelled).await {
        core.abandon_setup(&mut s, None).await;
    }
}
