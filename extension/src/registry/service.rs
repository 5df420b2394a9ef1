//! `sipbus.extension.v1.Registry`: Register, Renew, Deregister and List,
//! behind the shared token.

use std::sync::Arc;
use std::time::Duration;

use proto::extension::v1 as pb;
use proto::extension::v1::registry_server::{Registry, RegistryServer};
use state_store::Store;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::book::{self, BookError};
use super::stats;
use super::{Host, Kind, Refused, RegistryConfig, Row};
use crate::config::{ModuleConfig, OnFailure, Point};
use crate::window::Tally;

/// The registry of one process: the points it hosts.
pub struct RegistryService {
    store: Store,
    config: RegistryConfig,
    target: String,
    hosts: Arc<Vec<Arc<dyn Host>>>,
    /// This process among the replicas sharing stats.
    replica: String,
}

fn point_from(p: i32) -> Option<Point> {
    Some(match pb::Point::try_from(p).ok()? {
        pb::Point::SessionSupplement => Point::SessionSupplement,
        pb::Point::SdpHandler => Point::SdpHandler,
        pb::Point::SubscriptionHandler => Point::SubscriptionHandler,
        pb::Point::PublicationHandler => Point::PublicationHandler,
        pb::Point::Unspecified => return None,
    })
}

/// A point as the registry contract names it.
pub fn point_to_proto(p: Point) -> pb::Point {
    match p {
        Point::SessionSupplement => pb::Point::SessionSupplement,
        Point::SdpHandler => pb::Point::SdpHandler,
        Point::SubscriptionHandler => pb::Point::SubscriptionHandler,
        Point::PublicationHandler => pb::Point::PublicationHandler,
    }
}

fn store_status(e: BookError) -> Status {
    match e {
        BookError::Unknown(id) => Status::not_found(format!("no live registration {id}: register again")),
        BookError::Busy(_) => Status::aborted(e.to_string()),
        BookError::Full(why) => Status::resource_exhausted(why),
        BookError::Taken(why) => Status::already_exists(why),
        e => Status::unavailable(e.to_string()),
    }
}

/// The most bytes of any one field a registration may carry, and the most
/// entries of a list: what another process sends is bounded.
const MAX_FIELD: usize = 256;
const MAX_LIST: usize = 32;

impl RegistryService {
    pub fn new(store: Store, config: RegistryConfig, target: &str, mut hosts: Vec<Arc<dyn Host>>) -> Self {
        hosts.sort_by_key(|h| h.point());
        Self {
            store,
            config,
            target: target.to_owned(),
            hosts: Arc::new(hosts),
            replica: book::random_hex(),
        }
    }

    /// How long a replica's stats count after it last shared them.
    fn stale(config: &RegistryConfig) -> Duration {
        Duration::from_millis(config.refresh_ms.saturating_mul(5).max(3000))
    }

    /// Shares this replica's last minute of every external module once per
    /// `refresh_ms`, so any replica's listing covers the whole service (the
    /// task of one process).
    pub fn share_stats(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        let (store, hosts, replica) = (self.store.clone(), self.hosts.clone(), self.replica.clone());
        let every = Duration::from_millis(self.config.refresh_ms.max(50));
        let stale = Self::stale(&self.config);
        async move {
            let mut idle = vec![false; hosts.len()];
            loop {
                tokio::time::sleep(every).await;
                for (host, was_idle) in hosts.iter().zip(idle.iter_mut()) {
                    let tallies: stats::Tallies = host
                        .rows()
                        .into_iter()
                        .filter_map(|r| r.tally.map(|t| (r.module.name, t)))
                        .filter(|(_, t)| t.calls > 0)
                        .collect();
                    // Nothing called and nothing to retract: no write.
                    if tallies.is_empty() && *was_idle {
                        continue;
                    }
                    *was_idle = tallies.is_empty();
                    if let Err(e) = stats::publish(&store, host.point(), &replica, tallies, stale).await {
                        tracing::debug!(point = %host.point(), error = %e, "extension stats not shared");
                    }
                }
            }
        }
    }

    pub fn into_server(self) -> RegistryServer<Self> {
        RegistryServer::new(self)
    }

    fn host(&self, point: Point) -> Result<&Arc<dyn Host>, Status> {
        self.hosts.iter().find(|h| h.point() == point).ok_or_else(|| {
            let here: Vec<&str> = self.hosts.iter().map(|h| h.point().as_str()).collect();
            Status::failed_precondition(format!(
                "{} has no {point} point (it hosts: {}); register with the service that has",
                self.target,
                here.join(", ")
            ))
        })
    }

    /// The token, or a loopback caller when none is configured.
    fn authorize<T>(&self, request: &Request<T>, rpc: &'static str) -> Result<(), Status> {
        check_token(&self.config.token, request, "registry", rpc)
    }

    fn lease(&self, asked: u32) -> Duration {
        let asked = if asked == 0 { 30 } else { asked };
        Duration::from_secs(u64::from(asked.clamp(self.config.min_lease_s, self.config.max_lease_s)))
    }

    async fn refresh(&self, point: Point) {
        if let Ok(host) = self.host(point) {
            host.refresh().await;
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Length is not secret (it is in the configuration's documentation).
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A registration as the module configuration every point checks.
fn module_of(point: Point, r: &pb::RegisterRequest) -> Result<ModuleConfig, Status> {
    let too_long = |what: &str| Status::invalid_argument(format!("{what} is too long or has too many entries"));
    if r.name.len() > MAX_FIELD || r.address.len() > MAX_FIELD {
        return Err(too_long("name or address"));
    }
    if r.filters.len() > MAX_LIST || r.types.len() > MAX_LIST {
        return Err(too_long("filters or types"));
    }
    if r.filters.iter().chain(&r.types).any(|f| f.len() > MAX_FIELD) {
        return Err(too_long("a filter or type"));
    }
    if r.address.is_empty() {
        return Err(Status::invalid_argument("address: required (http://host:port)"));
    }
    let mut m = ModuleConfig::builtin(&r.name);
    m.url = r.address.clone();
    // Methods are case-sensitive; media types and packages are not.
    *m.filters_mut(point) = if point == Point::SessionSupplement {
        r.filters.clone()
    } else {
        r.filters.iter().map(|f| f.to_ascii_lowercase()).collect()
    };
    m.types = r.types.clone();
    m.priority = r.priority.unwrap_or(m.priority);
    if r.timeout_ms > 0 {
        m.timeout_ms = u64::from(r.timeout_ms.min(60_000));
    }
    m.on_failure = match pb::FailurePolicy::try_from(r.on_failure) {
        Ok(pb::FailurePolicy::FailClosed) => OnFailure::Closed,
        _ => OnFailure::Open,
    };
    if r.reject_status != 0 {
        m.reject_status = u16::try_from(r.reject_status)
            .map_err(|_| Status::invalid_argument(format!("reject_status: {} is not a SIP status", r.reject_status)))?;
    }
    Ok(m)
}

fn row_to_proto(point: Point, row: &Row) -> pb::Module {
    let m = &row.module;
    let filters = m.filters(point).to_vec();
    let minute = row.tally.as_ref().map(Tally::minute).unwrap_or_default();
    pb::Module {
        kind: match row.kind {
            Kind::BuiltIn => pb::module::Kind::BuiltIn,
            Kind::Configured => pb::module::Kind::Configured,
            Kind::Registered => pb::module::Kind::Registered,
        } as i32,
        name: m.name.clone(),
        addresses: row.addresses.clone(),
        filters,
        types: m.types.clone(),
        priority: m.priority,
        timeout_ms: if m.is_external() {
            u32::try_from(m.timeout_ms).unwrap_or(u32::MAX)
        } else {
            0
        },
        on_failure: match m.on_failure {
            OnFailure::Open => pb::FailurePolicy::FailOpen,
            OnFailure::Closed => pb::FailurePolicy::FailClosed,
        } as i32,
        reject_status: u32::from(m.reject_status),
        lease_left_ms: row
            .lease_left
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        calls: minute.calls,
        failures: minute.failures,
        p99_us: u64::try_from(minute.p99.as_micros()).unwrap_or(u64::MAX),
    }
}

#[tonic::async_trait]
impl Registry for RegistryService {
    async fn register(&self, request: Request<pb::RegisterRequest>) -> Result<Response<pb::RegisterReply>, Status> {
        self.authorize(&request, "register")?;
        let r = request.into_inner();
        let point = point_from(r.point).ok_or_else(|| Status::invalid_argument("point: required"))?;
        let host = self.host(point)?;
        let module = module_of(point, &r)?;
        let mut problems: Vec<Refused> = module
            .check(point, "registration")
            .into_iter()
            .map(|p| Refused::Invalid(p.to_string().replacen("registration.", "", 1)))
            .collect();
        problems.extend(host.check(&module));
        if !problems.is_empty() {
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            warn!(%point, module = %module.name, problems = %text.join("; "), "registration refused");
            // Invalid first: a caller fixes its request before it picks
            // another name.
            let code = if problems.iter().all(|p| matches!(p, Refused::Taken(_))) {
                tonic::Code::AlreadyExists
            } else {
                tonic::Code::InvalidArgument
            };
            return Err(Status::new(code, text.join("; ")));
        }
        let lease = self.lease(r.lease_seconds);
        let id = book::new_id(point);
        book::update(&self.store, point, self.config.retain(), |b, now| {
            book::register(b, now, &module, &id, lease)
        })
        .await
        .map_err(store_status)?;
        info!(%point, module = %module.name, address = %module.url, id = %id, lease_s = lease.as_secs(), "extension registered");
        self.refresh(point).await;
        Ok(Response::new(pb::RegisterReply {
            id,
            lease_seconds: u32::try_from(lease.as_secs()).unwrap_or(u32::MAX),
        }))
    }

    async fn renew(&self, request: Request<pb::RenewRequest>) -> Result<Response<pb::RenewReply>, Status> {
        self.authorize(&request, "renew")?;
        let id = request.into_inner().id;
        let point = book::point_of(&id).ok_or_else(|| Status::not_found(format!("no registration {id}")))?;
        let lease = book::update(&self.store, point, self.config.retain(), |b, now| {
            book::renew(b, now, &id)
        })
        .await
        .map_err(store_status)?;
        Ok(Response::new(pb::RenewReply {
            lease_seconds: u32::try_from(lease.as_secs()).unwrap_or(u32::MAX),
        }))
    }

    async fn deregister(
        &self,
        request: Request<pb::DeregisterRequest>,
    ) -> Result<Response<pb::DeregisterReply>, Status> {
        self.authorize(&request, "deregister")?;
        let id = request.into_inner().id;
        let point = book::point_of(&id).ok_or_else(|| Status::not_found(format!("no registration {id}")))?;
        book::update(&self.store, point, self.config.retain(), |b, now| {
            book::deregister(b, now, &id)
        })
        .await
        .map_err(store_status)?;
        info!(%point, id = %id, "extension deregistered");
        self.refresh(point).await;
        Ok(Response::new(pb::DeregisterReply {}))
    }

    async fn list(&self, request: Request<pb::ListRequest>) -> Result<Response<pb::ListReply>, Status> {
        self.authorize(&request, "list")?;
        let wanted = point_from(request.into_inner().point);
        if let Some(p) = wanted {
            self.host(p)?;
        }
        let mut chains = Vec::new();
        for h in self.hosts.iter().filter(|h| wanted.is_none_or(|p| p == h.point())) {
            let mut rows = h.rows();
            // The other replicas' minutes; without them (store down) the
            // listing still shows this replica's.
            match stats::others(&self.store, h.point(), &self.replica, Self::stale(&self.config)).await {
                Ok(others) => {
                    for r in &mut rows {
                        if let (Some(t), Some(o)) = (r.tally.as_mut(), others.get(&r.module.name)) {
                            t.add(o);
                        }
                    }
                }
                Err(e) => warn!(point = %h.point(), error = %e, "other replicas' extension stats unreadable"),
            }
            chains.push(pb::Chain {
                point: point_to_proto(h.point()) as i32,
                modules: rows.iter().map(|r| row_to_proto(h.point(), r)).collect(),
            });
        }
        Ok(Response::new(pb::ListReply {
            target: self.target.clone(),
            chains,
        }))
    }
}

/// The bearer token `token` (`registry.token`), or a loopback caller when
/// none is configured: what the registry and the admin API (`api`) ask of
/// callers.
pub fn check_token<T>(token: &str, request: &Request<T>, api: &'static str, rpc: &'static str) -> Result<(), Status> {
    let peer = request.remote_addr();
    if token.is_empty() {
        if peer.is_some_and(|a| a.ip().is_loopback()) {
            return Ok(());
        }
        warn!(rpc, peer = ?peer, "{api} call refused: no registry.token is configured, so only loopback callers are served");
        return Err(Status::permission_denied(format!(
            "registry.token is not set on this sipbus: only loopback callers may use the {api} API"
        )));
    }
    // RFC 6750: the scheme name is case-insensitive.
    let given = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim());
    if constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return Ok(());
    }
    warn!(rpc, peer = ?peer, "{api} call refused: missing or wrong token");
    Err(Status::unauthenticated(format!(
        "missing or wrong token for the {api} API"
    )))
}
