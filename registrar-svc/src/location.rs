//! The location service contract: where the requests for an
//! address-of-record go. [`LocationClient`] reaches it in process or over
//! gRPC (`sipbus.registrar.v1.Registrar`), and [`LocationService`] serves
//! it to other processes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bus::{CallError, NeverArrived, Replicas};
use proto::registrar::v1 as rpb;
use proto::registrar::v1::registrar_client::RegistrarClient;
use state_store::now_ms;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::binding::Binding;
use crate::service::Registrar;

/// Why a lookup failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LocationError {
    #[error("store unavailable: {0}")]
    Store(String),
    #[error("location service unreachable: {0}")]
    Unreachable(String),
    #[error("location service failed: {0}")]
    Failed(String),
}

impl NeverArrived for LocationError {
    fn never_arrived(&self) -> bool {
        matches!(self, LocationError::Unreachable(_))
    }
}

/// The location service.
#[async_trait]
pub trait Location: Send + Sync + 'static {
    /// Current bindings of an address-of-record (`sip:user@domain`), highest
    /// q first.
    async fn lookup(&self, aor: &str) -> Result<Vec<Binding>, LocationError>;
}

#[async_trait]
impl Location for Registrar {
    async fn lookup(&self, aor: &str) -> Result<Vec<Binding>, LocationError> {
        Registrar::lookup(self, aor)
            .await
            .map_err(|e| LocationError::Store(e.to_string()))
    }
}

/// The location service as session-svc (and the event services) call it.
#[derive(Clone)]
pub struct LocationClient {
    replicas: Arc<Replicas<Arc<dyn Location>>>,
}

/// Deadline of one lookup.
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(2);

impl LocationClient {
    /// The registrar of this process.
    pub fn new(location: Arc<dyn Location>) -> Self {
        Self {
            replicas: Arc::new(Replicas::local(location, LOOKUP_DEADLINE).named("location")),
        }
    }

    /// registrar-svc replicas another part keeps up to date (DNS
    /// discovery): each made by [`remote`].
    pub fn following(replicas: Arc<Replicas<Arc<dyn Location>>>) -> Self {
        Self { replicas }
    }

    pub async fn lookup(&self, aor: &str) -> Result<Vec<Binding>, CallError<LocationError>> {
        self.replicas.call(|l| async move { l.lookup(aor).await }).await
    }
}

/// The location service of a registrar-svc in another process.
pub fn remote(channel: Channel) -> Arc<dyn Location> {
    Arc::new(RemoteLocation {
        client: RegistrarClient::new(channel),
    })
}

/// A registrar-svc in another process.
struct RemoteLocation {
    client: RegistrarClient<Channel>,
}

#[async_trait]
impl Location for RemoteLocation {
    async fn lookup(&self, aor: &str) -> Result<Vec<Binding>, LocationError> {
        let mut request = Request::new(rpb::LookupRequest { aor: aor.to_owned() });
        request.set_timeout(LOOKUP_DEADLINE);
        proto::trace::inject_current(request.metadata_mut());
        let reply = self.client.clone().lookup(request).await.map_err(|s| {
            if bus::grpc::never_arrived(&s) {
                LocationError::Unreachable(s.to_string())
            } else {
                LocationError::Failed(format!("{}: {}", s.code(), s.message()))
            }
        })?;
        let now = now_ms();
        reply
            .into_inner()
            .bindings
            .into_iter()
            .map(|b| binding_from_proto(b, now))
            .collect()
    }
}

/// Serves a [`Location`] over gRPC.
#[derive(Clone)]
pub struct LocationService {
    inner: Arc<dyn Location>,
}

impl LocationService {
    pub fn new(inner: Arc<dyn Location>) -> Self {
        Self { inner }
    }

    pub fn into_server(self) -> proto::registrar::v1::registrar_server::RegistrarServer<Self> {
        proto::registrar::v1::registrar_server::RegistrarServer::new(self)
    }
}

#[tonic::async_trait]
impl proto::registrar::v1::registrar_server::Registrar for LocationService {
    async fn lookup(&self, request: Request<rpb::LookupRequest>) -> Result<Response<rpb::LookupReply>, Status> {
        let aor = request.into_inner().aor;
        let bindings = self
            .inner
            .lookup(&aor)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let now = now_ms();
        let bindings = bindings.into_iter().map(|b| binding_to_proto(b, now)).collect();
        Ok(Response::new(rpb::LookupReply { bindings }))
    }
}

fn binding_to_proto(b: Binding, now: u64) -> rpb::Binding {
    rpb::Binding {
        contact: b.contact,
        uri: b.uri,
        expires_in: u32::try_from(b.expires_at_ms.saturating_sub(now) / 1000).unwrap_or(u32::MAX),
        q: u32::from(b.q),
        instance: b.instance.unwrap_or_default(),
        reg_id: b.reg_id.unwrap_or(0),
        path: b.path,
        flow: Some(bus::convert::flow_to_proto(&b.flow)),
        call_id: b.call_id,
        cseq: b.cseq,
    }
}

/// What another process sent is checked before use: a binding whose flow,
/// URI, Contact or Path does not parse fails the lookup (they become the
/// Request-URI and Route of a request).
fn binding_from_proto(b: rpb::Binding, now: u64) -> Result<Binding, LocationError> {
    let bad = |what: &str| LocationError::Failed(format!("registrar-svc sent a binding with an unusable {what}"));
    let flow = b.flow.unwrap_or_default();
    let flow = bus::convert::flow_from_proto(&flow).map_err(|e| LocationError::Failed(e.to_string()))?;
    sip_message::Uri::parse(&b.uri).map_err(|_| bad("uri"))?;
    sip_message::typed::NameAddr::parse(&b.contact).map_err(|_| bad("contact"))?;
    if b.path
        .iter()
        .any(|p| sip_message::typed::NameAddr::parse(p).is_err() || p.contains(['\r', '\n']))
    {
        return Err(bad("path"));
    }
    Ok(Binding {
        contact: b.contact,
        uri: b.uri,
        expires_at_ms: now + u64::from(b.expires_in) * 1000,
        q: u16::try_from(b.q).unwrap_or(1000).min(1000),
        call_id: b.call_id,
        cseq: b.cseq,
        instance: (!b.instance.is_empty()).then_some(b.instance),
        reg_id: (b.reg_id != 0).then_some(b.reg_id),
        path: b.path,
        flow,
    })
}
