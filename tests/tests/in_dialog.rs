//! Requests inside a call, with two hand-driven user agents on raw UDP
//! sockets (SIPp cannot hold one transaction open while it starts
//! another): a re-INVITE held by the callee while the callee offers too
//! (glare: 491), UPDATE and REFER relayed to the other leg, a BYE with
//! tags of no dialog (481), the Reason of a BYE carried across, and the
//! caller's Privacy: id turned into an anonymous From with a
//! P-Asserted-Identity for the callee.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bytes::Bytes;
use sip_message::{Known, Message, Method};
use sipbus_tests::Sipbus;

/// A user agent: one UDP socket, messages written by hand.
struct Ua {
    sock: UdpSocket,
    server: SocketAddr,
    /// Requests seen (Call-ID, CSeq, method): retransmissions are skipped.
    seen: Vec<(String, String)>,
}

fn sdp(port: u16, direction: &str) -> String {
    format!(
        "v=0\r\no=ua 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n"
    )
}

impl Ua {
    fn new(server: SocketAddr) -> Ua {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Ua {
            sock,
            server,
            seen: Vec::new(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// Sends a message given as head lines (without Content-Length) and a
    /// body.
    fn send(&self, head: &str, body: &str) {
        let mut text = head.trim_end().replace('\n', "\r\n").replace("\r\r\n", "\r\n");
        if !body.is_empty() {
            text.push_str("\r\nContent-Type: application/sdp");
        }
        text.push_str(&format!("\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
        self.sock.send_to(text.as_bytes(), self.server).unwrap();
    }

    fn send_message(&self, m: &Message) {
        self.sock.send_to(&m.to_bytes(), self.server).unwrap();
    }

    fn recv(&mut self) -> Message {
        self.try_recv().expect("a message within 5 s")
    }

    fn try_recv(&mut self) -> Option<Message> {
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, _) = self.sock.recv_from(&mut buf).ok()?;
            let m = Message::parse(Bytes::copy_from_slice(&buf[..n])).unwrap();
            if m.is_request() {
                let key = (
                    m.call_id().unwrap().to_owned(),
                    m.known_header(Known::CSeq).unwrap().to_owned(),
                );
                if self.seen.contains(&key) {
                    continue;
                }
                self.seen.push(key);
            }
            return Some(m);
        }
    }

    fn request(&mut self, method: Method) -> Message {
        let m = self.recv();
        assert_eq!(m.method(), Some(&method), "expected {method}, got:\n{m}");
        m
    }

    /// The final response to `method`, skipping provisional ones and any
    /// response to something else (a retransmitted 2xx).
    fn final_response(&mut self, method: Method) -> Message {
        loop {
            let m = self.recv();
            assert!(!m.is_request(), "expected a response to {method}, got:\n{m}");
            if m.status().unwrap() >= 200 && m.cseq().unwrap().method == method {
                return m;
            }
        }
    }

    fn reply(&self, req: &Message, code: u16, tag: &str, extra: &str, body: &str) {
        let mut r = req.make_response(code, "X", Some(tag));
        r.remove_header(Known::ContentLength);
        for line in extra.lines().filter(|l| !l.trim().is_empty()) {
            let (name, value) = line.split_once(':').unwrap();
            r.push_header_as_spelled(name.trim(), value.trim());
        }
        if !body.is_empty() {
            r.push_header(Known::ContentType, "application/sdp");
        }
        r.set_body(Bytes::from(body.to_owned()));
        self.send_message(&r);
    }
}

/// sipbus all-in-one without authentication (these agents do no digest),
/// alice's and bob's agents, bob registered.
fn start() -> (Sipbus, Ua, Ua) {
    start_with(&[])
}

fn start_with(extra: &[(&str, &str)]) -> (Sipbus, Ua, Ua) {
    let mut env = vec![
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "alice", password = "x"}, {user = "bob", password = "x"}]"#,
        ),
        ("SIPBUS_REGISTRAR__AUTH__ENABLED", "false"),
        ("SIPBUS_SESSION__AUTHENTICATE", "false"),
    ];
    env.extend_from_slice(extra);
    let sipbus = Sipbus::start("all", &env).unwrap();
    let a = Ua::new(sipbus.sip);
    let mut b = Ua::new(sipbus.sip);
    let ba = b.addr();
    b.send(
        &format!(
            "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP {ba};branch=z9hG4bKr1;rport\n\
             From: <sip:bob@example.com>;tag=r1\nTo: <sip:bob@example.com>\nCall-ID: reg-1\nCSeq: 1 REGISTER\n\
             Contact: <sip:bob@{ba}>\nExpires: 300\nMax-Forwards: 70"
        ),
        "",
    );
    assert_eq!(
        b.final_response(Method::Register).status(),
        Some(200),
        "{}",
        sipbus.log_text()
    );
    (sipbus, a, b)
}

#[test]
fn glare_update_refer_481_reason_and_privacy() {
    let (sipbus, mut a, mut b) = start();
    let logs = || sipbus.log_text();
    let (aa, ba) = (a.addr(), b.addr());

    // alice calls bob, asking for privacy.
    let invite_head = |cseq: u32, branch: &str, to_tag: &str, ruri: &str| {
        format!(
            "INVITE {ruri} SIP/2.0\nVia: SIP/2.0/UDP {aa};branch={branch};rport\n\
             From: \"Alice\" <sip:alice@example.com>;tag=a1\nTo: <sip:bob@example.com>{to_tag}\nCall-ID: call-1\n\
             CSeq: {cseq} INVITE\nContact: <sip:alice@{aa}>\nMax-Forwards: 70\nPrivacy: id"
        )
    };
    a.send(
        &invite_head(1, "z9hG4bKa1", "", "sip:bob@example.com"),
        &sdp(4000, "sendrecv"),
    );
    let inv = b.request(Method::Invite);
    assert_eq!(
        inv.known_header(Known::From)
            .map(|f| f.starts_with("\"Anonymous\" <sip:anonymous@anonymous.invalid>")),
        Some(true),
        "privacy: anonymous From:\n{inv}"
    );
    assert_eq!(
        inv.header("P-Asserted-Identity"),
        Some("\"Alice\" <sip:alice@example.com>"),
        "{inv}"
    );
    assert_eq!(inv.header("Privacy"), Some("id"));
    b.reply(&inv, 180, "b1", &format!("Contact: <sip:bob@{ba}>"), "");
    b.reply(
        &inv,
        200,
        "b1",
        &format!("Contact: <sip:bob@{ba}>"),
        &sdp(5000, "sendrecv"),
    );
    let ok = a.final_response(Method::Invite);
    assert_eq!(ok.status(), Some(200), "{}", logs());
    let a_to = ok.known_header(Known::To).unwrap().to_owned();
    let a_tag = ok.to_tag().unwrap().to_owned();
    let in_dialog_a = |method: &str, cseq: u32, branch: &str, extra: &str| {
        format!(
            "{method} sip:x@{} SIP/2.0\nVia: SIP/2.0/UDP {aa};branch={branch};rport\n\
             From: \"Alice\" <sip:alice@example.com>;tag=a1\nTo: {a_to}\nCall-ID: call-1\nCSeq: {cseq} {method}\n\
             Contact: <sip:alice@{aa}>\nMax-Forwards: 70{extra}",
            sipbus.sip
        )
    };
    a.send(&in_dialog_a("ACK", 1, "z9hG4bKa1ack", ""), "");
    let ack = b.request(Method::Ack);
    // The callee's view of its dialog with sipbus.
    let b_call_id = inv.call_id().unwrap().to_owned();
    let b_from = inv.known_header(Known::From).unwrap().to_owned();
    let b_to = format!("{};tag=b1", inv.known_header(Known::To).unwrap());
    assert_eq!(ack.call_id().unwrap(), b_call_id);
    let in_dialog_b = |method: &str, cseq: u32, branch: &str, extra: &str| {
        format!(
            "{method} sip:x@{} SIP/2.0\nVia: SIP/2.0/UDP {ba};branch={branch};rport\n\
             From: {b_to}\nTo: {b_from}\nCall-ID: {b_call_id}\nCSeq: {cseq} {method}\n\
             Contact: <sip:bob@{ba}>\nMax-Forwards: 70{extra}",
            sipbus.sip
        )
    };

    // alice puts bob on hold; bob holds that re-INVITE and offers himself:
    // glare, 491 for bob.
    a.send(&in_dialog_a("INVITE", 2, "z9hG4bKa2", ""), &sdp(4000, "sendonly"));
    let reinvite = b.request(Method::Invite);
    assert!(
        String::from_utf8_lossy(reinvite.body()).contains("a=sendonly"),
        "{reinvite}"
    );
    b.send(&in_dialog_b("INVITE", 1, "z9hG4bKb1", ""), &sdp(5000, "sendrecv"));
    let glare = b.final_response(Method::Invite);
    assert_eq!(glare.status(), Some(491), "glare:\n{glare}\n{}", logs());
    b.send(
        &format!(
            "ACK sip:x@{} SIP/2.0\nVia: SIP/2.0/UDP {ba};branch=z9hG4bKb1;rport\nFrom: {b_to}\n\
             To: {}\nCall-ID: {b_call_id}\nCSeq: 1 ACK\nMax-Forwards: 70",
            sipbus.sip,
            glare.known_header(Known::To).unwrap()
        ),
        "",
    );
    b.reply(
        &reinvite,
        200,
        "b1",
        &format!("Contact: <sip:bob@{ba}>"),
        &sdp(5000, "recvonly"),
    );
    let held = a.final_response(Method::Invite);
    assert_eq!(held.status(), Some(200));
    assert!(String::from_utf8_lossy(held.body()).contains("a=recvonly"), "{held}");
    a.send(&in_dialog_a("ACK", 2, "z9hG4bKa2ack", ""), "");
    b.request(Method::Ack);

    // UPDATE resumes, relayed with its SDP.
    a.send(&in_dialog_a("UPDATE", 3, "z9hG4bKa3", ""), &sdp(4000, "sendrecv"));
    let update = b.request(Method::Update);
    assert!(String::from_utf8_lossy(update.body()).contains("a=sendrecv"));
    b.reply(&update, 200, "b1", "", &sdp(5000, "sendrecv"));
    assert_eq!(a.final_response(Method::Update).status(), Some(200));

    // A re-INVITE without offer: bob offers in his 200 (with a new
    // Contact), alice answers in her ACK, and the answer reaches bob in
    // his ACK.
    a.send(&in_dialog_a("INVITE", 4, "z9hG4bKa4i", ""), "");
    let offerless = b.request(Method::Invite);
    assert!(offerless.body().is_empty(), "{offerless}");
    b.reply(
        &offerless,
        200,
        "b1",
        &format!("Contact: <sip:bob-moved@{ba}>"),
        &sdp(5002, "sendrecv"),
    );
    let offer = a.final_response(Method::Invite);
    assert_eq!(offer.status(), Some(200));
    assert!(
        String::from_utf8_lossy(offer.body()).contains("m=audio 5002"),
        "{offer}"
    );
    a.send(&in_dialog_a("ACK", 4, "z9hG4bKa4iack", ""), &sdp(4002, "sendrecv"));
    let deferred = b.request(Method::Ack);
    assert!(
        String::from_utf8_lossy(deferred.body()).contains("m=audio 4002"),
        "the answer travels in bob's ACK:\n{deferred}\n{}",
        logs()
    );

    // bob refers alice elsewhere: the REFER and its Refer-To reach her.
    b.send(
        &in_dialog_b("REFER", 2, "z9hG4bKb2", "\nRefer-To: <sip:carol@example.com>"),
        "",
    );
    let refer = a.request(Method::Refer);
    assert_eq!(refer.header("Refer-To"), Some("<sip:carol@example.com>"), "{refer}");
    a.reply(&refer, 202, &a_tag, "", "");
    assert_eq!(b.final_response(Method::Refer).status(), Some(202));

    // A BYE whose tags name no dialog: 481.
    a.send(
        &in_dialog_a("BYE", 5, "z9hG4bKa5b", "").replace(&a_tag, "not-a-session"),
        "",
    );
    assert_eq!(a.final_response(Method::Bye).status(), Some(481));

    // alice hangs up with a Q.850 cause; bob's BYE carries it.
    a.send(
        &in_dialog_a(
            "BYE",
            5,
            "z9hG4bKa5",
            "\nReason: Q.850;cause=16;text=\"Normal call clearing\"",
        ),
        "",
    );
    assert_eq!(a.final_response(Method::Bye).status(), Some(200));
    let bye = b.request(Method::Bye);
    // Sent to the Contact of bob's last 2xx (target refresh).
    assert!(bye.request_uri().unwrap().starts_with("sip:bob-moved@"), "{bye}");
    assert_eq!(
        bye.header("Reason"),
        Some("Q.850;cause=16;text=\"Normal call clearing\""),
        "{bye}"
    );
    b.reply(&bye, 200, "b1", "", "");

    // After the BYE the call is gone: 481.
    a.send(&in_dialog_a("INFO", 7, "z9hG4bKa7", ""), "");
    assert_eq!(a.final_response(Method::Info).status(), Some(481), "{}", logs());
}

/// The callee answers although the caller cancelled: its 2xx is ACKed and
/// the call hung up with a BYE (nobody is left on the other side).
#[test]
fn an_answer_after_cancel_is_acked_and_hung_up() {
    let (sipbus, mut a, mut b) = start();
    let logs = || sipbus.log_text();
    let (aa, ba) = (a.addr(), b.addr());
    let head = |method: &str| {
        format!(
            "{method} sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP {aa};branch=z9hG4bKc1;rport\n\
             From: <sip:alice@example.com>;tag=a9\nTo: <sip:bob@example.com>\nCall-ID: call-2\n\
             CSeq: 1 {method}\nContact: <sip:alice@{aa}>\nMax-Forwards: 70"
        )
    };
    a.send(&head("INVITE"), &sdp(4000, "sendrecv"));
    let inv = b.request(Method::Invite);
    b.reply(&inv, 180, "b9", &format!("Contact: <sip:bob@{ba}>"), "");
    a.send(&head("CANCEL"), "");
    assert_eq!(a.final_response(Method::Cancel).status(), Some(200));
    assert_eq!(a.final_response(Method::Invite).status(), Some(487));
    let cancel = b.request(Method::Cancel);
    b.reply(&cancel, 200, "b9", "", "");
    // bob answers anyway.
    b.reply(
        &inv,
        200,
        "b9",
        &format!("Contact: <sip:bob@{ba}>"),
        &sdp(5000, "sendrecv"),
    );
    let mut got = Vec::new();
    while got.len() < 2 {
        let Some(m) = b.try_recv() else {
            panic!("bob got only {got:?}:\n{}", logs());
        };
        if m.is_request() {
            got.push(m.method().cloned().unwrap());
            if m.method() == Some(&Method::Bye) {
                b.reply(&m, 200, "b9", "", "");
            }
        }
    }
    assert_eq!(got, [Method::Ack, Method::Bye], "{}", logs());
}

/// The caller never ACKs its 200: after session.ack_wait_s the callee's
/// 2xx is ACKed and both legs get a BYE.
#[test]
fn a_call_never_acked_is_hung_up_on_both_legs() {
    let (sipbus, mut a, mut b) = start_with(&[("SIPBUS_SESSION__ACK_WAIT_S", "1")]);
    let logs = || sipbus.log_text();
    let (aa, ba) = (a.addr(), b.addr());
    a.send(
        &format!(
            "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP {aa};branch=z9hG4bKn1;rport\n\
             From: <sip:alice@example.com>;tag=a7\nTo: <sip:bob@example.com>\nCall-ID: call-3\n\
             CSeq: 1 INVITE\nContact: <sip:alice@{aa}>\nMax-Forwards: 70"
        ),
        &sdp(4000, "sendrecv"),
    );
    let inv = b.request(Method::Invite);
    b.reply(
        &inv,
        200,
        "b7",
        &format!("Contact: <sip:bob@{ba}>"),
        &sdp(5000, "sendrecv"),
    );
    assert_eq!(a.final_response(Method::Invite).status(), Some(200));
    // alice stays silent; her 200 is retransmitted meanwhile, then the BYE.
    let bye_a = loop {
        let Some(m) = a.try_recv() else {
            panic!("no BYE for the caller:\n{}", logs());
        };
        if m.method() == Some(&Method::Bye) {
            break m;
        }
    };
    a.reply(&bye_a, 200, "a7", "", "");
    let mut got = Vec::new();
    while got.len() < 2 {
        let Some(m) = b.try_recv() else {
            panic!("bob got only {got:?}:\n{}", logs());
        };
        if let Some(method) = m.method().cloned() {
            if method == Method::Bye {
                b.reply(&m, 200, "b7", "", "");
            }
            got.push(method);
        }
    }
    assert_eq!(got, [Method::Ack, Method::Bye], "{}", logs());
}
