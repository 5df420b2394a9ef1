//! What each target starts, in dependency order: the store, the services,
//! then the edge that dispatches to them. All-in-one and split run the same
//! code; only how the edge reaches a service differs (in process or gRPC).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bus::grpc::{EdgeService, HandlerService, RemoteHandler};
use bus::{Edges, ReplicaSource, Replicas, Router};
use edge_api::{Edge, EdgeId, RequestHandler};
use proto::sdp::v1::sdp_negotiator_server::SdpNegotiatorServer;
use registrar_svc::{LocationClient, LocationService, Registrar, RegistrarService};
use sdp_svc::Negotiator;
use session_svc::{Core, Directory, Negotiators, SessionService, Supplements};
use sip_edge::RunningEdge;
use sip_message::Method;
use state_store::Store;
use tokio::task::JoinHandle;
use tracing::info;

use crate::cli::Target;
use crate::config::Config;

/// Everything a target started; stopped together.
pub struct Running {
    pub edge: Option<RunningEdge>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn stop(self) {
        if let Some(edge) = self.edge {
            edge.stop();
        }
        for t in self.tasks {
            t.abort();
        }
    }
}

async fn store(config: &Config, target: Target) -> anyhow::Result<Store> {
    if config.store.redis.is_empty() {
        if target != Target::All {
            split_store_required(config, target)?;
        }
        info!("store: embedded (in memory)");
        return Ok(Store::memory());
    }
    let store = Store::redis(&config.store.redis)
        .await
        .with_context(|| format!("connecting to store.redis `{}`", config.store.redis))?;
    info!(redis = %config.store.redis, "store: redis");
    Ok(store)
}

async fn serve_edge_api(config: &Config, api: EdgeService) -> anyhow::Result<JoinHandle<()>> {
    let addr = config.grpc.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on grpc.listen {addr} for the edge API"))?;
    info!(%addr, "edge API serving gRPC");
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tonic::transport::Server::builder()
        .add_service(api.into_server())
        .serve_with_incoming(incoming);
    Ok(tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "edge API server stopped");
        }
    }))
}

/// The replicas of one service the edge calls over gRPC, followed through
/// DNS when named so.
async fn remote_pool(
    config: &Config,
    key: &str,
    replicas: &[String],
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<Arc<Replicas<Arc<dyn RequestHandler>>>> {
    let deadline = Duration::from_millis(config.bus.deadline_ms);
    let connect_timeout = Duration::from_millis(config.bus.connect_timeout_ms);
    let sources = ReplicaSource::parse_all(replicas).with_context(|| format!("config: {key}"))?;
    let connect = move |address: &str| -> Result<Arc<dyn RequestHandler>, String> {
        let channel = bus::grpc::channel(address, connect_timeout)?;
        Ok(Arc::new(RemoteHandler::new(channel, deadline)))
    };
    let pool = Replicas::discover(&sources, deadline, &connect)
        .await
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("config: {key}"))?;
    info!(replicas = ?pool.addresses(), "{key} replicas");
    let every = Duration::from_millis(config.bus.discovery_ms);
    tasks.push(tokio::spawn(pool.clone().follow(sources, every, connect)));
    Ok(pool)
}

/// The users and domains calls are checked against: the registrar's.
fn directory(config: &Config) -> Directory {
    let domains: Vec<String> = config
        .registrar
        .domains
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    let realm = config
        .registrar
        .auth
        .realm
        .clone()
        .unwrap_or_else(|| domains.first().cloned().unwrap_or_default());
    let auth = config
        .session
        .authenticate
        .then(|| config.registrar.authenticator(&realm));
    Directory {
        domains,
        users: config.registrar.secrets(),
        auth,
    }
}

fn negotiator(config: &Config) -> anyhow::Result<Negotiator> {
    Negotiator::from_config(&config.sdp).context("config: sdp")
}

async fn serve(
    addr: std::net::SocketAddr,
    what: &str,
    router: tonic::transport::server::Router,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on grpc.listen {addr}"))?;
    info!(%addr, "{what} serving gRPC");
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let what = what.to_owned();
    Ok(tokio::spawn(async move {
        if let Err(e) = router.serve_with_incoming(incoming).await {
            tracing::error!(error = %e, "{what}: gRPC server stopped");
        }
    }))
}

fn split_store_required(config: &Config, target: Target) -> anyhow::Result<()> {
    if config.store.redis.is_empty() {
        bail!("config: store.redis: required by --target {target:?} (split services share state through Redis)");
    }
    Ok(())
}

pub async fn start(target: Target, config: &Config) -> anyhow::Result<Running> {
    let mut tasks = Vec::new();
    let deadline = Duration::from_millis(config.bus.deadline_ms);
    let connect_timeout = Duration::from_millis(config.bus.connect_timeout_ms);
    let supplements = || Supplements::from_config(&config.session).context("config: session.supplements");
    match target {
        Target::All => {
            let store = store(config, target).await?;
            let registrar = Arc::new(Registrar::new(config.registrar.clone(), store.clone()));
            tasks.push(tokio::spawn(registrar.clone().run_expiry()));
            let registrar_svc: Arc<dyn RequestHandler> = Arc::new(RegistrarService::new(registrar.clone()));
            let registrar_pool = Arc::new(Replicas::local(registrar_svc, deadline));
            // session-svc needs the edge's API and the edge needs
            // session-svc's handler: the pool is filled once both exist.
            let session_pool = Arc::new(Replicas::new(Vec::new(), deadline));
            let mut router = Router::new(config.edge.overload.retry_after_s).route(Method::Register, registrar_pool);
            for m in SessionService::methods() {
                router = router.route(m, session_pool.clone());
            }
            let supplements = supplements()?;
            let sdp = Negotiators::local(Arc::new(negotiator(config)?));
            let edge = sip_edge::start(&config.edge, Arc::new(router))
                .await
                .context("starting sip-edge")?;
            let handle = edge.handle();
            let instance = handle.id().clone();
            let api: Arc<dyn Edge> = Arc::new(handle);
            let core = Arc::new(Core::new(
                config.session.clone(),
                store,
                Edges::local(instance.clone(), api),
                LocationClient::new(registrar),
                sdp,
                supplements,
                directory(config),
            ));
            tasks.push(tokio::spawn(core.clone().run_timers()));
            let session: Arc<dyn RequestHandler> = Arc::new(SessionService::new(core));
            session_pool.replace(vec![bus::Replica {
                address: "in-process".into(),
                client: session,
            }]);
            info!(%instance, "sip-edge started with every service in process");
            Ok(Running {
                edge: Some(edge),
                tasks,
            })
        }
        Target::SipEdge => {
            if !config.bus.session.is_empty() && config.edge.instance.is_none() {
                bail!(
                    "config: edge.instance: required with bus.session (session-svc reaches this edge by its \
                     instance name in its bus.edges)"
                );
            }
            if config.bus.registrar.is_empty() && config.bus.session.is_empty() {
                bail!("config: bus.registrar, bus.session: --target sip-edge needs at least one service's addresses");
            }
            let mut router = Router::new(config.edge.overload.retry_after_s);
            if !config.bus.registrar.is_empty() {
                let pool = remote_pool(config, "bus.registrar", &config.bus.registrar, &mut tasks).await?;
                router = router.route(Method::Register, pool);
            }
            if !config.bus.session.is_empty() {
                let pool = remote_pool(config, "bus.session", &config.bus.session, &mut tasks).await?;
                for m in SessionService::methods() {
                    router = router.route(m, pool.clone());
                }
            }
            let edge = sip_edge::start(&config.edge, Arc::new(router))
                .await
                .context("starting sip-edge")?;
            let handle = edge.handle();
            let instance: EdgeId = handle.id().clone();
            info!(%instance, "sip-edge started");
            // Split services answer later and send requests through the
            // edge API.
            tasks.push(serve_edge_api(config, EdgeService::new(Arc::new(handle), instance)).await?);
            Ok(Running {
                edge: Some(edge),
                tasks,
            })
        }
        Target::RegistrarSvc => {
            if config.registrar.auth.enabled && config.registrar.auth.nonce_key.is_empty() {
                bail!(
                    "config: registrar.auth.nonce_key: required with --target registrar-svc \
                     (every replica must verify the nonces the others issue)"
                );
            }
            let store = store(config, target).await?;
            let registrar = Arc::new(Registrar::new(config.registrar.clone(), store));
            tasks.push(tokio::spawn(registrar.clone().run_expiry()));
            let svc = HandlerService::new(Arc::new(RegistrarService::new(registrar.clone())));
            let router = tonic::transport::Server::builder()
                .add_service(svc.into_server())
                .add_service(LocationService::new(registrar).into_server());
            tasks.push(serve(config.grpc.listen, "registrar-svc", router).await?);
            Ok(Running { edge: None, tasks })
        }
        Target::SessionSvc => {
            split_store_required(config, target)?;
            if config.bus.edges.is_empty() {
                bail!("config: bus.edges: --target session-svc needs each edge instance's API address");
            }
            if config.bus.registrar.is_empty() {
                bail!("config: bus.registrar: --target session-svc needs registrar-svc addresses (location lookups)");
            }
            if config.bus.sdp.is_empty() {
                bail!("config: bus.sdp: --target session-svc needs sdp-svc addresses");
            }
            if config.session.authenticate && config.registrar.auth.nonce_key.is_empty() {
                bail!(
                    "config: registrar.auth.nonce_key: required with --target session-svc when \
                     session.authenticate is on (every replica must verify the nonces the others issue)"
                );
            }
            let store = store(config, target).await?;
            let edges: Vec<(String, String)> = config.bus.edges.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let core = Arc::new(Core::new(
                config.session.clone(),
                store,
                Edges::remote(&edges, connect_timeout)
                    .map_err(anyhow::Error::msg)
                    .context("config: bus.edges")?,
                LocationClient::from_addresses(&config.bus.registrar, connect_timeout)
                    .map_err(anyhow::Error::msg)
                    .context("config: bus.registrar")?,
                Negotiators::remote(&config.bus.sdp, connect_timeout)
                    .map_err(anyhow::Error::msg)
                    .context("config: bus.sdp")?,
                supplements()?,
                directory(config),
            ));
            tasks.push(tokio::spawn(core.clone().run_timers()));
            let router = tonic::transport::Server::builder()
                .add_service(HandlerService::new(Arc::new(SessionService::new(core))).into_server());
            tasks.push(serve(config.grpc.listen, "session-svc", router).await?);
            Ok(Running { edge: None, tasks })
        }
        Target::SdpSvc => {
            let router = tonic::transport::Server::builder().add_service(SdpNegotiatorServer::new(negotiator(config)?));
            tasks.push(serve(config.grpc.listen, "sdp-svc", router).await?);
            Ok(Running { edge: None, tasks })
        }
    }
}
