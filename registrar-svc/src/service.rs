//! The registrar: REGISTER processing (RFC 3261 10.3) with digest
//! authentication, RFC 5626 instance bindings, RFC 3327 Path, and the
//! location service lookup. All state is in the store; any replica handles
//! any request, and concurrent REGISTERs for one AOR are serialised by the
//! store's compare-and-set.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use edge_api::Flow;
use sip_auth::{Authenticator, Challenger, Secret};
use sip_message::text::{split_top_level, trim_ws};
use sip_message::typed::{ContactParams, Contacts, NameAddr};
use sip_message::{Known, Message, Refusal, Uri};
use state_store::{Expect, Store, StoreError, now_ms};
use tracing::{debug, warn};

use crate::binding::{Binding, BindingSet, expiry_timer, identity, record_key};
use crate::config::RegistrarConfig;
use crate::events::{BindingEvent, EventKind, publish};
use crate::guard::Guard;
use crate::httpdate::http_date;

/// How often a REGISTER re-reads and retries when another replica changed
/// the same AOR at the same moment.
const CAS_ATTEMPTS: usize = 5;
/// A record outlives its last binding by this much, so a late reader never
/// sees a half-expired set vanish under it.
const RECORD_GRACE: Duration = Duration::from_secs(60);

/// The registrar service.
pub struct Registrar {
    config: RegistrarConfig,
    store: Store,
    /// One authenticator per domain (its realm).
    auth: HashMap<String, Authenticator>,
    guard: Guard,
    users: HashMap<(String, String), Secret>,
}

/// Any store failure during a REGISTER is answered the same way.
fn store_failed(e: StoreError) -> Refusal {
    warn!(error = %e, "store failed during REGISTER");
    Refusal::store_unavailable()
}

/// A contact of the request, resolved to what will be stored.
struct Wanted {
    identity: String,
    binding: Option<Binding>,
}

impl Registrar {
    pub fn new(config: RegistrarConfig, store: Store) -> Self {
        let auth = config
            .domains
            .iter()
            .map(|d| {
                let realm = config.auth.realm.clone().unwrap_or_else(|| d.clone());
                (d.to_ascii_lowercase(), config.authenticator(&realm))
            })
            .collect();
        let users = config.secrets();
        Self {
            guard: Guard::new(store.clone(), config.auth.failures),
            config,
            store,
            auth,
            users,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Answers a REGISTER.
    pub async fn register(&self, req: &Message, flow: Flow) -> Message {
        match self.try_register(req, flow).await {
            Ok(resp) => resp,
            Err(refusal) => refusal.response_to(req, Some(&tag())),
        }
    }

    async fn try_register(&self, req: &Message, flow: Flow) -> Result<Message, Refusal> {
        let ruri = req.request_uri().unwrap_or_default();
        let domain = match Uri::parse(ruri) {
            Ok(Uri::Sip(u)) => u.host.to_string().to_ascii_lowercase(),
            _ => {
                return Err(Refusal::unsupported_uri_scheme("REGISTER needs sip: or sips:"));
            }
        };
        if !self.serves(&domain) {
            return Err(Refusal::not_found("domain not served here"));
        }
        let to = req.to_header().map_err(|_| Refusal::bad_request("To"))?;
        let Uri::Sip(to_uri) = &to.uri else {
            return Err(Refusal::not_found("address-of-record must be a sip: URI"));
        };
        let user = to_uri
            .user_decoded()
            .ok_or_else(|| Refusal::not_found("address-of-record has no user"))?;
        let aor_domain = to_uri.host.to_string().to_ascii_lowercase();
        if !self.serves(&aor_domain) {
            return Err(Refusal::not_found("domain not served here"));
        }
        // RFC 3261 10.3: authenticate first. Every name is challenged
        // alike, and only a user who proved who they are learns whether
        // an address-of-record exists, so a prober learns nothing.
        if self.config.auth.enabled {
            self.authenticate(req, &domain, &aor_domain, &user).await?;
        } else if !self.users.contains_key(&(user.to_string(), aor_domain.clone())) {
            return Err(Refusal::not_found("unknown user"));
        }
        let aor = format!("{}:{user}@{aor_domain}", if to_uri.secure { "sips" } else { "sip" });

        let now = now_ms();
        let flow_is_connection = flow.transport.is_reliable();
        let wanted = self.wanted(req, flow, now)?;
        let call_id = req.call_id().map_err(|_| Refusal::bad_request("Call-ID"))?.to_owned();
        let cseq = req.cseq().map_err(|_| Refusal::bad_request("CSeq"))?.seq;
        // RFC 5626 6: a registration over an outbound flow (instance and
        // reg-id, from a client that supports outbound) is confirmed with
        // Require: outbound; the flow it came over is what later requests
        // to it use (the flow token: edge instance and connection). Only
        // on connections: over UDP the client would expect STUN
        // keep-alives answered, which the edge does not do.
        let outbound = flow_is_connection
            && req.lists(Known::Supported, "outbound")
            && wanted
                .iter()
                .flatten()
                .filter_map(|w| w.binding.as_ref())
                .any(|b| b.instance.is_some() && b.reg_id.is_some());
        let set = self.update(&aor, wanted.as_deref(), &call_id, cseq, now).await?;

        let mut resp = req.make_response(200, "OK", Some(&tag()));
        // Every current binding with its remaining time, in one Contact
        // field (a field per binding would meet header-count limits first).
        let contacts: Vec<String> = set
            .bindings
            .iter()
            .map(|b| {
                format!(
                    "{};expires={}",
                    b.contact,
                    b.expires_at_ms.saturating_sub(now).div_ceil(1000)
                )
            })
            .collect();
        if !contacts.is_empty() {
            resp.push_header(Known::Contact, &contacts.join(", "));
        }
        for path in req.known_fields(Known::Path) {
            resp.push_header(Known::Path, path);
        }
        if outbound {
            resp.push_header(Known::Require, "outbound");
        }
        resp.push_header(Known::Date, &http_date(now / 1000));
        Ok(resp)
    }

    fn serves(&self, domain: &str) -> bool {
        self.config.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    async fn authenticate(&self, req: &Message, domain: &str, aor_domain: &str, user: &str) -> Result<(), Refusal> {
        let Some(auth) = self.auth.get(domain) else {
            return Err(Refusal::not_found("domain not served here"));
        };
        let who = self
            .guard
            .authenticate(auth, req, Challenger::Server, |u| {
                self.users.get(&(u.to_owned(), aor_domain.to_owned())).cloned()
            })
            .await?;
        if who != user {
            debug!(%who, "authenticated user may not register this address-of-record");
            return Err(Refusal::forbidden("not your address-of-record"));
        }
        Ok(())
    }

    /// The contacts of the request resolved to bindings: `None` for a query
    /// (no Contact), a single `*` entry to remove every binding.
    fn wanted(&self, req: &Message, flow: Flow, now: u64) -> Result<Option<Vec<Wanted>>, Refusal> {
        let header_expires = req.expires().map_err(|_| Refusal::bad_request("Expires"))?;
        let contacts = req.contacts().map_err(|_| Refusal::bad_request("Contact"))?;
        let addrs = match contacts {
            Contacts::Star => {
                // RFC 3261 10.3 step 6: `*` only alone and with Expires: 0.
                if header_expires != Some(0) || req.known_values(Known::Contact).count() != 1 {
                    return Err(Refusal::bad_request("Contact: * needs Expires: 0 and no other Contact"));
                }
                return Ok(Some(vec![Wanted {
                    identity: "*".into(),
                    binding: None,
                }]));
            }
            Contacts::List(addrs) if addrs.is_empty() => return Ok(None),
            Contacts::List(addrs) => addrs,
        };
        let e = &self.config.expires;
        let path: Vec<String> = req.known_values(Known::Path).map(str::to_owned).collect();
        let call_id = req.call_id().unwrap_or_default().to_owned();
        let cseq = req.cseq().map(|c| c.seq).unwrap_or(0);
        let mut out = Vec::with_capacity(addrs.len());
        for a in &addrs {
            let expires = a.expires().or(header_expires).unwrap_or(e.default_s);
            if expires != 0 && expires < e.min_s {
                return Err(Refusal::interval_too_brief(e.min_s));
            }
            let expires = expires.min(e.max_s);
            let instance = a.sip_instance().map(str::to_owned);
            let reg_id = a.reg_id();
            let id = identity(instance.as_deref(), reg_id, a.uri_text);
            let contact = without_expires(a);
            if !lists_back(&contact, a.uri_text) {
                return Err(Refusal::bad_request("Contact"));
            }
            let binding = (expires > 0).then(|| Binding {
                contact,
                uri: a.uri_text.to_owned(),
                expires_at_ms: now + u64::from(expires) * 1000,
                q: a.q().unwrap_or(1000),
                call_id: call_id.clone(),
                cseq,
                instance,
                reg_id,
                path: path.clone(),
                flow: flow.clone(),
            });
            out.push(Wanted { identity: id, binding });
        }
        Ok(Some(out))
    }

    /// Applies the request to the stored set with compare-and-set, retrying
    /// when another replica wrote in between; schedules the expiry timers and
    /// publishes what changed.
    async fn update(
        &self,
        aor: &str,
        wanted: Option<&[Wanted]>,
        call_id: &str,
        cseq: u32,
        now: u64,
    ) -> Result<BindingSet, Refusal> {
        let key = record_key(aor);
        for _ in 0..CAS_ATTEMPTS {
            let current = self.store.get(&key).await.map_err(store_failed)?;
            let (mut set, expect) = match &current {
                Some(v) => (decode(&key, &v.value), Expect::Version(v.version)),
                None => (BindingSet::default(), Expect::Absent),
            };
            // Bindings past their expiry that the expiry worker has not
            // removed yet leave with this write: they get their `expired`
            // event here, since the worker will no longer find them.
            let lapsed = set.prune(now);
            let Some(wanted) = wanted else {
                return Ok(set);
            };
            let before = set.clone();
            apply(&mut set, wanted, call_id, cseq)?;
            if set.bindings.len() > self.config.max_bindings {
                return Err(Refusal::forbidden("too many bindings for this address-of-record"));
            }
            let written = if set.bindings.is_empty() {
                match (current.is_some(), expect) {
                    (true, e) => self.store.delete(&key, e).await.map(|_| ()),
                    (false, _) => Ok(()),
                }
            } else {
                let ttl = set
                    .last_expiry_ms()
                    .map(|t| Duration::from_millis(t.saturating_sub(now)) + RECORD_GRACE);
                let value = Bytes::from(serde_json::to_vec(&set).map_err(|_| Refusal::server_error(""))?);
                self.store.put(&key, value, expect, ttl).await.map(|_| ())
            };
            match written {
                Ok(()) => {
                    for b in &lapsed {
                        if let Err(e) = self.store.cancel(&expiry_timer(aor, &b.identity())).await {
                            warn!(error = %e, %aor, "expiry timer not cancelled");
                        }
                        publish(&self.store, &BindingEvent::new(EventKind::Expired, aor, b)).await;
                    }
                    self.after_write(aor, &before, &set).await;
                    return Ok(set);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_failed(e)),
            }
        }
        Err(Refusal::server_error("too many concurrent updates").with_header(Known::RetryAfter, "1"))
    }

    /// Timers and events for what a write changed. Failures here are logged:
    /// the record itself is already right, and lookups prune by time.
    async fn after_write(&self, aor: &str, before: &BindingSet, after: &BindingSet) {
        for b in &after.bindings {
            let old = before.bindings.iter().find(|o| o.identity() == b.identity());
            // Bindings this request did not touch keep their timer and say
            // nothing.
            if old == Some(b) {
                continue;
            }
            let timer = expiry_timer(aor, &b.identity());
            if let Err(e) = self
                .store
                .schedule(&timer, b.expires_at_ms, Bytes::from(timer.clone()))
                .await
            {
                warn!(error = %e, %aor, "expiry timer not scheduled");
            }
            let kind = if old.is_some() {
                EventKind::Refreshed
            } else {
                EventKind::Registered
            };
            publish(&self.store, &BindingEvent::new(kind, aor, b)).await;
        }
        for b in &before.bindings {
            if !after.bindings.iter().any(|n| n.identity() == b.identity()) {
                if let Err(e) = self.store.cancel(&expiry_timer(aor, &b.identity())).await {
                    warn!(error = %e, %aor, "expiry timer not cancelled");
                }
                publish(&self.store, &BindingEvent::new(EventKind::Removed, aor, b)).await;
            }
        }
    }

    /// Current bindings of an AOR, highest q first.
    pub async fn lookup(&self, aor: &str) -> Result<Vec<Binding>, StoreError> {
        let key = record_key(aor);
        let Some(v) = self.store.get(&key).await? else {
            return Ok(Vec::new());
        };
        let mut set = decode(&key, &v.value);
        set.prune(now_ms());
        set.bindings.sort_by_key(|b| std::cmp::Reverse(b.q));
        Ok(set.bindings)
    }

    /// One pass of the expiry worker: claims due timers (each goes to
    /// exactly one replica), removes the bindings that are really expired,
    /// publishes `expired`. Returns how many bindings expired.
    pub async fn expire_due(&self) -> Result<usize, StoreError> {
        let claimed = self
            .store
            .claim_due("reg-expiry", now_ms(), Duration::from_secs(30), 200)
            .await?;
        let mut expired = 0;
        for timer in claimed {
            let Some((aor, id)) = timer.id.strip_prefix("reg-expiry:").and_then(|s| s.split_once('|')) else {
                self.store.complete(&timer).await?;
                continue;
            };
            expired += self.remove_one(aor, id, EventKind::Expired).await?;
            self.store.complete(&timer).await?;
        }
        Ok(expired)
    }

    /// Removes bindings of `aor` now, as an operator asks (`sipbus ctl
    /// unregister`): the one whose Contact URI or identity is `contact`,
    /// or all of them when `contact` is `None`. Subscribers to the AOR's
    /// registrations hear `removed`. Returns how many went.
    pub async fn unregister(&self, aor: &str, contact: Option<&str>) -> Result<usize, StoreError> {
        let Some(v) = self.store.get(&record_key(aor)).await? else {
            return Ok(0);
        };
        let set = decode(&record_key(aor), &v.value);
        let ids: Vec<String> = set
            .bindings
            .iter()
            .filter(|b| contact.is_none_or(|c| b.uri == c || b.contact == c || b.identity() == c))
            .map(Binding::identity)
            .collect();
        let mut removed = 0;
        for id in ids {
            let n = self.remove_one(aor, &id, EventKind::Removed).await?;
            if n > 0 {
                let _ = self.store.cancel(&expiry_timer(aor, &id)).await;
            }
            removed += n;
        }
        Ok(removed)
    }

    /// Removes binding `id` of `aor`: an expired one only once it really
    /// expired (`Expired`), any at once (`Removed`).
    async fn remove_one(&self, aor: &str, id: &str, why: EventKind) -> Result<usize, StoreError> {
        let key = record_key(aor);
        for _ in 0..CAS_ATTEMPTS {
            let Some(v) = self.store.get(&key).await? else {
                return Ok(0);
            };
            let mut set = decode(&key, &v.value);
            let now = now_ms();
            let Some(pos) = set.bindings.iter().position(|b| b.identity() == id) else {
                return Ok(0);
            };
            if why == EventKind::Expired && set.bindings[pos].expires_at_ms > now {
                // Refreshed meanwhile, and its timer may have been moved in
                // the wrong order by concurrent writers: put it where the
                // binding says.
                let timer = expiry_timer(aor, id);
                self.store
                    .schedule(&timer, set.bindings[pos].expires_at_ms, Bytes::from(timer.clone()))
                    .await?;
                return Ok(0);
            }
            let gone = set.bindings.remove(pos);
            let written = if set.bindings.is_empty() {
                self.store.delete(&key, Expect::Version(v.version)).await.map(|_| ())
            } else {
                let ttl = set
                    .last_expiry_ms()
                    .map(|t| Duration::from_millis(t.saturating_sub(now)) + RECORD_GRACE);
                let value = Bytes::from(serde_json::to_vec(&set).unwrap_or_default());
                self.store
                    .put(&key, value, Expect::Version(v.version), ttl)
                    .await
                    .map(|_| ())
            };
            match written {
                Ok(()) => {
                    publish(&self.store, &BindingEvent::new(why, aor, &gone)).await;
                    return Ok(1);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(0)
    }

    /// Runs the expiry worker until the task is dropped.
    pub async fn run_expiry(self: std::sync::Arc<Self>) {
        let every = Duration::from_millis(self.config.expiry_poll_ms.max(10));
        loop {
            tokio::time::sleep(every).await;
            match self.expire_due().await {
                Ok(0) => {}
                Ok(n) => debug!(expired = n, "bindings expired"),
                Err(e) => warn!(error = %e, "expiry pass failed; retrying"),
            }
        }
    }
}

/// RFC 3261 10.3 steps 6-7 on the stored set.
fn apply(set: &mut BindingSet, wanted: &[Wanted], call_id: &str, cseq: u32) -> Result<(), Refusal> {
    let stale = |b: &Binding| b.call_id == call_id && cseq <= b.cseq;
    if wanted.len() == 1 && wanted[0].identity == "*" {
        if set.bindings.iter().any(stale) {
            return Err(Refusal::server_error("CSeq not higher than a binding's"));
        }
        set.bindings.clear();
        return Ok(());
    }
    for w in wanted {
        let pos = set.bindings.iter().position(|b| b.identity() == w.identity);
        if let Some(p) = pos {
            if stale(&set.bindings[p]) {
                return Err(Refusal::server_error("CSeq not higher than the binding's"));
            }
        }
        match (pos, &w.binding) {
            (Some(p), Some(b)) => set.bindings[p] = b.clone(),
            (Some(p), None) => {
                set.bindings.remove(p);
            }
            (None, Some(b)) => set.bindings.push(b.clone()),
            (None, None) => {}
        }
    }
    Ok(())
}

fn decode(key: &str, value: &[u8]) -> BindingSet {
    serde_json::from_slice(value).unwrap_or_else(|e| {
        warn!(%key, error = %e, "unreadable binding record treated as empty");
        BindingSet::default()
    })
}

/// The contact as registered, minus `expires` (the 200 states the
/// remaining time instead).
fn without_expires(a: &NameAddr<'_>) -> String {
    let params: Vec<String> = a
        .params
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("expires"))
        .map(|(n, v)| match v {
            Some(v) => format!("{n}={v}"),
            None => n.to_owned(),
        })
        .collect();
    let mut s = String::new();
    if let Some(d) = a.display {
        s.push_str(d);
        s.push(' ');
    }
    s.push('<');
    s.push_str(a.uri_text);
    s.push('>');
    for p in params {
        s.push(';');
        s.push_str(&p);
    }
    s
}

/// Whether `contact`, as the 200 will list it among others, reads back as
/// itself: the lenient parse of a request lets through parameters (a stray
/// quote, an unclosed `<`) and URIs (a `>`) that would garble the answer
/// and every later one.
fn lists_back(contact: &str, uri: &str) -> bool {
    let listed = format!("{contact};expires=1, <sip:next.invalid>;expires=1");
    let mut values = split_top_level(&listed, b',').map(trim_ws);
    let first = values.next().unwrap_or_default();
    let next_apart = values.next().is_some_and(|v| v.starts_with("<sip:next.invalid>")) && values.next().is_none();
    next_apart && NameAddr::parse(first).is_ok_and(|n| n.uri_text == uri && n.expires() == Some(1))
}

fn tag() -> String {
    format!("{:016x}", fastrand::u64(..))
}
