//! TLS between sipbus's own processes: `[grpc.tls]` names one CA, and a
//! certificate and key that every process presents both as a server and as
//! a client, so pods of one deployment trust only each other (mutual TLS
//! when client certificates are required). Set once per process at start;
//! every bus channel then speaks TLS, whatever scheme its address was
//! written with. Extension modules' addresses keep their own scheme.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use sip_edge::transport::tls::{TlsError, cert_pem, key_pem};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// `[grpc.tls]`. All three files, or none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct GrpcTlsConfig {
    /// PEM CA bundle: the servers we call and the clients that call us must
    /// chain to it.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain this process presents, as server and client.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Callers without a certificate from `ca_file` are refused.
    pub require_client_cert: bool,
    /// The name servers' certificates are checked for; default: the host
    /// of the address called. Set it when addresses are pod IPs (DNS
    /// discovery) and certificates name the Service.
    pub server_name: Option<String>,
}

/// Why `[grpc.tls]` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GrpcTlsError {
    #[error("grpc.tls needs ca_file, cert_file and key_file together")]
    Incomplete,
    #[error("grpc.tls.require_client_cert needs ca_file, cert_file and key_file")]
    RequireWithoutTls,
    #[error(transparent)]
    File(#[from] TlsError),
}

/// What a process uses once `[grpc.tls]` is loaded.
#[derive(Debug, Clone)]
pub struct GrpcTls {
    pub server: ServerTlsConfig,
    client: ClientTlsConfig,
    server_name: Option<String>,
}

impl GrpcTlsConfig {
    /// `None`: plain text, the default.
    pub fn load(&self) -> Result<Option<GrpcTls>, GrpcTlsError> {
        let (ca, cert, key) = match (&self.ca_file, &self.cert_file, &self.key_file) {
            (None, None, None) if self.require_client_cert => return Err(GrpcTlsError::RequireWithoutTls),
            (None, None, None) => return Ok(None),
            // Checked now: tonic would only find out at the first connection.
            (Some(ca), Some(cert), Some(key)) => (cert_pem(ca)?, cert_pem(cert)?, key_pem(key)?),
            _ => return Err(GrpcTlsError::Incomplete),
        };
        let identity = Identity::from_pem(cert, key);
        let ca = Certificate::from_pem(ca);
        Ok(Some(GrpcTls {
            server: ServerTlsConfig::new()
                .identity(identity.clone())
                .client_ca_root(ca.clone())
                .client_auth_optional(!self.require_client_cert),
            client: ClientTlsConfig::new().ca_certificate(ca).identity(identity),
            server_name: self.server_name.clone(),
        }))
    }
}

static BUS_TLS: OnceLock<GrpcTls> = OnceLock::new();

/// Makes every bus channel of this process use `tls`. Once per process;
/// later calls are ignored.
pub fn install(tls: GrpcTls) {
    let _ = BUS_TLS.set(tls);
}

pub(crate) fn installed() -> Option<&'static GrpcTls> {
    BUS_TLS.get()
}

impl GrpcTls {
    /// The client settings for a server at `host`.
    pub(crate) fn client_for(&self, host: &str) -> ClientTlsConfig {
        let name = self.server_name.as_deref().unwrap_or(host);
        self.client
            .clone()
            .domain_name(name.trim_start_matches('[').trim_end_matches(']'))
    }
}
