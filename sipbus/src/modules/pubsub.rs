//! pubsub-svc: SUBSCRIBE/NOTIFY and the subscription handlers.

use std::sync::Arc;

use anyhow::Context;
use bus::Replica;
use bus::grpc::HandlerService;
use edge_api::RequestHandler;
use pubsub_svc::{Core, PubsubService};
use registrar_svc::Directory;
use tracing::info;

use super::{Ctx, Module, Name, Process};
use crate::config::Config;

pub const MODULE: Module = Module {
    name: Name::Pubsub,
    target: Some("pubsub-svc"),
    needs: &[Name::Store],
    after: &[Name::Store, Name::Registrar, Name::Publish, Name::Edge],
    check,
    start: |ctx| Box::pin(start(ctx)),
};

fn check(config: &Config, process: &Process) -> Vec<extension::ConfigProblem> {
    let mut problems = config.pubsub.check();
    problems.extend(super::edge_api_problems(config, process));
    problems.extend(super::neighbour_problems(
        process,
        Name::Registrar,
        "bus.registrar",
        &config.bus.registrar,
        "registrar-svc addresses (presence reads bindings)",
    ));
    problems.extend(super::nonce_problems(
        config,
        process,
        config.pubsub.authenticate,
        "pubsub.authenticate",
    ));
    problems
}

async fn start(ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let config = ctx.config;
    let store = ctx.store.clone().context("pubsub-svc starts after the store")?;
    let edges = super::edges(ctx)?;
    let locations = super::locations(ctx).await?;
    let directory = Directory::from_config(&config.registrar, config.pubsub.authenticate, &store);
    let core = Core::new(
        config.pubsub.clone(),
        store,
        edges,
        directory,
        locations,
        &config.registry,
    )
    .map_err(|problems| {
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("config: {}", text.join("; "))
    })?;
    let core = Arc::new(core);
    ctx.tasks.push(tokio::spawn(pubsub_svc::timers::run(core.clone())));
    ctx.tasks.push(tokio::spawn(pubsub_svc::changes::run(core.clone())));
    ctx.tasks.push(tokio::spawn(pubsub_svc::upstream::run(core.clone())));
    ctx.tasks.push(tokio::spawn(core.clone().follow_registry()));
    ctx.hosts.push(core.registry_host());
    let service: Arc<dyn RequestHandler> = Arc::new(PubsubService::new(core));
    if let Some(pool) = &ctx.pubsub_pool {
        pool.replace(vec![Replica {
            address: "in-process".into(),
            client: service.clone(),
        }]);
        info!("pubsub-svc serves the edge in process");
    }
    if ctx.process.serves_bus() {
        ctx.services.add_service(HandlerService::new(service).into_server());
    }
    Ok(())
}
