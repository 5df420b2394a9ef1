//! Real redis-server processes for tests: one node (plain or TLS), or a
//! small Cluster, on free loopback ports, stopped (by pid) when dropped;
//! and a throwaway certificate authority made with the `openssl` command,
//! so what the tests trust is what real peers would be given.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A redis-server on a free loopback port, in its own temporary directory.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    persist: bool,
    /// Serving TLS only, on `port`.
    tls: bool,
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

    /// Starts a server that speaks TLS only (`rediss://`), with a
    /// certificate for 127.0.0.1 from a CA of its own, and client
    /// certificates from that CA required when `require_client_cert`.
    /// Returns the CA, and a client certificate it issued.
    pub fn start_tls(require_client_cert: bool) -> std::io::Result<(RedisServer, TestCa, Issued)> {
        let dir = temp_dir("tls")?;
        let ca = TestCa::new(&dir.join("ca"), "redis")?;
        let cert = ca.issue("redis", &["IP:127.0.0.1"], 1)?;
        let client = ca.issue("client", &["DNS:client"], 2)?;
        let port = free_port()?;
        let args = [
            "--port".to_owned(),
            "0".to_owned(),
            "--tls-port".to_owned(),
            port.to_string(),
            "--tls-cert-file".to_owned(),
            path(&cert.cert)?.to_owned(),
            "--tls-key-file".to_owned(),
            path(&cert.key)?.to_owned(),
            "--tls-ca-cert-file".to_owned(),
            path(&ca.cert)?.to_owned(),
            "--tls-auth-clients".to_owned(),
            (if require_client_cert { "yes" } else { "no" }).to_owned(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // spawn passes --port first; the later --port 0 wins.
        let mut server = Self::start_in(dir, port, false, &args)?;
        server.tls = true;
        Ok((server, ca, client))
    }

    fn start_in(dir: PathBuf, port: u16, persist: bool, extra: &[&str]) -> std::io::Result<RedisServer> {
        let child = spawn(&dir, port, persist, extra)?;
        let server = RedisServer {
            child,
            port,
            dir,
            persist,
            tls: false,
        };
        wait_for_port(port)?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// The server's process id (to pause it with SIGSTOP, say).
    pub fn pid(&self) -> u32 {
        self.child.id()
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

/// Redis under Sentinel: a master and a replica (both with an append-only
/// file) and three sentinels watching them as `sipbus` (quorum 2, down
/// after 1 s), on loopback ports.
pub struct RedisSentinels {
    pub master: RedisServer,
    pub replica: RedisServer,
    sentinels: Vec<(Child, u16)>,
    dir: PathBuf,
}

/// The name the sentinels know the master by.
pub const SENTINEL_MASTER: &str = "sipbus";

impl RedisSentinels {
    pub fn start() -> std::io::Result<RedisSentinels> {
        let master = RedisServer::start_in(temp_dir("sentinel-master")?, free_port()?, true, &[])?;
        let master_port = master.port.to_string();
        let replica = RedisServer::start_in(
            temp_dir("sentinel-replica")?,
            free_port()?,
            true,
            &["--replicaof", "127.0.0.1", &master_port],
        )?;
        wait_until("the replica to sync", || {
            Ok(cli(replica.port, &["info", "replication"])?.contains("master_link_status:up"))
        })?;
        let dir = temp_dir("sentinels")?;
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port()?;
            let conf = dir.join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                     sentinel failover-timeout {SENTINEL_MASTER} 10000\n\
                     sentinel parallel-syncs {SENTINEL_MASTER} 1\n",
                    dir.display()
                ),
            )?;
            let child = Command::new("redis-sentinel")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("redis-sentinel (Debian package redis-sentinel) could not start: {e}"),
                    )
                })?;
            sentinels.push((child, port));
            wait_for_port(port)?;
        }
        let me = RedisSentinels {
            master,
            replica,
            sentinels,
            dir,
        };
        // A failover needs the sentinels to know the replica and each other.
        for (_, port) in &me.sentinels {
            wait_until("the sentinels to find the replica and each other", || {
                let replicas = cli(*port, &["sentinel", "replicas", SENTINEL_MASTER])?;
                let others = cli(*port, &["sentinel", "sentinels", SENTINEL_MASTER])?;
                Ok(replicas.contains(&me.replica.port.to_string()) && others.matches("127.0.0.1").count() >= 2)
            })?;
        }
        Ok(me)
    }

    /// `redis+sentinel://` URL of the three sentinels.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|(_, p)| format!("127.0.0.1:{p}")).collect();
        format!("redis+sentinel://{}/{SENTINEL_MASTER}", hosts.join(","))
    }

    /// The master's port as the first sentinel reports it now.
    pub fn master_port(&self) -> std::io::Result<Option<u16>> {
        let port = self.sentinels.first().map_or(0, |(_, p)| *p);
        let out = cli(port, &["sentinel", "get-master-addr-by-name", SENTINEL_MASTER])?;
        Ok(out.lines().nth(1).and_then(|p| p.trim().parse().ok()))
    }

    /// SIGKILL to the master, like a crashed node.
    pub fn kill_master(&mut self) -> std::io::Result<()> {
        self.master.child.kill()?;
        self.master.child.wait()?;
        Ok(())
    }
}

impl Drop for RedisSentinels {
    fn drop(&mut self) {
        for (child, _) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cli(port: u16, args: &[&str]) -> std::io::Result<String> {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .map_err(|e| std::io::Error::new(e.kind(), format!("redis-cli (Debian package redis-tools): {e}")))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_until(what: &str, mut done: impl FnMut() -> std::io::Result<bool>) -> std::io::Result<()> {
    for _ in 0..300 {
        if done()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("timed out waiting for {what}"),
    ))
}

fn openssl(args: &[&str]) -> std::io::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .map_err(|e| std::io::Error::new(e.kind(), format!("running openssl (Debian package openssl): {e}")))?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// A certificate and its key as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Issued {
    /// Certificate then key in one file (what baresip's sip_certificate
    /// wants).
    pub fn combined(&self) -> std::io::Result<PathBuf> {
        let path = self.cert.with_extension("both.pem");
        let mut pem = std::fs::read(&self.cert)?;
        pem.extend(std::fs::read(&self.key)?);
        std::fs::write(&path, pem)?;
        Ok(path)
    }

    /// Puts this certificate where `other` is, the way a Secret update
    /// does: new files renamed over the old ones.
    pub fn install_over(&self, other: &Issued) -> std::io::Result<()> {
        for (from, to) in [(&self.key, &other.key), (&self.cert, &other.cert)] {
            let tmp = to.with_extension("new");
            std::fs::copy(from, &tmp)?;
            std::fs::rename(&tmp, to)?;
        }
        Ok(())
    }
}

/// A throwaway certificate authority in its own directory.
pub struct TestCa {
    pub dir: PathBuf,
    pub cert: PathBuf,
    key: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> std::io::Result<TestCa> {
        std::fs::create_dir_all(dir)?;
        let cert = dir.join(format!("{name}-ca.pem"));
        let key = dir.join(format!("{name}-ca.key"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            path(&key)?,
            "-out",
            path(&cert)?,
        ])?;
        Ok(TestCa {
            dir: dir.to_owned(),
            cert,
            key,
        })
    }

    /// A leaf certificate for `name` valid for `sans` (`IP:127.0.0.1`,
    /// `DNS:localhost`), usable by servers and clients.
    pub fn issue(&self, name: &str, sans: &[&str], serial: u64) -> std::io::Result<Issued> {
        let base = self.dir.join(format!("{name}-{serial}"));
        let key = base.with_extension("key");
        let csr = base.with_extension("csr");
        let cert = base.with_extension("pem");
        let ext = base.with_extension("ext");
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            path(&key)?,
            "-out",
            path(&csr)?,
        ])?;
        std::fs::write(
            &ext,
            format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage=serverAuth,clientAuth\n",
                sans.join(",")
            ),
        )?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            path(&csr)?,
            "-CA",
            path(&self.cert)?,
            "-CAkey",
            path(&self.key)?,
            "-set_serial",
            &serial.to_string(),
            "-days",
            "2",
            "-extfile",
            path(&ext)?,
            "-out",
            path(&cert)?,
        ])?;
        Ok(Issued { cert, key })
    }
}

fn path(p: &Path) -> std::io::Result<&str> {
    p.to_str().ok_or_else(|| std::io::Error::other("non-UTF-8 temp path"))
}
