//! The sipbus binary: one executable, one role per `--target`.

#![forbid(unsafe_code)]

mod cli;
mod logging;
mod tools;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tracing::info;

use cli::Cli;
use sipbus::config;
use sipbus::modules::Process;

// glibc's malloc spent a fifth of session-svc's time in its own locks and
// consolidation under load (perf, bench/calls.sh); mimalloc's per-thread
// heaps suit tokio's many small short-lived allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(command) = cli.command.take() {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        return match runtime.block_on(tools::run(command)) {
            Ok(true) => ExitCode::SUCCESS,
            // A check that ran and found failures (it printed them).
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // The value parser only lets through the targets there are.
    let Some(process) = Process::of(&cli.target) else {
        eprintln!("unknown target {}", cli.target);
        return ExitCode::from(2);
    };
    let config = match config::load(cli.config.as_deref(), std::env::vars(), &process) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if cli.print_config {
        match toml::to_string_pretty(&config) {
            Ok(text) => {
                let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("cannot print the configuration: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if cli.check_config {
        println!("configuration is valid for --target {}", process.target);
        return ExitCode::SUCCESS;
    }
    // One TLS provider for every library that asks rustls for the default
    // (redis, tonic): ring, as sip-edge uses.
    let _ = rustls::crypto::CryptoProvider::install_default(Arc::unwrap_or_clone(sip_edge::transport::tls::provider()));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exporting = {
        // The span exporter runs on the runtime.
        let _in_runtime = runtime.enter();
        match logging::init(&config.log, &config.tracing, process.target) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    };
    let code = match runtime.block_on(run(&process, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // The spans of the last moments, before the runtime goes.
    if let Some(exporting) = exporting {
        exporting.shutdown();
    }
    code
}

async fn run(process: &Process, config: config::Config) -> anyhow::Result<()> {
    info!(
        target = process.target,
        version = env!("CARGO_PKG_VERSION"),
        "sipbus starting"
    );
    // Before any module opens a channel to another process.
    if let Some(tls) = config.grpc.tls.load()? {
        bus::grpc::tls::install(tls);
    }
    // Before the modules: probes see "starting" until they are all up.
    let _admin = match config.admin.listen {
        Some(addr) => Some(sipbus::admin::start(addr).await?),
        None => None,
    };
    let mut signals = Signals::new()?;
    let running = process.start(&config).await?;
    telemetry::health::set_started();
    if let Some(edge) = &running.edge {
        for (transport, addr) in &edge.local_addrs {
            info!(%transport, %addr, "ready");
        }
    }
    if signals.next().await == Signal::Terminate && config.shutdown.drain_s > 0 {
        let drain = Duration::from_secs(config.shutdown.drain_s);
        info!(drain_s = config.shutdown.drain_s, "SIGTERM: draining");
        // The edge, the services and the probes all read it.
        telemetry::health::set_draining();
        tokio::select! {
            _ = tokio::time::sleep(drain) => info!("drained"),
            _ = signals.next() => info!("second signal: stopping without waiting out the drain"),
        }
    }
    info!("shutting down");
    running.stop().await;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// SIGTERM: Kubernetes stopping the pod; drain first.
    Terminate,
    /// SIGINT: a person at a terminal; stop now.
    Interrupt,
}

/// SIGTERM and SIGINT, listened for from the start so neither kills the
/// process before it can drain.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Terminate,
            _ = self.int.recv() => Signal::Interrupt,
        }
    }
}
