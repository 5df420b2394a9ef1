//! What `sipbus ctl` shows and does about calls: the session records in
//! the store, and a hang-up queued for whichever replica's timer loop
//! claims it (BYE on both legs).

use bytes::Bytes;
use serde::Serialize;
use state_store::{Store, StoreError, now_ms};

use crate::core::{ACTION_QUEUE, Deferred};
use crate::session::{Phase, Session};

/// One call, as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    pub id: String,
    pub state: &'static str,
    pub caller: String,
    pub callee: String,
    /// Call-ID and remote target of each leg.
    pub a_call_id: String,
    pub a_target: String,
    pub b_call_id: String,
    pub b_target: String,
    pub started_ms: u64,
    pub duration_s: u64,
    pub last_replica: String,
}

fn state(phase: Phase) -> &'static str {
    match phase {
        Phase::Trying => "trying",
        Phase::Early => "early",
        Phase::Confirmed => "confirmed",
        Phase::Ended(_) => "ended",
    }
}

/// Calls not ended, up to `max`; `true` when there were more records.
pub async fn calls(store: &Store, max: usize) -> Result<(Vec<Call>, bool), StoreError> {
    let scanned = store.scan("sess:", max).await?;
    let now = now_ms();
    let calls = scanned
        .records
        .iter()
        // A record this version cannot read is skipped, not fatal to a listing.
        .filter_map(|(_, v)| serde_json::from_slice::<Session>(v).ok())
        .filter(|s| !s.phase.is_ended())
        .map(|s| Call {
            state: state(s.phase),
            a_call_id: s.legs.a.dialog.call_id().to_owned(),
            a_target: s.legs.a.dialog.remote_target().to_owned(),
            b_call_id: s.legs.b.dialog.call_id().to_owned(),
            b_target: s.legs.b.dialog.remote_target().to_owned(),
            duration_s: now.saturating_sub(s.started_ms) / 1000,
            started_ms: s.started_ms,
            id: s.id,
            caller: s.caller,
            callee: s.callee,
            last_replica: s.last_replica,
        })
        .collect();
    Ok((calls, scanned.truncated))
}

/// Queues a hang-up of call `id` (BYE on both legs, Reason naming the
/// operator); `false` when there is no such call in progress.
pub async fn hang_up(store: &Store, id: &str) -> Result<bool, StoreError> {
    let Some(v) = store.get(&format!("sess:{id}")).await? else {
        return Ok(false);
    };
    match serde_json::from_slice::<Session>(&v.value) {
        Ok(s) if !s.phase.is_ended() => {}
        _ => return Ok(false),
    }
    let what = Deferred::HangUp {
        session: id.to_owned(),
        reason: "hung up by the operator".to_owned(),
    };
    let payload = Bytes::from(serde_json::to_vec(&what).unwrap_or_default());
    store
        .schedule(&format!("{ACTION_QUEUE}:{id}:hang-up"), now_ms(), payload)
        .await?;
    Ok(true)
}
