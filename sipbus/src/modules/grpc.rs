//! The gRPC server: every contract the process's modules serve, on
//! `grpc.listen` (all-in-one serves them too, for `sipbus mwi` and other
//! local tools).

use anyhow::Context;
use extension::registry::RegistryService;
use tracing::info;

use super::{Ctx, Module, Name, Process};
use crate::config::Config;

pub const MODULE: Module = Module {
    name: Name::Grpc,
    target: None,
    needs: &[],
    // Last: it serves what the others made.
    after: &[
        Name::Store,
        Name::Registrar,
        Name::Sdp,
        Name::Publish,
        Name::Edge,
        Name::Session,
        Name::Pubsub,
    ],
    check,
    start: |ctx| Box::pin(start(ctx)),
};

fn check(config: &Config, _process: &Process) -> Vec<extension::ConfigProblem> {
    let mut problems = config.registry.check();
    if let Err(e) = config.grpc.tls.load() {
        problems.push(extension::ConfigProblem {
            key: "grpc.tls".into(),
            reason: e.to_string(),
        });
    }
    problems
}

async fn start(ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let addr = ctx.config.grpc.listen_for(ctx.process.target);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on grpc.listen {addr}"))?;
    info!(%addr, target = ctx.process.target, "serving gRPC");
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    if !ctx.hosts.is_empty()
        && let Some(store) = &ctx.store
    {
        if ctx.config.registry.token.is_empty() && !addr.ip().is_loopback() {
            // Behind a sidecar proxy every caller looks like loopback.
            tracing::warn!(%addr, "registry.token is not set: only loopback callers may register extensions, and behind a local proxy every caller is one; set a token");
        }
        let registry = RegistryService::new(
            store.clone(),
            ctx.config.registry.clone(),
            ctx.process.target,
            std::mem::take(&mut ctx.hosts),
        );
        ctx.tasks.push(tokio::spawn(registry.share_stats()));
        ctx.services.add_service(registry.into_server());
    }
    // The operator's API, for what this process runs.
    ctx.services.add_service(
        crate::ctl::AdminService {
            store: ctx.store.clone(),
            registrar: ctx.registrar.clone(),
            session: ctx.process.runs(Name::Session),
            pubsub: ctx.process.runs(Name::Pubsub),
            publish: ctx.process.runs(Name::Publish),
            tls: ctx.edge.as_ref().map(|e| e.tls()),
            token: ctx.config.registry.token.clone(),
        }
        .into_server(),
    );
    // grpc.health.v1: "" and every service say SERVING while the process
    // is ready (clients and meshes that check health skip it otherwise).
    let (reporter, health) = tonic_health::server::health_reporter();
    ctx.services.add_service(health);
    ctx.tasks.push(tokio::spawn(report_health(reporter)));
    let routes = std::mem::take(&mut ctx.services).routes();
    // One span per call, the caller's span its parent (telemetry::trace).
    let mut builder = tonic::transport::Server::builder().trace_fn(|request| {
        let span = tracing::debug_span!("grpc.serve", otel.kind = "server", otel.name = request.uri().path());
        if let Some(parent) = request
            .headers()
            .get(proto::trace::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
        {
            telemetry::trace::adopt(&span, parent);
        }
        span
    });
    if let Some(tls) = ctx.config.grpc.tls.load()? {
        info!(%addr, "gRPC over TLS");
        builder = builder.tls_config(tls.server).context("grpc.tls")?;
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = builder
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stopped.await;
        });
    ctx.grpc = Some(super::GrpcServer {
        stop,
        task: tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "gRPC server stopped");
            }
        }),
    });
    Ok(())
}

async fn report_health(reporter: tonic_health::server::HealthReporter) {
    let mut changes = telemetry::health::changes();
    loop {
        let status = match changes.next().await {
            Ok(()) => tonic_health::ServingStatus::Serving,
            Err(_) => tonic_health::ServingStatus::NotServing,
        };
        reporter.set_service_status("", status).await;
    }
}
