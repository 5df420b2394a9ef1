//! The admin service: each process answers for the services it runs, from
//! the store every replica shares, so any replica answers for the cluster.

use std::sync::Arc;

use proto::admin::v1 as pb;
use proto::admin::v1::admin_server::{Admin, AdminServer};
use registrar_svc::Registrar;
use sip_edge::transport::tls::TlsContext;
use state_store::{Store, StoreError};
use tonic::{Request, Response, Status};
use tracing::info;

/// Records a listing reads when the caller names no limit, and at most.
const DEFAULT_LIMIT: usize = 1_000;
const MAX_LIMIT: usize = 100_000;

/// What this process can answer for.
pub struct AdminService {
    pub store: Option<Store>,
    /// registrar-svc runs here: registrations and unregistering.
    pub registrar: Option<Arc<Registrar>>,
    pub session: bool,
    pub pubsub: bool,
    pub publish: bool,
    /// sip-edge runs here: its TLS files.
    pub tls: Option<Arc<TlsContext>>,
    /// `registry.token`.
    pub token: String,
}

impl AdminService {
    pub fn into_server(self) -> AdminServer<AdminService> {
        AdminServer::new(self)
    }

    fn authorize<T>(&self, request: &Request<T>, rpc: &'static str) -> Result<(), Status> {
        extension::registry::check_token(&self.token, request, "admin", rpc)
    }

    /// The store, when `runs` (the service the call is about runs here).
    fn store_for(&self, runs: bool, what: &str) -> Result<&Store, Status> {
        match (&self.store, runs) {
            (Some(store), true) => Ok(store),
            _ => Err(Status::unimplemented(format!(
                "this process does not run {what}; ask one that does"
            ))),
        }
    }
}

fn limit(asked: u32) -> usize {
    match asked {
        0 => DEFAULT_LIMIT,
        n => (n as usize).min(MAX_LIMIT),
    }
}

fn store_error(e: StoreError) -> Status {
    match e {
        StoreError::Unsupported(what) => Status::unimplemented(format!("not supported: {what}")),
        e => Status::unavailable(e.to_string()),
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn list_registrations(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::Registrations>, Status> {
        self.authorize(&request, "ListRegistrations")?;
        let store = self.store_for(self.registrar.is_some(), "registrar-svc")?;
        let r = request.into_inner();
        let (found, truncated) = registrar_svc::admin::registrations(store, r.filter.trim(), limit(r.limit))
            .await
            .map_err(store_error)?;
        Ok(Response::new(pb::Registrations {
            registrations: found
                .into_iter()
                .map(|r| pb::Registration {
                    aor: r.aor,
                    contact: r.contact,
                    expires_in_s: r.expires_in_s,
                    instance: r.instance.unwrap_or_default(),
                    reg_id: r.reg_id.unwrap_or_default(),
                    transport: r.transport.to_owned(),
                    source: r.source,
                    edge: r.edge.unwrap_or_default(),
                })
                .collect(),
            truncated,
        }))
    }

    async fn unregister(&self, request: Request<pb::UnregisterRequest>) -> Result<Response<pb::Affected>, Status> {
        self.authorize(&request, "Unregister")?;
        let registrar = self
            .registrar
            .as_ref()
            .ok_or_else(|| Status::unimplemented("this process does not run registrar-svc; ask one that does"))?;
        let r = request.into_inner();
        if !r.aor.contains('@') {
            return Err(Status::invalid_argument("aor: expected user@domain"));
        }
        let aor = registrar_svc::admin::aor(&r.aor);
        let aor = aor.as_str();
        let contact = Some(r.contact.trim()).filter(|c| !c.is_empty());
        let count = registrar.unregister(aor, contact).await.map_err(store_error)?;
        info!(
            aor,
            contact = contact.unwrap_or("*"),
            count,
            "unregistered by the operator"
        );
        Ok(Response::new(pb::Affected {
            count: u32::try_from(count).unwrap_or(u32::MAX),
        }))
    }

    async fn list_calls(&self, request: Request<pb::ListRequest>) -> Result<Response<pb::Calls>, Status> {
        self.authorize(&request, "ListCalls")?;
        let store = self.store_for(self.session, "session-svc")?;
        let r = request.into_inner();
        let (calls, truncated) = session_svc::admin::calls(store, limit(r.limit))
            .await
            .map_err(store_error)?;
        let filter = r.filter.trim();
        Ok(Response::new(pb::Calls {
            calls: calls
                .into_iter()
                .filter(|c| filter.is_empty() || c.caller.contains(filter) || c.callee.contains(filter))
                .map(|c| pb::Call {
                    id: c.id,
                    state: c.state.to_owned(),
                    caller: c.caller,
                    callee: c.callee,
                    a_call_id: c.a_call_id,
                    a_target: c.a_target,
                    b_call_id: c.b_call_id,
                    b_target: c.b_target,
                    started_ms: c.started_ms,
                    duration_s: c.duration_s,
                    last_replica: c.last_replica,
                })
                .collect(),
            truncated,
        }))
    }

    async fn hang_up(&self, request: Request<pb::HangUpRequest>) -> Result<Response<pb::Affected>, Status> {
        self.authorize(&request, "HangUp")?;
        let store = self.store_for(self.session, "session-svc")?;
        let id = request.into_inner().id;
        let queued = session_svc::admin::hang_up(store, id.trim())
            .await
            .map_err(store_error)?;
        if !queued {
            return Err(Status::not_found(format!("no call {id} in progress")));
        }
        info!(call = %id, "hang-up queued by the operator");
        Ok(Response::new(pb::Affected { count: 1 }))
    }

    async fn list_subscriptions(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::Subscriptions>, Status> {
        self.authorize(&request, "ListSubscriptions")?;
        let store = self.store_for(self.pubsub, "pubsub-svc")?;
        let r = request.into_inner();
        let (found, truncated) = pubsub_svc::admin::subscriptions(store, r.filter.trim(), limit(r.limit))
            .await
            .map_err(store_error)?;
        Ok(Response::new(pb::Subscriptions {
            subscriptions: found
                .into_iter()
                .map(|s| pb::Subscription {
                    id: s.id,
                    package: s.package,
                    resource: s.resource,
                    watcher: s.watcher,
                    state: s.state.to_owned(),
                    expires_in_s: s.expires_in_s,
                    notifies_sent: s.notifies_sent,
                })
                .collect(),
            truncated,
        }))
    }

    async fn list_publications(&self, request: Request<pb::ListRequest>) -> Result<Response<pb::Publications>, Status> {
        self.authorize(&request, "ListPublications")?;
        let store = self.store_for(self.publish, "publish-svc")?;
        let r = request.into_inner();
        let (found, truncated) = publish_svc::admin::publications(store, r.filter.trim(), limit(r.limit))
            .await
            .map_err(store_error)?;
        Ok(Response::new(pb::Publications {
            publications: found
                .into_iter()
                .map(|p| pb::Publication {
                    package: p.package,
                    resource: p.resource,
                    etag: p.etag,
                    content_type: p.content_type,
                    publisher: p.publisher,
                    expires_in_s: p.expires_in_s,
                })
                .collect(),
            truncated,
        }))
    }

    async fn reload_tls(&self, request: Request<pb::ReloadTlsRequest>) -> Result<Response<pb::ReloadTlsReply>, Status> {
        self.authorize(&request, "ReloadTls")?;
        let tls = self
            .tls
            .as_ref()
            .ok_or_else(|| Status::unimplemented("this process does not run sip-edge; ask one that does"))?;
        let detail = tls
            .reload_now()
            .map_err(|e| Status::failed_precondition(format!("the files do not load ({e}); the previous ones stay")))?;
        Ok(Response::new(pb::ReloadTlsReply { detail }))
    }
}
