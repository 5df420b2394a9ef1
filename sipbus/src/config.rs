//! The configuration file: defaults, then TOML, then `SIPBUS_*`
//! environment overrides, into typed structs. Every problem names its key.

use std::fmt;
use std::path::Path;

use std::collections::BTreeMap;

use extension::RegistryConfig;
use publish_svc::PublishConfig;
use pubsub_svc::PubsubConfig;
use registrar_svc::RegistrarConfig;
use sdp_svc::SdpConfig;
use serde::{Deserialize, Serialize};
use session_svc::SessionConfig;
use sip_edge::EdgeConfig;

use crate::modules::Process;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    pub edge: EdgeConfig,
    pub store: StoreConfig,
    pub bus: BusConfig,
    pub grpc: GrpcConfig,
    pub registrar: RegistrarConfig,
    pub session: SessionConfig,
    pub sdp: SdpConfig,
    pub pubsub: PubsubConfig,
    pub publish: PublishConfig,
    pub registry: RegistryConfig,
    pub admin: AdminConfig,
    pub shutdown: ShutdownConfig,
    pub tracing: TracingConfig,
    pub log: LogConfig,
}

/// `[tracing]`: OpenTelemetry traces over OTLP/gRPC.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct TracingConfig {
    /// The collector, `http://host:4317` (or `https://`). Empty: traces
    /// are not exported.
    pub otlp_endpoint: String,
    /// Share of new traces kept, 0.0 to 1.0; a trace a caller started
    /// keeps the caller's decision.
    pub sample_ratio: f64,
    /// `service.name` of this process's spans. Default: `sipbus-<target>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            sample_ratio: 1.0,
            service_name: None,
        }
    }
}

impl TracingConfig {
    pub fn service_name(&self, target: &str) -> String {
        self.service_name.clone().unwrap_or_else(|| format!("sipbus-{target}"))
    }
}

/// `[admin]`: the operator's HTTP port.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AdminConfig {
    /// `IP:PORT` for `/metrics` (Prometheus), `/livez` and `/readyz`.
    /// Unset: no admin port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<std::net::SocketAddr>,
}

/// `[shutdown]`: what SIGTERM does (SIGINT stops at once).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ShutdownConfig {
    /// Seconds a process drains after SIGTERM before it exits: not ready,
    /// the edge answers new requests 503 with Retry-After while dialogs,
    /// transactions and connections carry on, services send new requests
    /// to other replicas. Kubernetes' terminationGracePeriodSeconds must
    /// cover it (plus any preStop).
    pub drain_s: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { drain_s: 10 }
    }
}

/// `[store]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct StoreConfig {
    /// Empty: the embedded in-memory store (all-in-one only). One
    /// `redis://host:port/db` URL for a node, several comma-separated for a
    /// Redis Cluster. Required by every split target. `rediss://` for TLS.
    pub redis: String,
    /// `[store.tls]`: for `rediss://` URLs.
    pub tls: StoreTlsConfig,
}

/// `[store.tls]`: the CA Redis's certificate chains to, and a client
/// certificate for a Redis with `tls-auth-clients yes`. Each unset file
/// falls back to `[grpc.tls]`'s (one CA for the deployment), then to the
/// system roots and no client certificate.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct StoreTlsConfig {
    pub ca_file: Option<std::path::PathBuf>,
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
}

/// `[bus]`: how the edge reaches the services in split mode.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct BusConfig {
    /// registrar-svc replicas: `http://host:port` each, or `dns://name:port`
    /// for a name that resolves to every replica (a Kubernetes headless
    /// Service), re-resolved every `discovery_ms`.
    pub registrar: Vec<String>,
    /// session-svc replicas (for sip-edge), same forms as `registrar`.
    pub session: Vec<String>,
    /// sdp-svc replicas (for session-svc), same forms as `registrar`.
    pub sdp: Vec<String>,
    /// pubsub-svc replicas (for sip-edge: SUBSCRIBE), same forms as
    /// `registrar`.
    pub pubsub: Vec<String>,
    /// publish-svc replicas (for sip-edge: PUBLISH), same forms as
    /// `registrar`.
    pub publish: Vec<String>,
    /// The edge API of each sip-edge instance, by `edge.instance` name
    /// (for session-svc): `{ edge-1 = "http://10.0.0.5:50051" }`.
    pub edges: BTreeMap<String, String>,
    /// How long a service may take to answer before the phone gets 503.
    pub deadline_ms: u64,
    pub connect_timeout_ms: u64,
    /// How often DNS names in the replica lists are resolved again.
    pub discovery_ms: u64,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            registrar: Vec::new(),
            session: Vec::new(),
            sdp: Vec::new(),
            pubsub: Vec::new(),
            publish: Vec::new(),
            edges: BTreeMap::new(),
            deadline_ms: 2000,
            connect_timeout_ms: 500,
            discovery_ms: 5000,
        }
    }
}

/// `[grpc]`: where a process serves its contracts (split targets: their
/// service; every process: the APIs `sipbus` subcommands use).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct GrpcConfig {
    /// Unset: `0.0.0.0:50051` for a split target, `127.0.0.1:50051` for
    /// all-in-one (its API is for local tools, not the network).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<std::net::SocketAddr>,
    /// `[grpc.tls]`: TLS (and mutual TLS) between sipbus processes. Plain
    /// text when unset, as loopback and all-in-one want.
    pub tls: bus::grpc::tls::GrpcTlsConfig,
}

impl GrpcConfig {
    pub fn listen_for(&self, target: &str) -> std::net::SocketAddr {
        self.listen.unwrap_or(if target == "all" {
            ([127, 0, 0, 1], 50051).into()
        } else {
            ([0, 0, 0, 0], 50051).into()
        })
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `sip_edge=debug,info` ...
    /// `RUST_LOG`, when set, wins.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Every problem found, each with the key it concerns.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "config: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

const ENV_PREFIX: &str = "SIPBUS_";

/// Loads the configuration from an optional file and the given environment
/// (passed in, so tests need not touch the process environment), and runs
/// every check a start of `process` would, so all problems are named at
/// once.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    process: &Process,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigErrors(vec![format!("cannot read {}: {e}", path.display())]))?;
            text.parse::<toml::Table>()
                .map_err(|e| ConfigErrors(vec![format!("{}: {}", path.display(), e.to_string().trim_end())]))?
        }
        None => toml::Table::new(),
    };
    for (name, value) in env {
        let Some(key) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        // SIPBUS_TARGET is a command line option, not a config key.
        if key == "TARGET" {
            continue;
        }
        let path: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            errors.push(format!("{name}: empty key segment"));
            continue;
        }
        if let Err(e) = set_path(&mut table, &path, parse_env_value(&value)) {
            errors.push(format!("{name}: {e}"));
        }
    }

    let mut unknown = Vec::new();
    let de = toml::Value::Table(table);
    let config: Result<Config, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(de, &mut |path| {
            unknown.push(path.to_string())
        }));
    for key in unknown {
        errors.push(format!("{key}: unknown key"));
    }
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            // The inner message may repeat the path on a second line.
            let inner = e.inner().to_string();
            let first = inner.lines().next().unwrap_or_default();
            errors.push(format!("{}: {first}", e.path()));
            return Err(ConfigErrors(errors));
        }
    };
    if tracing_subscriber::EnvFilter::try_new(&config.log.level).is_err() {
        errors.push(format!("log.level: `{}` is not a valid filter", config.log.level));
    }
    if !(0.0..=1.0).contains(&config.tracing.sample_ratio) {
        errors.push(format!(
            "tracing.sample_ratio: {} is not between 0 and 1",
            config.tracing.sample_ratio
        ));
    }
    if !config.tracing.otlp_endpoint.is_empty() && bus::grpc::check_address(&config.tracing.otlp_endpoint).is_err() {
        errors.push(format!(
            "tracing.otlp_endpoint: `{}`: expected http://host:port",
            config.tracing.otlp_endpoint
        ));
    }
    if config.shutdown.drain_s > 3600 {
        errors.push(format!(
            "shutdown.drain_s: {} is more than 3600",
            config.shutdown.drain_s
        ));
    }
    if let Some(admin) = config.admin.listen
        && admin == config.grpc.listen_for(process.target)
    {
        errors.push(format!("admin.listen: {admin} is grpc.listen too"));
    }
    errors.extend(process.check(&config).iter().map(ToString::to_string));
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// A TOML literal if it is one, a string otherwise.
fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut current = table;
    for (i, key) in parents.iter().enumerate() {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("{} is not a table", path[..=i].join(".")))?;
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Write;

    use super::*;

    fn all() -> Process {
        Process::of("all").unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn file(text: &str) -> tempfile_path::TempPath {
        tempfile_path::write(text)
    }

    mod tempfile_path {
        use std::path::PathBuf;

        pub struct TempPath(pub PathBuf);
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        pub fn write(text: &str) -> TempPath {
            let path = std::env::temp_dir().join(format!("sipbus-cfg-{}.toml", fastrand_u64()));
            let mut f = std::fs::File::create(&path).unwrap();
            super::Write::write_all(&mut f, text.as_bytes()).unwrap();
            TempPath(path)
        }
        fn fastrand_u64() -> u64 {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(std::time::SystemTime::now())
        }
    }

    #[test]
    fn defaults_file_then_env() {
        let f = file("[edge]\nlisten = [\"udp:127.0.0.1:5070\"]\n[edge.timers]\nt1_ms = 100\n");
        let c = load(
            Some(&f.0),
            env(&[("SIPBUS_EDGE__TIMERS__T1_MS", "250"), ("OTHER", "x")]),
            &all(),
        )
        .unwrap();
        assert_eq!(c.edge.listen.len(), 1);
        assert_eq!(c.edge.timers.t1_ms, 250);
        assert_eq!(c.edge.timers.t2_ms, 4000);
        assert_eq!(c.log.level, "info");
        let c = load(
            None,
            env(&[
                ("SIPBUS_EDGE__LISTEN", r#"["tcp:[::1]:5080"]"#),
                ("SIPBUS_LOG__LEVEL", "debug"),
            ]),
            &all(),
        )
        .unwrap();
        assert_eq!(c.edge.listen[0].to_string(), "tcp:[::1]:5080");
        assert_eq!(c.log.level, "debug");
    }

    #[test]
    fn every_bad_key_is_named() {
        let f = file("[edge]\nlisten = [\"udp:127.0.0.1:5070\"]\nbogus = 1\n[edge.timers]\nt1_ms = 0\nt9 = 3\n");
        let e = load(Some(&f.0), env(&[]), &all()).unwrap_err().to_string();
        assert!(e.contains("edge.bogus: unknown key"), "{e}");
        assert!(e.contains("edge.timers.t9: unknown key"), "{e}");
        assert!(e.contains("edge.timers.t1_ms"), "{e}");
        let e = load(None, env(&[("SIPBUS_EDGE__LISTEN", "udp:nonsense")]), &all())
            .unwrap_err()
            .to_string();
        assert!(e.contains("edge.listen"), "{e}");
        let e = load(None, env(&[("SIPBUS_EDGE__TIMERS__T1_MS", "soon")]), &all())
            .unwrap_err()
            .to_string();
        assert!(e.contains("edge.timers.t1_ms"), "{e}");
        let f = file("[edge\n");
        assert!(
            load(Some(&f.0), env(&[]), &all())
                .unwrap_err()
                .to_string()
                .contains("TOML parse error")
        );
    }
}
