//! Requests inside a call, on any replica: ACK and CANCEL notices, BYE,
//! offers (re-INVITE, UPDATE) with glare, everything else relayed to the
//! other leg with its final response relayed back; and what supplements
//! ask of an answered call (a refresh, a hang-up).

mod ack;
mod bye;
mod cancel;
mod relay;
mod sipbus;

use std::time::Duration;

use edge_api::ServerTxRef;
use sip_message::{Message, Method, Refusal};
use tokio::time::Instant;
use tracing::warn;

use crate::core::Core;
use crate::session::{Phase, Session, Side};

pub(crate) use ack::ack;
pub(crate) use cancel::cancelled;
pub(crate) use sipbus::{hang_up, refresh};

/// Any request with a To tag.
pub(crate) async fn request(core: &Core, tx: ServerTxRef, req: Message) {
    let (Ok(call_id), Some(to_tag)) = (req.call_id(), req.to_tag()) else {
        return core
            .refuse(&tx, &req, &Refusal::bad_request("dialog identifiers"))
            .await;
    };
    let found = match core.sessions.find(call_id, to_tag).await {
        Ok(f) => f,
        Err(e) => {
            warn!(error = %e, "session not loaded");
            return core.refuse(&tx, &req, &Refusal::store_unavailable()).await;
        }
    };
    let Some((s, version)) = found else {
        return core.refuse(&tx, &req, &Refusal::no_dialog()).await;
    };
    let Some(side) = s.side_of(&req) else {
        return core.refuse(&tx, &req, &Refusal::no_dialog()).await;
    };
    // RFC 3261 12.2.2: lower than the last one is an error (an equal one is
    // a retransmission, which the edge's transaction absorbs).
    if let Err(e) = s.legs[side].dialog.clone().receive(&req) {
        return core.refuse(&tx, &req, &e.refusal()).await;
    }
    let (s, version) = after_callers_ack(core, side, (s, version)).await;
    // Boxed: a task is as large as its largest branch.
    match req.method() {
        Some(Method::Bye) => Box::pin(bye::bye(core, &tx, (s, version), side, req)).await,
        _ if s.phase.is_ended() => core.refuse(&tx, &req, &Refusal::no_dialog()).await,
        // Early-dialog requests other than BYE are not relayed yet.
        _ if s.phase != Phase::Confirmed => core.refuse(&tx, &req, &Refusal::glare()).await,
        _ => Box::pin(relay::relay(core, &tx, (s, version), side, req)).await,
    }
}

/// How long a request from the caller waits for the caller's ACK, which
/// it sent first but another replica may still be relaying: the callee
/// must not get the request before the ACK of its 2xx.
const ACK_WAIT: Duration = Duration::from_secs(1);
const ACK_POLL: Duration = Duration::from_millis(20);

/// The session once the caller's ACK was relayed, or as it is after
/// [`ACK_WAIT`] (then the handler ACKs the callee itself); unchanged for
/// the callee's requests and outside an answered call.
async fn after_callers_ack(core: &Core, side: Side, current: (Session, u64)) -> (Session, u64) {
    if side != Side::A || current.0.phase != Phase::Confirmed || current.0.caller_acked {
        return current;
    }
    let deadline = Instant::now() + ACK_WAIT;
    let mut current = current;
    while !current.0.caller_acked && Instant::now() < deadline {
        tokio::time::sleep(ACK_POLL).await;
        match core.sessions.load(&current.0.id).await {
            Ok(Some(newer)) => current = newer,
            // Gone or unreadable: the handler's own write finds out.
            Ok(None) | Err(_) => break,
        }
    }
    current
}
