#![allow(clippy::unwrap_used)]
//! Property tests: the parser and the stream framer never panic, whatever
//! the bytes; mutated RFC 4475 corpus messages that still parse serialise
//! idempotently; pipelined corpus messages come out of the framer intact
//! whatever the read sizes. (Corpus files are stored with LF line endings
//! and converted to CRLF when loaded; see `common`.)

mod common;

use std::sync::OnceLock;

use bytes::Bytes;
use proptest::prelude::*;
use sip_message::framing::{Frame, StreamFramer};
use sip_message::{Known, Limits, Message, Uri};

/// Every valid case (corpus files and built ones), loaded once.
fn corpus() -> &'static [(String, Bytes)] {
    static CORPUS: OnceLock<Vec<(String, Bytes)>> = OnceLock::new();
    CORPUS.get_or_init(common::valid_cases)
}

/// The cases a stream can carry as they are: serialising them gives the
/// input back and their Content-Length matches their body.
fn streamable() -> &'static [(String, Bytes)] {
    static STREAMABLE: OnceLock<Vec<(String, Bytes)>> = OnceLock::new();
    STREAMABLE.get_or_init(|| {
        corpus()
            .iter()
            .filter(|(_, b)| {
                let m = Message::parse(b.clone()).unwrap();
                m.to_bytes() == b && m.content_length() == Some(m.body().len())
            })
            .cloned()
            .collect()
    })
}

/// Calls every typed accessor; errors are fine, panics are not.
fn exercise(m: &Message) {
    let _ = m.top_via();
    for v in m.vias().flatten() {
        let _ = (v.branch(), v.received(), v.rport(), v.maddr(), v.has_rfc3261_branch());
        let _ = v.host.to_string();
    }
    for a in [m.from_header(), m.to_header()].into_iter().flatten() {
        let _ = (a.display_name(), a.tag());
    }
    if let Ok(sip_message::typed::Contacts::List(list)) = m.contacts() {
        use sip_message::typed::ContactParams;
        for c in list {
            let _ = (c.expires(), c.q(), c.sip_instance(), c.reg_id(), c.display_name());
        }
    }
    let _ = m.cseq();
    let _ = m.call_id();
    let _ = m.max_forwards();
    let _ = m.content_type();
    let _ = m.content_length();
    let _ = m.expires();
    let _ = m.min_expires();
    if let Ok(Some(e)) = m.event() {
        let _ = e.id();
    }
    let _ = m.subscription_state();
    if let Ok(reasons) = m.reasons() {
        for r in reasons {
            let _ = (r.cause(), r.text());
        }
    }
    for known in [Known::Authorization, Known::ProxyAuthorization] {
        if let Ok(creds) = m.credentials(known) {
            for c in creds {
                let _ = (c.is_digest(), c.get("username"), c.iter().count());
            }
        }
    }
    let _ = m.challenges(Known::WwwAuthenticate);
    let _ = m.routes();
    let _ = m.record_routes();
    let _ = m.accept();
    let _ = m.tokens(Known::Allow).count();
    let _ = m.tokens(Known::Privacy).count();
    if let Some(Ok(Uri::Sip(u))) = m.request_uri().map(Uri::parse) {
        let _ = (u.user_decoded(), u.transport());
    }
    let _ = m.to_string();
}

fn drain(framer: &mut StreamFramer, out: &mut Vec<Frame>) -> bool {
    loop {
        match framer.next_frame() {
            Ok(Some(f)) => out.push(f),
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte with a non-zero mask.
    Flip {
        pos: usize,
        mask: u8,
    },
    Insert {
        pos: usize,
        bytes: Vec<u8>,
    },
    Delete {
        pos: usize,
        len: usize,
    },
    Truncate {
        pos: usize,
    },
    DuplicateLine {
        line: usize,
    },
    SwapLines {
        a: usize,
        b: usize,
    },
}

fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        any::<u8>(),
        proptest::sample::select(b"\r\n \t:;,<>\"\\@%=/[]?0123456789".to_vec()),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(pos, mask)| Mutation::Flip { pos, mask }),
        (any::<usize>(), proptest::collection::vec(interesting_byte(), 1..8))
            .prop_map(|(pos, bytes)| Mutation::Insert { pos, bytes }),
        (any::<usize>(), 1..64usize).prop_map(|(pos, len)| Mutation::Delete { pos, len }),
        any::<usize>().prop_map(|pos| Mutation::Truncate { pos }),
        any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
    ]
}

/// Lines with their terminating "\n" (the last one may have none).
fn lines(data: &[u8]) -> Vec<Vec<u8>> {
    data.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
}

fn apply(data: &mut Vec<u8>, m: &Mutation) {
    let len = data.len();
    match m {
        Mutation::Flip { pos, mask } => {
            if len > 0 {
                data[pos % len] ^= mask;
            }
        }
        Mutation::Insert { pos, bytes } => {
            let at = pos % (len + 1);
            data.splice(at..at, bytes.iter().copied());
        }
        Mutation::Delete { pos, len: n } => {
            if len > 0 {
                let at = pos % len;
                let end = (at + n).min(len);
                data.drain(at..end);
            }
        }
        Mutation::Truncate { pos } => data.truncate(pos % (len + 1)),
        Mutation::DuplicateLine { line } => {
            let mut ls = lines(data);
            if !ls.is_empty() {
                let i = line % ls.len();
                let dup = ls[i].clone();
                ls.insert(i, dup);
                *data = ls.concat();
            }
        }
        Mutation::SwapLines { a, b } => {
            let mut ls = lines(data);
            if !ls.is_empty() {
                let n = ls.len();
                ls.swap(a % n, b % n);
                *data = ls.concat();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
        if let Ok(m) = Message::parse(Bytes::from(data.clone())) {
            exercise(&m);
        }
        let _ = Message::parse_structure(Bytes::from(data.clone()), &Limits::default());
        let mut framer = StreamFramer::new(Limits::default());
        framer.extend(&data);
        let mut frames = Vec::new();
        drain(&mut framer, &mut frames);
        for f in frames {
            if let Frame::Message(b) = f {
                let _ = Message::parse(b);
            }
        }
    }

    #[test]
    fn sip_looking_bytes_never_panic(
        data in proptest::collection::vec(interesting_byte(), 0..600),
        prefix in proptest::sample::select(vec![
            &b"INVITE sip:a@b SIP/2.0\r\n"[..],
            &b"SIP/2.0 200 OK\r\n"[..],
            &b"OPTIONS sip:x SIP/2.0\nVia: "[..],
            &b""[..],
        ]),
    ) {
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(&data);
        if let Ok(m) = Message::parse(Bytes::from(bytes.clone())) {
            exercise(&m);
        }
        let mut framer = StreamFramer::new(Limits::default());
        framer.extend(&bytes);
        drain(&mut framer, &mut Vec::new());
    }

    #[test]
    fn mutated_corpus_never_panics_and_reserialises_idempotently(
        case in 0..1000usize,
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let cases = corpus();
        let (label, input) = &cases[case % cases.len()];
        let mut data = input.to_vec();
        for m in &mutations {
            apply(&mut data, m);
        }
        let mut framer = StreamFramer::new(Limits::default());
        framer.extend(&data);
        let mut frames = Vec::new();
        let framed = drain(&mut framer, &mut frames);
        let _ = Message::parse_structure(Bytes::from(data.clone()), &Limits::default());
        if let Ok(m) = Message::parse(Bytes::from(data.clone())) {
            exercise(&m);
            // A message that can travel on a stream as it is must be framed
            // exactly as the parser reads it.
            if m.to_bytes() == data && m.content_length() == Some(m.body().len()) {
                prop_assert!(
                    framed && frames == [Frame::Message(Bytes::from(data.clone()))],
                    "{label} mutated by {mutations:?}: framer disagrees with the parser: {framed} {frames:?}\n{}",
                    String::from_utf8_lossy(&data)
                );
            }
            let out = m.to_bytes();
            let again = Message::parse(out.clone());
            prop_assert!(
                again.is_ok(),
                "{label} mutated by {mutations:?}: serialisation does not parse: {:?}\n{}",
                again.err(),
                String::from_utf8_lossy(&out)
            );
            let again = again.unwrap();
            exercise(&again);
            prop_assert_eq!(
                again.to_bytes(),
                out.clone(),
                "{} mutated by {:?}: second serialisation differs",
                label,
                mutations
            );
            let a: Vec<_> = m.headers().map(|h| (h.name, h.value, h.known)).collect();
            let b: Vec<_> = again.headers().map(|h| (h.name, h.value, h.known)).collect();
            prop_assert_eq!(a, b, "{} mutated by {:?}: headers differ", label, mutations);
            prop_assert_eq!(m.body(), again.body(), "{} mutated by {:?}: body differs", label, mutations);
        }
    }

    #[test]
    fn pipelined_corpus_messages_frame_exactly(
        picks in proptest::collection::vec(0..1000usize, 1..5),
        chunks in proptest::collection::vec(1..300usize, 1..40),
    ) {
        let cases = streamable();
        let chosen: Vec<&(String, Bytes)> = picks.iter().map(|i| &cases[i % cases.len()]).collect();
        let labels: Vec<&str> = chosen.iter().map(|c| c.0.as_str()).collect();
        let stream: Vec<u8> = chosen.iter().flat_map(|c| c.1.iter().copied()).collect();
        let mut framer = StreamFramer::new(Limits::default());
        let mut frames = Vec::new();
        let mut pos = 0;
        let mut sizes = chunks.iter().cycle();
        while pos < stream.len() {
            let n = (*sizes.next().unwrap()).min(stream.len() - pos);
            framer.extend(&stream[pos..pos + n]);
            pos += n;
            prop_assert!(drain(&mut framer, &mut frames), "{labels:?}: framing error");
        }
        prop_assert_eq!(framer.pending(), 0, "{:?}: bytes left over", labels);
        let want: Vec<Frame> = chosen.iter().map(|c| Frame::Message(c.1.clone())).collect();
        prop_assert_eq!(frames.len(), want.len(), "{:?}: frame count", labels);
        for (i, (got, want)) in frames.iter().zip(&want).enumerate() {
            prop_assert!(got == want, "{}: frame {} differs", labels[i], i);
        }
    }
}

#[test]
fn corpus_is_streamable() {
    // Every valid case but dblreq (whose datagram carries bytes after its
    // Content-Length) can travel on a stream as it is.
    let names: Vec<&str> = streamable().iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names.len() + 1, corpus().len(), "{names:?}");
    assert!(!names.contains(&"valid/dblreq.sip"));
}
