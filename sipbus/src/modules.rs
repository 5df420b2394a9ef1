//! What each target starts, in dependency order: the store, the services,
//! then the edge that dispatches to them. All-in-one and split run the same
//! code; only how the edge reaches a service differs (in process or gRPC).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bus::{EdgeApi, Handler, HandlerPool, ReplicaSource, Router};
use proto::edge::v1::edge_server::EdgeServer;
use proto::edge::v1::request_handler_server::RequestHandlerServer;
use proto::registrar::v1::registrar_server::RegistrarServer;
use registrar_svc::{Registrar, RegistrarService};
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
            bail!("config: store.redis: required by --target {target:?} (split services share state through Redis)");
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

fn edge_instance(config: &Config) -> String {
    config
        .edge
        .instance
        .clone()
        .unwrap_or_else(|| format!("edge-{:08x}", fastrand::u32(..)))
}

async fn serve_edge_api(config: &Config, api: EdgeApi) -> anyhow::Result<JoinHandle<()>> {
    let addr = config.grpc.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on grpc.listen {addr} for the edge API"))?;
    info!(%addr, "edge API serving gRPC");
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tonic::transport::Server::builder()
        .add_service(EdgeServer::new(api))
        .serve_with_incoming(incoming);
    Ok(tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "edge API server stopped");
        }
    }))
}

pub async fn start(target: Target, config: &Config) -> anyhow::Result<Running> {
    let mut tasks = Vec::new();
    let deadline = Duration::from_millis(config.bus.deadline_ms);
    let registrar_pool = match target {
        Target::All => {
            let store = store(config, target).await?;
            let registrar = Arc::new(Registrar::new(config.registrar.clone(), store));
            tasks.push(tokio::spawn(registrar.clone().run_expiry()));
            let svc = RegistrarService::new(registrar);
            Some(Arc::new(HandlerPool::new(
                vec![Handler::Local(Arc::new(svc))],
                deadline,
            )))
        }
        Target::SipEdge => {
            if config.bus.registrar.is_empty() {
                bail!("config: bus.registrar: --target sip-edge needs the registrar-svc addresses");
            }
            let connect = Duration::from_millis(config.bus.connect_timeout_ms);
            let sources = config
                .bus
                .registrar
                .iter()
                .map(|e| ReplicaSource::parse(e))
                .collect::<Result<Vec<_>, _>>()
                .context("config: bus.registrar")?;
            let pool = Arc::new(HandlerPool::new(Vec::new(), deadline));
            let addresses = bus::resolve(&sources).await;
            pool.replace(bus::handlers_for(&pool, &addresses, connect).context("config: bus.registrar")?);
            info!(replicas = ?addresses, "registrar-svc replicas");
            let every = Duration::from_millis(config.bus.discovery_ms);
            tasks.push(tokio::spawn(bus::follow(pool.clone(), sources, every, connect)));
            Some(pool)
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
            let svc = RegistrarService::new(registrar);
            let addr = config.grpc.listen;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on grpc.listen {addr}"))?;
            info!(%addr, "registrar-svc serving gRPC");
            let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            let server = tonic::transport::Server::builder()
                .add_service(RequestHandlerServer::new(svc.clone()))
                .add_service(RegistrarServer::new(svc))
                .serve_with_incoming(incoming);
            tasks.push(tokio::spawn(async move {
                if let Err(e) = server.await {
                    tracing::error!(error = %e, "gRPC server stopped");
                }
            }));
            None
        }
    };
    let edge = match registrar_pool {
        Some(pool) => {
            let instance = edge_instance(config);
            let router = Router::new(&instance, config.edge.overload.retry_after_s).route(Method::Register, pool);
            let edge = sip_edge::start(&config.edge, Arc::new(router))
                .await
                .context("starting sip-edge")?;
            info!(%instance, "sip-edge started");
            if target == Target::SipEdge {
                // Split services answer later and send requests through the
                // edge API; in one process they use the handle directly.
                tasks.push(serve_edge_api(config, EdgeApi::new(edge.handle(), &instance)).await?);
            }
            Some(edge)
        }
        None => None,
    };
    Ok(Running { edge, tasks })
}
