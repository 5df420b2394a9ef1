//! Helpers for the end-to-end tests: start the real `sipbus` binary on free
//! loopback ports, wait until it listens, stop it by pid; run SIPp
//! scenarios against it with bounded counts and time.

// Waiting on child processes is wall-clock business, not transaction time.
#![allow(clippy::disallowed_types)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod examples;
pub mod js;
pub mod otlp;
pub mod tls;
pub mod ws;

/// The `sipbus` binary next to the test executable (`target/<profile>/`),
/// or `SIPBUS_BIN`.
pub fn sipbus_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("SIPBUS_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>/sipbus
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary has no target directory")?;
    let bin = dir.join("sipbus");
    if !bin.exists() {
        bail!(
            "{} not built: run the tests through the workspace (cargo nextest run --workspace)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A loopback port free for both UDP and TCP right now.
pub fn free_port() -> Result<u16> {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port")
}

/// A running sipbus process, killed when dropped.
pub struct Sipbus {
    child: Child,
    pub sip: SocketAddr,
    /// Where the process serves gRPC (the edge API for sip-edge, the
    /// service contracts for service targets).
    pub grpc: SocketAddr,
    log: PathBuf,
}

impl Sipbus {
    /// Starts `sipbus --target <target>` listening on UDP and TCP of one
    /// free loopback port, with extra `SIPBUS_*` variables; ready once the
    /// SIP port accepts connections.
    pub fn start(target: &str, env: &[(&str, &str)]) -> Result<Sipbus> {
        Self::start_ready_on(target, env, None, &[])
    }

    /// As [`Sipbus::start`], also listening on `extra` (`tls:127.0.0.1:P`,
    /// `wss:...`).
    pub fn start_listening(target: &str, env: &[(&str, &str)], extra: &[String]) -> Result<Sipbus> {
        Self::start_ready_on(target, env, None, extra)
    }

    /// Starts a service target serving gRPC on `grpc` (ready once that port
    /// accepts connections).
    pub fn start_service(target: &str, env: &[(&str, &str)], grpc: SocketAddr) -> Result<Sipbus> {
        let grpc_env = grpc.to_string();
        let mut all: Vec<(&str, &str)> = env.to_vec();
        all.push(("SIPBUS_GRPC__LISTEN", &grpc_env));
        Self::start_ready_on(target, &all, Some(grpc), &[])
    }

    /// Starts one process; when a port it was given is taken meanwhile
    /// (a free port is only free until someone binds it: parallel tests
    /// and their clients draw from the same range), again on new ports.
    fn start_ready_on(
        target: &str,
        env: &[(&str, &str)],
        ready: Option<SocketAddr>,
        extra: &[String],
    ) -> Result<Sipbus> {
        let mut attempt = 1;
        loop {
            match Self::start_once(target, env, ready, extra) {
                Err(e) if attempt < 3 && format!("{e:#}").contains("Address already in use") => attempt += 1,
                other => return other,
            }
        }
    }

    fn start_once(target: &str, env: &[(&str, &str)], ready: Option<SocketAddr>, extra: &[String]) -> Result<Sipbus> {
        let port = free_port()?;
        let sip: SocketAddr = ([127, 0, 0, 1], port).into();
        let grpc: SocketAddr = match env.iter().find(|(k, _)| *k == "SIPBUS_GRPC__LISTEN") {
            Some((_, v)) => v.parse()?,
            None => ([127, 0, 0, 1], free_port()?).into(),
        };
        let log = std::env::temp_dir().join(format!("sipbus-e2e-{port}.log"));
        let log_file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(sipbus_bin()?);
        cmd.arg("--target")
            .arg(target)
            .env("SIPBUS_EDGE__LISTEN", {
                let mut all = vec![format!("\"udp:{sip}\""), format!("\"tcp:{sip}\"")];
                all.extend(extra.iter().map(|e| format!("\"{e}\"")));
                format!("[{}]", all.join(", "))
            })
            .env("SIPBUS_GRPC__LISTEN", grpc.to_string())
            // TEST_SIPBUS_LOG=debug (or any filter) when hunting a failure.
            .env(
                "SIPBUS_LOG__LEVEL",
                std::env::var("TEST_SIPBUS_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .env_remove("RUST_LOG")
            // Names the binary for the tests; sipbus would take it for a key.
            .env_remove("SIPBUS_BIN")
            // SIGTERM stops at once unless a test asks for a drain.
            .env("SIPBUS_SHUTDOWN__DRAIN_S", "0")
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("spawning sipbus")?;
        let mut me = Sipbus { child, sip, grpc, log };
        me.wait_ready(ready.unwrap_or(sip), Duration::from_secs(10))?;
        Ok(me)
    }

    fn wait_ready(&mut self, addr: SocketAddr, limit: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                bail!("sipbus exited with {status} before listening:\n{}", self.log_text());
            }
            if std::net::TcpStream::connect(addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("sipbus did not listen on {addr} within {limit:?}:\n{}", self.log_text())
    }

    /// SIGKILL, like a crash.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, as Kubernetes stops a pod: the process drains, then exits.
    pub fn sigterm(&self) -> Result<()> {
        let status = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status()?;
        anyhow::ensure!(status.success(), "kill -TERM {} failed", self.pid());
        Ok(())
    }

    /// Waits up to `limit` for the process to exit on its own: its exit
    /// code (`Some(None)` when a signal ended it), `None` if still running.
    pub fn exited_within(&mut self, limit: Duration) -> Result<Option<Option<i32>>> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status.code()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(None)
    }

    /// Stops the process (SIGTERM, then SIGKILL after 5 s) and returns its
    /// exit status code, if it exited on its own terms.
    pub fn stop(mut self) -> Result<Option<i32>> {
        if let Some(code) = terminate(&mut self.child, Duration::from_secs(5))? {
            return Ok(code);
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(None)
    }
}

/// SIGTERM, then waits up to `limit` for the process to exit: its exit
/// code (`Some(None)` when a signal ended it), or `None` if it is still
/// running.
pub fn terminate(child: &mut Child, limit: Duration) -> Result<Option<Option<i32>>> {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status.code()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(None)
}

/// `GET path` over HTTP/1.1 (the admin port): status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status in {head}"))?;
    Ok((code, body.to_owned()))
}

/// The value of one sample of a Prometheus exposition: `name{labels}` as
/// written (labels in the order the server writes them), or `name` alone.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

/// Serves gRPC `router` on a loopback port with its own runtime: dropping
/// the runtime stops the server and every connection it holds, like a
/// crash. For extension servers written in the tests.
pub fn serve_grpc(router: tonic::transport::server::Router) -> Result<(SocketAddr, tokio::runtime::Runtime)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    rt.spawn(async move {
        let _ = router.serve_with_incoming(incoming).await;
    });
    Ok((addr, rt))
}

impl Drop for Sipbus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// sipbus split: one sip-edge and `replicas` registrar-svc processes over a
/// Redis the caller runs, each process its own `sipbus --target`.
pub struct SplitRun {
    pub edge: Sipbus,
    pub registrars: Vec<Sipbus>,
}

impl SplitRun {
    /// `env` goes to every process (registrar settings); the store, gRPC
    /// addresses, a shared nonce key and the edge's replica list are added.
    pub fn start(redis_url: &str, env: &[(&str, &str)], replicas: usize) -> Result<SplitRun> {
        let mut all: Vec<(&str, &str)> = env.to_vec();
        all.push(("SIPBUS_STORE__REDIS", redis_url));
        // Replicas must verify each other's nonces.
        all.push(("SIPBUS_REGISTRAR__AUTH__NONCE_KEY", "shared test key"));
        let mut registrars = Vec::new();
        let mut addresses = Vec::new();
        for _ in 0..replicas {
            let grpc: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            registrars.push(Sipbus::start_service("registrar-svc", &all, grpc)?);
            addresses.push(format!("\"http://{grpc}\""));
        }
        let list = format!("[{}]", addresses.join(", "));
        let mut edge_env = all.clone();
        edge_env.push(("SIPBUS_BUS__REGISTRAR", &list));
        edge_env.push(("SIPBUS_BUS__DEADLINE_MS", "1000"));
        let edge = Sipbus::start("sip-edge", &edge_env)?;
        Ok(SplitRun { edge, registrars })
    }

    /// Every process's log, for assertion messages.
    pub fn logs(&self) -> String {
        let mut s = format!("--- edge ---\n{}", self.edge.log_text());
        for (i, r) in self.registrars.iter().enumerate() {
            s.push_str(&format!("\n--- registrar {i} ---\n{}", r.log_text()));
        }
        s
    }
}

/// Writes a file under the temporary directory, unique to this process.
pub fn temp_file(name: &str, text: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("sipbus-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The path of a scenario file shipped with these tests.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name)
}

/// SIPp arguments for scenario `sf` towards `user@example.com` through
/// `server`, from a free loopback port, followed by `extra` (call count,
/// time limits, traces).
pub fn sipp_to(server: SocketAddr, sf: &str, user: &str, extra: &[&str]) -> Result<Vec<String>> {
    let port = free_port()?.to_string();
    let target = server.to_string();
    let base = [
        target.as_str(),
        "-sf",
        sf,
        "-s",
        user,
        "-key",
        "domain",
        "example.com",
        "-i",
        "127.0.0.1",
        "-p",
        &port,
    ];
    Ok(base.iter().chain(extra).map(|s| (*s).to_owned()).collect())
}

/// A template scenario (`scenarios/<name>`) with its `{{NAME}}` fields
/// filled, written to a fresh temporary file; its path as `-sf` takes it.
pub fn filled(name: &str, fields: &[(&str, &str)]) -> Result<String> {
    let mut text = std::fs::read_to_string(scenario(name))?;
    for (k, v) in fields {
        text = text.replace(&format!("{{{{{k}}}}}"), v);
    }
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let file = temp_file(&format!("{name}-{}-{n}", std::process::id()), &text)?;
    Ok(file.to_str().unwrap_or_default().to_owned())
}

/// [`scenario`] as the text SIPp's `-sf` takes.
pub fn scenario_path(name: &str) -> String {
    scenario(name).to_str().unwrap_or_default().to_owned()
}

/// Counts from a finished SIPp run.
#[derive(Debug)]
pub struct SippResult {
    pub exit_code: Option<i32>,
    pub successful: u64,
    pub failed: u64,
    pub output: String,
}

/// Runs SIPp in the foreground, bounded by `-m` and a wall-clock timeout.
/// SIPp's own exit code is 0 only when every call succeeded.
pub fn run_sipp(args: &[&str], limit: Duration) -> Result<SippResult> {
    which("sipp").context("SIPp is not installed (Debian package sip-tester); scripts/test.sh installs it")?;
    // Tests run in parallel threads of one process: one file per run.
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let stat = std::env::temp_dir().join(format!("sipp-stat-{}-{run}.csv", std::process::id()));
    let mut cmd = Command::new("timeout");
    cmd.arg("--signal=KILL").arg(limit.as_secs().to_string()).arg("sipp");
    cmd.args(args)
        .args(["-nostdin", "-trace_stat", "-stf"])
        .arg(&stat)
        .arg("-fd")
        .arg("1");
    let Output { status, stdout, stderr } = cmd.output().context("running sipp")?;
    let mut output = String::from_utf8_lossy(&stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&stderr));
    let (successful, failed) = last_stat_counts(&stat).unwrap_or((0, 0));
    let _ = std::fs::remove_file(&stat);
    Ok(SippResult {
        exit_code: status.code(),
        successful,
        failed,
        output,
    })
}

/// The cumulative SuccessfulCall / FailedCall counts of SIPp's last
/// statistics line.
fn last_stat_counts(path: &Path) -> Option<(u64, u64)> {
    let file = std::fs::File::open(path).ok()?;
    let mut lines = BufReader::new(file).lines().map_while(Result::ok);
    let header: Vec<String> = lines.next()?.split(';').map(str::to_owned).collect();
    let last = lines.filter(|l| !l.trim().is_empty()).last()?;
    let fields: Vec<&str> = last.split(';').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .and_then(|i| fields.get(i)?.parse().ok())
    };
    Some((col("SuccessfulCall(C)")?, col("FailedCall(C)")?))
}

fn which(prog: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
        .with_context(|| format!("{prog} not found in PATH"))
}

/// Split mode for calls: an edge, a registrar-svc, session-svc and sdp-svc
/// replicas, all on one store.
pub struct CallSplit {
    pub edge: Sipbus,
    pub registrar: Sipbus,
    pub sessions: Vec<Sipbus>,
    pub sdps: Vec<Sipbus>,
    pub pubsubs: Vec<Sipbus>,
    pub publishes: Vec<Sipbus>,
}

/// How many replicas of each service a split run starts.
#[derive(Debug, Clone, Copy)]
pub struct Replicas {
    pub sessions: usize,
    pub sdps: usize,
    pub pubsubs: usize,
    pub publishes: usize,
}

impl CallSplit {
    /// `env` goes to every process (registrar users, session settings).
    pub fn start(redis_url: &str, env: &[(&str, &str)], sessions: usize, sdps: usize) -> Result<CallSplit> {
        Self::start_with(
            redis_url,
            env,
            Replicas {
                sessions,
                sdps,
                pubsubs: 0,
                publishes: 0,
            },
        )
    }

    /// [`CallSplit::start`] with pubsub-svc and publish-svc replicas too.
    pub fn start_with(redis_url: &str, env: &[(&str, &str)], n: Replicas) -> Result<CallSplit> {
        Self::start_listed(redis_url, env, n, false)
    }

    /// [`CallSplit::start_with`], every replica list a `dns://localhost:P`
    /// name (as a Kubernetes headless Service is) instead of addresses.
    pub fn start_by_dns_names(redis_url: &str, env: &[(&str, &str)], n: Replicas) -> Result<CallSplit> {
        Self::start_listed(redis_url, env, n, true)
    }

    fn start_listed(redis_url: &str, env: &[(&str, &str)], n: Replicas, by_dns: bool) -> Result<CallSplit> {
        let Replicas {
            sessions,
            sdps,
            pubsubs,
            publishes,
        } = n;
        let mut all: Vec<(&str, &str)> = env.to_vec();
        all.push(("SIPBUS_STORE__REDIS", redis_url));
        all.push(("SIPBUS_REGISTRAR__AUTH__NONCE_KEY", "shared test key"));
        let quoted = |addrs: &[SocketAddr]| {
            let list: Vec<String> = addrs
                .iter()
                .map(|a| match by_dns {
                    true => format!("\"dns://localhost:{}\"", a.port()),
                    false => format!("\"http://{a}\""),
                })
                .collect();
            format!("[{}]", list.join(", "))
        };
        let registrar_grpc: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let registrar = Sipbus::start_service("registrar-svc", &all, registrar_grpc)?;
        let registrar_list = quoted(&[registrar_grpc]);
        let mut sdps_running = Vec::new();
        let mut sdp_addrs = Vec::new();
        for _ in 0..sdps {
            let grpc: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            sdps_running.push(Sipbus::start_service("sdp-svc", &all, grpc)?);
            sdp_addrs.push(grpc);
        }
        let sdp_list = quoted(&sdp_addrs);
        let edge_grpc: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let edges = format!("{{ edge1 = \"http://{edge_grpc}\" }}");
        let mut session_env = all.clone();
        session_env.push(("SIPBUS_BUS__EDGES", &edges));
        session_env.push(("SIPBUS_BUS__REGISTRAR", &registrar_list));
        session_env.push(("SIPBUS_BUS__SDP", &sdp_list));
        let mut sessions_running = Vec::new();
        let mut session_addrs = Vec::new();
        for _ in 0..sessions {
            let grpc: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            sessions_running.push(Sipbus::start_service("session-svc", &session_env, grpc)?);
            session_addrs.push(grpc);
        }
        let session_list = quoted(&session_addrs);
        let mut pubsub_env = all.clone();
        pubsub_env.push(("SIPBUS_BUS__EDGES", &edges));
        pubsub_env.push(("SIPBUS_BUS__REGISTRAR", &registrar_list));
        let mut pubsubs_running = Vec::new();
        let mut pubsub_addrs = Vec::new();
        for _ in 0..pubsubs {
            let grpc: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            pubsubs_running.push(Sipbus::start_service("pubsub-svc", &pubsub_env, grpc)?);
            pubsub_addrs.push(grpc);
        }
        let pubsub_list = quoted(&pubsub_addrs);
        let mut publishes_running = Vec::new();
        let mut publish_addrs = Vec::new();
        for _ in 0..publishes {
            let grpc: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            publishes_running.push(Sipbus::start_service("publish-svc", &all, grpc)?);
            publish_addrs.push(grpc);
        }
        let publish_list = quoted(&publish_addrs);
        let edge_grpc_text = edge_grpc.to_string();
        let mut edge_env = all.clone();
        edge_env.push(("SIPBUS_EDGE__INSTANCE", "edge1"));
        edge_env.push(("SIPBUS_GRPC__LISTEN", &edge_grpc_text));
        edge_env.push(("SIPBUS_BUS__REGISTRAR", &registrar_list));
        edge_env.push(("SIPBUS_BUS__SESSION", &session_list));
        if pubsubs > 0 {
            edge_env.push(("SIPBUS_BUS__PUBSUB", &pubsub_list));
        }
        if publishes > 0 {
            edge_env.push(("SIPBUS_BUS__PUBLISH", &publish_list));
        }
        edge_env.push(("SIPBUS_BUS__DEADLINE_MS", "1000"));
        let edge = Sipbus::start("sip-edge", &edge_env)?;
        Ok(CallSplit {
            edge,
            registrar,
            sessions: sessions_running,
            sdps: sdps_running,
            pubsubs: pubsubs_running,
            publishes: publishes_running,
        })
    }

    pub fn logs(&self) -> String {
        let mut s = format!("--- edge ---\n{}", self.edge.log_text());
        s.push_str(&format!("\n--- registrar ---\n{}", self.registrar.log_text()));
        for (i, r) in self.sessions.iter().enumerate() {
            s.push_str(&format!("\n--- session-svc {i} ---\n{}", r.log_text()));
        }
        for (i, r) in self.sdps.iter().enumerate() {
            s.push_str(&format!("\n--- sdp-svc {i} ---\n{}", r.log_text()));
        }
        for (i, r) in self.pubsubs.iter().enumerate() {
            s.push_str(&format!("\n--- pubsub-svc {i} ---\n{}", r.log_text()));
        }
        for (i, r) in self.publishes.iter().enumerate() {
            s.push_str(&format!("\n--- publish-svc {i} ---\n{}", r.log_text()));
        }
        s
    }
}

/// A SIPp run in the background (a callee waiting for calls).
pub struct Background(std::thread::JoinHandle<Result<SippResult>>);

impl Background {
    pub fn start(args: Vec<String>, limit: Duration) -> Background {
        Background(std::thread::spawn(move || {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            run_sipp(&refs, limit)
        }))
    }

    /// Waits for it to end (it is bounded by its own limit).
    pub fn finish(self) -> Result<SippResult> {
        self.0.join().map_err(|_| anyhow::anyhow!("sipp thread panicked"))?
    }
}

/// A callee SIPp on `port` taking one call with the shipped scenario
/// `scenario_name`, in the background; ready once it has bound its port.
pub fn sipp_callee(scenario_name: &str, port: u16, extra: &[&str]) -> Background {
    sipp_callee_at(&scenario_path(scenario_name), port, extra)
}

/// [`sipp_callee`] with the scenario at `scenario_path` (one a test
/// wrote).
pub fn sipp_callee_at(scenario_path: &str, port: u16, extra: &[&str]) -> Background {
    let port = port.to_string();
    let args: Vec<String> = ["-sf", scenario_path]
        .into_iter()
        .chain(one_call_on(&port))
        .chain(extra.iter().copied())
        .map(str::to_owned)
        .collect();
    let bg = Background::start(args, Duration::from_secs(50));
    // SIPp binds its port before reading the scenario's first message.
    std::thread::sleep(Duration::from_millis(300));
    bg
}

/// A SIPp callee answering up to `calls` calls on `port` with
/// call_uas.xml, in the background; it ends after `limit` at the latest.
pub fn sipp_callee_many(port: u16, calls: u32, limit: Duration) -> Background {
    let args: Vec<String> = [
        "-sf".to_owned(),
        scenario_path("call_uas.xml"),
        "-i".to_owned(),
        "127.0.0.1".to_owned(),
        "-p".to_owned(),
        port.to_string(),
        "-m".to_owned(),
        calls.to_string(),
    ]
    .into();
    let bg = Background::start(args, limit);
    std::thread::sleep(Duration::from_millis(300));
    bg
}

/// SIPp placing `calls` calls with call_uac.xml to `user@example.com` at
/// `rate` per second, each held `hold_ms`, through `server`, in the
/// background.
pub fn sipp_callers(server: SocketAddr, user: &str, calls: u32, rate: u32, hold_ms: u32) -> Background {
    let port = free_port().map(|p| p.to_string()).unwrap_or_else(|_| "0".to_owned());
    let args: Vec<String> = [
        server.to_string(),
        "-sf".into(),
        scenario_path("call_uac.xml"),
        "-s".into(),
        user.to_owned(),
        "-key".into(),
        "domain".into(),
        "example.com".into(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port,
        "-m".into(),
        calls.to_string(),
        "-r".into(),
        rate.to_string(),
        "-d".into(),
        hold_ms.to_string(),
        "-timeout".into(),
        "60s".into(),
    ]
    .into();
    Background::start(args, Duration::from_secs(70))
}

/// One call between two shipped scenarios: a callee registered as
/// `user@example.com` at a fresh port running `uas`, and alice calling it
/// with `uac`. Both SIPp results, caller first, for the test to check.
pub fn call_pair(server: SocketAddr, user: &str, uas: &str, uac: &str) -> Result<(SippResult, SippResult)> {
    let port = free_port()?;
    register_contact(server, user, port)?;
    let b = sipp_callee(uas, port, &[]);
    let a = sipp_caller(server, &scenario_path(uac), user, "example.com", &[])?;
    Ok((a, b.finish()?))
}

/// Registers `user@example.com` (digest, password `secret`) with a Contact
/// at 127.0.0.1:`port`, from that port, so a callee SIPp started on it
/// afterwards receives the calls.
pub fn register_contact(server: SocketAddr, user: &str, port: u16) -> Result<()> {
    register_contact_with(server, user, port, &[])
}

/// [`register_contact`] with extra SIPp arguments (`-t t1`: over TCP, the
/// binding then keeps the connection as its flow).
pub fn register_contact_with(server: SocketAddr, user: &str, port: u16, extra: &[&str]) -> Result<()> {
    let csv = temp_file(
        &format!("reg-{user}-{port}.csv"),
        &format!("SEQUENTIAL\n{user};example.com;3600;{port}\n"),
    )?;
    let target = server.to_string();
    let port_text = port.to_string();
    let path = scenario("register_once.xml");
    let r = run_sipp(
        &[
            target.as_str(),
            "-sf",
            path.to_str().unwrap_or_default(),
            "-inf",
            csv.to_str().unwrap_or_default(),
            "-i",
            "127.0.0.1",
            "-p",
            &port_text,
            "-m",
            "1",
            "-au",
            user,
            "-ap",
            "secret",
            "-auth_uri",
            "example.com",
            "-timeout",
            "10s",
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect::<Vec<_>>(),
        Duration::from_secs(20),
    )?;
    if r.exit_code != Some(0) {
        bail!("registering {user} at port {port} failed:\n{}", r.output);
    }
    Ok(())
}

/// A SIPp caller placing one call to `user@domain` through `server` with
/// a caller scenario (`-s user -key domain domain`), from a free port.
pub fn sipp_caller(
    server: SocketAddr,
    scenario_path: &str,
    user: &str,
    domain: &str,
    extra: &[&str],
) -> Result<SippResult> {
    let target = server.to_string();
    let port = free_port()?.to_string();
    let mut args = vec![
        target.as_str(),
        "-sf",
        scenario_path,
        "-s",
        user,
        "-key",
        "domain",
        domain,
    ];
    args.extend(one_call_on(&port));
    args.extend_from_slice(extra);
    run_sipp(&args, Duration::from_secs(50))
}

/// SIPp options for one call from loopback `port`, failing after 40 s.
fn one_call_on(port: &str) -> [&str; 9] {
    [
        "-i",
        "127.0.0.1",
        "-p",
        port,
        "-m",
        "1",
        "-timeout",
        "40s",
        "-timeout_error",
    ]
}

/// One NOTIFY as a SIPp watcher received it.
#[derive(Debug, Clone)]
pub struct Notify {
    pub cseq: u32,
    /// The Subscription-State value.
    pub state: String,
    pub body: String,
}

/// The NOTIFYs of a SIPp message log (`-trace_msg`), by Call-ID, each in
/// CSeq order with retransmissions dropped.
pub fn notifies_by_call(log: &str) -> std::collections::BTreeMap<String, Vec<Notify>> {
    let log = log.replace("\r\n", "\n");
    let mut out: std::collections::BTreeMap<String, Vec<Notify>> = Default::default();
    for chunk in log.split("message received") {
        let Some(start) = chunk.find("NOTIFY sip:") else {
            continue;
        };
        let msg = &chunk[start..];
        let (head, body) = msg.split_once("\n\n").unwrap_or((msg, ""));
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
                .unwrap_or_default()
        };
        let cseq: u32 = header("CSeq:")
            .split_whitespace()
            .next()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        let list = out.entry(header("Call-ID:")).or_default();
        if list.iter().any(|n| n.cseq == cseq) {
            continue;
        }
        // The log separates messages with dashes: the body ends there.
        let body = body.split("----------").next().unwrap_or("").trim().to_owned();
        list.push(Notify {
            cseq,
            state: header("Subscription-State:"),
            body,
        });
    }
    for list in out.values_mut() {
        list.sort_by_key(|n| n.cseq);
    }
    out
}

/// Test helpers fail the test on a setup error, with it.
fn must<T>(r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("test setup: {e:#}"),
    }
}

/// SIPp arguments for one scenario run towards `user@example.com`: one
/// call, failing after 40 s.
pub fn sipp_args(server: SocketAddr, sf: &str, user: &str, extra: &[&str]) -> Vec<String> {
    let mut all = vec!["-m", "1", "-timeout", "40s", "-timeout_error"];
    all.extend_from_slice(extra);
    must(sipp_to(server, sf, user, &all))
}

/// A watcher running in the background.
pub struct Watch {
    sipp: Background,
    log: PathBuf,
}

impl Watch {
    pub fn start(server: SocketAddr, user: &str, event: &str, accept: &str, expires: u32, idle_ms: u32) -> Watch {
        let sf = must(filled(
            "subscriber.xml",
            &[
                ("EVENT", event),
                ("ACCEPT", accept),
                ("EXPIRES", &expires.to_string()),
                ("IDLE_MS", &idle_ms.to_string()),
                ("FROM", "watcher"),
            ],
        ));
        let log = std::env::temp_dir().join(format!("watch-{user}-{event}-{}.log", must(free_port())));
        let log_text = log.to_string_lossy().into_owned();
        let sipp = Background::start(
            sipp_args(server, &sf, user, &["-trace_msg", "-message_file", &log_text]),
            Duration::from_secs(50),
        );
        // SIPp subscribes at once; let its first NOTIFY arrive.
        std::thread::sleep(Duration::from_millis(500));
        Watch { sipp, log }
    }

    /// Waits for the watcher to end; its result and the NOTIFYs it got, in
    /// CSeq order, retransmissions dropped.
    pub fn finish(self) -> (SippResult, Vec<Notify>) {
        let r = must(self.sipp.finish());
        let text = std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .replace("\r\n", "\n");
        (r, notifies(&text))
    }
}

/// The NOTIFYs of a log with one subscription.
pub fn notifies(log: &str) -> Vec<Notify> {
    notifies_by_call(log).into_values().next().unwrap_or_default()
}

/// Asserts a SIPp run succeeded without failed calls.
pub fn ok(r: &SippResult, what: &str, logs: &dyn Fn() -> String) {
    assert_eq!(
        (r.exit_code, r.failed),
        (Some(0), 0),
        "{what}: {}\n--- sipbus logs ---\n{}",
        r.output,
        logs()
    );
}

/// One request answered `status` with `header` matching `re`.
#[allow(clippy::too_many_arguments)]
pub fn expect(
    server: SocketAddr,
    method: &str,
    user: &str,
    headers: &[&str],
    body: &str,
    status: u16,
    header: &str,
    re: &str,
) -> SippResult {
    let headers: Vec<String> = headers.iter().map(|h| format!("      {h}")).collect();
    let sf = must(filled(
        "request_status.xml",
        &[
            ("METHOD", method),
            ("FROM", "watcher"),
            ("HEADERS", &headers.join("\n")),
            ("BODY", body),
            ("STATUS", &status.to_string()),
            ("CHECK_HEADER", header),
            ("CHECK_RE", re),
        ],
    ));
    let a = sipp_args(server, &sf, user, &[]);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    must(run_sipp(&refs, Duration::from_secs(50)))
}
