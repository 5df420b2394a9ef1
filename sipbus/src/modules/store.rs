//! The store: embedded in memory for `all` (unless `store.redis` is set),
//! Redis for every split target.

use anyhow::Context;
use state_store::Store;
use tracing::info;

use super::{Ctx, Module, Name, Process, problem};
use crate::config::Config;

pub const MODULE: Module = Module {
    name: Name::Store,
    target: None,
    needs: &[],
    after: &[],
    check,
    start: |ctx| Box::pin(start(ctx)),
};

fn check(config: &Config, process: &Process) -> Vec<extension::ConfigProblem> {
    let redis = &config.store.redis;
    if !redis.is_empty() {
        return match Store::check_urls(redis) {
            Ok(()) => Vec::new(),
            Err(e) => vec![problem("store.redis", e)],
        };
    }
    if process.target != "all" {
        return vec![problem(
            "store.redis",
            format!(
                "required by --target {} (split services share state through Redis)",
                process.target
            ),
        )];
    }
    Vec::new()
}

async fn start(ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let redis = &ctx.config.store.redis;
    let store = if redis.is_empty() {
        info!("store: embedded (in memory)");
        Store::memory()
    } else {
        let store = Store::redis(redis)
            .await
            .with_context(|| format!("connecting to store.redis `{redis}`"))?;
        info!(redis = %redis, "store: redis");
        store
    };
    ctx.store = Some(store);
    Ok(())
}
