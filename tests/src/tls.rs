//! TLS clients for the secure-transport tests: a small rustls client that
//! sends SIP over TLS and shows which certificate the server presented.
//! Certificates come from [`TestCa`] (the `openssl` command).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rustls::pki_types::ServerName;
use sip_edge::transport::tls::{certs, key, provider, roots};
use sip_message::Limits;
use sip_message::framing::{Frame, StreamFramer};
pub use state_store::testing::{Issued, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The DER of an issued certificate, to compare with what a server shows.
pub fn der(issued: &Issued) -> Result<Vec<u8>> {
    let leaf = certs(&issued.cert)?.into_iter().next().context("no certificate")?;
    Ok(leaf.to_vec())
}

/// A rustls client that trusts `ca` and presents `identity` when given.
pub fn connector(ca: &Path, identity: Option<&Issued>) -> Result<tokio_rustls::TlsConnector> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(Some(ca))?);
    let config = match identity {
        Some(id) => builder.with_client_auth_cert(certs(&id.cert)?, key(&id.key)?)?,
        None => builder.with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One TLS connection to a SIP server.
pub struct TlsSip {
    pub stream: TlsStream<TcpStream>,
    /// Bytes read past the last message returned.
    framer: StreamFramer,
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
        Ok(TlsSip {
            stream,
            framer: StreamFramer::new(Limits::default()),
        })
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

    /// Reads one message within `limit`, framed as sip-edge frames a
    /// stream (Content-Length; keep-alive CRLFs skipped).
    pub async fn read_message(&mut self, limit: Duration) -> Result<String> {
        let mut chunk = [0u8; 4096];
        tokio::time::timeout(limit, async {
            loop {
                match self.framer.next_frame()? {
                    Some(Frame::Message(m)) => return Ok(String::from_utf8_lossy(&m).into_owned()),
                    Some(Frame::Ping | Frame::Pong) => continue,
                    None => {}
                }
                let n = self.stream.read(&mut chunk).await?;
                if n == 0 {
                    bail!("connection closed with {} bytes unread", self.framer.pending());
                }
                self.framer.extend(&chunk[..n]);
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
