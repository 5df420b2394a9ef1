//! Real redis-server processes for tests: one node, or a small Cluster, on
//! free loopback ports, stopped (by pid) when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A redis-server on a free loopback port, in its own temporary directory.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    persist: bool,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn temp_dir(tag: &str) -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("sipbus-redis-{tag}-{}-{}", std::process::id(), fastrand_u64()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

impl RedisServer {
    /// Starts a server with no persistence.
    pub fn start() -> std::io::Result<RedisServer> {
        Self::start_in(temp_dir("node")?, free_port()?, false, &[])
    }

    /// Starts a server that persists (append-only file) in `dir`.
    pub fn start_persistent(dir: PathBuf, port: u16) -> std::io::Result<RedisServer> {
        std::fs::create_dir_all(&dir)?;
        Self::start_in(dir, port, true, &[])
    }

    fn start_in(dir: PathBuf, port: u16, persist: bool, extra: &[&str]) -> std::io::Result<RedisServer> {
        let child = spawn(&dir, port, persist, extra)?;
        let server = RedisServer {
            child,
            port,
            dir,
            persist,
        };
        wait_for_port(port)?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL, like a crash) and starts it again on the
    /// same port and directory.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        self.child = spawn(&self.dir, self.port, self.persist, &[])?;
        wait_for_port(self.port)
    }
}

fn spawn(dir: &std::path::Path, port: u16, persist: bool, extra: &[&str]) -> std::io::Result<Child> {
    Command::new("redis-server")
        .arg("--port")
        .arg(port.to_string())
        .arg("--bind")
        .arg("127.0.0.1")
        .arg("--dir")
        .arg(dir)
        .arg("--save")
        .arg("")
        .arg("--appendonly")
        .arg(if persist { "yes" } else { "no" })
        .arg("--appendfsync")
        .arg("always")
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("redis-server (Debian package redis-server) could not start: {e}"),
            )
        })
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_for_port(port: u16) -> std::io::Result<()> {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("redis-server did not listen on {port}"),
    ))
}

/// A three-master Redis Cluster on loopback ports.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> std::io::Result<RedisCluster> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = free_port()?;
            let dir = temp_dir("cluster")?;
            let conf = dir.join("nodes.conf");
            let conf = conf.to_string_lossy().into_owned();
            nodes.push(RedisServer::start_in(
                dir,
                port,
                false,
                &["--cluster-enabled", "yes", "--cluster-config-file", &conf],
            )?);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = create.args(["--cluster-replicas", "0", "--cluster-yes"]).output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        // Wait until every node agrees the cluster is ok.
        for n in &nodes {
            let mut ok = false;
            for _ in 0..200 {
                let info = Command::new("redis-cli")
                    .args(["-p", &n.port.to_string(), "cluster", "info"])
                    .output()?;
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    ok = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !ok {
                return Err(std::io::Error::other("cluster did not reach cluster_state:ok"));
            }
        }
        Ok(RedisCluster { nodes })
    }

    /// Seed URLs, comma-separated, as `Store::redis` takes them.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(RedisServer::url).collect::<Vec<_>>().join(",")
    }
}
