//! The JavaScript SIP clients of `tests/js` (JsSIP over WebSocket in Node,
//! and two headless Chromiums in a WebRTC call), run as child processes
//! whose stdout is one JSON event per line.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// A finished client: its exit code and the events it printed.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub events: Vec<Value>,
    pub stderr: String,
}

impl Run {
    pub fn has(&self, event: &str) -> bool {
        self.events.iter().any(|e| e["event"] == event)
    }

    pub fn event(&self, event: &str) -> Option<&Value> {
        self.events.iter().find(|e| e["event"] == event)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "exit {:?}", self.code)?;
        for e in &self.events {
            writeln!(f, "{e}")?;
        }
        let tail: Vec<&str> = self.stderr.lines().rev().take(30).collect();
        for l in tail.into_iter().rev() {
            writeln!(f, "  stderr: {l}")?;
        }
        Ok(())
    }
}

/// A client started in the background.
pub struct Running {
    child: Child,
}

impl Running {
    /// SIGKILL to node (the child of `timeout`): the client vanishes
    /// without unregistering.
    pub fn kill(mut self) -> Result<()> {
        let status = Command::new("pkill")
            .args(["-KILL", "-P", &self.child.id().to_string()])
            .status()
            .context("pkill (Debian package procps)")?;
        if !status.success() {
            bail!("no client process to kill");
        }
        self.child.wait()?;
        Ok(())
    }

    pub fn wait(self) -> Result<Run> {
        let out = self.child.wait_with_output()?;
        Ok(Run {
            code: out.status.code(),
            events: String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Starts `node tests/js/<script> args...`, killed after `limit` at most.
pub fn start(script: &str, args: &[String], env: &[(&str, &str)], limit: Duration) -> Result<Running> {
    let js = dir();
    if !js.join("node_modules").exists() {
        bail!("tests/js/node_modules missing: run `npm ci` in tests/js (scripts/test.sh does)");
    }
    let mut cmd = Command::new("timeout");
    cmd.args(["--signal=KILL", &limit.as_secs().max(1).to_string(), "node"])
        .arg(js.join(script))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().with_context(|| format!("starting node {script}"))?;
    Ok(Running { child })
}

pub fn run(script: &str, args: &[String], env: &[(&str, &str)], limit: Duration) -> Result<Run> {
    start(script, args, env, limit)?.wait()
}
