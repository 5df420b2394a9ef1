//! Secure transports against the real binary: SIP over TLS (answers over
//! the connection, certificate rotation without restart, mutual TLS, the
//! handshake timeout, `sips:` never leaving over a plain hop) and the
//! WebSocket upgrade rules (the `sip` subprotocol, the Origin allow-list).
//! Certificates come from a test CA made with openssl.
#![allow(clippy::unwrap_used)]
// Real processes on real sockets: wall-clock time is what counts here.
#![allow(clippy::disallowed_types)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sipbus_tests::tls::{Issued, TestCa, TlsSip, connector, der, options};
use sipbus_tests::{Sipbus, free_port, register_contact, temp_file};

fn dir(name: &str) -> PathBuf {
    temp_file(&format!("{name}.keep"), "").unwrap().with_extension("d")
}

fn loopback(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

struct Secure {
    sipbus: Sipbus,
    tls: SocketAddr,
    ws: SocketAddr,
    wss: SocketAddr,
    ca: TestCa,
    server: Issued,
}

/// all-in-one with tls:, ws: and wss: listeners and `env` on top.
fn start(name: &str, env: &[(&str, &str)]) -> Secure {
    let ca = TestCa::new(&dir(name), name).unwrap();
    let server = ca.issue("sipbus", &["IP:127.0.0.1", "DNS:localhost"], 1).unwrap();
    let (tls, ws, wss) = (
        loopback(free_port().unwrap()),
        loopback(free_port().unwrap()),
        loopback(free_port().unwrap()),
    );
    let (cert, key) = (server.cert.display().to_string(), server.key.display().to_string());
    let mut all: Vec<(&str, &str)> = vec![
        ("SIPBUS_EDGE__TLS__CERT_FILE", &cert),
        ("SIPBUS_EDGE__TLS__KEY_FILE", &key),
        ("SIPBUS_EDGE__TLS__RELOAD_INTERVAL_MS", "200"),
        ("SIPBUS_EDGE__TLS__HANDSHAKE_TIMEOUT_MS", "1000"),
    ];
    all.extend_from_slice(env);
    let sipbus = Sipbus::start_listening(
        "all",
        &all,
        &[format!("tls:{tls}"), format!("ws:{ws}"), format!("wss:{wss}")],
    )
    .unwrap();
    Secure {
        sipbus,
        tls,
        ws,
        wss,
        ca,
        server,
    }
}

#[tokio::test]
async fn tls_answers_over_the_connection_and_rotates_certificates_without_restart() {
    let s = start("tls-rotate", &[]);
    let trust = connector(&s.ca.cert, None).unwrap();
    let mut first = TlsSip::connect(s.tls, &trust).await.unwrap();
    assert_eq!(first.server_cert().unwrap(), der(&s.server).unwrap());
    let local = first.stream.get_ref().0.local_addr().unwrap();
    let resp = first.request(&options("TLS", local, s.tls, "rot1")).await.unwrap();
    assert!(resp.starts_with("SIP/2.0 200"), "{resp}\n{}", s.sipbus.log_text());
    assert!(resp.contains("SIP/2.0/TLS"), "Via transport kept: {resp}");

    // Rotation: new files renamed over the old ones, as a Secret update.
    let renewed = s.ca.issue("sipbus", &["IP:127.0.0.1"], 2).unwrap();
    renewed.install_over(&s.server).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probe = TlsSip::connect(s.tls, &trust).await.unwrap();
        if probe.server_cert().unwrap() == der(&renewed).unwrap() {
            break;
        }
        assert!(Instant::now() < deadline, "still the old certificate after 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(s.sipbus.log_text().contains("TLS certificates reloaded"));
    // The connection opened before the rotation goes on.
    let resp = first.request(&options("TLS", local, s.tls, "rot2")).await.unwrap();
    assert!(resp.starts_with("SIP/2.0 200"), "{resp}");

    // A half-written rotation (a key that does not match) keeps the last
    // good certificate.
    let other = s.ca.issue("other", &["IP:127.0.0.1"], 3).unwrap();
    std::fs::copy(&other.key, &s.server.key).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let probe = TlsSip::connect(s.tls, &trust).await.unwrap();
    assert_eq!(probe.server_cert().unwrap(), der(&renewed).unwrap());
    assert!(s.sipbus.log_text().contains("keeping the previous ones"));
}

/// `sipbus ctl reload-tls` swaps the certificate at once, when polling
/// would take an hour, and refuses (keeping the old one) a set that does
/// not load.
#[tokio::test]
async fn ctl_reload_tls_swaps_the_certificate_on_request() {
    let s = start("tls-ctl", &[("SIPBUS_EDGE__TLS__RELOAD_INTERVAL_MS", "3600000")]);
    let trust = connector(&s.ca.cert, None).unwrap();
    let old = der(&s.server).unwrap();
    let renewed = s.ca.issue("sipbus", &["IP:127.0.0.1"], 2).unwrap();
    renewed.install_over(&s.server).unwrap();
    let probe = TlsSip::connect(s.tls, &trust).await.unwrap();
    assert_eq!(probe.server_cert().unwrap(), old, "not polled yet: the old certificate");
    let reload = || {
        std::process::Command::new(sipbus_tests::sipbus_bin().unwrap())
            .args(["ctl", "--server", &format!("http://{}", s.sipbus.grpc), "reload-tls"])
            .output()
            .unwrap()
    };
    let out = reload();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    // The fingerprint it reports is the new leaf's.
    let fingerprint = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&s.server.cert)
        .output()
        .unwrap();
    let fingerprint = String::from_utf8_lossy(&fingerprint.stdout);
    let fingerprint = fingerprint.trim().rsplit('=').next().unwrap();
    assert!(said.contains(fingerprint), "{said} / {fingerprint}");
    let probe = TlsSip::connect(s.tls, &trust).await.unwrap();
    assert_eq!(probe.server_cert().unwrap(), der(&renewed).unwrap());

    // A key that does not match: refused, the renewed certificate stays.
    let other = s.ca.issue("other", &["IP:127.0.0.1"], 3).unwrap();
    std::fs::copy(&other.key, &s.server.key).unwrap();
    let out = reload();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("do not load"), "{err}");
    let probe = TlsSip::connect(s.tls, &trust).await.unwrap();
    assert_eq!(probe.server_cert().unwrap(), der(&renewed).unwrap());
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate_from_the_ca() {
    let name = "mtls";
    let ca = TestCa::new(&dir(name), name).unwrap();
    let ca_path = ca.cert.display().to_string();
    let s = start(
        name,
        &[
            ("SIPBUS_EDGE__TLS__CLIENT_AUTH", "required"),
            ("SIPBUS_EDGE__TLS__CLIENT_CA_FILE", &ca_path),
        ],
    );
    let trunk = ca.issue("trunk", &["IP:127.0.0.1"], 10).unwrap();
    let stranger_ca = TestCa::new(&dir("mtls-stranger"), "stranger").unwrap();
    let stranger = stranger_ca.issue("trunk", &["IP:127.0.0.1"], 11).unwrap();

    let mut good = TlsSip::connect(s.tls, &connector(&s.ca.cert, Some(&trunk)).unwrap())
        .await
        .unwrap();
    let local = good.stream.get_ref().0.local_addr().unwrap();
    let resp = good.request(&options("TLS", local, s.tls, "mtls1")).await.unwrap();
    assert!(resp.starts_with("SIP/2.0 200"), "{resp}\n{}", s.sipbus.log_text());

    for (what, identity) in [("no certificate", None), ("another CA's certificate", Some(&stranger))] {
        // TLS 1.3 finishes the client's side before the server has checked
        // the certificate: the refusal shows as an alert on first use.
        let refused = match TlsSip::connect(s.tls, &connector(&s.ca.cert, identity).unwrap()).await {
            Err(_) => true,
            Ok(mut c) => c.request(&options("TLS", local, s.tls, "mtls2")).await.is_err(),
        };
        assert!(refused, "a client with {what} was served");
    }
    assert!(s.sipbus.log_text().contains("TLS handshake failed"));
}

#[test]
fn a_peer_that_stalls_in_its_handshake_is_dropped_after_the_timeout() {
    let s = start("stall", &[]);
    for addr in [s.tls, s.ws, s.wss] {
        let started = Instant::now();
        let mut silent = TcpStream::connect(addr).unwrap();
        silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        let n = silent.read(&mut buf);
        let waited = started.elapsed();
        assert!(
            matches!(n, Ok(0)) || n.is_err() && waited < Duration::from_secs(4),
            "{addr}: still open after {waited:?}: {n:?}"
        );
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
            "{addr}: closed after {waited:?}, the timeout is 1 s"
        );
    }
    assert!(s.sipbus.log_text().contains("handshake timed out"));
}

/// A raw HTTP upgrade request; returns the status line and headers.
fn upgrade(addr: SocketAddr, protocol: Option<&str>, origin: Option<&str>) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(p) = protocol {
        req.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    if let Some(o) = origin {
        req.push_str(&format!("Origin: {o}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).unwrap();
    let mut buf = vec![0u8; 2048];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).to_string()
}

#[test]
fn websocket_needs_the_sip_subprotocol_and_an_allowed_origin() {
    let s = start(
        "ws-rules",
        &[(
            "SIPBUS_EDGE__WEBSOCKET__ALLOWED_ORIGINS",
            r#"["https://phone.example.com"]"#,
        )],
    );
    let ok = upgrade(s.ws, Some("sip"), Some("https://phone.example.com"));
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
    assert!(ok.to_ascii_lowercase().contains("sec-websocket-protocol: sip"), "{ok}");
    let no_sip = upgrade(s.ws, Some("chat"), Some("https://phone.example.com"));
    assert!(no_sip.starts_with("HTTP/1.1 400"), "{no_sip}");
    let none = upgrade(s.ws, None, Some("https://phone.example.com"));
    assert!(none.starts_with("HTTP/1.1 400"), "{none}");
    let elsewhere = upgrade(s.ws, Some("sip"), Some("https://evil.example.net"));
    assert!(elsewhere.starts_with("HTTP/1.1 403"), "{elsewhere}");
    let no_origin = upgrade(s.ws, Some("sip"), None);
    assert!(no_origin.starts_with("HTTP/1.1 403"), "{no_origin}");
}

#[tokio::test]
async fn a_sips_request_never_leaves_over_a_plain_hop() {
    let s = start(
        "sips",
        &[
            ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#),
            ("SIPBUS_REGISTRAR__USERS", r#"[{user = "bob", password = "secret"}]"#),
            ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5"]"#),
            ("SIPBUS_SESSION__AUTHENTICATE", "false"),
        ],
    );
    // bob is registered over UDP only.
    register_contact(s.sipbus.sip, "bob", free_port().unwrap()).unwrap();
    let mut c = TlsSip::connect(s.tls, &connector(&s.ca.cert, None).unwrap())
        .await
        .unwrap();
    let local = c.stream.get_ref().0.local_addr().unwrap();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let invite = format!(
        "INVITE sips:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKsips1\r\n\
         Max-Forwards: 70\r\nFrom: <sips:alice@example.com>;tag=a1\r\nTo: <sips:bob@example.com>\r\n\
         Call-ID: sips1@test\r\nCSeq: 1 INVITE\r\nContact: <sips:alice@{local}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let resp = c.request(&invite).await.unwrap();
    assert!(resp.starts_with("SIP/2.0 480"), "{resp}\n{}", s.sipbus.log_text());
    assert!(resp.contains("380 "), "Warning 380 names why: {resp}");
}

/// Split mode with mutual TLS everywhere: the edge, registrar-svc,
/// session-svc, sdp-svc, pubsub-svc and publish-svc talk gRPC over TLS with client
/// certificates from one CA, and keep their state in a Redis that speaks
/// only TLS and wants client certificates too. A call goes through; a
/// client with another CA's certificate, or none, is refused by a service.
#[tokio::test(flavor = "multi_thread")]
async fn split_mode_runs_with_mutual_tls_on_the_bus_and_to_redis() {
    let (redis, redis_ca, redis_client) = state_store::testing::RedisServer::start_tls(true).unwrap();
    let ca = TestCa::new(&dir("bus-tls"), "bus").unwrap();
    let member = ca.issue("sipbus-bus", &["IP:127.0.0.1", "DNS:bus.sipbus"], 1).unwrap();
    let files = |p: &std::path::Path| p.display().to_string();
    let (ca_file, cert, key) = (files(&ca.cert), files(&member.cert), files(&member.key));
    let (rca, rcert, rkey) = (
        files(&redis_ca.cert),
        files(&redis_client.cert),
        files(&redis_client.key),
    );
    let env = [
        ("SIPBUS_GRPC__TLS__CA_FILE", ca_file.as_str()),
        ("SIPBUS_GRPC__TLS__CERT_FILE", cert.as_str()),
        ("SIPBUS_GRPC__TLS__KEY_FILE", key.as_str()),
        ("SIPBUS_GRPC__TLS__REQUIRE_CLIENT_CERT", "true"),
        ("SIPBUS_GRPC__TLS__SERVER_NAME", "bus.sipbus"),
        ("SIPBUS_STORE__TLS__CA_FILE", rca.as_str()),
        ("SIPBUS_STORE__TLS__CERT_FILE", rcert.as_str()),
        ("SIPBUS_STORE__TLS__KEY_FILE", rkey.as_str()),
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#),
        ("SIPBUS_REGISTRAR__USERS", r#"[{user = "tls", password = "secret"}]"#),
        ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5"]"#),
        ("SIPBUS_SESSION__AUTHENTICATE", "false"),
    ];
    // Processes and SIPp are driven synchronously.
    let split = tokio::task::block_in_place(|| {
        let every = sipbus_tests::Replicas {
            sessions: 1,
            sdps: 1,
            pubsubs: 1,
            publishes: 1,
        };
        sipbus_tests::CallSplit::start_with(&redis.url(), &env, every)
    })
    .unwrap();
    let server = split.edge.sip;
    let (a, b) =
        tokio::task::block_in_place(|| sipbus_tests::call_pair(server, "tls", "call_uas.xml", "call_uac.xml")).unwrap();
    sipbus_tests::ok(&a, "caller over the TLS bus", &|| split.logs());
    sipbus_tests::ok(&b, "callee over the TLS bus", &|| split.logs());
    for p in [
        &split.registrar,
        &split.sessions[0],
        &split.sdps[0],
        &split.pubsubs[0],
        &split.publishes[0],
    ] {
        assert!(p.log_text().contains("gRPC over TLS"), "{}", p.log_text());
    }

    // A session-svc replica refuses callers that are not bus members.
    let session = split.sessions[0].grpc;
    let stranger_ca = TestCa::new(&dir("bus-stranger"), "stranger").unwrap();
    let stranger = stranger_ca.issue("intruder", &["IP:127.0.0.1"], 7).unwrap();
    let cases = [
        ("a member's certificate", Some(&member), Probe::Settings),
        ("another CA's certificate", Some(&stranger), Probe::Refused),
        ("no certificate", None, Probe::Refused),
    ];
    for (what, identity, expected) in cases {
        let got = match TlsSip::connect(session, &connector(&ca.cert, identity).unwrap()).await {
            Err(_) => Probe::Refused,
            Ok(mut c) => {
                // The HTTP/2 preface: a server that took us answers SETTINGS.
                let _ = c.send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
                probe(&mut c.stream).await
            }
        };
        assert_eq!(got, expected, "a client with {what}");
    }
    // Plain text to a TLS port: the server answers with a TLS alert or
    // closes, never with HTTP/2.
    let mut plain = tokio::net::TcpStream::connect(session).await.unwrap();
    use tokio::io::AsyncWriteExt;
    plain.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    let got = probe(&mut plain).await;
    assert!(
        matches!(got, Probe::Refused | Probe::Other),
        "session-svc answered plain-text HTTP/2: {got:?}"
    );
}

/// What a server said to an HTTP/2 preface.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// An HTTP/2 SETTINGS frame: it serves us.
    Settings,
    /// Closed, or an error (a TLS alert ends a refused handshake).
    Refused,
    /// Bytes that are not SETTINGS (a TLS alert record in plain text).
    Other,
    Silent,
}

async fn probe<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Probe {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await {
        Err(_) => Probe::Silent,
        Ok(Ok(0) | Err(_)) => Probe::Refused,
        // Frame header: 3 bytes length, type 4 = SETTINGS.
        Ok(Ok(n)) if n >= 9 && buf[3] == 4 => Probe::Settings,
        Ok(Ok(_)) => Probe::Other,
    }
}
