//! Parse + typed access of the headers every transaction needs (top Via
//! branch, From tag, To tag, Call-ID, CSeq) on a softphone-shaped INVITE
//! with SDP and on a REGISTER; and, for scale, a plain memchr line split of
//! the same INVITE.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use sip_message::Message;

#[path = "common/invite.rs"]
mod invite;

const REGISTER: &str = "REGISTER sip:registrar.biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.4:5060;rport;branch=z9hG4bKnashds7\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Bob <sip:bob@biloxi.example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4:5060>;expires=3600\r\n\
User-Agent: Bria 6.5\r\n\
Expires: 7200\r\n\
Content-Length: 0\r\n\r\n";

/// What the edge reads from every message: the transaction key and the
/// dialog identifiers.
fn parse_and_access(data: &Bytes) -> usize {
    let msg = Message::parse(data.clone()).expect("bench message parses");
    let cseq = msg.cseq().expect("cseq");
    msg.branch().map_or(0, str::len)
        + msg.from_tag().map_or(0, str::len)
        + msg.to_tag().map_or(0, str::len)
        + msg.call_id().map_or(0, str::len)
        + cseq.seq as usize
}

/// The same, through the full typed values (parsed again on access).
fn parse_and_full_access(data: &Bytes) -> usize {
    let msg = Message::parse(data.clone()).expect("bench message parses");
    let via = msg.top_via().expect("via");
    let from = msg.from_header().expect("from");
    let to = msg.to_header().expect("to");
    via.branch().map_or(0, str::len)
        + from.tag().map_or(0, str::len)
        + to.tag().map_or(0, str::len)
        + via.port.map_or(0, usize::from)
}

fn line_split(data: &[u8]) -> usize {
    let mut lines = 0;
    let mut pos = 0;
    while let Some(i) = memchr::memchr(b'\n', &data[pos..]) {
        lines += 1;
        pos += i + 1;
    }
    lines
}

fn bench(c: &mut Criterion) {
    let invite = Bytes::from(invite::invite());
    let register = Bytes::from_static(REGISTER.as_bytes());
    eprintln!("INVITE {} bytes, REGISTER {} bytes", invite.len(), register.len());
    c.bench_function("parse+access INVITE with SDP", |b| {
        b.iter(|| parse_and_access(black_box(&invite)))
    });
    c.bench_function("parse+access REGISTER", |b| {
        b.iter(|| parse_and_access(black_box(&register)))
    });
    c.bench_function("parse+full typed Via/From/To INVITE", |b| {
        b.iter(|| parse_and_full_access(black_box(&invite)))
    });
    c.bench_function("memchr line split INVITE", |b| {
        b.iter(|| line_split(black_box(&invite)))
    });
    c.bench_function("serialise untouched INVITE", |b| {
        let msg = Message::parse(invite.clone()).expect("parses");
        b.iter(|| black_box(&msg).to_bytes())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
