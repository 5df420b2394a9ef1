//! Sending NOTIFYs: one in flight per subscription (RFC 6665 4.2.2), the
//! newest state when it goes, changes closer than the package's minimum
//! interval coalesced, and what the answer means (4.2.2: a failure without
//! Retry-After ends the subscription; with it, the NOTIFY is retried
//! then). Whoever sends holds the subscription's NOTIFYs for a lease
//! written in the store; a change that finds a NOTIFY in flight leaves
//! word (`dirty`, `ending`) for the sender, and a timer at the lease's end
//! lets another replica take over when the sender died.

use std::sync::Arc;

use bytes::Bytes;
use edge_api::Flow;
use sip_message::{Known, Message, Method};
use state_store::{StoreError, now_ms};
use tracing::{debug, info, warn};

use crate::core::Core;
use crate::handlers::{StateCx, Termination};
use crate::subscription::{self, Sending, Status, Subscription};
use crate::timers;

/// What a subscription is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Its resource's state after a change: not sent when the body would
    /// repeat the last one (a change handled twice, after a takeover).
    State,
    /// Its resource's current state, sent whatever the last one was (the
    /// first NOTIFY, a refresh).
    Full,
    /// Its last NOTIFY, `terminated` for this reason.
    End(Termination),
}

/// NOTIFYs one call of [`run`] sends at most (changes keep coming).
const MAX_ROUNDS: usize = 8;
const CAS_ATTEMPTS: usize = 8;

/// A NOTIFY this replica may send.
struct Claimed {
    notify: Message,
    flow: Flow,
    /// The subscription ends with it.
    last: Option<Termination>,
    sub: Subscription,
}

/// How a NOTIFY went.
enum Answer {
    Final {
        status: u16,
        retry_after_s: Option<u32>,
    },
    /// No answer at all (the edge could not send it).
    Lost,
}

/// Sends what subscription `id` is due, then whatever came meanwhile.
pub async fn run(core: &Arc<Core>, id: &str, mut next: Next) {
    for _ in 0..MAX_ROUNDS {
        let Some(claimed) = claim(core, id, next).await else {
            return;
        };
        let answer = send(core, &claimed).await;
        match finish(core, &claimed, answer).await {
            Some(n) => next = n,
            None => return,
        }
    }
}

async fn claim(core: &Arc<Core>, id: &str, next: Next) -> Option<Claimed> {
    for attempt in 0..CAS_ATTEMPTS {
        if attempt > 0 {
            debug!(subscription = id, attempt, "subscription changed meanwhile; again");
        }
        let (mut sub, version) = match subscription::load(&core.store, id).await {
            Ok(Some(found)) => found,
            Ok(None) => return None,
            Err(e) => {
                warn!(error = %e, subscription = id, "subscription not read; NOTIFY not sent");
                return None;
            }
        };
        let now = now_ms();
        if let Sending::InFlight { until_ms, .. } = sub.sending
            && until_ms > now
        {
            // Another NOTIFY is out: its sender sends this after it.
            match next {
                Next::End(r) => sub.ending = Some(sub.ending.unwrap_or(r)),
                Next::State => sub.dirty = true,
                Next::Full => {
                    sub.dirty = true;
                    sub.full = true;
                }
            }
            match subscription::save(&core.store, &sub, Some(version)).await {
                Ok(_) => {
                    debug!(subscription = id, until_ms, "NOTIFY in flight: this one waits for it");
                    timers::pace(core, id, until_ms).await;
                    return None;
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => {
                    warn!(error = %e, "subscription not written");
                    return None;
                }
            }
        }
        let end = match next {
            Next::End(r) => Some(r),
            Next::State | Next::Full => sub.ending,
        };
        let forced = next == Next::Full || sub.full || end.is_some();
        let min = core.config.package(&sub.package).min_interval_ms;
        if end.is_none() && sub.last_sent_ms > 0 && sub.last_sent_ms + min > now {
            // Too soon after the last one: coalesced into one NOTIFY then.
            sub.dirty = true;
            match subscription::save(&core.store, &sub, Some(version)).await {
                Ok(_) => {
                    debug!(subscription = id, "NOTIFY coalesced: too soon after the last");
                    timers::pace(core, id, sub.last_sent_ms + min).await;
                    return None;
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(_) => return None,
            }
        }
        let body = match body(core, &sub, end).await {
            Ok(b) => b,
            Err(()) => {
                debug!(subscription = id, "no state to send; waiting for the next change");
                return None;
            }
        };
        let digest = body.as_deref().map_or(0, crate::fnv1a);
        if !forced && sub.version > 0 && digest == sub.last_body {
            // The subscriber has this state already.
            sub.dirty = false;
            match subscription::save(&core.store, &sub, Some(version)).await {
                Ok(_) => {
                    debug!(subscription = id, "NOTIFY skipped: same state as the last");
                    return None;
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(_) => return None,
            }
        }
        let notify = build(core, &mut sub, end, body, now);
        sub.last_body = digest;
        sub.full = false;
        // The sender holds the subscription's NOTIFYs as long as a replica
        // holds a change before another takes it over: both say when a
        // silent replica counts as dead.
        sub.sending = Sending::InFlight {
            until_ms: now + core.config.reclaim_after_ms,
            last: end.is_some(),
        };
        sub.dirty = false;
        sub.ending = end;
        sub.last_sent_ms = now;
        sub.version = sub.version.saturating_add(1);
        match subscription::save(&core.store, &sub, Some(version)).await {
            Ok(_) => {
                debug!(
                    subscription = id,
                    version = sub.version,
                    last = end.is_some(),
                    "NOTIFY claimed"
                );
                return Some(Claimed {
                    notify,
                    flow: sub.flow.clone(),
                    last: end,
                    sub,
                });
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => {
                warn!(error = %e, "subscription not written; NOTIFY not sent");
                return None;
            }
        }
    }
    None
}

/// The NOTIFY's body: the state for an active subscription and for the
/// last NOTIFY of an unsubscribe or fetch; nothing while pending or when
/// it ends otherwise. `Err` when the handler has no state to give now.
async fn body(core: &Core, sub: &Subscription, end: Option<Termination>) -> Result<Option<Bytes>, ()> {
    let wants_state = sub.status == Status::Active && matches!(end, None | Some(Termination::Unsubscribed));
    if !wants_state {
        return Ok(None);
    }
    let Some(entry) = core.packages.began_with(&sub.package, &sub.module) else {
        return Ok(None);
    };
    let cx = StateCx {
        package: &sub.package,
        resource: &sub.resource,
        content_type: &sub.content_type,
        subscription: &sub.id,
        version: sub.version,
        sources: &core.sources,
    };
    match entry.handler.state(cx).await {
        Some(b) => Ok(Some(b)),
        None if end.is_some() => Ok(None),
        None => Err(()),
    }
}

fn build(core: &Core, sub: &mut Subscription, end: Option<Termination>, body: Option<Bytes>, now: u64) -> Message {
    let mut m = sub.dialog.request(Method::Notify);
    let event = match &sub.event_id {
        Some(id) => format!("{};id={id}", sub.package),
        None => sub.package.clone(),
    };
    m.push_header(Known::Event, &event);
    let left = sub.expires_at_ms.saturating_sub(now).div_ceil(1000);
    let state = match (end, sub.status) {
        (Some(r), _) => match r.reason() {
            Some(reason) => format!("terminated;reason={reason}"),
            None => "terminated".to_owned(),
        },
        (None, Status::Active) => format!("active;expires={left}"),
        (None, Status::Pending) => format!("pending;expires={left}"),
    };
    m.push_header(Known::SubscriptionState, &state);
    let contact = if core.config.contact_host.is_empty() {
        sub.contact.clone()
    } else {
        Flow::contact(Some(&sub.flow), &sub.id, &core.config.contact_host)
    };
    m.push_header(Known::Contact, &contact);
    if let Some(b) = body {
        m.push_header(Known::ContentType, &sub.content_type);
        m.set_body(b);
    }
    m
}

async fn send(core: &Core, c: &Claimed) -> Answer {
    let mut tx = match core.edges.send_request(c.notify.clone(), c.flow.clone()).await {
        Ok(tx) => tx,
        Err(e) => {
            warn!(error = %e, subscription = %c.sub.id, "NOTIFY not sent");
            return Answer::Lost;
        }
    };
    while let Some(ev) = tx.next().await {
        let status = ev.response.status().unwrap_or(0);
        if status >= 200 {
            let retry_after_s = ev.response.delta_seconds(Known::RetryAfter).ok().flatten();
            return Answer::Final { status, retry_after_s };
        }
    }
    Answer::Lost
}

/// Acts on the answer; `Some` when more is due at once.
async fn finish(core: &Arc<Core>, c: &Claimed, answer: Answer) -> Option<Next> {
    let id = c.sub.id.as_str();
    match answer {
        Answer::Final { status: 200..=299, .. } => {
            if let Some(r) = c.last {
                remove(core, &c.sub, r).await;
                return None;
            }
            release(core, id, None).await
        }
        Answer::Final {
            status,
            retry_after_s: Some(s),
        } => {
            debug!(subscription = id, status, retry_after_s = s, "NOTIFY to be retried");
            release(core, id, Some(now_ms() + u64::from(s) * 1000)).await
        }
        Answer::Final { status, .. } => {
            info!(subscription = id, status, "NOTIFY refused: subscription ended");
            remove(core, &c.sub, Termination::Deactivated).await;
            None
        }
        Answer::Lost => {
            info!(subscription = id, "NOTIFY unanswered: subscription ended");
            remove(core, &c.sub, Termination::Deactivated).await;
            None
        }
    }
}

/// Ends the sender's hold; what came meanwhile is due now, or at `retry_at`
/// (a Retry-After) by timer.
async fn release(core: &Arc<Core>, id: &str, retry_at: Option<u64>) -> Option<Next> {
    for _ in 0..CAS_ATTEMPTS {
        let (mut sub, version) = subscription::load(&core.store, id).await.ok()??;
        sub.sending = Sending::Idle;
        if retry_at.is_some() {
            // The refused NOTIFY's state never arrived: it goes again even
            // though nothing changed.
            sub.dirty = true;
            sub.full = true;
        }
        let next = match (retry_at, sub.ending, sub.dirty) {
            (Some(_), _, _) => None,
            (None, Some(r), _) => Some(Next::End(r)),
            (None, None, true) if sub.full => Some(Next::Full),
            (None, None, true) => Some(Next::State),
            (None, None, false) => None,
        };
        match subscription::save(&core.store, &sub, Some(version)).await {
            Ok(_) => {
                if let Some(at) = retry_at {
                    timers::pace(core, id, at).await;
                }
                return next;
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Forgets a subscription: record, index entry, timers; tells its handler.
pub async fn remove(core: &Arc<Core>, sub: &Subscription, why: Termination) {
    if let Err(e) = core
        .store
        .delete(&subscription::key(&sub.id), state_store::Expect::Any)
        .await
    {
        warn!(error = %e, "subscription not removed");
    }
    let ttl = std::time::Duration::from_secs(u64::from(core.config.package(&sub.package).max_expires_s));
    if let Err(e) = subscription::index(&core.store, &sub.package, &sub.resource, &sub.id, false, ttl).await {
        warn!(error = %e, "subscription left in its resource's index");
    }
    timers::disarm(core, &sub.id).await;
    info!(subscription = %sub.id, package = %sub.package, resource = %sub.resource, why = ?why, "subscription ended");
    if let Some(entry) = core.packages.began_with(&sub.package, &sub.module) {
        entry.handler.terminated(sub.view(), why).await;
    }
}
