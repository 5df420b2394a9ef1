//! sdp-svc: offer/answer through the SDP handlers.

use std::sync::Arc;

use anyhow::Context;
use sdp_svc::{Negotiator, SdpService};

use super::{Ctx, Module, Name, Process};
use crate::config::Config;

pub const MODULE: Module = Module {
    name: Name::Sdp,
    target: Some("sdp-svc"),
    // The registry of SDP handlers lives in the store.
    needs: &[Name::Store],
    after: &[Name::Store],
    check,
    start: |ctx| Box::pin(start(ctx)),
};

fn check(config: &Config, _process: &Process) -> Vec<extension::ConfigProblem> {
    config.sdp.check()
}

async fn start(ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let store = ctx.store.clone().context("sdp-svc starts after the store")?;
    let negotiator = Arc::new(
        Negotiator::from_config(&ctx.config.sdp)
            .map_err(|e| anyhow::anyhow!("config: {e}"))?
            .with_registry(store, &ctx.config.registry),
    );
    ctx.tasks.push(tokio::spawn(negotiator.clone().follow_registry()));
    ctx.hosts.push(negotiator.clone());
    if ctx.process.serves_bus() {
        ctx.services
            .add_service(SdpService::new(negotiator.clone()).into_server());
    }
    ctx.sdp = Some(negotiator);
    Ok(())
}
