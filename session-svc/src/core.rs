//! What every part of session-svc works with: the configuration, the
//! session store, the clients of the edge, the location service and
//! sdp-svc, the supplement chain; and the steps every flow shares
//! (answering the caller, ending a session, cancelling branches, running
//! supplements and doing what they ask).

use std::sync::Arc;

use std::time::Duration;

use bus::Edges;
use edge_api::{Flow, ServerTxRef};
use registrar_svc::LocationClient;
use sdp_svc::SdpClient;
use serde::{Deserialize, Serialize};
use sip_message::{Message, Method, Refusal};
use state_store::now_ms;
use tracing::{debug, warn};

use crate::config::SessionConfig;
use crate::events::{self, DialogState};
use crate::media;
use crate::session::{EndReason, Phase, Session, Sessions, Side, StateError};
use crate::supplements::{Action, Supplements};

/// The timer queue of setup timers (`noanswer:<session>`): no answer while
/// ringing, then no ACK after the answer.
pub const NO_ANSWER_QUEUE: &str = "noanswer";
/// Supplements' timers (`supp:<session>:<supplement>`).
pub const SUPPLEMENT_QUEUE: &str = "supp";
/// What supplements asked to be done soon (`act:<session>:<what>`), run
/// by one replica's timer loop after the request at hand.
pub const ACTION_QUEUE: &str = "act";

pub fn no_answer_timer(id: &str) -> String {
    format!("{NO_ANSWER_QUEUE}:{id}")
}

pub fn supplement_timer(id: &str, supplement: &str) -> String {
    format!("{SUPPLEMENT_QUEUE}:{id}:{supplement}")
}

/// A refresh or hang-up a supplement asked for, queued for the timer
/// loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Deferred {
    Refresh { session: String, side: Side },
    HangUp { session: String, reason: String },
}

impl Deferred {
    fn timer_id(&self) -> String {
        match self {
            Deferred::Refresh { session, side } => format!("{ACTION_QUEUE}:{session}:refresh-{side:?}"),
            Deferred::HangUp { session, .. } => format!("{ACTION_QUEUE}:{session}:hang-up"),
        }
    }
}

pub use registrar_svc::Directory;

/// Everything a session-svc replica works with.
pub struct Core {
    pub(crate) config: SessionConfig,
    pub(crate) sessions: Sessions,
    pub(crate) edges: Edges,
    pub(crate) locations: LocationClient,
    pub(crate) sdp: SdpClient,
    pub(crate) supplements: Arc<Supplements>,
    pub(crate) directory: Directory,
}

/// Copies the fields of a final response that stay meaningful when it is
/// relayed to the other leg (when to retry, and why it failed).
pub fn copy_retry_fields(from: &Message, to: &mut Message) {
    for name in ["Retry-After", "Warning"] {
        if let Some(v) = from.header(name) {
            to.push_header_as_spelled(name, v);
        }
    }
}

/// The methods sipbus takes inside a call (Allow of what it sends).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, UPDATE, INFO, MESSAGE, REFER, NOTIFY, OPTIONS";

/// sipbus's Contact on a leg: the session id as user part, so a request
/// that reaches the edge by it is easy to trace.
pub fn contact(id: &str, flow: Option<&Flow>, contact_host: &str) -> String {
    Flow::contact(flow, id, contact_host)
}

impl Core {
    /// Supplements registered at run time: the registry's view of this
    /// point.
    pub fn registry_host(&self) -> Arc<dyn extension::Host> {
        self.supplements.clone()
    }

    /// Keeps the registered supplements current (one task per replica).
    pub async fn follow_registry(self: Arc<Self>) {
        self.supplements.clone().follow_registry().await;
    }

    pub fn new(
        config: SessionConfig,
        store: state_store::Store,
        edges: Edges,
        locations: LocationClient,
        sdp: SdpClient,
        supplements: Supplements,
        directory: Directory,
    ) -> Self {
        let ttl = Duration::from_secs(config.max_idle_s.max(60));
        Self {
            // The Call-ID index serves CANCELs, which come only while a
            // call rings.
            sessions: Sessions::new(store, ttl, Duration::from_secs(config.no_answer_s.saturating_add(64))),
            config,
            edges,
            locations,
            sdp,
            supplements: Arc::new(supplements),
            directory,
        }
    }

    /// sipbus's Contact on `side` of session `s`.
    pub(crate) fn contact(&self, s: &Session, side: Side) -> String {
        contact(&s.id, s.legs[side].flow.as_ref(), &self.config.contact_host)
    }

    /// Sends a response on a server transaction; `false` when the edge
    /// refused it (the transaction was already answered, e.g. 487 after a
    /// CANCEL, or has ended) or could not be reached.
    pub(crate) async fn respond(&self, tx: &ServerTxRef, resp: Message) -> bool {
        let status = resp.status().unwrap_or(0);
        match self.edges.respond(tx, resp).await {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, status, "response not sent");
                false
            }
        }
    }

    /// Answers `req` on `tx` with a refusal.
    pub(crate) async fn refuse(&self, tx: &ServerTxRef, req: &Message, refusal: &Refusal) {
        self.respond(tx, refusal.response_to(req, None)).await;
    }

    /// Answers the caller's INVITE (from any replica), through the
    /// supplements; `false` when the edge refused it.
    pub(crate) async fn answer_caller(&self, s: &mut Session, mut resp: Message) -> bool {
        self.outgoing(s, Side::A, &mut resp).await;
        self.respond(&s.invite.tx, resp).await
    }

    /// Refuses the caller's INVITE.
    pub(crate) async fn refuse_caller(&self, s: &mut Session, refusal: &Refusal) {
        let mut resp = s.caller_response(refusal.code(), refusal.reason());
        refusal.complete(&mut resp);
        self.answer_caller(s, resp).await;
    }

    /// Supplements hear a request; `Err` answers it.
    pub(crate) async fn incoming_request(&self, s: &mut Session, side: Side, req: &Message) -> Result<(), Refusal> {
        let (verdict, actions) = self.supplements.incoming_request(s, side, req).await;
        self.perform(&s.id, actions).await;
        verdict
    }

    pub(crate) async fn incoming_response(&self, s: &mut Session, side: Side, resp: &Message) {
        let actions = self.supplements.incoming_response(s, side, resp).await;
        self.perform(&s.id, actions).await;
    }

    /// Supplements edit a message about to leave on `side`.
    pub(crate) async fn outgoing(&self, s: &mut Session, side: Side, out: &mut Message) {
        let actions = self.supplements.outgoing(s, side, out).await;
        self.perform(&s.id, actions).await;
    }

    pub(crate) async fn begin(&self, s: &mut Session) {
        let actions = self.supplements.begin(s).await;
        self.perform(&s.id, actions).await;
    }

    /// Does what supplements asked: timers now, refreshes and hang-ups
    /// through the action queue (after the request at hand, on whichever
    /// replica claims them).
    pub(crate) async fn perform(&self, id: &str, actions: Vec<(String, Action)>) {
        let store = self.sessions.store();
        for (name, action) in actions {
            let timer = supplement_timer(id, &name);
            let done = match action {
                Action::SetTimer(after) => {
                    let due = now_ms() + u64::try_from(after.as_millis()).unwrap_or(u64::MAX / 2);
                    store.schedule(&timer, due, bytes::Bytes::from(name.clone())).await
                }
                Action::CancelTimer => store.cancel(&timer).await,
                Action::Refresh(side) => {
                    self.defer(Deferred::Refresh {
                        session: id.to_owned(),
                        side,
                    })
                    .await
                }
                Action::HangUp(reason) => {
                    self.defer(Deferred::HangUp {
                        session: id.to_owned(),
                        reason,
                    })
                    .await
                }
            };
            if let Err(e) = done {
                warn!(supplement = %name, error = %e, "supplement action not recorded");
            }
        }
    }

    async fn defer(&self, what: Deferred) -> Result<(), state_store::StoreError> {
        let payload = bytes::Bytes::from(serde_json::to_vec(&what).unwrap_or_default());
        self.sessions
            .store()
            .schedule(&what.timer_id(), now_ms(), payload)
            .await
    }

    /// The work every ending does once, by whichever replica moved the
    /// session to `Ended` (a write that also shortened the record's life):
    /// supplements and handlers hear it, events go out, its timers go.
    pub(crate) async fn finish(&self, s: &Session) {
        let reason = match s.phase {
            Phase::Ended(r) => r,
            _ => EndReason::Error,
        };
        telemetry::metrics().calls_ended.inc();
        events::publish_both(self.sessions.store(), s, DialogState::Terminated, Some(reason)).await;
        self.supplements.end(s).await;
        media::end(&self.sdp, s).await;
        self.cancel_timers(s).await;
    }

    /// An ended session's timers: its setup timer and its supplements'.
    pub(crate) async fn cancel_timers(&self, s: &Session) {
        let store = self.sessions.store();
        let timed = self
            .supplements
            .timed(&s.chain)
            .into_iter()
            .map(|n| supplement_timer(&s.id, &n));
        // The caller's ACK cancelled the setup timer already (and should
        // that have failed, the timer finds the call ended and does
        // nothing).
        let setup = (!s.caller_acked).then(|| no_answer_timer(&s.id));
        let timers = setup.into_iter().chain(timed);
        for t in timers {
            if let Err(e) = store.cancel(&t).await {
                debug!(error = %e, timer = %t, "timer not cancelled");
            }
        }
    }

    /// Ends a session that is still setting up (CANCEL, early BYE, no
    /// answer), from `current` when the caller holds the record: `Ok(None)`
    /// when it had already ended or was answered; an error when the store
    /// could not say (the caller may retry, e.g. a timer stays due).
    pub(crate) async fn end_setup(
        &self,
        id: &str,
        current: Option<(Session, u64)>,
        reason: EndReason,
    ) -> Result<Option<Session>, StateError> {
        let r = self
            .sessions
            .update_from(id, current, |s| {
                if s.phase.is_setting_up() {
                    s.phase = Phase::Ended(reason);
                    Some(())
                } else {
                    None
                }
            })
            .await;
        if let Err(e) = &r {
            warn!(session = id, error = %e, "session not ended");
        }
        Ok(r?.map(|(s, _, ())| s))
    }

    /// Ends an answered call that `still` says may end: the session moves
    /// to `Ended(reason)` and the BYE of each leg is counted in its dialog.
    /// `Ok(None)` when it was not answered (or `still` said no).
    pub(crate) async fn end_answered(
        &self,
        id: &str,
        reason: EndReason,
        still: impl Fn(&Session) -> bool,
    ) -> Result<Option<(Session, [Message; 2])>, StateError> {
        let ended = self
            .sessions
            .update(id, |s| {
                if s.phase != Phase::Confirmed || !still(s) {
                    return None;
                }
                s.phase = Phase::Ended(reason);
                Some(Side::BOTH.map(|side| s.legs[side].dialog.request(Method::Bye)))
            })
            .await?;
        Ok(ended.map(|(s, _, byes)| (s, byes)))
    }

    /// Cancels every branch still ringing, with the CANCEL headers the
    /// supplements choose (Reason).
    pub(crate) async fn cancel_branches(&self, s: &mut Session, except: Option<usize>) {
        let branches: Vec<_> = s
            .branches
            .iter()
            .enumerate()
            .filter(|(i, b)| !b.done && Some(*i) != except)
            .map(|(_, b)| b.clone())
            .collect();
        if branches.is_empty() {
            return;
        }
        // The supplements see the CANCEL as a request on the callee's leg.
        let mut pseudo = s.legs.b.dialog.clone().request(Method::Cancel);
        let base = pseudo.headers().len();
        self.outgoing(s, Side::B, &mut pseudo).await;
        let extra: Vec<(String, String)> = pseudo
            .headers()
            .skip(base)
            .map(|h| (h.name.to_owned(), h.value.to_owned()))
            .collect();
        for b in branches {
            if let Err(e) = self.edges.cancel(&b.tx, extra.clone()).await {
                warn!(error = %e, target = %b.target, "branch not cancelled");
            }
        }
    }

    /// Sends a request on a flow and forgets its outcome.
    pub(crate) async fn send_and_forget(&self, request: Message, flow: Option<Flow>, what: &str) {
        let Some(flow) = flow else {
            warn!(what, "no flow to send on");
            return;
        };
        match self.edges.send_request(request, flow).await {
            Ok(tx) => tx.finish_in_background(),
            Err(e) => warn!(error = %e, what, "request not sent"),
        }
    }

    /// Sends the ACK of a 2xx on a leg's flow; a failure is logged.
    pub(crate) async fn send_ack(&self, ack: Message, flow: Option<Flow>, what: &str) {
        let Some(flow) = flow else {
            warn!(what, "no flow to send on");
            return;
        };
        if let Err(e) = self.edges.send_ack(ack, flow).await {
            warn!(error = %e, what, "ACK not sent");
        }
    }

    /// The final response of a client transaction (`None`: none came);
    /// what follows (2xx retransmissions of an INVITE) is read in the
    /// background.
    pub(crate) async fn final_response(&self, mut client: edge_api::ClientTx) -> Option<Message> {
        let mut fin = None;
        while let Some(event) = client.next().await {
            if event.response.status().unwrap_or(0) >= 200 {
                fin = Some(event.response);
                break;
            }
        }
        client.finish_in_background();
        fin
    }

    /// Writes what supplements changed in their state since `before`, and
    /// only that: a retry on a newer record keeps what others wrote there.
    /// `s` and `version` become the record as written. An error is logged
    /// and returned (a timer may fire again).
    pub(crate) async fn save_states(
        &self,
        s: &mut Session,
        version: &mut u64,
        before: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<(), StateError> {
        let changes = s.state_changes(before);
        if changes.is_empty() {
            return Ok(());
        }
        let written = self
            .sessions
            .update_from(&s.id, Some((s.clone(), *version)), |st| {
                changes.apply(st);
                Some(())
            })
            .await;
        match written {
            Ok(Some((st, v, ()))) => {
                (*s, *version) = (st, v);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                warn!(session = %s.id, error = %e, "supplement state not written");
                Err(e)
            }
        }
    }

    /// Ends a setup for good: the branches still ringing are cancelled,
    /// the caller gets `refusal` (unless its transaction was answered
    /// already), and the ending is told.
    pub(crate) async fn abandon_setup(&self, s: &mut Session, refusal: Option<&Refusal>) {
        self.cancel_branches(s, None).await;
        if let Some(r) = refusal {
            self.refuse_caller(s, r).await;
        }
        self.finish(s).await;
    }

    /// Sends (or sends again) the callee's ACK for the call's 2xx.
    pub(crate) async fn ack_callee(&self, s: &Session) {
        let b = &s.legs.b;
        let mut ack = b.dialog.ack(b.invite_cseq);
        if s.media.late_offer
            && let Some(answer) = &s.media.last_sent.b
        {
            media::set_stored_sdp(&mut ack, answer);
        }
        self.send_ack(ack, b.flow.clone(), "ACK to the callee").await;
    }

    /// Hangs up an answered call sipbus ends itself ([`Core::end_answered`]
    /// gave `s` and `byes`): BYE on both legs, the callee's 2xx ACKed first
    /// when the caller never did (RFC 3261 13.2.2.4), then the ending is
    /// told.
    pub(crate) async fn hang_up_answered(&self, s: &mut Session, byes: [Message; 2], reason: Option<&str>) {
        if !s.caller_acked {
            self.ack_callee(s).await;
        }
        for (side, mut bye) in Side::BOTH.into_iter().zip(byes) {
            if let Some(r) = reason {
                bye.push_header_as_spelled("Reason", r);
            }
            self.outgoing(s, side, &mut bye).await;
            self.send_and_forget(bye, s.legs[side].flow.clone(), "BYE").await;
        }
        self.finish(s).await;
    }
}
