//! The edge over real loopback sockets: validation answers, OPTIONS, 405 /
//! 501, RFC 3581, TCP framing and its timeouts, overload, and the dispatch
//! API used from a service's point of view.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_api::Edge;
use sip_edge::transport::ListenAddr;
use sip_edge::{
    BoxFuture, Dispatch, EdgeConfig, EdgeHandle, Flow, IncomingRequest, NoServices, RunningEdge, Transport,
};
use sip_message::{Known, Message, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(3);

fn config(listen: &[&str]) -> EdgeConfig {
    let mut c = EdgeConfig {
        listen: listen.iter().map(|l| l.parse::<ListenAddr>().unwrap()).collect(),
        supported: vec!["path".into()],
        ..EdgeConfig::default()
    };
    c.tcp.incomplete_message_timeout_ms = 300;
    c.limits.max_body_bytes = 2000;
    c
}

async fn start(c: &EdgeConfig, d: Arc<dyn Dispatch>) -> RunningEdge {
    sip_edge::start(c, d).await.unwrap()
}

fn request(method: &str, branch: &str, extra: &str) -> String {
    format!(
        "{method} sip:service@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:9;branch={branch};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=a-{branch}\r\n\
To: <sip:service@example.com>\r\n\
Call-ID: {branch}@test\r\n\
CSeq: 1 {method}\r\n\
{extra}Content-Length: 0\r\n\r\n"
    )
}

struct Udp {
    sock: UdpSocket,
    edge: SocketAddr,
}

impl Udp {
    async fn new(edge: SocketAddr) -> Self {
        let bind: SocketAddr = if edge.is_ipv4() {
            "127.0.0.1:0".parse().unwrap()
        } else {
            "[::1]:0".parse().unwrap()
        };
        Self {
            sock: UdpSocket::bind(bind).await.unwrap(),
            edge,
        }
    }

    async fn send(&self, raw: &str) {
        self.sock.send_to(raw.as_bytes(), self.edge).await.unwrap();
    }

    async fn recv(&self) -> Option<Message> {
        let mut buf = vec![0u8; 65536];
        let (n, _) = timeout(WAIT, self.sock.recv_from(&mut buf)).await.ok()?.ok()?;
        Some(Message::parse(Bytes::copy_from_slice(&buf[..n])).unwrap())
    }

    /// Sends and returns the final response (skipping 1xx).
    async fn final_for(&self, raw: &str) -> Message {
        self.send(raw).await;
        loop {
            let m = self.recv().await.expect("no response");
            if m.status().unwrap() >= 200 {
                return m;
            }
        }
    }
}

#[tokio::test]
async fn options_and_every_rejection_over_udp() {
    let edge = start(&config(&["udp:127.0.0.1:0"]), Arc::new(NoServices)).await;
    let udp = Udp::new(edge.addr(Transport::Udp).unwrap()).await;

    let ok = udp.final_for(&request("OPTIONS", "z9hG4bKo1", "")).await;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.known_header(Known::Allow), Some("OPTIONS"));
    assert_eq!(ok.known_header(Known::Accept), Some("application/sdp"));
    assert_eq!(ok.known_header(Known::Supported), Some("path"));
    assert!(ok.to_header().unwrap().tag().is_some());
    let via = ok.top_via().unwrap();
    assert_eq!(via.received(), Some("127.0.0.1"), "RFC 3581 received");
    assert_eq!(
        via.rport(),
        Some(Some(udp.sock.local_addr().unwrap().port())),
        "RFC 3581 rport"
    );

    udp.send(&request("INVITE", "z9hG4bKi1", "")).await;
    assert_eq!(udp.recv().await.unwrap().status(), Some(100), "100 Trying first");
    let r = udp.recv().await.unwrap();
    assert_eq!(r.status(), Some(405));
    assert_eq!(r.known_header(Known::Allow), Some("OPTIONS"));

    let cases: Vec<(String, u16)> = vec![
        (request("FROBNICATE", "z9hG4bKu1", ""), 501),
        (
            request("OPTIONS", "z9hG4bKv1", "").replace("SIP/2.0\r\n", "SIP/7.0\r\n"),
            505,
        ),
        (
            request("OPTIONS", "z9hG4bKm1", "").replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"),
            400,
        ),
        (request("INVITE", "z9hG4bKr1", "Require: 100rel, path\r\n"), 420),
        (
            request("INVITE", "z9hG4bKh1", "").replace("Max-Forwards: 70", "Max-Forwards: 0"),
            483,
        ),
        (
            request("INVITE", "z9hG4bKs1", "").replace("sip:service@127.0.0.1 SIP", "urn:service:sos SIP"),
            416,
        ),
        (
            request("OPTIONS", "z9hG4bKc1", "").replace("Content-Length: 0", "Content-Length: 50"),
            400,
        ),
        (
            request("OPTIONS", "z9hG4bKb1", "").replace(
                "Content-Length: 0\r\n\r\n",
                &format!("Content-Length: 3000\r\n\r\n{}", "x".repeat(3000)),
            ),
            513,
        ),
    ];
    for (raw, want) in cases {
        let r = udp.final_for(&raw).await;
        assert_eq!(r.status(), Some(want), "{raw}\n-> {r}");
        assert!(r.reason().is_some_and(|p| !p.is_empty()), "reason phrase for {want}");
        if want == 420 {
            assert_eq!(r.known_header(Known::Unsupported), Some("100rel"));
        }
    }
    // Not answerable: garbage, and an ACK nobody is waiting for.
    udp.send("this is not SIP\r\n\r\n").await;
    udp.send(&request("ACK", "z9hG4bKack", "")).await;
    let r = udp.final_for(&request("OPTIONS", "z9hG4bKo2", "")).await;
    assert_eq!(
        r.cseq().unwrap().method,
        Method::Options,
        "nothing answered the garbage or the ACK"
    );
    edge.stop();
}

#[tokio::test]
async fn ipv6_loopback_udp_and_tcp() {
    let Ok(edge) = sip_edge::start(&config(&["udp:[::1]:0", "tcp:[::1]:0"]), Arc::new(NoServices)).await else {
        eprintln!("no IPv6 loopback on this machine; skipping");
        return;
    };
    let udp = Udp::new(edge.addr(Transport::Udp).unwrap()).await;
    let raw = request("OPTIONS", "z9hG4bK6u", "").replace("127.0.0.1:9", "[::1]:9");
    let r = udp.final_for(&raw).await;
    assert_eq!(r.status(), Some(200));
    assert_eq!(r.top_via().unwrap().received(), Some("::1"));

    let mut tcp = TcpStream::connect(edge.addr(Transport::Tcp).unwrap()).await.unwrap();
    tcp.write_all(raw.replace("z9hG4bK6u", "z9hG4bK6t").replace("/UDP", "/TCP").as_bytes())
        .await
        .unwrap();
    let got = read_messages(&mut tcp, 1).await;
    assert_eq!(got[0].status(), Some(200));
    edge.stop();
}

/// Reads until `n` complete messages arrived on the stream.
async fn read_messages(tcp: &mut TcpStream, n: usize) -> Vec<Message> {
    let mut framer = sip_message::framing::StreamFramer::new(sip_message::Limits::default());
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < n {
        let read = timeout(WAIT, tcp.read(&mut buf)).await.expect("timed out").unwrap();
        assert!(read > 0, "connection closed after {} messages", out.len());
        framer.extend(&buf[..read]);
        while let Ok(Some(frame)) = framer.next_frame() {
            if let sip_message::framing::Frame::Message(data) = frame {
                out.push(Message::parse(data).unwrap());
            }
        }
    }
    out
}

fn tcp_request(method: &str, branch: &str) -> String {
    request(method, branch, "").replace("/UDP", "/TCP")
}

#[tokio::test]
async fn tcp_pipelining_split_reads_keepalive_and_stalled_peer() {
    let edge = start(&config(&["tcp:127.0.0.1:0"]), Arc::new(NoServices)).await;
    let addr = edge.addr(Transport::Tcp).unwrap();

    // Two messages and a keep-alive in one segment.
    let mut a = TcpStream::connect(addr).await.unwrap();
    let both = format!(
        "{}{}",
        tcp_request("OPTIONS", "z9hG4bKp1"),
        tcp_request("OPTIONS", "z9hG4bKp2")
    );
    a.write_all(both.as_bytes()).await.unwrap();
    let got = read_messages(&mut a, 2).await;
    let branches: Vec<_> = got
        .iter()
        .map(|m| m.top_via().unwrap().branch().unwrap().to_owned())
        .collect();
    assert_eq!(branches, vec!["z9hG4bKp1", "z9hG4bKp2"]);

    // One byte at a time.
    let raw = tcp_request("OPTIONS", "z9hG4bKp3");
    for b in raw.as_bytes() {
        a.write_all(&[*b]).await.unwrap();
    }
    assert_eq!(read_messages(&mut a, 1).await[0].status(), Some(200));

    // RFC 5626 keep-alive: a double CRLF gets a single CRLF.
    a.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 2];
    timeout(WAIT, a.read_exact(&mut pong)).await.unwrap().unwrap();
    assert_eq!(&pong, b"\r\n");

    // A peer that promises a body and never sends it is cut off after the
    // incomplete-message timeout; other connections do not notice.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    let partial = tcp_request("OPTIONS", "z9hG4bKst").replace("Content-Length: 0", "Content-Length: 100");
    stalled.write_all(partial.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let closed = timeout(Duration::from_secs(2), stalled.read(&mut buf))
        .await
        .expect("stalled connection not closed");
    assert!(matches!(closed, Ok(0) | Err(_)), "expected close, got {closed:?}");
    a.write_all(tcp_request("OPTIONS", "z9hG4bKp4").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_messages(&mut a, 1).await[0].status(), Some(200));

    // A message without Content-Length cannot be framed: the connection goes.
    let mut bad = TcpStream::connect(addr).await.unwrap();
    bad.write_all(
        tcp_request("OPTIONS", "z9hG4bKnl")
            .replace("Content-Length: 0\r\n", "")
            .as_bytes(),
    )
    .await
    .unwrap();
    let closed = timeout(WAIT, bad.read(&mut buf)).await.unwrap();
    assert!(matches!(closed, Ok(0) | Err(_)));
    edge.stop();
}

/// A service that answers INVITE from another task, later, through the
/// edge API, and never answers MESSAGE (to fill the in-flight bound).
struct SlowService;

impl Dispatch for SlowService {
    fn allow(&self) -> &[Method] {
        &[Method::Invite, Method::Message]
    }

    fn dispatch(&self, req: IncomingRequest, edge: EdgeHandle) -> BoxFuture {
        Box::pin(async move {
            if req.request.method() == Some(&Method::Message) {
                tokio::time::sleep(Duration::from_secs(5)).await;
                return;
            }
            let id = req.tx.id();
            let resp = req.request.make_response(486, "Busy Here", Some("svc"));
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                edge.respond(id, resp).await.unwrap();
            });
        })
    }
}

#[tokio::test]
async fn dispatch_answers_later_and_overload_gets_503() {
    let mut c = config(&["udp:127.0.0.1:0"]);
    c.overload.max_inflight_requests = 1;
    let edge = start(&c, Arc::new(SlowService)).await;
    let udp = Udp::new(edge.addr(Transport::Udp).unwrap()).await;

    let r = udp.final_for(&request("INVITE", "z9hG4bKd1", "")).await;
    assert_eq!(r.status(), Some(486));
    udp.send(&request("ACK", "z9hG4bKd1", "")).await;

    let ok = udp.final_for(&request("OPTIONS", "z9hG4bKd0", "")).await;
    assert_eq!(ok.known_header(Known::Allow), Some("OPTIONS, INVITE, MESSAGE"));

    udp.send(&request("MESSAGE", "z9hG4bKd2", "")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = udp.final_for(&request("MESSAGE", "z9hG4bKd3", "")).await;
    assert_eq!(r.status(), Some(503));
    assert_eq!(r.known_header(Known::RetryAfter), Some("5"));
    edge.stop();
}

#[tokio::test]
async fn client_transaction_over_udp_to_a_real_socket() {
    let edge = start(&config(&["udp:127.0.0.1:0"]), Arc::new(NoServices)).await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut req = Message::request(Method::Options, &format!("sip:peer@{}", peer.local_addr().unwrap()));
    req.push_header(Known::From, "<sip:edge@example.com>;tag=e1");
    req.push_header(Known::To, "<sip:peer@example.com>");
    req.push_header(Known::CallId, "client-1");
    req.push_header(Known::CSeq, "1 OPTIONS");
    let mut ctx = edge
        .handle()
        .send_request(req, Flow::to(Transport::Udp, peer.local_addr().unwrap()))
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = timeout(WAIT, peer.recv_from(&mut buf)).await.unwrap().unwrap();
    assert_eq!(from, edge.addr(Transport::Udp).unwrap());
    let got = Message::parse(Bytes::copy_from_slice(&buf[..n])).unwrap();
    assert!(got.top_via().unwrap().has_rfc3261_branch());
    assert_eq!(got.top_via().unwrap().port, Some(from.port()));
    peer.send_to(&got.make_response(200, "OK", Some("p1")).to_bytes(), from)
        .await
        .unwrap();
    let ev = timeout(WAIT, ctx.next()).await.unwrap().unwrap();
    assert_eq!(ev.response.status(), Some(200));
    assert_eq!(ev.origin, sip_edge::Origin::Peer);
    edge.stop();
}

#[tokio::test]
async fn tcp_response_reopens_to_sent_by_when_the_connection_is_gone() {
    let edge = start(&config(&["tcp:127.0.0.1:0"]), Arc::new(SlowService)).await;
    // The client's own listening port, named in its Via sent-by.
    let client_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sent_by = client_listener.local_addr().unwrap();
    let mut a = TcpStream::connect(edge.addr(Transport::Tcp).unwrap()).await.unwrap();
    let invite = tcp_request("INVITE", "z9hG4bKreopen").replace("127.0.0.1:9", &sent_by.to_string());
    a.write_all(invite.as_bytes()).await.unwrap();
    assert_eq!(read_messages(&mut a, 1).await[0].status(), Some(100));
    drop(a);
    // The service answers 100 ms later; the edge must open a connection to
    // the sent-by address to deliver it (RFC 3261 18.2.2).
    let (mut back, _) = timeout(WAIT, client_listener.accept()).await.unwrap().unwrap();
    let got = read_messages(&mut back, 1).await;
    assert_eq!(got[0].status(), Some(486));
    assert_eq!(got[0].branch(), Some("z9hG4bKreopen"));
    edge.stop();
}

#[tokio::test]
async fn udp_responses_leave_from_the_socket_the_request_reached() {
    let edge = start(&config(&["udp:127.0.0.1:0", "udp:127.0.0.1:0"]), Arc::new(NoServices)).await;
    let second = edge.local_addrs[1].1;
    let udp = Udp::new(second).await;
    udp.send(&request("OPTIONS", "z9hG4bKsock2", "")).await;
    let mut buf = vec![0u8; 65536];
    let (_, from) = timeout(WAIT, udp.sock.recv_from(&mut buf)).await.unwrap().unwrap();
    assert_eq!(
        from, second,
        "RFC 3581 4: the response comes from where the request went"
    );
    edge.stop();
}
