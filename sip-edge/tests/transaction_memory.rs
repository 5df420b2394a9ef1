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

/// Answers every REGISTER at once, as the registrar does: 200 with the
/// binding and the date.
struct Registrar;

impl TransactionUser for Registrar {
    fn on_request(&self, tx: ServerTx, request: Message, _source: Flow) {
        let mut resp = request.make_response(200, "OK", Some(tx.to_tag()));
        let contact = request.known_header(Known::Contact).unwrap_or_default().to_owned();
        resp.push_header(Known::Contact, &format!("{contact};expires=3600"));
        resp.push_header(Known::Date, "Sat, 05 Dec 2026 11:00:00 GMT");
        tx.respond(resp).unwrap();
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

fn source() -> Flow {
    Flow {
        transport: Transport::Udp,
        remote: "127.0.0.1:5061".parse().unwrap(),
        local: Some("127.0.0.1:5060".parse().unwrap()),
        connection: None,
        edge: None,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn completed_transaction_memory() {
    const WARM: usize = 2_000;
    const N: usize = 20_000;
    let sent = Arc::new(LastSent(Mutex::new(None)));
    // Timer J is far away: every transaction stays completed.
    let timers = TimerConfig {
        t1: std::time::Duration::from_secs(60),
        ..TimerConfig::default()
    };
    let layer = TransactionLayer::new(timers, sent.clone(), 1 << 30, 5);
    layer.set_user(Arc::new(Registrar));
    for n in 0..WARM {
        layer.receive(register(n), source());
    }
    let (state_before, _) = layer.state_bytes();
    let region = Region::new(GLOBAL);
    for n in WARM..WARM + N {
        layer.receive(register(n), source());
    }
    let change = region.change();
    let (state_after, _) = layer.state_bytes();
    assert_eq!(layer.counts().0, WARM + N, "every transaction is held");
    // stats_alloc counts a reallocation's growth in bytes_allocated.
    let live = change.bytes_allocated as i64 - change.bytes_deallocated as i64;
    let measured = live as f64 / N as f64;
    let accounted = (state_after - state_before) as f64 / N as f64;
    println!("completed REGISTER transaction: {measured:.0} bytes measured, {accounted:.0} accounted");
    assert!(measured <= 256.0, "{measured:.0} bytes per completed transaction");
    assert!(
        (0.8..=1.6).contains(&(accounted / measured)),
        "the limit counts {accounted:.0} bytes for {measured:.0} held"
    );

    // Every one still answers a retransmission with its response.
    let original = {
        layer.receive(register(WARM + N), source());
        sent.0.lock().unwrap().clone().unwrap()
    };
    let replayed = {
        layer.receive(register(WARM + N), source());
        sent.0.lock().unwrap().clone().unwrap()
    };
    assert_eq!(replayed, original, "a retransmission gets the same bytes");
    for n in [0, WARM, WARM + N / 2, WARM + N - 1] {
        *sent.0.lock().unwrap() = None;
        layer.receive(register(n), source());
        let again = Message::parse(sent.0.lock().unwrap().clone().unwrap()).unwrap();
        assert_eq!(again.status(), Some(200));
        assert_eq!(again.call_id().unwrap(), format!("{n}-4242@127.0.0.1"));
        assert!(again.to_header().unwrap().tag().is_some());
        assert_eq!(
            again.known_header(Known::Contact),
            Some(format!("<sip:user{n}@127.0.0.1:5061>;expires=3600").as_str())
        );
    }
    assert_eq!(layer.counts().0, WARM + N + 1, "retransmissions made no transaction");
}
