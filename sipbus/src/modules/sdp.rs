//! sdp-svc: offer/answer through the SDP handlers.

use std::sync::Arc;

use sdp_svc::{Negotiator, SdpService};

use super::{Ctx, Module, Name, Process};
use crate::config::Config;

pub const MODULE: Module = Module {
    name: Name::Sdp,
    target: Some("sdp-svc"),
    needs: &[],
    after: &[],
    check,
    start: |ctx| Box::pin(start(ctx)),
};

fn check(config: &Config, _process: &Process) -> Vec<extension::ConfigProblem> {
    config.sdp.check()
}

async fn start(ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let negotiator = Arc::new(Negotiator::from_config(&ctx.config.sdp).map_err(|e| anyhow::anyhow!("config: {e}"))?);
    if ctx.process.serves_bus() {
        ctx.services
            .add_service(SdpService::new(negotiator.clone()).into_server());
    }
    ctx.sdp = Some(negotiator);
    Ok(())
}
