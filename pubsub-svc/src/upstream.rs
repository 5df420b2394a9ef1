//! The subscriber role: sipbus subscribes to external notifiers
//! (`[[pubsub.upstream]]`), refreshes before expiry, subscribes again after
//! `terminated` or 481, answers their challenges with configured
//! credentials, and hands each NOTIFY's state to the package's handler,
//! then fans the resource's new state out to local watchers. Each
//! outgoing subscription is one store record driven by one store timer
//! (`psup:<key>`), so exactly one replica drives it and any replica takes
//! its NOTIFYs: they reach pubsub-svc by the `sub-` user of sipbus's
//! Contact ([`CONTACT_PREFIX`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_api::{Flow, ServerTxRef};
use serde::{Deserialize, Serialize};
use sip_dialog::Dialog;
use sip_message::typed::SubState;
use sip_message::{Known, Message, Method, Refusal};
use state_store::{Expect, now_ms};
use tracing::{debug, info, warn};

use crate::changes;
use crate::config::Upstream;
use crate::core::Core;
use crate::handlers::NotifiedCx;

/// The user part of sipbus's Contact in outgoing subscriptions: the edge
/// routes NOTIFYs to such a URI to pubsub-svc.
pub const CONTACT_PREFIX: &str = "sub-";
const QUEUE: &str = "psup";

/// What the store keeps of one outgoing subscription.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Record {
    /// `None` until a 2xx established it (or after it ended).
    dialog: Option<Dialog>,
    expires_at_ms: u64,
}

/// A stable key per configured subscription: the same in every replica.
fn key_of(u: &Upstream) -> String {
    let text = format!("{}\n{}\n{}", u.package, u.resource, u.target);
    format!("{:016x}", crate::fnv1a(text.as_bytes()))
}

fn record_key(key: &str) -> String {
    format!("up:{{{key}}}")
}

/// Starts every configured subscription now (a restart refreshes them);
/// then fires their timers until the task is dropped.
pub async fn run(core: Arc<Core>) {
    for u in &core.config.upstream {
        let key = key_of(u);
        if let Err(e) = core
            .store
            .schedule(&format!("{QUEUE}:{key}"), now_ms(), Bytes::from(key.clone()))
            .await
        {
            warn!(error = %e, target = %u.target, "outgoing subscription not scheduled");
        }
    }
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let claimed = match core.store.claim_due(QUEUE, now_ms(), Duration::from_secs(60), 50).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "outgoing subscription timers not claimed");
                continue;
            }
        };
        for timer in claimed {
            let core = core.clone();
            tokio::spawn(async move {
                let key = String::from_utf8_lossy(&timer.payload).into_owned();
                if let Some(u) = core.config.upstream.iter().find(|u| key_of(u) == key) {
                    let next = drive(&core, u, &key).await;
                    let _ = core.store.complete(&timer).await;
                    again(&core, &key, next).await;
                } else {
                    let _ = core.store.complete(&timer).await;
                }
            });
        }
    }
}

async fn again(core: &Core, key: &str, at_ms: u64) {
    if let Err(e) = core
        .store
        .schedule(&format!("{QUEUE}:{key}"), at_ms, Bytes::from(key.to_owned()))
        .await
    {
        warn!(error = %e, "outgoing subscription timer not armed");
    }
}

/// The local resource as an address of record.
fn resource_aor(core: &Core, u: &Upstream) -> String {
    if u.resource.contains(':') {
        u.resource.clone()
    } else {
        format!(
            "sip:{}@{}",
            u.resource,
            core.directory.domains.first().map_or("", String::as_str)
        )
    }
}

/// Subscribes or refreshes; when to come back.
async fn drive(core: &Arc<Core>, u: &Upstream, key: &str) -> u64 {
    let retry = now_ms() + u64::from(u.retry_s) * 1000;
    let rk = record_key(key);
    let (mut record, version) = match core.store.get(&rk).await {
        Ok(Some(v)) => (
            serde_json::from_slice::<Record>(&v.value).unwrap_or_default(),
            Some(v.version),
        ),
        Ok(None) => (Record::default(), None),
        Err(e) => {
            warn!(error = %e, "outgoing subscription not read");
            return retry;
        }
    };
    let hop = if u.outbound.is_empty() { &u.target } else { &u.outbound };
    let Some(flow) = Flow::to_uri(hop) else {
        return retry;
    };
    let aor = resource_aor(core, u);
    let live = record.dialog.is_some() && record.expires_at_ms > now_ms();
    let mut dialog = match record.dialog.take().filter(|_| live) {
        Some(d) => d,
        None => Dialog::uac(
            &format!("{}@sipbus", crate::random_id()),
            &crate::random_id(),
            &format!("<{aor}>"),
            &format!("<{}>", u.target),
            0,
        ),
    };
    let mut challenge: Option<(Known, String)> = None;
    for _ in 0..2 {
        let mut req = dialog.request(Method::Subscribe);
        req.push_header(Known::Event, &u.package);
        req.push_header(Known::Expires, &u.expires_s.to_string());
        if let Some(entry) = core.packages.get(&u.package) {
            req.push_header(Known::Accept, &entry.types.join(", "));
        }
        let user = format!("{CONTACT_PREFIX}{key}");
        req.push_header(Known::Contact, &Flow::contact(None, &user, &core.config.contact_host));
        if let Some((header, value)) = &challenge {
            req.push_header(*header, value);
        }
        let Some(resp) = final_response(core, req, flow.clone()).await else {
            return retry;
        };
        let status = resp.status().unwrap_or(500);
        match status {
            200..=299 => {
                if dialog.remote_tag().is_empty() && dialog.establish(&resp).is_err() {
                    return retry;
                }
                let granted = resp.expires().ok().flatten().unwrap_or(u.expires_s).min(u.expires_s);
                let now = now_ms();
                record = Record {
                    dialog: Some(dialog),
                    expires_at_ms: now + u64::from(granted) * 1000,
                };
                let json = serde_json::to_vec(&record).unwrap_or_default();
                let ttl = Some(Duration::from_secs(u64::from(granted) + 60));
                let expect = version.map_or(Expect::Any, Expect::Version);
                if let Err(e) = core.store.put(&rk, Bytes::from(json), expect, ttl).await {
                    warn!(error = %e, "outgoing subscription not stored");
                }
                info!(target = %u.target, package = %u.package, expires_s = granted, "subscribed upstream");
                // Refresh at four fifths of the time granted.
                return now + u64::from(granted) * 800;
            }
            401 | 407 if challenge.is_none() && !u.username.is_empty() => {
                let (asked, answer) = if status == 401 {
                    (Known::WwwAuthenticate, Known::Authorization)
                } else {
                    (Known::ProxyAuthenticate, Known::ProxyAuthorization)
                };
                let target = u.target.clone();
                let cnonce = crate::random_id();
                challenge = resp.known_fields(asked).find_map(|c| {
                    sip_auth::client::answer(c, "SUBSCRIBE", &target, &u.username, &u.password, &cnonce)
                        .map(|v| (answer, v))
                });
                if challenge.is_none() {
                    return retry;
                }
            }
            481 => {
                // The notifier forgot it: a new subscription at once.
                let _ = core.store.delete(&rk, Expect::Any).await;
                return now_ms() + 1000;
            }
            _ => {
                info!(target = %u.target, status, "upstream subscription refused; retrying later");
                return retry;
            }
        }
    }
    retry
}

async fn final_response(core: &Core, req: Message, flow: Flow) -> Option<Message> {
    let mut tx = match core.edges.send_request(req, flow).await {
        Ok(tx) => tx,
        Err(e) => {
            warn!(error = %e, "SUBSCRIBE not sent");
            return None;
        }
    };
    while let Some(ev) = tx.next().await {
        if ev.response.status().unwrap_or(0) >= 200 {
            return Some(ev.response);
        }
    }
    None
}

/// A NOTIFY of an outgoing subscription: answered, its state handed to the
/// package's handler and fanned out; `terminated` subscribes again.
pub(crate) async fn notified(core: Arc<Core>, tx: ServerTxRef, req: Message) {
    let key = req
        .request_uri()
        .and_then(|u| u.split_once(':'))
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(user, _)| user.strip_prefix(CONTACT_PREFIX))
        .unwrap_or("")
        .to_owned();
    let Some(u) = core.config.upstream.iter().find(|u| key_of(u) == key) else {
        core.respond(&tx, Refusal::no_dialog().response_to(&req, None)).await;
        return;
    };
    let event_ok = req
        .event()
        .ok()
        .flatten()
        .is_some_and(|e| e.package.eq_ignore_ascii_case(&u.package));
    if !event_ok {
        core.respond(&tx, Refusal::bad_event(&[u.package.as_str()]).response_to(&req, None))
            .await;
        return;
    }
    core.respond(&tx, req.make_response(200, "OK", None)).await;
    let aor = resource_aor(&core, u);
    if let Some(entry) = core.packages.get(&u.package) {
        let cx = NotifiedCx {
            package: &u.package,
            resource: &aor,
            sources: &core.sources,
        };
        entry.handler.notified(cx, &req).await;
    }
    changes::fan_out(&core, &u.package, &aor).await;
    if u.package == "message-summary" {
        crate::unsolicited::notify(&core, &aor).await;
    }
    let ended = req
        .subscription_state()
        .ok()
        .flatten()
        .filter(|s| s.state == SubState::Terminated)
        .map(|s| s.retry_after().unwrap_or(1));
    if let Some(after_s) = ended {
        debug!(target = %u.target, after_s, "upstream subscription ended; subscribing again");
        let _ = core.store.delete(&record_key(&key), Expect::Any).await;
        again(&core, &key, now_ms() + u64::from(after_s.max(1)) * 1000).await;
    }
}
