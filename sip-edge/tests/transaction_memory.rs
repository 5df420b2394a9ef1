//! What a completed non-INVITE server transaction costs, measured: a
//! counting allocator sees every byte the layer holds for 20,000 REGISTER
//! transactions answered over UDP and kept for timer J. The bound
//! is 256 bytes each (key, response to replay, table slots); the layer's
//! own accounting, which the memory limit counts, must stay close to it.

#![allow(clippy::unwrap_used)]

use std::alloc::System;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;

use bytes::Bytes;
use sip_edge::transaction::TransactionUser;
use sip_edge::transport::{Transmit, TransportError};
use sip_edge::{Flow, ServerTx, ServerTxId, TimerConfig, TransactionLayer, Transport};
use sip_message::{Known, Message};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Keeps only the last datagram sent (so the test's own buffers do not
/// grow with the transactions it measures).
struct LastSent(Mutex<Option<Bytes>>);

impl Transmit for LastSent {
    fn transmit(&self, _target: &Flow, data: Bytes) -> Result<(), TransportError> {
        *self.0.lock().unwrap() = Some(data);
        Ok(())
    }
    fn sent_by(&self, _target: &Flow) -> SocketAddr {
        "192.0.2.1:5060".parse().unwrap()
    }
}

/// Answers every request at once with what its function makes.
struct Answer(fn(&ServerTx, &Message) -> Message);

/// As the registrar does: 200 with the binding and the date.
fn registered(tx: &ServerTx, request: &Message) -> Message {
    let mut resp = request.make_response(200, "OK", Some(tx.to_tag()));
    let contact = request.known_header(Known::Contact).unwrap_or_default().to_owned();
    resp.push_header(Known::Contact, &format!("{contact};expires=3600"));
    resp.push_header(Known::Date, "Sat, 05 Dec 2026 11:00:00 GMT");
    resp
}

/// As the edge answers a keep-alive OPTIONS.
fn options_ok(tx: &ServerTx, request: &Message) -> Message {
    let mut resp = request.make_response(200, "OK", Some(tx.to_tag()));
    resp.push_header(
        Known::Allow,
        "OPTIONS, REGISTER, PUBLISH, SUBSCRIBE, NOTIFY, INVITE, BYE, UPDATE, INFO, MESSAGE, REFER",
    );
    resp.push_header(Known::Accept, "application/sdp");
    resp.push_header(Known::AcceptEncoding, "identity");
    resp.push_header(Known::AcceptLanguage, "en");
    resp.push_header(Known::Supported, "");
    resp
}

impl TransactionUser for Answer {
    fn on_request(&self, tx: ServerTx, request: Message, _source: Flow) {
        tx.respond((self.0)(&tx, &request)).unwrap();
    }
    fn on_ack(&self, _ack: Message, _source: Flow) {}
    fn on_cancelled(&self, _tx: ServerTxId, _cancel: Message, _flow: Flow) {}
}

/// A REGISTER as SIPp sends it, with the `received` the edge stamps.
fn register(n: usize) -> Message {
    let raw = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-{n}-0;rport=5061;received=127.0.0.1\r\n\
From: <sip:user{n}@example.com>;tag={n}SIPpTag001\r\n\
To: <sip:user{n}@example.com>\r\n\
Call-ID: {n}-4242@127.0.0.1\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:user{n}@127.0.0.1:5061>\r\n\
Max-Forwards: 70\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(raw)).unwrap()
}

/// A keep-alive OPTIONS as phones send them.
fn options(n: usize) -> Message {
    let raw = format!(
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-{n}-0;rport=5061;received=127.0.0.1\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag={n}\r\n\
To: <sip:127.0.0.1:5060>\r\n\
Call-ID: {n}-4242@127.0.0.1\r\n\
CSeq: 1 OPTIONS\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(raw)).unwrap()
}

fn source() -> Flow {
    Flow {
        transport: Transport::Udp,
        remote: "127.0.0.1:5061".parse().unwrap(),
        local: Some("127.0.0.1:5060".parse().unwrap()),
        connection: None,
        edge: None,
    }
}

const WARM: usize = 2_000;
const N: usize = 20_000;

/// Bytes per completed transaction, measured and as the limit counts them,
/// over N transactions after WARM; the layer and its last datagram.
fn measure(
    request: fn(usize) -> Message,
    answer: fn(&ServerTx, &Message) -> Message,
) -> (f64, f64, TransactionLayer, Arc<LastSent>) {
    let sent = Arc::new(LastSent(Mutex::new(None)));
    // Timer J is far away: every transaction stays completed.
    let timers = TimerConfig {
        t1: std::time::Duration::from_secs(60),
        ..TimerConfig::default()
    };
    let layer = TransactionLayer::new(timers, sent.clone(), 1 << 30, 5);
    layer.set_user(Arc::new(Answer(answer)));
    for n in 0..WARM {
        layer.receive(request(n), source());
    }
    let (state_before, _) = layer.state_bytes();
    let region = Region::new(GLOBAL);
    for n in WARM..WARM + N {
        layer.receive(request(n), source());
    }
    let change = region.change();
    let (state_after, _) = layer.state_bytes();
    assert_eq!(layer.counts().0, WARM + N, "every transaction is held");
    // stats_alloc counts a reallocation's growth in bytes_allocated.
    let live = change.bytes_allocated as i64 - change.bytes_deallocated as i64;
    let measured = live as f64 / N as f64;
    let accounted = (state_after - state_before) as f64 / N as f64;
    (measured, accounted, layer, sent)
}

// One test: the allocator's counts are the process's, so the two
// measures must not run at once.
#[tokio::test(flavor = "current_thread")]
async fn completed_transaction_memory() {
    for (name, request, answer) in [
        (
            "REGISTER",
            register as fn(usize) -> Message,
            registered as fn(&ServerTx, &Message) -> Message,
        ),
        ("OPTIONS", options, options_ok),
    ] {
        let (measured, accounted, layer, sent) = measure(request, answer);
        println!("completed {name} transaction: {measured:.0} bytes measured, {accounted:.0} accounted");
        assert!(
            measured <= 256.0,
            "{name}: {measured:.0} bytes per completed transaction"
        );
        assert!(
            (0.8..=1.6).contains(&(accounted / measured)),
            "{name}: the limit counts {accounted:.0} bytes for {measured:.0} held"
        );
        replays(&layer, &sent, request);
    }
}

/// Every transaction still answers a retransmission with its response.
fn replays(layer: &TransactionLayer, sent: &LastSent, request: fn(usize) -> Message) {
    let original = {
        layer.receive(request(WARM + N), source());
        sent.0.lock().unwrap().clone().unwrap()
    };
    let replayed = {
        layer.receive(request(WARM + N), source());
        sent.0.lock().unwrap().clone().unwrap()
    };
    assert_eq!(replayed, original, "a retransmission gets the same bytes");
    for n in [0, WARM, WARM + N / 2, WARM + N - 1] {
        *sent.0.lock().unwrap() = None;
        layer.receive(request(n), source());
        let again = Message::parse(sent.0.lock().unwrap().clone().unwrap()).unwrap();
        assert_eq!(again.status(), Some(200));
        assert_eq!(again.call_id().unwrap(), format!("{n}-4242@127.0.0.1"));
        assert!(again.to_header().unwrap().tag().is_some());
        // The part kept in the record (or shared) comes back too.
        match again.cseq().unwrap().method.as_str() {
            "REGISTER" => assert_eq!(
                again.known_header(Known::Contact),
                Some(format!("<sip:user{n}@127.0.0.1:5061>;expires=3600").as_str())
            ),
            _ => assert_eq!(again.known_header(Known::Accept), Some("application/sdp")),
        }
    }
    assert_eq!(layer.counts().0, WARM + N + 1, "retransmissions made no transaction");
}
