//! A new call: who is calling, where it goes, the offer, the forked
//! callee-leg INVITEs and what the caller hears while they ring. The
//! replica that received the INVITE drives the branches (it holds their
//! responses); everything it decides is written to the store first, so
//! CANCEL, ACK, BYE and the no-answer timer can be handled by any replica.

mod fork;
pub(crate) mod pager;
mod route;
mod timeout;

use std::sync::Arc;

use edge_api::{Flow, ServerTxRef};
use sdp_svc::Offered;
use sip_dialog::Dialog;
use sip_message::{Known, Message, Refusal};
use state_store::now_ms;
use tracing::{info, warn};

use crate::core::{Core, no_answer_timer};
use crate::events::{self, DialogState};
use crate::media::{self, sdp_of};
use crate::session::{B_CALL_ID_PREFIX, CallerInvite, Leg, MediaState, Phase, Session, Side, Sides};
use crate::{random_id, random_tag};

pub(crate) use timeout::no_answer;

/// The call's story: authenticate, prepare, route, offer, start, drive.
pub(crate) async fn invite(core: Arc<Core>, tx: ServerTxRef, flow: Flow, req: Message) {
    // The session id is also sipbus's tag on the caller's leg: the
    // caller's requests in the call name their session.
    let id = random_id();
    let prepared = match authenticate(&core, &req).await {
        Ok(endpoint) => prepare(&core, &tx, &flow, &req, &id, endpoint).await,
        Err(r) => Err(r),
    };
    let mut s = match prepared {
        Ok(s) => s,
        Err(r) => {
            info!(refusal = %r, "call refused");
            core.respond(&tx, r.response_to(&req, Some(&id))).await;
            return;
        }
    };
    let plans = match route::route(&core, &req, &flow).await {
        Ok(p) => p,
        Err(r) => {
            info!(refusal = %r, "call not routed");
            return fail_setup(&core, &mut s, &r).await;
        }
    };
    if let Err(r) = offer_initial(&core, &mut s, &req).await {
        return fail_setup(&core, &mut s, &r).await;
    }
    let version = match start(&core, &mut s).await {
        Ok(v) => v,
        Err(r) => {
            core.respond(&tx, r.response_to(&req, Some(&id))).await;
            core.supplements.end(&s).await;
            return;
        }
    };
    fork::drive(core, s, version, req, plans).await;
}

/// RFC 3261 22.3 for a new call: the caller proves who it is to sipbus.
/// Returns the authenticated user, or "" when calls are not authenticated.
async fn authenticate(core: &Core, req: &Message) -> Result<String, Refusal> {
    if !core.config.authenticate {
        return Ok(String::new());
    }
    let found = core.directory.authenticate(req).await?;
    // The endpoint is the user part: profiles are keyed by it.
    Ok(found
        .map(|aor| registrar_svc::user_of(&aor).to_owned())
        .unwrap_or_default())
}

/// The session as it starts, with both legs' dialogs (the callee's still
/// calling); supplements begin and hear the INVITE.
async fn prepare(
    core: &Core,
    tx: &ServerTxRef,
    flow: &Flow,
    req: &Message,
    id: &str,
    endpoint: String,
) -> Result<Session, Refusal> {
    let caller = Dialog::uas(req, id).map_err(|e| e.refusal())?;
    // The callee's leg shows the caller's From and To (without their tags).
    let callee = Dialog::uac(
        &format!("{B_CALL_ID_PREFIX}{id}"),
        &random_tag(),
        caller.remote_uri(),
        caller.local_uri(),
        1,
    );
    let mut s = Session {
        id: id.to_owned(),
        phase: Phase::Trying,
        caller: from_uri(caller.remote_uri()),
        callee: req.request_uri().unwrap_or("").to_owned(),
        endpoint,
        caller_private: asks_privacy(req),
        legs: Box::new(Sides {
            a: Leg {
                invite_cseq: req.cseq().map(|c| c.seq).unwrap_or(1),
                dialog: caller,
                flow: Some(flow.clone()),
                allows_update: allows_update(req),
            },
            b: Leg {
                dialog: callee,
                flow: None,
                invite_cseq: 1,
                allows_update: false,
            },
        }),
        invite: CallerInvite {
            tx: tx.clone(),
            head: req.response_head(),
        },
        branches: Vec::new(),
        caller_acked: false,
        ack_pending: None,
        media: Box::new(MediaState::new()),
        offer_pending_since_ms: None,
        chain: core.supplements.chain(),
        data: Default::default(),
        started_ms: state_store::now_ms(),
        last_replica: telemetry::replica().to_owned(),
    };
    core.begin(&mut s).await;
    core.incoming_request(&mut s, Side::A, req).await?;
    Ok(s)
}

/// RFC 3323: the caller wants its identity withheld.
fn asks_privacy(m: &Message) -> bool {
    m.known_values(Known::Privacy).any(|v| {
        let v = v.trim();
        ["id", "user", "header", "critical"]
            .iter()
            .any(|p| v.eq_ignore_ascii_case(p))
    })
}

/// The phone takes UPDATE (RFC 3311), by the Allow of its dialog-creating
/// message.
pub(crate) fn allows_update(m: &Message) -> bool {
    m.known_values(Known::Allow)
        .any(|v| v.trim().eq_ignore_ascii_case("UPDATE"))
}

fn from_uri(value: &str) -> String {
    sip_message::typed::NameAddr::parse(value)
        .map(|n| n.uri_text.to_owned())
        .unwrap_or_else(|_| value.to_owned())
}

/// Offer/answer for the caller's INVITE: its offer goes through sdp-svc
/// now; an INVITE without SDP is a late offer.
async fn offer_initial(core: &Core, s: &mut Session, req: &Message) -> Result<(), Refusal> {
    let offer = sdp_of(req).map_err(|e| e.refusal())?;
    let Some(offer) = offer else {
        if !req.body().is_empty() {
            return Err(Refusal::unsupported_media_type("only application/sdp"));
        }
        s.media.late_offer = true;
        return Ok(());
    };
    match media::offer(&core.sdp, s, Side::A, &offer, true).await {
        Ok(Offered::Forward { sdp, handlers }) => {
            s.media.record_offer(Side::A, &offer, &sdp, handlers);
            Ok(())
        }
        Ok(Offered::Reject(r)) => Err(r),
        Err(e) => Err(e.refusal()),
    }
}

/// Stores the new session, arms its no-answer timer, tells the world.
async fn start(core: &Core, s: &mut Session) -> Result<u64, Refusal> {
    let version = match core.sessions.create(s).await {
        Ok(v) => {
            telemetry::metrics().calls_started.inc();
            v
        }
        Err(e) => {
            warn!(error = %e, "session not stored");
            return Err(Refusal::store_unavailable());
        }
    };
    let due = now_ms() + core.config.no_answer_s.saturating_mul(1000);
    if let Err(e) = core
        .sessions
        .store()
        .schedule(&no_answer_timer(&s.id), due, bytes::Bytes::from(s.id.clone()))
        .await
    {
        warn!(error = %e, "no-answer timer not armed");
    }
    events::publish(core.sessions.store(), s, Side::A, DialogState::Trying).await;
    Ok(version)
}

/// Answers the caller with an error and ends a session that was not stored
/// yet (or is still setting up).
async fn fail_setup(core: &Core, s: &mut Session, r: &Refusal) {
    core.refuse_caller(s, r).await;
    core.supplements.end(s).await;
    tracing::debug!(refusal = %r, "setup failed");
}
