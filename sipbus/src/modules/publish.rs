//! publish-svc: PUBLISH, publication handlers, the event state API.

use std::sync::Arc;

use anyhow::Context;
use bus::grpc::HandlerService;
use publish_svc::api::EventStateService;
use publish_svc::{PublishService, Publisher};
use registrar_svc::Directory;

use super::{Ctx, Module, Name, Process};
use crate::config::Config;

pub const MODULE: Module = Module {
    name: Name::Publish,
    target: Some("publish-svc"),
    needs: &[Name::Store],
    after: &[Name::Store],
    check,
    start: |ctx| Box::pin(start(ctx)),
};

fn check(config: &Config, process: &Process) -> Vec<extension::ConfigProblem> {
    let mut problems = config.publish.check();
    problems.extend(super::nonce_problems(
        config,
        process,
        config.publish.authenticate,
        "publish.authenticate",
    ));
    problems
}

async fn start(ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let config = ctx.config;
    let store = ctx.store.clone().context("publish-svc starts after the store")?;
    let directory = Directory::from_config(&config.registrar, config.publish.authenticate, &store);
    let publisher = Publisher::new(config.publish.clone(), store, directory, &config.registry).map_err(|problems| {
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("config: {}", text.join("; "))
    })?;
    let publisher = Arc::new(publisher);
    ctx.tasks.push(tokio::spawn(publisher.clone().run_expiry()));
    ctx.tasks.push(tokio::spawn(publisher.follow_registry()));
    ctx.hosts.push(publisher.registry_host());
    if ctx.process.serves_bus() {
        ctx.services
            .add_service(HandlerService::new(Arc::new(PublishService::new(publisher.clone()))).into_server());
    }
    if ctx.process.runs(Name::Grpc) {
        ctx.services
            .add_service(EventStateService::new(publisher.clone(), ctx.config.registry.token.clone()).into_server());
    }
    ctx.publisher = Some(publisher);
    Ok(())
}
