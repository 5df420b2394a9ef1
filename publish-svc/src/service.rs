//! PUBLISH (RFC 3903 6): initial, refresh, modify, remove; expiry on store
//! timers; state set through the API. Every change recomposes the
//! resource's state in the same compare-and-set as the publications and is
//! announced to pubsub-svc.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use edge_api::{Flow, HandlerError, IncomingRequest, Reply, RequestHandler};
use extension::{ConfigProblem, Host, Leased, Packages, Point, RegistryConfig};
use registrar_svc::Directory;
use serde::{Deserialize, Serialize};
use sip_message::{Known, Message, Method, Refusal};
use state_store::{Store, StoreError, now_ms};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::PublishConfig;
use crate::handlers::external::ExternalHandler;
use crate::handlers::{Accepted, Change, PublicationHandler, Scope};
use crate::publication::Publication;
use crate::state::{self, announce};
use crate::unguessable;

/// The timer queue of publication expiry (`pubexp:<etag>`).
/// One expiry timer per publication: their count is the publications'.
pub const EXPIRY_QUEUE: &str = "pubexp";
/// Attempts at one compare-and-set before the request gets 503.
const CAS_ATTEMPTS: usize = 8;

/// What a PUBLISH or an API call asks for.
enum Op {
    /// A new publication with this body.
    Create {
        content_type: String,
        body: String,
        expires_s: u32,
    },
    Refresh {
        etag: String,
        expires_s: u32,
    },
    Modify {
        etag: String,
        content_type: String,
        body: String,
        expires_s: u32,
    },
    Remove {
        etag: String,
    },
    /// Its timer fired.
    Expire {
        etag: String,
    },
    /// State set through the API: replaces the previous API state; `None`
    /// removes it.
    Set {
        content_type: String,
        body: Option<String>,
    },
}

/// What a successful operation left.
struct Outcome {
    /// The publication's entity tag now (none after a removal).
    etag: Option<String>,
    expires_s: u32,
}

/// An expiry timer's payload.
#[derive(Serialize, Deserialize)]
struct ExpiryTimer {
    package: String,
    resource: String,
    etag: String,
}

/// Everything a publish-svc replica works with.
pub struct Publisher {
    config: PublishConfig,
    store: Store,
    directory: Directory,
    packages: Arc<Packages<dyn PublicationHandler>>,
}

impl Publisher {
    /// Builds the handlers (external ones connect lazily: needs a Tokio
    /// runtime when any is configured).
    pub fn new(
        config: PublishConfig,
        store: Store,
        directory: Directory,
        registry: &RegistryConfig,
    ) -> Result<Self, Vec<ConfigProblem>> {
        let connect = |ext| Arc::new(ExternalHandler::new(ext)) as Arc<dyn PublicationHandler>;
        let leased = Leased::new(Point::PublicationHandler, store.clone(), registry, connect);
        let packages = Arc::new(config.packages(Some(&connect))?.with_leased(leased));
        Ok(Self {
            config,
            store,
            directory,
            packages,
        })
    }

    /// Handlers registered at run time: the registry's view of this point,
    /// and the task that keeps it current.
    pub fn registry_host(&self) -> Arc<dyn Host> {
        self.packages.clone()
    }

    pub fn follow_registry(&self) -> impl Future<Output = ()> + use<> {
        let leased = self.packages.leased().cloned();
        async move {
            if let Some(l) = leased {
                l.follow().await;
            }
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Answers a PUBLISH.
    pub async fn publish(&self, req: &Message, flow: &Flow) -> Message {
        let tag = unguessable().unwrap_or_default();
        match self.try_publish(req, flow).await {
            Ok(out) => {
                let mut resp = req.make_response(200, "OK", Some(&tag));
                if let Some(etag) = &out.etag {
                    resp.push_header(Known::SipEtag, etag);
                }
                resp.push_header(Known::Expires, &out.expires_s.to_string());
                resp
            }
            Err(r) => {
                debug!(refusal = %r, "PUBLISH refused");
                r.response_to(req, Some(&tag))
            }
        }
    }

    async fn try_publish(&self, req: &Message, flow: &Flow) -> Result<Outcome, Refusal> {
        let event = req.event().map_err(|_| Refusal::bad_request("Event"))?;
        // A new publication needs a live handler; one already published
        // goes on with the handler it had (its failure policy if lapsed).
        let known = |p: &str| match req.sip_if_match() {
            None => self.packages.get_new(p).is_some(),
            Some(_) => self.packages.get(p).is_some(),
        };
        let package = match &event {
            Some(e) if known(e.package) => e.package.to_ascii_lowercase(),
            _ => return Err(Refusal::bad_event(&self.packages.names())),
        };
        let publisher = self.directory.authenticate(req).await?.unwrap_or_default();
        let resource = self.directory.aor_of(req.request_uri().unwrap_or(""), Some(flow))?;
        if !publisher.is_empty()
            && publisher != resource
            && !registrar_svc::listed(&self.config.publish_for_others, &publisher)
        {
            return Err(Refusal::forbidden("publishing for another user"));
        }
        let expires_s = match req.expires().map_err(|_| Refusal::bad_request("Expires"))? {
            None => self.config.default_expires_s,
            Some(0) => 0,
            Some(e) if e < self.config.min_expires_s => {
                return Err(Refusal::interval_too_brief(self.config.min_expires_s));
            }
            Some(e) => e.min(self.config.max_expires_s),
        };
        let etag = req.sip_if_match().map(|e| e.trim().to_owned());
        let body = if req.body().is_empty() {
            None
        } else {
            let entry = self
                .packages
                .get(&package)
                .ok_or_else(|| Refusal::bad_event::<&str>(&[]))?;
            let content_type = req
                .content_type()
                .ok()
                .flatten()
                .map(|m| format!("{}/{}", m.kind, m.subtype).to_ascii_lowercase())
                .unwrap_or_default();
            if !entry.types.iter().any(|t| t.eq_ignore_ascii_case(&content_type)) {
                return Err(
                    Refusal::unsupported_media_type(&content_type).with_header(Known::Accept, entry.types.join(", "))
                );
            }
            let text = String::from_utf8(req.body().to_vec()).map_err(|_| Refusal::bad_request("body is not UTF-8"))?;
            Some((content_type, text))
        };
        let op = match (etag, body, expires_s) {
            (None, None, _) => return Err(Refusal::bad_request("initial PUBLISH without a body")),
            (None, Some(_), 0) => return Err(Refusal::bad_request("initial PUBLISH with Expires: 0")),
            (None, Some((content_type, body)), _) => Op::Create {
                content_type,
                body,
                expires_s,
            },
            (Some(etag), _, 0) => Op::Remove { etag },
            (Some(etag), None, _) => Op::Refresh { etag, expires_s },
            (Some(etag), Some((content_type, body)), _) => Op::Modify {
                etag,
                content_type,
                body,
                expires_s,
            },
        };
        let scope = Scope {
            package: &package,
            resource: &resource,
        };
        self.apply(scope, &publisher, op).await
    }

    /// Sets (or with `body: None` removes) a resource's state without SIP,
    /// as a publication that does not expire. `resource` is `sip:user@domain`
    /// or a user of the first domain. Returns the resource as stored.
    pub async fn set_state(
        &self,
        package: &str,
        resource: &str,
        content_type: &str,
        body: Option<String>,
    ) -> Result<String, Refusal> {
        let package = package.to_ascii_lowercase();
        let entry = self
            .packages
            .get(&package)
            .ok_or_else(|| Refusal::bad_event(&self.packages.names()))?;
        let content_type = if content_type.is_empty() {
            entry.types.first().cloned().unwrap_or_default()
        } else {
            content_type.to_ascii_lowercase()
        };
        if body.is_some() && !entry.types.contains(&content_type) {
            return Err(Refusal::unsupported_media_type(&content_type));
        }
        let uri = if resource.contains(':') {
            resource.to_owned()
        } else {
            format!(
                "sip:{resource}@{}",
                self.directory.domains.first().map_or("", String::as_str)
            )
        };
        let resource = self.directory.aor_of(&uri, None)?;
        let scope = Scope {
            package: &package,
            resource: &resource,
        };
        self.apply(scope, "", Op::Set { content_type, body }).await?;
        Ok(resource)
    }

    /// Runs `op` on the resource's record in one compare-and-set with the
    /// new composition; then moves timers, tells the handler, announces.
    async fn apply(&self, scope: Scope<'_>, publisher: &str, op: Op) -> Result<Outcome, Refusal> {
        let entry = self
            .packages
            .get(scope.package)
            .ok_or_else(|| Refusal::bad_event(&self.packages.names()))?;
        let handler = entry.handler.clone();
        // A new body is validated once, before the record is read.
        let candidate = |content_type: &str, body: &str| Publication {
            etag: String::new(),
            content_type: content_type.to_owned(),
            body: body.to_owned(),
            publisher: publisher.to_owned(),
            expires_at_ms: None,
            seq: 0,
        };
        let accepted = match &op {
            Op::Create { content_type, body, .. }
            | Op::Modify { content_type, body, .. }
            | Op::Set {
                content_type,
                body: Some(body),
            } => match handler.publication(scope, &candidate(content_type, body)).await {
                Accepted::Store(b) => Some(b),
                Accepted::Reject(r) => return Err(r),
            },
            _ => None,
        };
        let store_err = |e: StoreError| {
            warn!(error = %e, "publication not stored");
            Refusal::store_unavailable()
        };
        for _ in 0..CAS_ATTEMPTS {
            let now = now_ms();
            let (mut record, version) = state::load(&self.store, scope.package, scope.resource)
                .await
                .map_err(store_err)?;
            let before = record.composed.clone();
            let lapsed = record.prune(now);
            let new_etag = unguessable().ok_or_else(|| Refusal::server_error("no randomness for an entity tag"))?;
            let expiry = |s: u32| Some(now + u64::from(s) * 1000);
            let seq = record.next_seq;
            // (what changed, the publication it concerns, the timer to drop)
            let (change, touched, old_etag): (Option<Change>, Option<Publication>, Option<String>) = match &op {
                Op::Create {
                    content_type,
                    expires_s,
                    ..
                } => {
                    if record.publications.len() >= self.config.max_publications {
                        return Err(Refusal::forbidden("too many publications for this resource"));
                    }
                    let p = Publication {
                        etag: new_etag.clone(),
                        content_type: content_type.clone(),
                        body: accepted.clone().unwrap_or_default(),
                        publisher: publisher.to_owned(),
                        expires_at_ms: expiry(*expires_s),
                        seq,
                    };
                    record.next_seq += 1;
                    record.publications.push(p.clone());
                    (Some(Change::Initialized), Some(p), None)
                }
                Op::Refresh { etag, expires_s } | Op::Modify { etag, expires_s, .. } => {
                    let Some(p) = record.publications.iter_mut().find(|p| p.etag == *etag) else {
                        return Err(Refusal::conditional_request_failed());
                    };
                    p.etag = new_etag.clone();
                    p.expires_at_ms = expiry(*expires_s);
                    let change = if let Op::Modify { content_type, .. } = &op {
                        p.content_type = content_type.clone();
                        p.body = accepted.clone().unwrap_or_default();
                        p.seq = seq;
                        record.next_seq += 1;
                        Change::Modified
                    } else {
                        Change::Refreshed
                    };
                    (Some(change), Some(p.clone()), Some(etag.clone()))
                }
                Op::Remove { etag } => {
                    let Some(pos) = record.publications.iter().position(|p| p.etag == *etag) else {
                        return Err(Refusal::conditional_request_failed());
                    };
                    let p = record.publications.remove(pos);
                    (Some(Change::Removed), Some(p), Some(etag.clone()))
                }
                Op::Expire { etag } => match lapsed.iter().find(|p| p.etag == *etag) {
                    Some(p) => (Some(Change::Expired), Some(p.clone()), None),
                    // Refreshed (a new tag) or removed meanwhile.
                    None if lapsed.is_empty() => {
                        return Ok(Outcome {
                            etag: None,
                            expires_s: 0,
                        });
                    }
                    None => (None, None, None),
                },
                Op::Set { content_type, body } => {
                    let old = record
                        .publications
                        .iter()
                        .position(|p| p.publisher.is_empty() && p.expires_at_ms.is_none());
                    let old_etag = old.map(|i| record.publications.remove(i).etag);
                    match body {
                        Some(_) => {
                            let p = Publication {
                                etag: new_etag.clone(),
                                content_type: content_type.clone(),
                                body: accepted.clone().unwrap_or_default(),
                                publisher: String::new(),
                                expires_at_ms: None,
                                seq,
                            };
                            record.next_seq += 1;
                            record.publications.push(p.clone());
                            (Some(Change::Modified), Some(p), old_etag)
                        }
                        None => (Some(Change::Removed), None, old_etag),
                    }
                }
            };
            record.composed = if record.publications.is_empty() {
                None
            } else {
                Some(handler.compose(scope, &record.publications).await)
            };
            match state::save(&self.store, scope.package, scope.resource, &record, version, now).await {
                Ok(()) => {}
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_err(e)),
            }
            let kept = touched
                .as_ref()
                .filter(|_| !matches!(change, Some(Change::Removed | Change::Expired)));
            if let Some(p) = kept
                && let Some(due) = p.expires_at_ms
            {
                self.arm(scope, &p.etag, due).await;
            }
            if let Some(old) = &old_etag {
                let _ = self.store.cancel(&format!("{EXPIRY_QUEUE}:{old}")).await;
            }
            if let (Some(change), Some(p)) = (change, &touched) {
                handler.changed(scope, p, change).await;
            }
            let state_changed = record.composed != before || !lapsed.is_empty();
            if state_changed || matches!(change, Some(Change::Initialized | Change::Modified | Change::Removed)) {
                announce(&self.store, scope.package, scope.resource).await;
            }
            info!(package = scope.package, resource = scope.resource, change = ?change, "publication");
            let expires_s = kept.and_then(|p| p.expires_at_ms).map_or(0, |e| {
                u32::try_from(e.saturating_sub(now).div_ceil(1000)).unwrap_or(u32::MAX)
            });
            return Ok(Outcome {
                etag: kept.map(|p| p.etag.clone()),
                expires_s,
            });
        }
        Err(Refusal::service_unavailable("publication changed concurrently"))
    }

    async fn arm(&self, scope: Scope<'_>, etag: &str, due_ms: u64) {
        let payload = ExpiryTimer {
            package: scope.package.to_owned(),
            resource: scope.resource.to_owned(),
            etag: etag.to_owned(),
        };
        let Ok(json) = serde_json::to_vec(&payload) else { return };
        if let Err(e) = self
            .store
            .schedule(&format!("{EXPIRY_QUEUE}:{etag}"), due_ms, Bytes::from(json))
            .await
        {
            warn!(error = %e, "publication expiry timer not armed");
        }
    }

    /// One pass of the expiry worker: each due timer goes to exactly one
    /// replica. Returns how many timers it handled.
    pub async fn expire_due(&self) -> Result<usize, StoreError> {
        let claimed = self
            .store
            .claim_due(EXPIRY_QUEUE, now_ms(), Duration::from_secs(30), 200)
            .await?;
        let n = claimed.len();
        for timer in claimed {
            if let Ok(t) = serde_json::from_slice::<ExpiryTimer>(&timer.payload) {
                let scope = Scope {
                    package: &t.package,
                    resource: &t.resource,
                };
                if let Err(r) = self.apply(scope, "", Op::Expire { etag: t.etag.clone() }).await {
                    // Left claimed: the lease runs out and it fires again.
                    warn!(refusal = %r, "publication expiry failed; retried later");
                    continue;
                }
            }
            self.store.complete(&timer).await?;
        }
        Ok(n)
    }

    /// Runs the expiry worker until the task is dropped.
    pub async fn run_expiry(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Err(e) = self.expire_due().await {
                warn!(error = %e, "publication expiry pass failed; retrying");
            }
        }
    }
}

/// The request handler publish-svc serves (in process or over gRPC).
#[derive(Clone)]
pub struct PublishService {
    inner: Arc<Publisher>,
}

impl PublishService {
    pub fn new(inner: Arc<Publisher>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl RequestHandler for PublishService {
    async fn handle(&self, req: IncomingRequest) -> Result<Reply, HandlerError> {
        if req.request.method() != Some(&Method::Publish) {
            return Err(HandlerError::Invalid("publish-svc only handles PUBLISH".into()));
        }
        let span = info_span!("publish", trace_id = %req.trace.trace_id(), server_tx = %req.tx.id);
        // Run to completion even if the caller gives up: a PUBLISH stopped
        // between its store write and its timer would leave a publication
        // that never expires.
        let inner = self.inner.clone();
        let response = tokio::spawn(async move { inner.publish(&req.request, &req.flow).await }.instrument(span))
            .await
            .map_err(|_| HandlerError::Failed("PUBLISH processing failed".into()))?;
        Ok(Reply::Now(response))
    }
}
