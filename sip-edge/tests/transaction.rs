//! Transaction layer behaviour against a scripted peer, in virtual time:
//! the layer sends into an in-memory transport and the test plays the
//! other side, so every timer of RFC 3261 17 can be checked exactly.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sip_edge::transaction::TransactionUser;
use sip_edge::transport::memory::MemoryTransmit;
use sip_edge::{Flow, Origin, ServerTx, ServerTxId, TimerConfig, TransactionLayer, Transport};
use sip_message::{Message, Method};
use tokio::sync::mpsc;
use tokio::time::{Instant, advance};

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

fn peer() -> SocketAddr {
    "192.0.2.10:5060".parse().unwrap()
}

fn source(transport: Transport) -> Flow {
    Flow {
        transport,
        remote: peer(),
        local: Some("192.0.2.1:5060".parse().unwrap()),
        connection: None,
        edge: None,
    }
}

fn request(method: &str, branch: &str, extra: &str) -> Message {
    let raw = format!(
        "{method} sip:bob@192.0.2.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>{extra}\r\n\
Call-ID: call-1@192.0.2.10\r\n\
CSeq: 7 {method}\r\n\
Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(raw)).unwrap()
}

/// A request the edge sends (the layer adds Via and Max-Forwards).
fn outgoing(method: Method) -> Message {
    let mut req = Message::request(method.clone(), "sip:carol@192.0.2.20");
    req.push_header("From", "<sip:edge@192.0.2.1>;tag=e1");
    req.push_header("To", "<sip:carol@192.0.2.20>");
    req.push_header("Call-ID", &format!("c-{method}"));
    req.push_header("CSeq", &format!("1 {method}"));
    req
}

fn response_to(req: &Message, code: u16) -> Message {
    let mut r = req.make_response(code, "Whatever", Some("b1"));
    // The peer's response goes through the parser, as a real one would.
    r = Message::parse(r.to_bytes()).unwrap();
    r
}

#[derive(Debug)]
enum Up {
    Request(ServerTx, Message),
    Ack(Message),
    Cancelled(ServerTxId),
}

struct Tu(mpsc::UnboundedSender<Up>);

impl TransactionUser for Tu {
    fn on_request(&self, tx: ServerTx, request: Message, _source: Flow) {
        let _ = self.0.send(Up::Request(tx, request));
    }
    fn on_ack(&self, ack: Message, _source: Flow) {
        let _ = self.0.send(Up::Ack(ack));
    }
    fn on_cancelled(&self, tx: ServerTxId, cancel: Message, _flow: Flow) {
        assert_eq!(cancel.method(), Some(&Method::Cancel));
        let _ = self.0.send(Up::Cancelled(tx));
    }
}

struct Harness {
    layer: TransactionLayer,
    wire: mpsc::UnboundedReceiver<(Flow, Bytes)>,
    up: mpsc::UnboundedReceiver<Up>,
    start: Instant,
}

impl Harness {
    fn new(max_bytes: usize) -> Self {
        let (transmit, wire) = MemoryTransmit::new("192.0.2.1:5060".parse().unwrap());
        let timers = TimerConfig {
            t1: T1,
            t2: T2,
            ..TimerConfig::default()
        };
        let layer = TransactionLayer::new(timers, Arc::new(transmit), max_bytes, 7);
        let (tx, up) = mpsc::unbounded_channel();
        layer.set_user(Arc::new(Tu(tx)));
        Self {
            layer,
            wire,
            up,
            start: Instant::now(),
        }
    }

    /// Lets spawned tasks run without moving the clock.
    async fn settle(&self) {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// Everything sent so far, with the virtual time it was sent at.
    async fn sent(&mut self) -> Vec<(Duration, Flow, Message)> {
        self.settle().await;
        let mut out = Vec::new();
        while let Ok((target, data)) = self.wire.try_recv() {
            out.push((self.start.elapsed(), target, Message::parse(data).unwrap()));
        }
        out
    }

    async fn up(&mut self) -> Option<Up> {
        self.settle().await;
        self.up.try_recv().ok()
    }

    /// Advances virtual time in small steps, collecting what is sent and
    /// when.
    async fn run_for(&mut self, total: Duration) -> Vec<(Duration, Message)> {
        let step = Duration::from_millis(50);
        let mut out = Vec::new();
        let end = self.start.elapsed() + total;
        while self.start.elapsed() < end {
            advance(step).await;
            for (at, _, m) in self.sent().await {
                out.push((at, m));
            }
        }
        out
    }
}

fn status(m: &Message) -> u16 {
    m.status().unwrap_or(0)
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[tokio::test(start_paused = true)]
async fn invite_server_sends_trying_and_replays_final_on_retransmission() {
    let mut h = Harness::new(1 << 20);
    let invite = request("INVITE", "z9hG4bKinv1", "");
    h.layer.receive(invite.clone(), source(Transport::Udp));
    let sent = h.sent().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(status(&sent[0].2), 100, "100 Trying at once");
    let Some(Up::Request(tx, req)) = h.up().await else {
        panic!("no request upward")
    };
    assert_eq!(req.method(), Some(&Method::Invite));

    // A retransmission before the final response gets the provisional again,
    // and does not reach the transaction user.
    h.layer.receive(invite.clone(), source(Transport::Udp));
    let sent = h.sent().await;
    assert_eq!(sent.iter().map(|s| status(&s.2)).collect::<Vec<_>>(), vec![100]);
    assert!(h.up().await.is_none());

    tx.respond(req.make_response(486, "Busy Here", Some(tx.to_tag())))
        .unwrap();
    let first = h.sent().await;
    assert_eq!(first.len(), 1);
    assert_eq!(status(&first[0].2), 486);
    assert_eq!(first[0].1.remote, peer(), "response to the sent-by address");

    h.layer.receive(invite.clone(), source(Transport::Udp));
    let again = h.sent().await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].2.to_bytes(),
        first[0].2.to_bytes(),
        "same final response, byte for byte"
    );

    // The ACK is absorbed: it stops timer G and never goes upward.
    let ack = invite.make_ack(&first[0].2);
    h.layer.receive(ack, source(Transport::Udp));
    assert!(h.up().await.is_none(), "ACK of a non-2xx is absorbed");
    let after = h.run_for(Duration::from_secs(10)).await;
    assert!(after.is_empty(), "no retransmission after the ACK: {after:?}");
}

#[tokio::test(start_paused = true)]
async fn timer_g_retransmits_final_until_timer_h() {
    let mut h = Harness::new(1 << 20);
    let invite = request("INVITE", "z9hG4bKinv2", "");
    h.layer.receive(invite.clone(), source(Transport::Udp));
    let Some(Up::Request(tx, req)) = h.up().await else {
        panic!()
    };
    h.sent().await;
    tx.respond(req.make_response(404, "Not Found", Some(tx.to_tag())))
        .unwrap();
    h.sent().await;
    let t0 = h.start.elapsed();
    let resent = h.run_for(T1 * 64 + Duration::from_secs(1)).await;
    let times: Vec<u64> = resent.iter().map(|(at, _)| ms(*at - t0)).collect();
    // T1, 2T1, 4T1, then capped at T2 (4 s), until timer H at 64*T1 = 32 s.
    let expected: Vec<u64> = vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500];
    assert_eq!(times.len(), expected.len(), "{times:?}");
    for (got, want) in times.iter().zip(&expected) {
        assert!(
            got.abs_diff(*want) <= 50,
            "retransmissions at {times:?}, expected {expected:?}"
        );
    }
    assert_eq!(h.layer.counts().0, 0, "transaction gone after timer H");
}

#[tokio::test(start_paused = true)]
async fn reliable_transport_gets_no_retransmissions() {
    let mut h = Harness::new(1 << 20);
    let invite = request("INVITE", "z9hG4bKinv3", "");
    h.layer.receive(invite.clone(), source(Transport::Tcp));
    let Some(Up::Request(tx, req)) = h.up().await else {
        panic!()
    };
    h.sent().await;
    tx.respond(req.make_response(480, "Temporarily Unavailable", Some(tx.to_tag())))
        .unwrap();
    assert_eq!(h.sent().await.len(), 1);
    assert!(h.run_for(Duration::from_secs(40)).await.is_empty());

    // Client side over TCP: sent once, never retransmitted, 408 at 64*T1.
    let mut ctx = h
        .layer
        .send_request(
            outgoing(Method::Options),
            Flow::to(Transport::Tcp, "192.0.2.20:5060".parse().unwrap()),
        )
        .unwrap();
    let sent = h.sent().await;
    assert_eq!(sent.len(), 1);
    assert!(h.run_for(Duration::from_secs(31)).await.is_empty());
    let ev = ctx.next().await.unwrap();
    assert_eq!((ev.origin, status(&ev.response)), (Origin::Timeout, 408));
}

#[tokio::test(start_paused = true)]
async fn client_non_invite_retransmits_capped_at_t2_then_408() {
    let mut h = Harness::new(1 << 20);
    let req = outgoing(Method::Options);
    let mut ctx = h
        .layer
        .send_request(req, Flow::to(Transport::Udp, "192.0.2.20:5060".parse().unwrap()))
        .unwrap();
    let first = h.sent().await;
    assert_eq!(first.len(), 1);
    let via = first[0].2.top_via().unwrap().branch().unwrap().to_owned();
    assert!(via.starts_with("z9hG4bK"));
    let resent = h.run_for(T1 * 64 + Duration::from_millis(200)).await;
    let times: Vec<u64> = resent.iter().map(|(at, _)| ms(*at)).collect();
    // Timer E: 500, 1500, 3500, 7500, then every T2 until timer F (32 s).
    let expected: Vec<u64> = vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500];
    assert_eq!(times.len(), expected.len(), "{times:?}");
    for (got, want) in times.iter().zip(&expected) {
        assert!(got.abs_diff(*want) <= 50, "{times:?}");
    }
    let ev = ctx.next().await.unwrap();
    assert_eq!(ev.origin, Origin::Timeout);
    assert_eq!(status(&ev.response), 408);
    assert!(ms(h.start.elapsed()) >= 32_000);
}

#[tokio::test(start_paused = true)]
async fn client_invite_timer_b_and_ack_for_failure() {
    let mut h = Harness::new(1 << 20);
    let target = Flow::to(Transport::Udp, "192.0.2.20:5060".parse().unwrap());
    let inv = outgoing(Method::Invite);
    let mut ctx = h.layer.send_request(inv.clone(), target.clone()).unwrap();
    h.sent().await;
    let resent = h.run_for(T1 * 64 + Duration::from_millis(200)).await;
    // Timer A doubles without a cap: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s.
    let times: Vec<u64> = resent.iter().map(|(at, _)| ms(*at)).collect();
    assert_eq!(times.len(), 6, "{times:?}");
    assert!(times[5].abs_diff(31_500) <= 50, "{times:?}");
    let ev = ctx.next().await.unwrap();
    assert_eq!((ev.origin, status(&ev.response)), (Origin::Timeout, 408), "timer B");

    // A 486 is ACKed by the transaction, and again on retransmission.
    let mut ctx = h.layer.send_request(inv, target).unwrap();
    let sent = h.sent().await;
    let sent_invite = sent[0].2.clone();
    let busy = response_to(&sent_invite, 486);
    h.layer.receive(busy.clone(), source(Transport::Udp));
    let ev = ctx.next().await.unwrap();
    assert_eq!(status(&ev.response), 486);
    let acks = h.sent().await;
    assert_eq!(acks.len(), 1);
    let ack = &acks[0].2;
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.top_via().unwrap().branch(), sent_invite.top_via().unwrap().branch());
    assert_eq!(ack.to_header().unwrap().tag(), Some("b1"));
    h.layer.receive(busy, source(Transport::Udp));
    assert_eq!(h.sent().await.len(), 1, "retransmitted final gets the ACK again");
}

#[tokio::test(start_paused = true)]
async fn cancel_gets_200_and_invite_487() {
    let mut h = Harness::new(1 << 20);
    let invite = request("INVITE", "z9hG4bKinv4", "");
    h.layer.receive(invite.clone(), source(Transport::Udp));
    let Some(Up::Request(tx, _)) = h.up().await else {
        panic!()
    };
    h.sent().await;
    let cancel = Message::parse(invite.make_cancel().to_bytes()).unwrap();
    h.layer.receive(cancel, source(Transport::Udp));
    let sent = h.sent().await;
    let mut got: Vec<(u16, String)> = sent
        .iter()
        .map(|s| (status(&s.2), s.2.cseq().unwrap().method.to_string()))
        .collect();
    got.sort();
    assert_eq!(got, vec![(200, "CANCEL".to_owned()), (487, "INVITE".to_owned())]);
    match h.up().await {
        Some(Up::Cancelled(id)) => assert_eq!(id, tx.id()),
        other => panic!("expected cancellation upward, got {other:?}"),
    }
    // The application's late answer is refused, not silently dropped.
    let late = tx.respond(request("INVITE", "z9hG4bKinv4", "").make_response(200, "OK", Some(tx.to_tag())));
    assert_eq!(late, Err(sip_edge::TxError::AlreadyAnswered(tx.id())));
    // A CANCEL for nothing gets 481.
    let stray = Message::parse(request("INVITE", "z9hG4bKnothing", "").make_cancel().to_bytes()).unwrap();
    h.layer.receive(stray, source(Transport::Udp));
    let sent = h.sent().await;
    assert_eq!(sent.iter().map(|s| status(&s.2)).collect::<Vec<_>>(), vec![481]);
}

#[tokio::test(start_paused = true)]
async fn merged_request_gets_482() {
    let mut h = Harness::new(1 << 20);
    h.layer
        .receive(request("INVITE", "z9hG4bKfork1", ""), source(Transport::Udp));
    assert!(matches!(h.up().await, Some(Up::Request(..))));
    h.sent().await;
    // Same From tag, Call-ID and CSeq, arriving by another path (branch).
    h.layer
        .receive(request("INVITE", "z9hG4bKfork2", ""), source(Transport::Udp));
    let sent = h.sent().await;
    assert!(
        sent.iter().any(|s| status(&s.2) == 482),
        "{:?}",
        sent.iter().map(|s| status(&s.2)).collect::<Vec<_>>()
    );
    assert!(h.up().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn merged_request_after_the_first_completed_gets_482() {
    let mut h = Harness::new(1 << 20);
    h.layer
        .receive(request("MESSAGE", "z9hG4bKm1", ""), source(Transport::Udp));
    let Some(Up::Request(tx, req)) = h.up().await else {
        panic!()
    };
    tx.respond(req.make_response(200, "OK", Some(tx.to_tag()))).unwrap();
    h.sent().await;
    // The first copy is completed (timer J running) when the second,
    // forked copy arrives.
    h.run_for(Duration::from_secs(5)).await;
    h.layer
        .receive(request("MESSAGE", "z9hG4bKm2", ""), source(Transport::Udp));
    let sent = h.sent().await;
    assert_eq!(sent.iter().map(|s| status(&s.2)).collect::<Vec<_>>(), vec![482]);
    assert!(h.up().await.is_none(), "not delivered twice");
    // After timer J the same fields start a new transaction.
    h.run_for(Duration::from_secs(30)).await;
    h.layer
        .receive(request("MESSAGE", "z9hG4bKm3", ""), source(Transport::Udp));
    assert!(matches!(h.up().await, Some(Up::Request(..))));
}

#[tokio::test(start_paused = true)]
async fn a_completed_transaction_replays_over_and_over_then_the_limit_frees() {
    let mut h = Harness::new(1 << 20);
    let reg = request("REGISTER", "z9hG4bKr1", "");
    h.layer.receive(reg.clone(), source(Transport::Udp));
    let Some(Up::Request(tx, req)) = h.up().await else {
        panic!()
    };
    let mut ok = req.make_response(200, "OK", Some(tx.to_tag()));
    ok.push_header("Contact", "<sip:bob@192.0.2.10>;expires=60");
    tx.respond(ok).unwrap();
    let first = h.sent().await.remove(0);
    assert!(h.layer.state_bytes().0 > 0, "completed state is charged");
    for _ in 0..3 {
        h.layer.receive(reg.clone(), source(Transport::Udp));
        let again = h.sent().await;
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1, first.1, "to the same place");
        assert_eq!(again[0].2.to_bytes(), first.2.to_bytes(), "the same bytes");
    }
    assert!(h.up().await.is_none(), "retransmissions never reach the user");
    // The application answering again is refused: the transaction is done.
    assert!(tx.respond(req.make_response(500, "Late", None)).is_err());
    h.run_for(Duration::from_secs(33)).await;
    assert_eq!(h.layer.state_bytes(), (0, 0), "timer J gave the bytes back");
}

#[tokio::test(start_paused = true)]
async fn accepted_2xx_retransmitted_until_ack_then_ack_goes_up() {
    let mut h = Harness::new(1 << 20);
    let invite = request("INVITE", "z9hG4bKinv5", "");
    h.layer.receive(invite.clone(), source(Transport::Udp));
    let Some(Up::Request(tx, req)) = h.up().await else {
        panic!()
    };
    h.sent().await;
    tx.respond(req.make_response(200, "OK", Some(tx.to_tag()))).unwrap();
    let ok = h.sent().await.remove(0).2;
    let resent = h.run_for(Duration::from_millis(1600)).await;
    assert_eq!(resent.len(), 2, "2xx retransmitted at T1 and 2*T1");
    // The ACK of a 2xx has its own branch.
    let mut ack = invite.make_ack(&ok);
    ack.replace_top_value(
        sip_message::Known::Via,
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKack5",
    );
    let ack = Message::parse(ack.to_bytes()).unwrap();
    h.layer.receive(ack, source(Transport::Udp));
    match h.up().await {
        Some(Up::Ack(ack)) => assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bKack5")),
        other => panic!("ACK of a 2xx goes to the transaction user, got {other:?}"),
    }
    assert!(
        h.run_for(Duration::from_secs(10)).await.is_empty(),
        "2xx retransmission stops at the ACK"
    );
}

#[tokio::test(start_paused = true)]
async fn non_invite_server_replays_final_until_timer_j() {
    let mut h = Harness::new(1 << 20);
    let reg = request("REGISTER", "z9hG4bKreg1", "");
    h.layer.receive(reg.clone(), source(Transport::Udp));
    let Some(Up::Request(tx, req)) = h.up().await else {
        panic!()
    };
    assert!(h.sent().await.is_empty(), "no 100 for non-INVITE");
    tx.respond(req.make_response(200, "OK", Some(tx.to_tag()))).unwrap();
    let first = h.sent().await.remove(0).2;
    h.run_for(Duration::from_secs(10)).await;
    h.layer.receive(reg.clone(), source(Transport::Udp));
    let again = h.sent().await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].2.to_bytes(), first.to_bytes());
    h.run_for(Duration::from_secs(23)).await;
    assert_eq!(h.layer.counts().0, 0, "gone after timer J");
    h.layer.receive(reg, source(Transport::Udp));
    assert!(
        matches!(h.up().await, Some(Up::Request(..))),
        "a later copy is a new transaction"
    );
}

#[tokio::test(start_paused = true)]
async fn full_table_answers_503_with_retry_after() {
    let mut h = Harness::new(1);
    h.layer
        .receive(request("REGISTER", "z9hG4bKa", ""), source(Transport::Udp));
    assert!(matches!(h.up().await, Some(Up::Request(..))));
    let mut second = request("REGISTER", "z9hG4bKb", "");
    second.set_header("Call-ID", "other-call");
    let second = Message::parse(second.to_bytes()).unwrap();
    h.layer.receive(second, source(Transport::Udp));
    let sent = h.sent().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(status(&sent[0].2), 503);
    assert_eq!(sent[0].2.header("Retry-After"), Some("7"), "the configured Retry-After");
}

#[tokio::test(start_paused = true)]
async fn responses_follow_rport_and_sent_by() {
    let mut h = Harness::new(1 << 20);
    // Without rport: source IP, sent-by port.
    let mut req = request("REGISTER", "z9hG4bKr1", "");
    req.replace_top_value(sip_message::Known::Via, "SIP/2.0/UDP 192.0.2.10:5077;branch=z9hG4bKr1");
    let req = Message::parse(req.to_bytes()).unwrap();
    let src = Flow {
        remote: "192.0.2.10:40000".parse().unwrap(),
        ..source(Transport::Udp)
    };
    h.layer.receive(req, src.clone());
    let Some(Up::Request(tx, r)) = h.up().await else {
        panic!()
    };
    tx.respond(r.make_response(200, "OK", None)).unwrap();
    assert_eq!(h.sent().await[0].1.remote, "192.0.2.10:5077".parse().unwrap());
    // With rport: the source port.
    let mut req = request("REGISTER", "z9hG4bKr2", "");
    req.replace_top_value(
        sip_message::Known::Via,
        "SIP/2.0/UDP 192.0.2.10:5077;branch=z9hG4bKr2;rport",
    );
    req.set_header("Call-ID", "call-2");
    let req = Message::parse(req.to_bytes()).unwrap();
    h.layer.receive(req, src);
    let Some(Up::Request(tx, r)) = h.up().await else {
        panic!()
    };
    tx.respond(r.make_response(200, "OK", None)).unwrap();
    assert_eq!(h.sent().await[0].1.remote, "192.0.2.10:40000".parse().unwrap());
}
