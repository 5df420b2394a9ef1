//! session-svc: calls, with their supplements.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bus::grpc::HandlerService;
use bus::{Edges, Replica};
use edge_api::{Edge, RequestHandler};
use registrar_svc::LocationClient;
use sdp_svc::SdpClient;
use session_svc::{Core, Directory, SessionService, Supplements};
use tracing::info;

use super::{Ctx, Module, Name, Process, problem};
use crate::config::Config;

pub const MODULE: Module = Module {
    name: Name::Session,
    target: Some("session-svc"),
    needs: &[Name::Store],
    after: &[Name::Store, Name::Registrar, Name::Sdp, Name::Edge],
    check,
    start: |ctx| Box::pin(start(ctx)),
};

fn check(config: &Config, process: &Process) -> Vec<extension::ConfigProblem> {
    let mut problems = session_svc::check(&config.session);
    let bus = &config.bus;
    if !process.runs(Name::Edge) {
        if bus.edges.is_empty() {
            problems.push(problem(
                "bus.edges",
                format!("--target {} needs each edge instance's API address", process.target),
            ));
        }
        for (name, address) in &bus.edges {
            if let Err(e) = bus::grpc::check_address(address) {
                problems.push(problem(&format!("bus.edges.{name}"), format!("`{address}`: {e}")));
            }
        }
    }
    for (runs, key, list, what) in [
        (
            Name::Registrar,
            "bus.registrar",
            &bus.registrar,
            "registrar-svc addresses (location lookups)",
        ),
        (Name::Sdp, "bus.sdp", &bus.sdp, "sdp-svc addresses"),
    ] {
        if process.runs(runs) {
            continue;
        }
        if list.is_empty() {
            problems.push(problem(key, format!("--target {} needs {what}", process.target)));
        }
        if let Some(bad) = list.iter().find(|a| bus::grpc::check_address(a).is_err()) {
            problems.push(problem(key, format!("`{bad}`: expected http://host:port")));
        }
    }
    if process.target != "all" && config.session.authenticate && config.registrar.auth.nonce_key.is_empty() {
        problems.push(problem(
            "registrar.auth.nonce_key",
            format!(
                "required with --target {} when session.authenticate is on (every replica must verify the nonces the \
                 others issue)",
                process.target
            ),
        ));
    }
    problems
}

/// The users and domains calls are checked against: the registrar's.
fn directory(config: &Config) -> Directory {
    Directory::from_config(&config.registrar, config.session.authenticate)
}

async fn start(ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let config = ctx.config;
    let connect = Duration::from_millis(config.bus.connect_timeout_ms);
    let store = ctx.store.clone().context("session-svc starts after the store")?;
    let edges = match &ctx.edge {
        Some(edge) => {
            let handle = edge.handle();
            let id = handle.id().clone();
            Edges::local(id, Arc::new(handle) as Arc<dyn Edge>)
        }
        None => {
            let edges: Vec<(String, String)> = config.bus.edges.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            Edges::remote(&edges, connect)
                .map_err(anyhow::Error::msg)
                .context("config: bus.edges")?
        }
    };
    let locations = match &ctx.registrar {
        Some(r) => LocationClient::new(r.clone()),
        None => LocationClient::from_addresses(&config.bus.registrar, connect)
            .map_err(anyhow::Error::msg)
            .context("config: bus.registrar")?,
    };
    let sdp = match &ctx.sdp {
        Some(n) => SdpClient::new(n.clone()),
        None => SdpClient::from_addresses(&config.bus.sdp, connect)
            .map_err(anyhow::Error::msg)
            .context("config: bus.sdp")?,
    };
    let supplements = Supplements::from_config(&config.session).map_err(|problems| {
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("config: {}", text.join("; "))
    })?;
    let core = Arc::new(Core::new(
        config.session.clone(),
        store,
        edges,
        locations,
        sdp,
        supplements,
        directory(config),
    ));
    ctx.tasks.push(tokio::spawn(session_svc::timers::run(core.clone())));
    let service: Arc<dyn RequestHandler> = Arc::new(SessionService::new(core));
    if let Some(pool) = &ctx.session_pool {
        pool.replace(vec![Replica {
            address: "in-process".into(),
            client: service.clone(),
        }]);
        info!("session-svc serves the edge in process");
    }
    if ctx.process.runs(Name::Grpc) {
        ctx.services.add_service(HandlerService::new(service).into_server());
    }
    Ok(())
}
