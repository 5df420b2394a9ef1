//! SUBSCRIBE (RFC 6665 4.2.1): a new subscription outside a dialog, and
//! refreshes and unsubscribes inside one. The answer goes out before the
//! first NOTIFY; every decision is in the store before either.

use std::sync::Arc;
use std::time::Duration;

use edge_api::{Flow, ServerTxRef};
use sip_dialog::Dialog;
use sip_message::{Known, Message, Refusal};
use state_store::{StoreError, now_ms};
use tracing::{info, warn};

use crate::config::{Authorization, PackageSettings};
use crate::core::Core;
use crate::handlers::{Decision, SubView, Termination};
use crate::notify::{self, Next};
use crate::subscription::{self, Sending, Status, Subscription};
use crate::timers;

/// What the Expires header asks for, bounded by the package.
enum Asked {
    /// Expires: 0: a fetch (new) or an unsubscribe (refresh).
    Zero,
    Seconds(u32),
}

fn expires(req: &Message, s: &PackageSettings) -> Result<Asked, Refusal> {
    match req.expires().map_err(|_| Refusal::bad_request("Expires"))? {
        None => Ok(Asked::Seconds(s.default_expires_s)),
        Some(0) => Ok(Asked::Zero),
        Some(e) if e < s.min_expires_s => Err(Refusal::interval_too_brief(s.min_expires_s)),
        Some(e) => Ok(Asked::Seconds(e.min(s.max_expires_s))),
    }
}

/// The package and Event id, or 489 with the packages there are.
fn event(core: &Core, req: &Message) -> Result<(String, Option<String>), Refusal> {
    let refuse = || Refusal::bad_event(&core.packages.names());
    let e = req.event().map_err(|_| refuse())?.ok_or_else(refuse)?;
    let package = e.package.to_ascii_lowercase();
    // A new subscription needs a live handler.
    if core.packages.get_new(&package).is_none() {
        return Err(refuse());
    }
    Ok((package, e.id().map(str::to_owned)))
}

/// The first of the handler's types the request accepts; the handler's
/// first type without Accept; 406 when none fits.
fn content_type(req: &Message, types: &[String]) -> Result<String, Refusal> {
    let accept = req.accept().map_err(|_| Refusal::bad_request("Accept"))?;
    if accept.is_empty() {
        return types.first().cloned().ok_or_else(|| Refusal::not_acceptable(types));
    }
    types
        .iter()
        .find(|t| {
            let (kind, sub) = t.split_once('/').unwrap_or((t, ""));
            accept.iter().any(|a| {
                (a.kind == "*" || a.kind.eq_ignore_ascii_case(kind))
                    && (a.subtype == "*" || a.subtype.eq_ignore_ascii_case(sub))
            })
        })
        .cloned()
        .ok_or_else(|| Refusal::not_acceptable(types))
}

fn domain_of(aor: &str) -> &str {
    aor.rsplit_once('@').map_or("", |(_, d)| d)
}

/// The package's authorization policy for `watcher` (authenticated, or
/// `None` when SUBSCRIBE is not authenticated).
fn allowed(core: &Core, policy: Authorization, watcher: Option<&str>, resource: &str) -> bool {
    match (policy, watcher) {
        (Authorization::Open, _) => true,
        // Without authentication nobody can be told apart.
        (_, None) => true,
        (Authorization::Domain, Some(w)) => core.directory.serves(domain_of(w)),
        (Authorization::Owner, Some(w)) => w == resource,
    }
}

/// A SUBSCRIBE outside a dialog.
pub(crate) async fn subscribe(core: Arc<Core>, tx: ServerTxRef, flow: Flow, req: Message) {
    let id = crate::random_id();
    let created = create(&core, &flow, &req, &id).await;
    let (sub, fetch) = match created {
        Ok(found) => found,
        Err(r) => {
            info!(refusal = %r, "SUBSCRIBE refused");
            core.respond(&tx, r.response_to(&req, Some(&id))).await;
            return;
        }
    };
    let mut ok = req.make_response(200, "OK", Some(&id));
    let left = if fetch {
        0
    } else {
        sub.expires_at_ms.saturating_sub(now_ms()).div_ceil(1000)
    };
    ok.push_header(Known::Expires, &left.to_string());
    ok.push_header(Known::Contact, &sub.contact);
    core.respond(&tx, ok).await;
    info!(subscription = %id, package = %sub.package, resource = %sub.resource, watcher = %sub.watcher, fetch, "subscribed");
    if let Some(entry) = core.packages.began_with(&sub.package, &sub.module) {
        entry.handler.established(sub.view()).await;
    }
    let next = if fetch {
        Next::End(Termination::Unsubscribed)
    } else {
        Next::Full
    };
    notify::run(&core, &id, next).await;
}

async fn create(core: &Core, flow: &Flow, req: &Message, id: &str) -> Result<(Subscription, bool), Refusal> {
    let (package, event_id) = event(core, req)?;
    let watcher = core.directory.authenticate(req).await?;
    let resource = core.directory.aor_of(req.request_uri().unwrap_or(""), Some(flow))?;
    let entry = core
        .packages
        .get_new(&package)
        .ok_or_else(|| Refusal::bad_event::<&str>(&[]))?;
    let content_type = content_type(req, &entry.types)?;
    let settings = core.config.package(&package);
    let asked = expires(req, &settings)?;
    let dialog = Dialog::uas(req, id).map_err(|e| e.refusal())?;
    let watcher_uri = watcher
        .clone()
        .unwrap_or_else(|| sip_dialog::without_tag(dialog.remote_uri()));
    let view = SubView {
        id,
        package: &package,
        resource: &resource,
        watcher: &watcher_uri,
        content_type: &content_type,
    };
    let allowed = allowed(core, settings.authorization, watcher.as_deref(), &resource);
    let status = match entry.handler.subscribe(view, req, allowed).await {
        Decision::Active => Status::Active,
        Decision::Pending => Status::Pending,
        Decision::Reject(r) => return Err(r),
    };
    let now = now_ms();
    let (fetch, expires_at_ms) = match asked {
        Asked::Zero => (true, now),
        Asked::Seconds(s) => (false, now + u64::from(s) * 1000),
    };
    let mut dialog = dialog;
    dialog.confirm();
    let sub = Subscription {
        id: id.to_owned(),
        package: package.clone(),
        event_id,
        contact: Flow::contact(Some(flow), id, &core.config.contact_host),
        resource: resource.clone(),
        watcher: watcher_uri,
        content_type,
        dialog,
        flow: flow.clone(),
        status,
        expires_at_ms,
        version: 0,
        sending: Sending::Idle,
        dirty: false,
        ending: None,
        last_sent_ms: 0,
        full: false,
        last_body: 0,
        module: entry.module.clone(),
    };
    let unavailable = |e: StoreError| {
        warn!(error = %e, "subscription not stored");
        Refusal::store_unavailable()
    };
    subscription::save(&core.store, &sub, None).await.map_err(unavailable)?;
    if !fetch {
        let ttl = Duration::from_secs(u64::from(settings.max_expires_s));
        subscription::index(&core.store, &package, &resource, id, true, ttl)
            .await
            .map_err(unavailable)?;
        timers::arm_expiry(core, id, expires_at_ms).await;
    }
    Ok((sub, fetch))
}

/// A SUBSCRIBE inside a subscription's dialog: refresh or unsubscribe.
pub(crate) async fn refresh(core: Arc<Core>, tx: ServerTxRef, flow: Flow, req: Message) {
    let tag = req.to_tag().unwrap_or("").to_owned();
    match update(&core, &flow, &req, &tag).await {
        Ok((sub, unsubscribe)) => {
            let mut ok = req.make_response(200, "OK", None);
            let left = sub.expires_at_ms.saturating_sub(now_ms()).div_ceil(1000);
            ok.push_header(Known::Expires, &if unsubscribe { 0 } else { left }.to_string());
            ok.push_header(Known::Contact, &sub.contact);
            core.respond(&tx, ok).await;
            let next = if unsubscribe {
                Next::End(Termination::Unsubscribed)
            } else {
                if let Some(entry) = core.packages.began_with(&sub.package, &sub.module) {
                    entry.handler.refreshed(sub.view()).await;
                }
                Next::Full
            };
            notify::run(&core, &tag, next).await;
        }
        Err(r) => {
            info!(refusal = %r, "SUBSCRIBE refresh refused");
            core.respond(&tx, r.response_to(&req, None)).await;
        }
    }
}

async fn update(core: &Core, flow: &Flow, req: &Message, id: &str) -> Result<(Subscription, bool), Refusal> {
    for _ in 0..8 {
        let (mut sub, version) = match subscription::load(&core.store, id).await {
            Ok(Some(found)) => found,
            Ok(None) => return Err(Refusal::no_dialog()),
            Err(_) => return Err(Refusal::store_unavailable()),
        };
        if !sub.dialog.matches(req) || sub.ending.is_some() {
            return Err(Refusal::no_dialog());
        }
        let (package, _) = event(core, req)?;
        if package != sub.package {
            return Err(Refusal::bad_event(&[sub.package.as_str()]));
        }
        sub.dialog.receive(req).map_err(|e| e.refusal())?;
        let now = now_ms();
        let unsubscribe = match expires(req, &core.config.package(&sub.package))? {
            Asked::Zero => {
                sub.expires_at_ms = now;
                true
            }
            Asked::Seconds(s) => {
                sub.expires_at_ms = now + u64::from(s) * 1000;
                false
            }
        };
        // A refresh over a new connection: NOTIFYs follow it.
        sub.flow = flow.clone();
        match subscription::save(&core.store, &sub, Some(version)).await {
            Ok(_) => {
                if !unsubscribe {
                    timers::arm_expiry(core, id, sub.expires_at_ms).await;
                    let ttl = Duration::from_secs(u64::from(core.config.package(&sub.package).max_expires_s));
                    if let Err(e) = subscription::index(&core.store, &sub.package, &sub.resource, id, true, ttl).await {
                        warn!(error = %e, "subscription index not renewed");
                    }
                }
                return Ok((sub, unsubscribe));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(_) => return Err(Refusal::store_unavailable()),
        }
    }
    Err(Refusal::service_unavailable("subscription changed concurrently"))
}
