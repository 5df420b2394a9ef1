//! SIP over WebSocket against the real binary with real clients: JsSIP in
//! Node registers over ws and wss and exchanges MESSAGEs; an Origin
//! outside the allow-list is refused; a WebSocket caller calls a UDP SIPp
//! phone through session-svc; and two headless Chromiums register over wss
//! and call each other with WebRTC media flowing between them.
#![allow(clippy::unwrap_used)]
// Real processes on real sockets: wall-clock time is what counts here.
#![allow(clippy::disallowed_types)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sipbus_tests::js;
use sipbus_tests::tls::{Issued, TestCa};
use sipbus_tests::ws::{WsSip, header};
use sipbus_tests::{Sipbus, free_port, register_contact, sipp_callee, temp_file};

struct Web {
    sipbus: Sipbus,
    ws: SocketAddr,
    wss: SocketAddr,
    ca: TestCa,
    server: Issued,
}

const USERS: &str = r#"[{user = "alice", password = "alice-secret"}, {user = "bob", password = "bob-secret"},
    {user = "carol", password = "carol-secret"}, {user = "dave", password = "dave-secret"},
    {user = "basic", domain = "example.com", password = "secret"}]"#;

fn start(name: &str, env: &[(&str, &str)]) -> Web {
    let dir = temp_file(&format!("{name}.keep"), "").unwrap().with_extension("d");
    let ca = TestCa::new(&dir, name).unwrap();
    let server = ca.issue("sipbus", &["IP:127.0.0.1"], 1).unwrap();
    let ws: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
    let wss: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
    let (cert, key) = (server.cert.display().to_string(), server.key.display().to_string());
    let mut all: Vec<(&str, &str)> = vec![
        ("SIPBUS_EDGE__TLS__CERT_FILE", &cert),
        ("SIPBUS_EDGE__TLS__KEY_FILE", &key),
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["127.0.0.1", "example.com"]"#),
        ("SIPBUS_REGISTRAR__USERS", USERS),
    ];
    all.extend_from_slice(env);
    let sipbus = Sipbus::start_listening("all", &all, &[format!("ws:{ws}"), format!("wss:{wss}")]).unwrap();
    Web {
        sipbus,
        ws,
        wss,
        ca,
        server,
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn jssip_registers_over_ws_and_wss_and_exchanges_messages() {
    let w = start("jssip", &[]);
    let ca = w.ca.cert.display().to_string();
    let env = [("NODE_EXTRA_CA_CERTS", ca.as_str())];
    let (ws, wss) = (format!("ws://{}", w.ws), format!("wss://{}", w.wss));
    for (from, from_url, to, to_url) in [("alice", &ws, "bob", &wss), ("carol", &wss, "dave", &ws)] {
        let waiter = js::start(
            "ua.js",
            &args(&[
                "--ws",
                to_url,
                "--uri",
                &format!("sip:{to}@127.0.0.1"),
                "--password",
                &format!("{to}-secret"),
                "--wait-messages",
                "1",
                "--timeout-ms",
                "15000",
            ]),
            &env,
            Duration::from_secs(20),
        )
        .unwrap();
        // The receiver registers first: give it a moment.
        std::thread::sleep(Duration::from_millis(1500));
        let text = format!("hello {to} from {from}");
        let sender = js::run(
            "ua.js",
            &args(&[
                "--ws",
                from_url,
                "--uri",
                &format!("sip:{from}@127.0.0.1"),
                "--password",
                &format!("{from}-secret"),
                "--send",
                &format!("sip:{to}@127.0.0.1"),
                "--text",
                &text,
            ]),
            &env,
            Duration::from_secs(20),
        )
        .unwrap();
        let received = waiter.wait().unwrap();
        let logs = w.sipbus.log_text();
        assert_eq!(sender.code, Some(0), "{from} over {from_url}:\n{sender}\n{logs}");
        assert!(sender.has("registered"), "{sender}");
        assert_eq!(sender.event("message_sent").unwrap()["status"], 200, "{sender}");
        assert_eq!(received.code, Some(0), "{to} over {to_url}:\n{received}\n{logs}");
        let got = received.event("message_received").unwrap();
        assert_eq!(got["body"], text.as_str(), "{received}");
        assert!(got["from"].as_str().unwrap().contains(from), "{received}");
    }
    let logs = w.sipbus.log_text();
    assert!(
        logs.contains("transport=WS ") && logs.contains("transport=WSS "),
        "{logs}"
    );
}

#[test]
fn an_origin_outside_the_allow_list_is_refused() {
    let w = start(
        "origin",
        &[(
            "SIPBUS_EDGE__WEBSOCKET__ALLOWED_ORIGINS",
            r#"["https://phone.example.com"]"#,
        )],
    );
    let client = |origin: &str| {
        js::run(
            "ua.js",
            &args(&[
                "--ws",
                &format!("ws://{}", w.ws),
                "--uri",
                "sip:alice@127.0.0.1",
                "--password",
                "alice-secret",
                "--origin",
                origin,
                "--timeout-ms",
                "8000",
            ]),
            &[],
            Duration::from_secs(12),
        )
        .unwrap()
    };
    let refused = client("https://evil.example.net");
    assert_eq!(refused.code, Some(3), "{refused}");
    assert_eq!(refused.event("disconnected").unwrap()["status"], 403, "{refused}");
    assert!(!refused.has("registered"), "{refused}");
    let allowed = client("https://phone.example.com");
    assert_eq!(allowed.code, Some(0), "{allowed}\n{}", w.sipbus.log_text());
    assert!(allowed.has("registered"), "{allowed}");
}

#[tokio::test]
async fn a_websocket_caller_calls_a_udp_phone_through_session_svc() {
    let w = start(
        "ws-udp",
        &[
            ("SIPBUS_SESSION__AUTHENTICATE", "false"),
            ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5"]"#),
        ],
    );
    let port = free_port().unwrap();
    register_contact(w.sipbus.sip, "basic", port).unwrap();
    let phone = sipp_callee("call_uas.xml", port, &[]);
    let mut c = WsSip::connect(w.ws).await.unwrap();
    let via = "SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKws";
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let common = "From: <sip:alice@example.com>;tag=ws1\r\nCall-ID: ws-udp-1@test\r\nMax-Forwards: 70\r\n";
    c.send(&format!(
        "INVITE sip:basic@example.com SIP/2.0\r\nVia: {via}1\r\n{common}To: <sip:basic@example.com>\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:alice@df7jal23ls0d.invalid;transport=ws>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ))
    .await
    .unwrap();
    let ok = c.final_response("INVITE", Duration::from_secs(10)).await.unwrap();
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}\n{}", w.sipbus.log_text());
    assert!(header(&ok, "Contact").unwrap().contains("transport=ws"), "{ok}");
    assert!(ok.contains("m=audio"), "the phone's answer passes: {ok}");
    let to = header(&ok, "To").unwrap().to_owned();
    c.send(&format!(
        "ACK sip:basic@example.com SIP/2.0\r\nVia: {via}2\r\n{common}To: {to}\r\nCSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.send(&format!(
        "BYE sip:basic@example.com SIP/2.0\r\nVia: {via}3\r\n{common}To: {to}\r\nCSeq: 2 BYE\r\n\
         Content-Length: 0\r\n\r\n"
    ))
    .await
    .unwrap();
    let bye = c.final_response("BYE", Duration::from_secs(5)).await.unwrap();
    assert!(bye.starts_with("SIP/2.0 200"), "{bye}");
    let r = phone.finish().unwrap();
    sipbus_tests::ok(&r, "UDP phone called from WebSocket", &|| w.sipbus.log_text());
}

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[test]
fn two_browsers_call_each_other_over_wss_with_webrtc_media() {
    let Some(browser) = chromium() else {
        panic!("chromium is not installed (Debian package chromium); scripts/test.sh installs it");
    };
    let w = start("webrtc", &[]);
    let cert = w.server.cert.display().to_string();
    let browser = browser.display().to_string();
    let run = js::run(
        "webrtc_call.js",
        &args(&[
            "--wss",
            &format!("wss://{}", w.wss),
            "--cert",
            &cert,
            "--domain",
            "127.0.0.1",
            "--caller",
            "alice:alice-secret",
            "--callee",
            "bob:bob-secret",
            "--seconds",
            "4",
            "--timeout-ms",
            "60000",
        ]),
        &[("CHROMIUM", browser.as_str())],
        Duration::from_secs(75),
    )
    .unwrap();
    let logs = w.sipbus.log_text();
    assert_eq!(run.code, Some(0), "{run}\n{logs}");
    let result = run.event("result").unwrap();
    assert_eq!(result["ok"], true, "{run}");
    for role in ["caller", "callee"] {
        let side = &result[role];
        assert!(
            side["packetsReceived"].as_u64().unwrap_or(0) > 0,
            "{role} got no media: {run}"
        );
    }
    assert!(logs.contains("call answered"), "{logs}");
}

#[tokio::test]
async fn websocket_messages_are_bounded_and_silent_peers_are_pinged_out() {
    let w = start(
        "ws-limits",
        &[
            ("SIPBUS_EDGE__LIMITS__MAX_MESSAGE_BYTES", "4096"),
            ("SIPBUS_EDGE__LIMITS__MAX_BODY_BYTES", "2048"),
            ("SIPBUS_EDGE__WEBSOCKET__PING_INTERVAL_S", "1"),
        ],
    );
    let options = |branch: &str, pad: usize| {
        format!(
            "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/WS x.invalid;branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:p@x.invalid>;tag={branch}\r\nTo: <sip:127.0.0.1>\r\n\
             Call-ID: {branch}@t\r\nCSeq: 1 OPTIONS\r\nX-Pad: {}\r\nContent-Length: 0\r\n\r\n",
            "a".repeat(pad)
        )
    };
    // A live client answers pings (the library does) and outlasts two
    // ping intervals; its requests are answered over the connection.
    let mut live = WsSip::connect(w.ws).await.unwrap();
    // Reading is what answers pings; nothing else arrives meanwhile.
    assert!(live.next(Duration::from_millis(3500)).await.is_err());
    live.send(&options("live", 10)).await.unwrap();
    let ok = live.final_response("OPTIONS", Duration::from_secs(3)).await.unwrap();
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");

    // A message over the limit closes the connection.
    live.send(&options("big", 8000)).await.unwrap();
    let after = live.next(Duration::from_secs(3)).await;
    let closed = after
        .as_ref()
        .is_err_and(|e| !format!("{e:#}").contains("no message in time"));
    assert!(
        closed,
        "an 8 kB message on a 4 kB limit did not close the connection: {after:?}"
    );

    // A peer that upgrades and then never answers a ping is dropped after
    // two intervals.
    let mut silent = std::net::TcpStream::connect(w.ws).unwrap();
    use std::io::{Read, Write};
    silent
        .write_all(
            format!(
                "GET / HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Protocol: sip\r\n\r\n",
                w.ws
            )
            .as_bytes(),
        )
        .unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    let closed = loop {
        match silent.read(&mut buf) {
            Ok(0) => break true,
            // The 101, then pings we never answer.
            Ok(_) => continue,
            Err(_) => break false,
        }
    };
    let waited = started.elapsed();
    assert!(closed, "a silent peer was kept {waited:?}");
    assert!(waited < Duration::from_secs(4), "dropped only after {waited:?}");
    let logs = w.sipbus.log_text();
    assert!(
        logs.contains("message too large") && logs.contains("reason=idle"),
        "{logs}"
    );
}

#[test]
fn a_request_to_a_browser_whose_connection_is_gone_fails_at_once() {
    let w = start("ws-gone", &[]);
    let ws = format!("ws://{}", w.ws);
    // bob registers, then vanishes without unregistering, as a closed tab.
    let bob = js::start(
        "ua.js",
        &args(&[
            "--ws",
            &ws,
            "--uri",
            "sip:bob@127.0.0.1",
            "--password",
            "bob-secret",
            "--wait-messages",
            "1",
            "--timeout-ms",
            "20000",
        ]),
        &[],
        Duration::from_secs(25),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    bob.kill().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let alice = js::run(
        "ua.js",
        &args(&[
            "--ws",
            &ws,
            "--uri",
            "sip:alice@127.0.0.1",
            "--password",
            "alice-secret",
            "--send",
            "sip:bob@127.0.0.1",
            "--text",
            "are you there?",
        ]),
        &[],
        Duration::from_secs(20),
    )
    .unwrap();
    let took = started.elapsed();
    let logs = w.sipbus.log_text();
    let failed = alice.event("message_failed");
    assert_eq!(failed.map(|f| f["status"].clone()), Some(480.into()), "{alice}\n{logs}");
    // Registering and sending take about a second; Timer F would be 32 s.
    assert!(took < Duration::from_secs(8), "took {took:?}");
}
