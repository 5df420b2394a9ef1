//! `sipbus <command>`: tools against a running sipbus's gRPC API, and the
//! conformance check for extension servers.

mod check;
mod ctl;
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
        Command::Ctl(args) => ctl::run(args).await.map(|()| true),
    }
}

fn channel(server: &str) -> Result<Channel> {
    bus::grpc::channel(server, Duration::from_secs(3))
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("--server {server}"))
}

/// `Authorization: Bearer <token>` on a request, when a token is given.
fn bearer<T>(request: &mut tonic::Request<T>, token: Option<&str>) -> Result<()> {
    if let Some(t) = token {
        let value = format!("Bearer {t}")
            .parse()
            .map_err(|_| anyhow::anyhow!("--token: not usable in a header"))?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(())
}

/// Rows under headings, indented, columns as wide as their widest cell.
fn table(headings: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headings.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::from(" ");
        for (cell, w) in cells.zip(&widths) {
            l.push_str(&format!(" {cell:<w$}"));
        }
        l.trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut headings.iter().copied());
    for r in rows {
        out.push_str(&line(&mut r.iter().map(String::as_str)));
    }
    out
}

/// Writes to stdout; a reader that went away (`| head`) ends the output,
/// it is not an error worth a panic.
fn emit(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}
