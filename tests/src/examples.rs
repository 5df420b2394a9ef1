//! The example extensions of `examples/` (Python, Node, Go) as processes a
//! test starts: each registers itself with sipbus's registry and prints
//! `registered <name> <id> <address>` once it has; its stderr goes to a
//! log the test can read. `examples/setup.sh` (run by `scripts/test.sh`)
//! prepares their toolchains.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The repository's `examples/` folder.
pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("examples")
}

/// How each example starts.
pub enum Program {
    /// `examples/python/run.sh <script> <args>`.
    Python(&'static str),
    /// `node examples/node/<script>`.
    Node(&'static str),
    /// `examples/go/bin/<name>`.
    Go(&'static str),
}

/// A running example, stopped (SIGKILL) when dropped.
pub struct Example {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: PathBuf,
    /// The module name and the address it registered.
    pub name: String,
    pub address: String,
}

impl Example {
    /// Starts `program` with `args` and `env` (the registry URL, token,
    /// lease ...) and waits until it has registered.
    pub fn start(program: Program, args: &[&str], env: &[(&str, &str)]) -> Result<Example> {
        let dir = examples_dir();
        let (mut cmd, label) = match program {
            Program::Python(script) => {
                let mut c = Command::new(dir.join("python").join("run.sh"));
                c.arg(script);
                (c, script)
            }
            Program::Node(script) => {
                let mut c = Command::new("node");
                c.arg(dir.join("node").join(script));
                (c, script)
            }
            Program::Go(name) => (Command::new(dir.join("go").join("bin").join(name)), name),
        };
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!("example-{label}-{}-{n}.log", std::process::id()));
        cmd.args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting example {label} (run examples/setup.sh first)"))?;
        let stdout = child.stdout.take().context("example stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(std::result::Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut me = Example {
            child,
            lines,
            log,
            name: String::new(),
            address: String::new(),
        };
        me.wait_registered(Duration::from_secs(90))?;
        Ok(me)
    }

    /// Waits for the next `registered` line (the first, or a registration
    /// again after a lapse).
    pub fn wait_registered(&mut self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    if let ["registered", name, _id, address] = f.as_slice() {
                        self.name = (*name).to_owned();
                        self.address = (*address).to_owned();
                        return Ok(());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = self.child.try_wait()? {
                        bail!("example exited with {status} before registering:\n{}", self.log_text());
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("example closed its output before registering:\n{}", self.log_text())
                }
            }
        }
        bail!("example did not register within {limit:?}:\n{}", self.log_text())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: gone without deregistering, like a crashed pod.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Forgets what the example printed so far: the next
    /// [`Example::wait_registered`] waits for a new registration.
    pub fn forget_output(&self) {
        while self.lines.try_recv().is_ok() {}
    }

    /// SIGSTOP / SIGCONT: a process that stops renewing for a while (a
    /// paused VM, a long GC) without exiting.
    pub fn pause(&self, paused: bool) -> Result<()> {
        let signal = if paused { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill {signal} failed");
        Ok(())
    }

    /// SIGTERM, as Kubernetes stops a pod; the exit code.
    pub fn stop(mut self) -> Result<Option<i32>> {
        match crate::terminate(&mut self.child, Duration::from_secs(10))? {
            Some(code) => Ok(code),
            None => bail!("example did not stop within 10 s of SIGTERM:\n{}", self.log_text()),
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sipbus extensions` against the gRPC API at `grpc`, output and errors.
pub fn extensions(grpc: std::net::SocketAddr, token: &str, point: Option<&str>) -> String {
    let mut cmd = Command::new(crate::sipbus_bin().unwrap_or_default());
    cmd.args(["extensions", "--server", &format!("http://{grpc}")])
        .env("SIPBUS_REGISTRY_TOKEN", token);
    if let Some(p) = point {
        cmd.args(["--point", p]);
    }
    match cmd.output() {
        Ok(out) => format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => format!("sipbus extensions did not run: {e}"),
    }
}

/// The row of module `name` in an `extensions` listing, split in cells
/// (`#`, kind, name, address, filters, priority, timeout, policy, lease,
/// calls, fail, p99, types).
pub fn listed(listing: &str, name: &str) -> Option<Vec<String>> {
    listing
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|cells| cells.get(2).is_some_and(|c| c == name))
}

/// Waits until `check` holds on the listing of `grpc`; the listing.
pub fn wait_listing(
    grpc: std::net::SocketAddr,
    token: &str,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> Result<String> {
    let start = Instant::now();
    loop {
        let l = extensions(grpc, token, None);
        if check(&l) {
            return Ok(l);
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("{what}:\n{l}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `sipbus extension-check`: its exit code and output.
pub fn extension_check(point: &str, url: &str, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(crate::sipbus_bin().unwrap_or_default())
        .args(["extension-check", "--point", point, "--url", url])
        .args(extra)
        .output();
    match out {
        Ok(out) => (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (None, format!("extension-check did not run: {e}")),
    }
}
