//! registrar-svc: REGISTER and the location service.

use std::sync::Arc;

use anyhow::Context;
use bus::grpc::HandlerService;
use registrar_svc::{LocationService, Registrar, RegistrarService};

use super::{Ctx, Module, Name, Process, problem};
use crate::config::Config;

pub const MODULE: Module = Module {
    name: Name::Registrar,
    target: Some("registrar-svc"),
    needs: &[Name::Store],
    after: &[Name::Store],
    check,
    start: |ctx| Box::pin(start(ctx)),
};

fn check(config: &Config, process: &Process) -> Vec<extension::ConfigProblem> {
    let mut problems: Vec<_> = match config.registrar.check() {
        Ok(()) => Vec::new(),
        Err(found) => found
            .into_iter()
            .map(|p| match p.split_once(": ") {
                Some((key, reason)) => problem(key, reason),
                None => problem("registrar", p),
            })
            .collect(),
    };
    if process.target != "all" && config.registrar.auth.enabled && config.registrar.auth.nonce_key.is_empty() {
        problems.push(problem(
            "registrar.auth.nonce_key",
            format!(
                "required with --target {} (every replica must verify the nonces the others issue)",
                process.target
            ),
        ));
    }
    problems
}

async fn start(ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let store = ctx.store.clone().context("registrar-svc starts after the store")?;
    let registrar = Arc::new(Registrar::new(ctx.config.registrar.clone(), store));
    ctx.tasks.push(tokio::spawn(registrar.clone().run_expiry()));
    if ctx.process.serves_bus() {
        ctx.services
            .add_service(HandlerService::new(Arc::new(RegistrarService::new(registrar.clone()))).into_server())
            .add_service(LocationService::new(registrar.clone()).into_server());
    }
    ctx.registrar = Some(registrar);
    Ok(())
}
