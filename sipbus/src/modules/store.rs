//! The store: embedded in memory for `all` (unless `store.redis` is set),
//! Redis for every split target.

use anyhow::Context;
use sip_edge::transport::tls::{cert_pem, key_pem};
use state_store::{RedisTls, Store};
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
        let mut problems = match Store::check_urls(redis) {
            Ok(()) => Vec::new(),
            Err(e) => vec![problem("store.redis", e)],
        };
        if let Err(e) = redis_tls(config) {
            problems.push(problem("store.tls", format!("{e:#}")));
        }
        return problems;
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
        let store = Store::redis_with_tls(redis, &redis_tls(ctx.config)?)
            .await
            .with_context(|| format!("connecting to store.redis `{redis}`"))?;
        info!(redis = %redis, "store: redis");
        store
    };
    ctx.store = Some(store);
    Ok(())
}

/// The TLS files for `rediss://`, each falling back to `[grpc.tls]`'s.
fn redis_tls(config: &Config) -> anyhow::Result<RedisTls> {
    let (own, bus) = (&config.store.tls, &config.grpc.tls);
    let pick = |own: &Option<std::path::PathBuf>, bus: &Option<std::path::PathBuf>| own.clone().or_else(|| bus.clone());
    let ca = pick(&own.ca_file, &bus.ca_file).map(|p| cert_pem(&p)).transpose()?;
    let client = match (pick(&own.cert_file, &bus.cert_file), pick(&own.key_file, &bus.key_file)) {
        (Some(cert), Some(key)) => Some((cert_pem(&cert)?, key_pem(&key)?)),
        (None, None) => None,
        _ => anyhow::bail!("a client certificate needs both cert_file and key_file"),
    };
    Ok(RedisTls { ca, client })
}
