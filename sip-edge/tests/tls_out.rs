//! Requests sipbus sends over TLS (to `sips:` and `transport=tls`
//! targets): the server's certificate is verified against the configured
//! bundle for the address connected to; a server the bundle does not vouch
//! for gets nothing, and the transaction fails instead.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use edge_api::Edge;
use sip_edge::transport::ListenAddr;
use sip_edge::transport::tls::{self, TlsConfig};
use sip_edge::{EdgeConfig, Flow, NoServices, Transport};
use sip_message::{Known, Message, Method};
use state_store::testing::{Issued, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

fn dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("sipbus-tls-out-{name}-{}", std::process::id()))
}

/// What the test server saw of the edge.
#[derive(Debug)]
enum Seen {
    /// The edge connected but the handshake failed (it refused us).
    HandshakeFailed,
    Request(String),
    Other,
}

/// A TLS server with `cert` that answers the first request 200 and
/// reports what it saw.
async fn server(cert: &Issued) -> (std::net::SocketAddr, tokio::task::JoinHandle<Seen>) {
    let chain = tls::certs(&cert.cert).unwrap();
    let key = tls::key(&cert.key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return Seen::Other;
        };
        let Ok(mut tls) = acceptor.accept(tcp).await else {
            return Seen::HandshakeFailed;
        };
        let mut buf = vec![0u8; 8192];
        let Ok(n) = tls.read(&mut buf).await else {
            return Seen::Other;
        };
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let Ok(req) = Message::parse(bytes::Bytes::copy_from_slice(&buf[..n])) else {
            return Seen::Other;
        };
        let _ = tls
            .write_all(&req.make_response(200, "OK", Some("s1")).to_bytes())
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        Seen::Request(text)
    });
    (addr, task)
}

fn options(to: &str) -> Message {
    let mut req = Message::request(Method::Options, to);
    req.push_header(Known::From, "<sip:edge@example.com>;tag=e1");
    req.push_header(Known::To, "<sip:peer@example.com>");
    req.push_header(Known::CallId, "tls-out-1");
    req.push_header(Known::CSeq, "1 OPTIONS");
    req
}

#[tokio::test]
async fn sips_targets_are_reached_over_verified_tls_only() {
    let ca = TestCa::new(&dir("ca"), "peers").unwrap();
    let good = ca.issue("peer", &["IP:127.0.0.1"], 1).unwrap();
    let stranger = TestCa::new(&dir("stranger"), "stranger").unwrap();
    let bad = stranger.issue("peer", &["IP:127.0.0.1"], 2).unwrap();
    let mut config = EdgeConfig {
        listen: vec!["udp:127.0.0.1:0".parse::<ListenAddr>().unwrap()],
        tls: TlsConfig {
            ca_file: Some(ca.cert.clone()),
            ..TlsConfig::default()
        },
        ..EdgeConfig::default()
    };
    // Timer F (64 T1) ends the failed transaction in 3.2 s.
    config.timers.t1_ms = 50;
    config.timers.t2_ms = 400;
    let edge = sip_edge::start(&config, Arc::new(NoServices)).await.unwrap();

    // A sips: URI means TLS (RFC 5630), to a server our bundle vouches for.
    let (addr, got) = server(&good).await;
    let uri = format!("sips:peer@{addr}");
    let flow = Flow::to_uri(&uri).unwrap();
    assert_eq!(flow.transport, Transport::Tls);
    let mut tx = edge.handle().send_request(options(&uri), flow).await.unwrap();
    let ev = timeout(Duration::from_secs(5), tx.next()).await.unwrap().unwrap();
    assert_eq!(ev.response.status(), Some(200));
    let Seen::Request(text) = got.await.unwrap() else {
        panic!("the request did not arrive");
    };
    assert!(text.contains("Via: SIP/2.0/TLS "), "{text}");

    // A server with another CA's certificate never sees the request.
    let (addr, got) = server(&bad).await;
    let uri = format!("sip:peer@{addr};transport=tls");
    let mut tx = edge
        .handle()
        .send_request(options(&uri), Flow::to_uri(&uri).unwrap())
        .await
        .unwrap();
    let ev = timeout(Duration::from_secs(10), tx.next()).await.unwrap();
    assert!(
        ev.is_none_or(|e| e.response.status() != Some(200)),
        "an unverified server was talked to"
    );
    let seen = got.await.unwrap();
    assert!(
        matches!(seen, Seen::HandshakeFailed),
        "the edge should connect and then refuse the certificate: {seen:?}"
    );
    edge.stop();
}
