//! The sipbus binary: one executable, one role per `--target`.

#![forbid(unsafe_code)]

mod cli;
mod logging;
mod tools;

use std::process::ExitCode;
use std::sync::Arc;

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
                print!("{text}");
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
    logging::init(&config.log);
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
    match runtime.block_on(run(&process, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
    let running = process.start(&config).await?;
    if let Some(edge) = &running.edge {
        for (transport, addr) in &edge.local_addrs {
            info!(%transport, %addr, "ready");
        }
    }
    shutdown_signal().await;
    info!("shutting down");
    running.stop();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
