//! session-svc behind the contract: every request of a call arrives as a
//! `RequestHandler.Handle` on any replica; the work is spawned and answered
//! through the edge API, so a long call setup never holds the bus.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bus::Edges;
use edge_api::{Flow, HandlerError, IncomingRequest, Reply, RequestHandler, ServerTxRef};
use registrar_svc::LocationClient;
use sip_message::{Message, Method};
use state_store::now_ms;
use tracing::{Instrument, debug, info_span, warn};

use crate::config::SessionConfig;
use crate::events::{self, DialogState};
use crate::links::Negotiators;
use crate::state::{Phase, Session, Sessions, Side, StateError};
use crate::supplement::Supplements;
use crate::{call, dialog, media};

/// The timer queue of setup timers (`noanswer:<session>`): no answer while
/// ringing, then no ACK after the answer.
pub const NO_ANSWER_QUEUE: &str = "noanswer";

/// Who is ours: the registrar's domains and users, and how callers prove
/// who they are.
pub struct Directory {
    pub domains: Vec<String>,
    /// (user, domain) → secret.
    pub users: HashMap<(String, String), sip_auth::Secret>,
    /// The digest challenger of calls (realm and nonce key shared with
    /// every replica); `None`: calls are not authenticated.
    pub auth: Option<sip_auth::Authenticator>,
}

impl Directory {
    pub fn knows(&self, user: &str, domain: &str) -> bool {
        self.users.contains_key(&(user.to_owned(), domain.to_owned()))
    }

    pub fn serves(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }
}

/// Everything a session-svc replica works with.
pub struct Core {
    pub(crate) config: SessionConfig,
    pub(crate) sessions: Sessions,
    pub(crate) edges: Edges,
    pub(crate) locations: LocationClient,
    pub(crate) sdp: Negotiators,
    pub(crate) supplements: Supplements,
    pub(crate) directory: Directory,
}

impl Core {
    pub fn new(
        config: SessionConfig,
        store: state_store::Store,
        edges: Edges,
        locations: LocationClient,
        sdp: Negotiators,
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
            supplements,
            directory,
        }
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

    /// Answers the caller's INVITE from a replica that may not have seen it:
    /// the request is kept with the session.
    pub(crate) async fn respond_invite(&self, s: &mut Session, code: u16, reason: &str) {
        let Some(mut resp) = s.a_response(code, reason) else {
            warn!(session = %s.id, "stored INVITE does not parse");
            return;
        };
        self.supplements.outgoing(s, Side::A, &mut resp).await;
        self.respond(&s.a_tx, resp).await;
    }

    /// The work every ending does once, by whichever replica moved the
    /// session to `Ended` (a write that also shortened the record's life):
    /// supplements and handlers hear it, events go out, its timer goes.
    pub(crate) async fn finish(&self, s: &Session, reason: &str) {
        events::publish_both(self.sessions.store(), s, DialogState::Terminated, Some(reason)).await;
        self.supplements.end(s).await;
        media::end(&self.sdp, s).await;
        let store = self.sessions.store();
        if let Err(e) = store.cancel(&no_answer_timer(&s.id)).await {
            debug!(error = %e, "no-answer timer not cancelled");
        }
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
        let mut pseudo = crate::compose::in_dialog(&s.b, Method::Cancel, s.b_invite_cseq, "");
        let base = pseudo.headers().len();
        self.supplements.outgoing(s, Side::B, &mut pseudo).await;
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

    /// Fires due no-answer timers; each goes to exactly one replica, and
    /// comes back to another if this one dies before completing it.
    pub async fn run_timers(self: Arc<Self>) {
        let every = Duration::from_millis(self.config.timer_poll_ms.max(10));
        loop {
            tokio::time::sleep(every).await;
            let claimed = match self
                .sessions
                .store()
                .claim_due(NO_ANSWER_QUEUE, now_ms(), Duration::from_secs(10), 64)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "no-answer timers not claimed");
                    continue;
                }
            };
            for timer in claimed {
                let handled = match std::str::from_utf8(&timer.payload) {
                    Ok(id) => call::no_answer(&self, id).await,
                    Err(_) => true,
                };
                // Not handled (the store failed): the lease runs out and the
                // timer fires again, here or on another replica.
                if handled && let Err(e) = self.sessions.store().complete(&timer).await {
                    warn!(error = %e, "no-answer timer not completed");
                }
            }
        }
    }
}

pub fn no_answer_timer(id: &str) -> String {
    format!("{NO_ANSWER_QUEUE}:{id}")
}

/// The `RequestHandler` session-svc serves (in process or over gRPC).
#[derive(Clone)]
pub struct SessionService {
    core: Arc<Core>,
}

impl SessionService {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// Methods the edge routes here.
    pub fn methods() -> Vec<Method> {
        vec![
            Method::Invite,
            Method::Bye,
            Method::Update,
            Method::Info,
            Method::Message,
            Method::Refer,
            Method::Notify,
        ]
    }
}

#[async_trait]
impl RequestHandler for SessionService {
    async fn handle(&self, req: IncomingRequest) -> Result<Reply, HandlerError> {
        let IncomingRequest {
            tx,
            request,
            flow,
            trace,
        } = req;
        let method = request
            .method()
            .cloned()
            .ok_or_else(|| HandlerError::Invalid("not a request".into()))?;
        let call_id = request.call_id().unwrap_or("").to_owned();
        let span = info_span!("session", %method, %call_id, trace_id = %trace.trace_id(), server_tx = %tx.id);
        let core = self.core.clone();
        match method {
            Method::Invite if request.to_tag().is_none() => {
                tokio::spawn(call::invite(core, tx, flow, request).instrument(span));
            }
            _ if request.to_tag().is_none() => {
                let resp = request.make_response(
                    481,
                    "Call/Transaction Does Not Exist (no dialog)",
                    Some(&crate::random_tag()),
                );
                return Ok(Reply::Now(resp));
            }
            _ => {
                tokio::spawn(async move { dialog::request(&core, tx, flow, request).await }.instrument(span));
            }
        }
        Ok(Reply::Later)
    }

    async fn ack(&self, ack: Message, _flow: Flow) -> Result<(), HandlerError> {
        let span = info_span!("session", method = "ACK", call_id = ack.call_id().unwrap_or(""));
        let core = self.core.clone();
        tokio::spawn(async move { dialog::ack(&core, ack).await }.instrument(span));
        Ok(())
    }

    async fn cancelled(&self, tx: ServerTxRef, cancel: Message) -> Result<(), HandlerError> {
        let span = info_span!("session", method = "CANCEL", call_id = cancel.call_id().unwrap_or(""));
        let core = self.core.clone();
        tokio::spawn(async move { dialog::cancelled(&core, tx, cancel).await }.instrument(span));
        Ok(())
    }
}

/// Ends a session that is still setting up (CANCEL, early BYE, no answer):
/// `Ok(None)` when it had already ended or was answered; an error when the
/// store could not say (the caller may retry, e.g. a timer stays due).
pub(crate) async fn end_setup(core: &Core, id: &str) -> Result<Option<Session>, StateError> {
    let r = core
        .sessions
        .update(id, |s| {
            if matches!(s.phase, Phase::Trying | Phase::Early) {
                s.phase = Phase::Ended;
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
