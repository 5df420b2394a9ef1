//! A message is parsed once: where its bytes enter from the network. A
//! whole call through all-in-one (REGISTER aside: INVITE, 180, 200, ACK,
//! BYE, 200 received by the edge) counts exactly one parse per message
//! received, and none for the messages sipbus builds and hands between its
//! services in process. The agents here read and write text, so every
//! parse counted is sipbus's.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use edge_api::Transport;
use sip_message::parse_count;
use sipbus::modules::Process;
use tokio::net::UdpSocket;

struct Agent {
    sock: UdpSocket,
    server: SocketAddr,
}

impl Agent {
    async fn new(server: SocketAddr) -> Agent {
        Agent {
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            server,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    async fn send(&self, text: &str) {
        let mut text = text.replace('\n', "\r\n");
        let (head, body) = text
            .split_once("\r\n\r\n")
            .map(|(h, b)| (h.to_owned(), b.to_owned()))
            .unwrap();
        text = format!("{head}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        self.sock.send_to(text.as_bytes(), self.server).await.unwrap();
    }

    /// The next message but 100 Trying.
    async fn recv(&self) -> String {
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), self.sock.recv_from(&mut buf))
                .await
                .expect("a message within 5 s")
                .unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !text.starts_with("SIP/2.0 100 ") {
                return text;
            }
        }
    }
}

/// Every value of a header, by its full name.
fn headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    headers(msg, name)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no {name} in\n{msg}"))
}

/// The fields a response copies from `req`, with `tag` added to To.
fn response_head(req: &str, status: &str, tag: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\n");
    for via in headers(req, "Via") {
        out.push_str(&format!("Via: {via}\n"));
    }
    let to = header(req, "To");
    let to = if to.contains("tag=") {
        to.to_owned()
    } else {
        format!("{to};tag={tag}")
    };
    out.push_str(&format!(
        "From: {}\nTo: {to}\nCall-ID: {}\nCSeq: {}\n",
        header(req, "From"),
        header(req, "Call-ID"),
        header(req, "CSeq")
    ));
    out
}

const SDP: &str = "v=0\no=x 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_parse_per_message_received_and_none_in_between() {
    let process = Process::of("all").unwrap();
    let env = [
        ("SIPBUS_EDGE__LISTEN", r#"["udp:127.0.0.1:0"]"#),
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "alice", password = "x"}, {user = "bob", password = "x"}]"#,
        ),
        ("SIPBUS_REGISTRAR__AUTH__ENABLED", "false"),
        ("SIPBUS_SESSION__AUTHENTICATE", "false"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let config = sipbus::config::load(None, env, &process).unwrap();
    let running = process.start(&config).await.unwrap();
    let server = running.edge.as_ref().unwrap().addr(Transport::Udp).unwrap();
    let alice = Agent::new(server).await;
    let bob = Agent::new(server).await;
    let (a, b) = (alice.addr(), bob.addr());

    bob.send(&format!(
        "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP {b};branch=z9hG4bKreg1\nFrom: <sip:bob@example.com>;tag=r1\n\
To: <sip:bob@example.com>\nCall-ID: reg-1\nCSeq: 1 REGISTER\nContact: <sip:bob@{b}>\nMax-Forwards: 70\n\n"
    ))
    .await;
    assert!(bob.recv().await.starts_with("SIP/2.0 200"));

    let start = parse_count();
    alice
        .send(&format!(
            "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKinv1\nFrom: <sip:alice@example.com>;tag=a1\n\
To: <sip:bob@example.com>\nCall-ID: call-1\nCSeq: 1 INVITE\nContact: <sip:alice@{a}>\nMax-Forwards: 70\n\
Content-Type: application/sdp\n\n{SDP}"
        ))
        .await;
    let invite = bob.recv().await;
    assert!(invite.starts_with("INVITE sip:bob@"), "{invite}");
    // The INVITE: parsed by the edge, handed to session-svc, the
    // supplements and sdp-svc as a value; the callee's INVITE built, not
    // parsed.
    assert_eq!(parse_count() - start, 1, "parses of the caller's INVITE");

    bob.send(&format!(
        "{}Contact: <sip:bob@{b}>\n\n",
        response_head(&invite, "180 Ringing", "b1")
    ))
    .await;
    assert!(alice.recv().await.starts_with("SIP/2.0 180"));
    assert_eq!(parse_count() - start, 2, "one more for a relayed 180");

    bob.send(&format!(
        "{}Contact: <sip:bob@{b}>\nContent-Type: application/sdp\n\n{SDP}",
        response_head(&invite, "200 OK", "b1")
    ))
    .await;
    let ok = alice.recv().await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let target = header(&ok, "Contact").trim_matches(|c| c == '<' || c == '>').to_owned();
    let to = header(&ok, "To").to_owned();
    let dialog = |method: &str, cseq: u32, branch: &str| {
        format!(
            "{method} {target} SIP/2.0\nVia: SIP/2.0/UDP {a};branch={branch}\nFrom: <sip:alice@example.com>;tag=a1\n\
To: {to}\nCall-ID: call-1\nCSeq: {cseq} {method}\nMax-Forwards: 70\n\n"
        )
    };
    alice.send(&dialog("ACK", 1, "z9hG4bKack1")).await;
    assert!(bob.recv().await.starts_with("ACK "));
    alice.send(&dialog("BYE", 2, "z9hG4bKbye1")).await;
    let bye = bob.recv().await;
    assert!(bye.starts_with("BYE "), "{bye}");
    bob.send(&format!("{}\n", response_head(&bye, "200 OK", "b1"))).await;
    assert!(alice.recv().await.starts_with("SIP/2.0 200"));
    // sipbus answered the caller's BYE at once; the callee's 200 comes in
    // on its own time.
    let waited = tokio::time::Instant::now();
    while parse_count() - start < 6 && waited.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // INVITE, 180, 200, ACK, BYE and the callee's 200: six messages in,
    // six parses.
    assert_eq!(parse_count() - start, 6, "parses of the whole call");
    running.stop().await;
}
