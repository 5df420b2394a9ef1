//! TLS for SIP (RFC 3261 26, RFC 5630): the server side reads its
//! certificate chain and key from PEM files and rereads them when the files
//! change (Kubernetes rotates Secrets in place), so the next handshake uses
//! the new certificate while open connections keep theirs. Client
//! certificates are checked against a CA bundle when asked (mutual TLS for
//! trunks and PBXs). The client side verifies servers against the system
//! roots or a configured bundle; there is no "accept anything" mode.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::lock;

/// Whether a TLS listener asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// Clients are not asked for a certificate.
    #[default]
    None,
    /// A certificate is checked when a client offers one.
    Optional,
    /// Clients without a certificate from `client_ca_file` are refused.
    Required,
}

/// `[edge.tls]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first) for `tls:` and `wss:` listeners.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// PEM CA bundle that client certificates must chain to.
    pub client_ca_file: Option<PathBuf>,
    /// PEM CA bundle for servers we connect to; default: the system roots.
    pub ca_file: Option<PathBuf>,
    /// A peer that has not finished its handshake by then is dropped.
    pub handshake_timeout_ms: u64,
    /// How often the certificate files are checked for changes.
    pub reload_interval_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            client_auth: ClientAuth::None,
            client_ca_file: None,
            ca_file: None,
            handshake_timeout_ms: Self::DEFAULT_HANDSHAKE_TIMEOUT_MS,
            reload_interval_ms: Self::DEFAULT_RELOAD_INTERVAL_MS,
        }
    }
}

impl TlsConfig {
    pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
    pub const DEFAULT_RELOAD_INTERVAL_MS: u64 = 5_000;

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(match self.handshake_timeout_ms {
            0 => Self::DEFAULT_HANDSHAKE_TIMEOUT_MS,
            ms => ms,
        })
    }

    fn reload_interval(&self) -> Duration {
        Duration::from_millis(match self.reload_interval_ms {
            0 => Self::DEFAULT_RELOAD_INTERVAL_MS,
            ms => ms,
        })
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: {what}", path.display())]
    Pem { path: PathBuf, what: String },
    #[error("edge.tls.{0} is needed for tls: and wss: listeners")]
    Missing(&'static str),
    #[error("edge.tls.client_ca_file is needed when client_auth is optional or required")]
    NoClientCa,
    #[error("{0}")]
    Rustls(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |what: String| TlsError::Pem {
        path: path.to_owned(),
        what,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate".into()));
    }
    Ok(certs)
}

fn parse_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        what: format!("no PEM private key: {e}"),
    })
}

/// The certificates of a PEM file (a chain, or a CA bundle).
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certs(path, &read(path)?)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    parse_key(path, &read(path)?)
}

/// A PEM file's bytes, checked to hold certificates: for libraries that
/// take PEM (tonic, redis) and would only fail at the first connection.
pub fn cert_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(path)?;
    parse_certs(path, &pem)?;
    Ok(pem)
}

/// A PEM file's bytes, checked to hold a private key.
pub fn key_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(path)?;
    parse_key(path, &pem)?;
    Ok(pem)
}

/// A root store from a PEM bundle, or the system's roots.
pub fn roots(bundle: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match bundle {
        Some(path) => {
            for cert in certs(path)? {
                store.add(cert).map_err(|e| TlsError::Pem {
                    path: path.to_owned(),
                    what: e.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                warn!(error = %e, "system CA certificate unreadable");
            }
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                warn!("no system CA certificates: outgoing TLS will fail until edge.tls.ca_file is set");
            }
        }
    }
    Ok(store)
}

/// ring: it builds with a C compiler alone, where aws-lc-rs needs far more
/// build time on small machines. rustls deprecates it for lacking
/// post-quantum key exchange, which SIP peers do not offer yet.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(config: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let cert = config.cert_file.as_deref().ok_or(TlsError::Missing("cert_file"))?;
    let key_path = config.key_file.as_deref().ok_or(TlsError::Missing("key_file"))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match config.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let ca = config.client_ca_file.as_deref().ok_or(TlsError::NoClientCa)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(Some(ca))?), provider());
            let verifier = match auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::Rustls(e.to_string()))?)
        }
    };
    builder
        .with_single_cert(certs(cert)?, key(key_path)?)
        .map_err(|e| TlsError::Rustls(format!("{}: {e}", cert.display())))
}

fn client_config(config: &TlsConfig) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots(config.ca_file.as_deref())?);
    // Our own certificate, when we have one, answers servers that ask
    // (mutual TLS towards trunks).
    match (&config.cert_file, &config.key_file) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(certs(c)?, key(k)?)
            .map_err(|e| TlsError::Rustls(e.to_string())),
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// What the files look like now (following symlinks, as Kubernetes swaps
/// a `..data` link): time and size, to notice rotation.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(config: &TlsConfig) -> Stamp {
    [
        &config.cert_file,
        &config.key_file,
        &config.client_ca_file,
        &config.ca_file,
    ]
    .into_iter()
    .map(|p| {
        let meta = std::fs::metadata(p.as_deref()?).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    })
    .collect()
}

/// The edge's TLS state: the server configuration in use (swapped on
/// reload) and the client configuration.
pub struct TlsContext {
    config: TlsConfig,
    server: Mutex<Option<Arc<ServerConfig>>>,
    client: Mutex<Arc<ClientConfig>>,
    /// The files as last loaded.
    stamp: Mutex<Stamp>,
    /// The files as last found unloadable: warned about once.
    refused: Mutex<Stamp>,
}

impl TlsContext {
    /// Loads what the configuration names. `serve`: a `tls:` or `wss:`
    /// listener needs a certificate.
    pub fn load(config: &TlsConfig, serve: bool) -> Result<Arc<TlsContext>, TlsError> {
        let stamp = stamp(config);
        let server = if serve || config.cert_file.is_some() {
            Some(Arc::new(server_config(config)?))
        } else {
            None
        };
        Ok(Arc::new(TlsContext {
            config: config.clone(),
            server: Mutex::new(server),
            client: Mutex::new(Arc::new(client_config(config)?)),
            stamp: Mutex::new(stamp),
            refused: Mutex::new(Vec::new()),
        }))
    }

    pub fn handshake_timeout(&self) -> Duration {
        self.config.handshake_timeout()
    }

    pub fn acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        lock(&self.server).clone().map(tokio_rustls::TlsAcceptor::from)
    }

    /// Opens TLS over `tcp`, verifying the server's certificate for the IP
    /// address we connect to (targets are addresses by now).
    pub async fn connect(
        &self,
        tcp: TcpStream,
        remote: SocketAddr,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let connector = tokio_rustls::TlsConnector::from(lock(&self.client).clone());
        connector.connect(ServerName::IpAddress(remote.ip().into()), tcp).await
    }

    /// Rereads the files if any changed. A bad new set is logged and the
    /// old one kept: a half-written Secret must not take TLS down.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamp(&self.config);
        if *lock(&self.stamp) == now || *lock(&self.refused) == now {
            return false;
        }
        let server = match lock(&self.server).is_some() {
            true => server_config(&self.config).map(|s| Some(Arc::new(s))),
            false => Ok(None),
        };
        match (server, client_config(&self.config)) {
            (Ok(server), Ok(client)) => {
                *lock(&self.server) = server;
                *lock(&self.client) = Arc::new(client);
                *lock(&self.stamp) = now;
                info!("TLS certificates reloaded");
                true
            }
            (Err(e), _) | (_, Err(e)) => {
                warn!(error = %e, "TLS certificates changed but do not load: keeping the previous ones");
                *lock(&self.refused) = now;
                false
            }
        }
    }

    /// Rereads the files now, changed or not (an operator's `sipbus ctl
    /// reload-tls`). A set that does not load is refused, with why, and the
    /// old one kept. Says what is served now.
    pub fn reload_now(&self) -> Result<String, TlsError> {
        let now = stamp(&self.config);
        let server = match lock(&self.server).is_some() {
            true => Some(Arc::new(server_config(&self.config)?)),
            false => None,
        };
        let client = client_config(&self.config)?;
        *lock(&self.server) = server;
        *lock(&self.client) = Arc::new(client);
        *lock(&self.stamp) = now;
        info!("TLS certificates reloaded on request");
        let Some(path) = self.config.cert_file.as_deref() else {
            return Ok("no certificate configured; CA bundle reread".to_owned());
        };
        let chain = certs(path)?;
        let leaf = chain
            .first()
            .map(|c| sha2::Sha256::digest(c.as_ref()))
            .unwrap_or_default();
        let fingerprint: Vec<String> = leaf.iter().map(|b| format!("{b:02X}")).collect();
        Ok(format!(
            "{}: {} certificate(s), leaf SHA-256 {}",
            path.display(),
            chain.len(),
            fingerprint.join(":")
        ))
    }

    /// Watches the files until the context is dropped.
    pub fn watch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::downgrade(self);
        let every = self.config.reload_interval();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(ctx) = me.upgrade() else { return };
                ctx.reload_if_changed();
            }
        })
    }
}
