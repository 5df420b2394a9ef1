//! session-svc: calls, with their supplements.

use std::sync::Arc;

use anyhow::Context;
use bus::Replica;
use bus::grpc::HandlerService;
use edge_api::RequestHandler;
use sdp_svc::SdpClient;
use session_svc::{Core, Directory, SessionService, Supplements};
use tracing::info;

use super::{Ctx, Module, Name, Process};
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
    problems.extend(super::edge_api_problems(config, process));
    problems.extend(super::neighbour_problems(
        process,
        Name::Registrar,
        "bus.registrar",
        &bus.registrar,
        "registrar-svc addresses (location lookups)",
    ));
    problems.extend(super::neighbour_problems(
        process,
        Name::Sdp,
        "bus.sdp",
        &bus.sdp,
        "sdp-svc addresses",
    ));
    problems.extend(super::nonce_problems(
        config,
        process,
        config.session.authenticate,
        "session.authenticate",
    ));
    problems
}

/// The users and domains calls are checked against: the registrar's.
fn directory(config: &Config, store: &state_store::Store) -> Directory {
    Directory::from_config(&config.registrar, config.session.authenticate, store)
}

async fn start(ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let config = ctx.config;
    let store = ctx.store.clone().context("session-svc starts after the store")?;
    let edges = super::edges(ctx)?;
    let locations = super::locations(ctx).await?;
    let sdp = match &ctx.sdp {
        Some(n) => SdpClient::new(n.clone()),
        None => SdpClient::following(
            super::followed(
                ctx,
                "sdp",
                "bus.sdp",
                &config.bus.sdp,
                sdp_svc::api::CALL_DEADLINE,
                sdp_svc::api::remote,
            )
            .await?,
        ),
    };
    let supplements = Supplements::from_config(&config.session)
        .map_err(|problems| {
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("config: {}", text.join("; "))
        })?
        .with_registry(store.clone(), &config.registry);
    let directory = directory(config, &store);
    let core = Arc::new(Core::new(
        config.session.clone(),
        store,
        edges,
        locations,
        sdp,
        supplements,
        directory,
    ));
    ctx.tasks.push(tokio::spawn(session_svc::timers::run(core.clone())));
    ctx.tasks.push(tokio::spawn(core.clone().follow_registry()));
    ctx.hosts.push(core.registry_host());
    let service: Arc<dyn RequestHandler> = Arc::new(SessionService::new(core));
    if let Some(pool) = &ctx.session_pool {
        pool.replace(vec![Replica {
            address: "in-process".into(),
            client: service.clone(),
        }]);
        info!("session-svc serves the edge in process");
    }
    if ctx.process.serves_bus() {
        ctx.services.add_service(HandlerService::new(service).into_server());
    }
    Ok(())
}
