//! The caller cancelled its INVITE; the edge already answered 200 and 487.
//! A CANCEL that finds no session yet is caught later: the call's first
//! response to the caller is refused.

use edge_api::ServerTxRef;
use sip_message::Message;
use tracing::info;

use crate::core::Core;
use crate::session::{EndReason, Side};

pub(crate) async fn cancelled(core: &Core, tx: ServerTxRef, cancel: Message) {
    let (Ok(call_id), Some(from_tag)) = (cancel.call_id(), cancel.from_tag()) else {
        return;
    };
    let Ok(Some((s, version))) = core.sessions.find_setup(call_id, from_tag).await else {
        return;
    };
    if s.invite.tx != tx {
        return;
    }
    let id = s.id.clone();
    let Ok(Some(mut s)) = core.end_setup(&id, Some((s, version)), EndReason::Cancelled).await else {
        return;
    };
    let _ = core.incoming_request(&mut s, Side::A, &cancel).await;
    info!(session = %s.id, "call cancelled by the caller");
    core.abandon_setup(&mut s, None).await;
}
