//! sip-edge: transports, transactions, and the router that hands each
//! request to the service that owns its method, in process or over gRPC.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bus::grpc::{EdgeService, RemoteHandler};
use bus::{HandlerPool, ReplicaSource, Replicas, Router};
use edge_api::RequestHandler;
use publish_svc::PublishService;
use registrar_svc::RegistrarService;
use session_svc::SessionService;
use sip_message::Method;
use tracing::info;

use super::{Ctx, Module, Name, Process, problem};
use crate::config::Config;

pub const MODULE: Module = Module {
    name: Name::Edge,
    target: Some("sip-edge"),
    needs: &[],
    // The services it routes to in process start first; session-svc,
    // which needs the edge's API, fills its pool after.
    after: &[Name::Store, Name::Registrar, Name::Publish],
    check,
    start: |ctx| Box::pin(start(ctx)),
};

fn check(config: &Config, process: &Process) -> Vec<extension::ConfigProblem> {
    let mut problems: Vec<_> = match config.edge.check() {
        Ok(()) => Vec::new(),
        Err(found) => found
            .into_iter()
            .map(|e| problem(&format!("edge.{}", e.key), e.problem))
            .collect(),
    };
    let bus = &config.bus;
    let remote_registrar = !process.runs(Name::Registrar) && !bus.registrar.is_empty();
    let remote_session = !process.runs(Name::Session) && !bus.session.is_empty();
    let remote_pubsub = !process.runs(Name::Pubsub) && !bus.pubsub.is_empty();
    let remote_publish = !process.runs(Name::Publish) && !bus.publish.is_empty();
    let any_local = [Name::Registrar, Name::Session, Name::Pubsub, Name::Publish]
        .into_iter()
        .any(|n| process.runs(n));
    if !any_local && !remote_registrar && !remote_session && !remote_pubsub && !remote_publish {
        problems.push(problem(
            "bus.registrar, bus.session, bus.pubsub, bus.publish",
            format!("--target {} needs at least one service's addresses", process.target),
        ));
    }
    match config.edge.instance.as_deref() {
        None if remote_session || remote_pubsub => problems.push(problem(
            "edge.instance",
            "required with bus.session or bus.pubsub (those services reach this edge by its instance name in their \
             bus.edges)",
        )),
        Some(name) if name.is_empty() || name.contains(char::is_whitespace) => {
            problems.push(problem(
                "edge.instance",
                format!("`{name}` is empty or contains white space"),
            ));
        }
        _ => {}
    }
    if remote_registrar || remote_session || remote_pubsub || remote_publish {
        problems.extend(timing(&config.bus));
    }
    for (key, list, remote) in [
        ("bus.registrar", &bus.registrar, remote_registrar),
        ("bus.session", &bus.session, remote_session),
        ("bus.pubsub", &bus.pubsub, remote_pubsub),
        ("bus.publish", &bus.publish, remote_publish),
    ] {
        if let (true, Err(e)) = (remote, ReplicaSource::parse_all(list)) {
            problems.push(problem(key, e.to_string()));
        }
    }
    problems
}

/// The replicas of one service the edge calls over gRPC, followed through
/// DNS when named so.
async fn remote_pool(ctx: &mut Ctx<'_>, key: &'static str, replicas: &[String]) -> anyhow::Result<Arc<HandlerPool>> {
    let deadline = Duration::from_millis(ctx.config.bus.deadline_ms);
    super::followed(
        ctx,
        key.trim_start_matches("bus."),
        key,
        replicas,
        deadline,
        move |channel| Arc::new(RemoteHandler::new(channel, deadline)) as Arc<dyn RequestHandler>,
    )
    .await
}

async fn start(ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let config = ctx.config;
    let deadline = Duration::from_millis(config.bus.deadline_ms);
    let mut router = Router::new(config.edge.overload.retry_after_s);
    if let Some(registrar) = &ctx.registrar {
        let handler: Arc<dyn RequestHandler> = Arc::new(RegistrarService::new(registrar.clone()));
        router = router.route(
            Method::Register,
            Arc::new(Replicas::local(handler, deadline).named("registrar")),
        );
    } else if !config.bus.registrar.is_empty() {
        router = router.route(
            Method::Register,
            remote_pool(ctx, "bus.registrar", &config.bus.registrar).await?,
        );
    }
    if let Some(publisher) = &ctx.publisher {
        let handler: Arc<dyn RequestHandler> = Arc::new(PublishService::new(publisher.clone()));
        router = router.route(
            Method::Publish,
            Arc::new(Replicas::local(handler, deadline).named("publish")),
        );
    } else if !config.bus.publish.is_empty() {
        router = router.route(
            Method::Publish,
            remote_pool(ctx, "bus.publish", &config.bus.publish).await?,
        );
    }
    if ctx.process.runs(Name::Pubsub) {
        // Like session-svc: filled once pubsub-svc exists.
        let pool = Arc::new(Replicas::new(Vec::new(), deadline).named("pubsub"));
        ctx.pubsub_pool = Some(pool.clone());
        router = router.route(Method::Subscribe, pool.clone()).route_prefix(
            Method::Notify,
            pubsub_svc::upstream::CONTACT_PREFIX,
            pool,
        );
    } else if !config.bus.pubsub.is_empty() {
        let pool = remote_pool(ctx, "bus.pubsub", &config.bus.pubsub).await?;
        router = router.route(Method::Subscribe, pool.clone()).route_prefix(
            Method::Notify,
            pubsub_svc::upstream::CONTACT_PREFIX,
            pool,
        );
    }
    let sessions = if ctx.process.runs(Name::Session) {
        // session-svc needs this edge's API and the edge needs session-svc:
        // the pool is filled once session-svc exists.
        let pool = Arc::new(Replicas::new(Vec::new(), deadline).named("session"));
        ctx.session_pool = Some(pool.clone());
        Some(pool)
    } else if !config.bus.session.is_empty() {
        Some(remote_pool(ctx, "bus.session", &config.bus.session).await?)
    } else {
        None
    };
    if let Some(pool) = sessions {
        for m in SessionService::methods() {
            router = router.route(m, pool.clone());
        }
    }
    let edge = sip_edge::start(&config.edge, Arc::new(router))
        .await
        .context("starting sip-edge")?;
    let handle = edge.handle();
    info!(instance = %handle.id(), "sip-edge started");
    if ctx.process.serves_bus() {
        // Split services answer later and send requests through the edge
        // API.
        let id = handle.id().clone();
        ctx.services
            .add_service(EdgeService::new(Arc::new(handle), id).into_server());
    }
    ctx.edge = Some(edge);
    Ok(())
}

/// The bus's timing, as the retry rule needs it: a replica that is down is
/// only skipped when its connection fails before the call's deadline.
fn timing(bus: &crate::config::BusConfig) -> Vec<extension::ConfigProblem> {
    let mut problems = Vec::new();
    for (key, value) in [
        ("bus.deadline_ms", bus.deadline_ms),
        ("bus.discovery_ms", bus.discovery_ms),
    ] {
        if value == 0 {
            problems.push(problem(key, "must be above 0"));
        }
    }
    if bus.connect_timeout_ms >= bus.deadline_ms {
        problems.push(problem(
            "bus.connect_timeout_ms",
            format!(
                "{} is not below bus.deadline_ms ({}): a replica that is down would never be skipped",
                bus.connect_timeout_ms, bus.deadline_ms
            ),
        ));
    }
    problems
}
