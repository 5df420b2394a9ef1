//! Certificates and TLS clients for the secure-transport tests: a test CA
//! made with the `openssl` command (so what the tests trust is what real
//! peers would be given), certificates with chosen serials, and a small
//! rustls client that sends SIP over TLS and shows which certificate the
//! server presented.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

fn openssl(args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .context("running openssl (Debian package openssl)")?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
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
    pub fn combined(&self) -> Result<PathBuf> {
        let path = self.cert.with_extension("both.pem");
        let mut pem = std::fs::read(&self.cert)?;
        pem.extend(std::fs::read(&self.key)?);
        std::fs::write(&path, pem)?;
        Ok(path)
    }

    pub fn der(&self) -> Result<Vec<u8>> {
        Ok(CertificateDer::from_pem_file(&self.cert)?.to_vec())
    }

    /// Puts this certificate where `other` is, the way a Secret update
    /// does: new files renamed over the old ones.
    pub fn install_over(&self, other: &Issued) -> Result<()> {
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
    pub fn new(dir: &Path, name: &str) -> Result<TestCa> {
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
    pub fn issue(&self, name: &str, sans: &[&str], serial: u64) -> Result<Issued> {
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

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 temp path")
}

/// A rustls client that trusts `ca` and presents `identity` when given.
pub fn connector(ca: &Path, identity: Option<&Issued>) -> Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    #[allow(deprecated)] // ring, as sipbus uses
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match identity {
        Some(id) => builder.with_client_auth_cert(
            CertificateDer::pem_file_iter(&id.cert)?.collect::<Result<Vec<_>, _>>()?,
            PrivateKeyDer::from_pem_file(&id.key)?,
        )?,
        None => builder.with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One TLS connection to a SIP server.
pub struct TlsSip {
    pub stream: TlsStream<TcpStream>,
}

impl TlsSip {
    pub async fn connect(addr: SocketAddr, connector: &tokio_rustls::TlsConnector) -> Result<TlsSip> {
        let tcp = TcpStream::connect(addr).await?;
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            connector.connect(ServerName::IpAddress(addr.ip().into()), tcp),
        )
        .await
        .context("TLS handshake timed out")??;
        Ok(TlsSip { stream })
    }

    /// The certificate the server presented (DER).
    pub fn server_cert(&self) -> Option<Vec<u8>> {
        let (_, conn) = self.stream.get_ref();
        conn.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec())
    }

    pub async fn send(&mut self, message: &str) -> Result<()> {
        self.stream.write_all(message.as_bytes()).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Reads one message (headers and Content-Length body) within `limit`.
    pub async fn read_message(&mut self, limit: Duration) -> Result<String> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        tokio::time::timeout(limit, async {
            loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (n, v) = l.split_once(':')?;
                            let n = n.trim();
                            (n.eq_ignore_ascii_case("content-length") || n == "l")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        return Ok(String::from_utf8_lossy(&buf[..end + 4 + len]).to_string());
                    }
                }
                let n = self.stream.read(&mut chunk).await?;
                if n == 0 {
                    bail!("connection closed after {} bytes", buf.len());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .context("no SIP message in time")?
    }

    /// Sends a request and reads the first final response.
    pub async fn request(&mut self, message: &str) -> Result<String> {
        self.send(message).await?;
        loop {
            let m = self.read_message(Duration::from_secs(5)).await?;
            let code = m.split_whitespace().nth(1).unwrap_or("");
            if !code.starts_with('1') {
                return Ok(m);
            }
        }
    }
}

/// An OPTIONS request over `transport` from `local`.
pub fn options(transport: &str, local: SocketAddr, to: SocketAddr, branch: &str) -> String {
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag={branch}\r\nTo: <sip:{to}>\r\n\
         Call-ID: {branch}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}
