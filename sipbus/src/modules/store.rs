//! The store: embedded in memory for `all` (unless `store.redis` is set),
//! Redis for every split target.

use std::time::Duration;

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
    ctx.tasks.push(tokio::spawn(watch(store.clone(), counted(ctx.process))));
    ctx.store = Some(store);
    Ok(())
}

/// The gauges of what this process's services keep, each counted by the
/// store timers that expire it (one per binding, subscription,
/// publication).
fn counted(process: &Process) -> Vec<(&'static str, &'static telemetry::metrics::Gauge)> {
    let m = telemetry::metrics();
    let mut counted = Vec::new();
    if process.runs(Name::Registrar) {
        counted.push((registrar_svc::binding::EXPIRY_QUEUE, &m.registrations));
    }
    if process.runs(Name::Pubsub) {
        counted.push((pubsub_svc::timers::EXPIRY, &m.subscriptions));
    }
    if process.runs(Name::Publish) {
        counted.push((publish_svc::EXPIRY_QUEUE, &m.publications));
    }
    counted
}

/// Probes the store for readiness (a process whose store does not answer
/// takes no traffic) and refreshes the counted gauges.
async fn watch(store: Store, counted: Vec<(&'static str, &'static telemetry::metrics::Gauge)>) {
    // Often: until a probe fails, a replica cut off from its store keeps
    // taking requests it can only refuse.
    const EVERY: Duration = Duration::from_secs(1);
    const PROBE_DEADLINE: Duration = Duration::from_secs(1);
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ok = matches!(
            tokio::time::timeout(PROBE_DEADLINE, store.get("sipbus:probe")).await,
            Ok(Ok(_))
        );
        if ok != telemetry::health::store_ok() {
            if ok {
                info!("store answers again: ready");
            } else {
                tracing::warn!("store does not answer: not ready");
            }
        }
        telemetry::health::set_store_ok(ok);
        if !ok {
            continue;
        }
        for (queue, gauge) in &counted {
            if let Ok(Ok(n)) = tokio::time::timeout(PROBE_DEADLINE, store.timers_held(queue)).await {
                gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }
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
