//! `sipbus <command>`: tools against a running sipbus's gRPC API, and the
//! conformance check for extension servers.

mod check;
mod extensions;
mod mwi;

use std::time::Duration;

use anyhow::{Context, Result};
use tonic::transport::Channel;

use crate::cli::Command;

pub async fn run(command: Command) -> Result<bool> {
    match command {
        Command::Mwi { action } => mwi::run(action).await.map(|()| true),
        Command::Extensions { server, token, point } => extensions::run(&server.server, token.token.as_deref(), point)
            .await
            .map(|()| true),
        Command::ExtensionCheck(args) => check::run(args).await,
    }
}

fn channel(server: &str) -> Result<Channel> {
    bus::grpc::channel(server, Duration::from_secs(3))
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("--server {server}"))
}
