#![allow(clippy::unwrap_used)]
//! Lossless round trips over the RFC 4475 valid corpus (see `common` for
//! how the LF-stored corpus files are turned into CRLF messages).

mod common;

use bytes::Bytes;
use sip_message::{Known, Message};

fn fields(m: &Message) -> Vec<(String, String, Option<Known>)> {
    m.headers()
        .map(|h| (h.name.to_owned(), h.value.to_owned(), h.known))
        .collect()
}

#[test]
fn every_valid_case_serialises_to_its_input() {
    for (label, input) in common::valid_cases() {
        let m = Message::parse(input.clone()).unwrap_or_else(|e| panic!("{label}: {e:?}"));
        let out = m.to_bytes();
        let want = common::expected_serialisation(&label, &input);
        assert!(
            out == want,
            "{label}: serialisation differs\n--- got\n{}\n--- want\n{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&want)
        );
        let again = Message::parse(out.clone()).unwrap_or_else(|e| panic!("{label}: reparse: {e:?}"));
        assert_eq!(fields(&again), fields(&m), "{label}: headers after reparse");
        assert_eq!(again.body(), m.body(), "{label}: body after reparse");
        assert_eq!(again.to_bytes(), out, "{label}: second serialisation");
        assert_eq!(again.method(), m.method(), "{label}");
        assert_eq!(again.status(), m.status(), "{label}");
        assert_eq!(again.reason(), m.reason(), "{label}");
        assert_eq!(again.request_uri(), m.request_uri(), "{label}");
    }
}

#[test]
fn set_body_recomputes_content_length_keeping_compact_name() {
    let f = "valid/compact.sip";
    let mut m = Message::parse(common::load("valid", "compact")).unwrap();
    m.set_body(Bytes::from_static(b"a new, longer body\r\n"));
    let cl: Vec<_> = m
        .headers()
        .filter(|h| h.known == Some(Known::ContentLength))
        .map(|h| (h.name, h.value))
        .collect();
    assert_eq!(cl, [("l", "20")], "{f}");
    let out = m.to_bytes();
    assert!(out.ends_with(b"\r\nl: 20\r\n\r\na new, longer body\r\n"), "{f}");
    let again = Message::parse(out).unwrap();
    assert_eq!(&again.body()[..], b"a new, longer body\r\n", "{f}");
    assert_eq!(again.content_length(), Some(20), "{f}");
    // Every other field is untouched, in the same order.
    let before: Vec<_> = fields(&m)
        .into_iter()
        .filter(|f| f.2 != Some(Known::ContentLength))
        .collect();
    let after: Vec<_> = fields(&again)
        .into_iter()
        .filter(|f| f.2 != Some(Known::ContentLength))
        .collect();
    assert_eq!(before, after, "{f}");
}

#[test]
fn set_body_recomputes_long_form_content_length() {
    for name in ["esc01", "unreason", "wsinv", "noreason"] {
        let f = format!("valid/{name}.sip");
        let mut m = Message::parse(common::load("valid", name)).unwrap();
        let spelled = m
            .headers()
            .find(|h| h.known == Some(Known::ContentLength))
            .unwrap()
            .name
            .to_owned();
        m.set_body(Bytes::from_static(b"xyz"));
        let again = Message::parse(m.to_bytes()).unwrap_or_else(|e| panic!("{f}: {e:?}"));
        let cl: Vec<_> = again
            .headers()
            .filter(|h| h.known == Some(Known::ContentLength))
            .map(|h| (h.name.to_owned(), h.value.to_owned()))
            .collect();
        assert_eq!(cl, [(spelled, "3".to_owned())], "{f}");
        assert_eq!(&again.body()[..], b"xyz", "{f}");
        m.set_body(Bytes::new());
        let again = Message::parse(m.to_bytes()).unwrap();
        assert_eq!(again.content_length(), Some(0), "{f}");
        assert!(again.body().is_empty(), "{f}");
    }
}

#[test]
fn set_body_adds_content_length_when_absent() {
    let raw = "MESSAGE sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
To: <sip:a@example.com>\r\nFrom: <sip:b@example.com>;tag=1\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n\r\n";
    let mut m = Message::parse(Bytes::from(raw)).unwrap();
    assert_eq!(m.content_length(), None);
    m.set_body(Bytes::from_static(b"hi"));
    let again = Message::parse(m.to_bytes()).unwrap();
    assert_eq!(again.content_length(), Some(2));
    assert_eq!(&again.body()[..], b"hi");
}

#[test]
fn all_256_byte_values_survive() {
    let f = "allbytes (built in Rust)";
    let input = common::allbytes();
    let m = Message::parse(input.clone()).unwrap();
    let body: Vec<u8> = (0..=255u8).collect();
    assert_eq!(&m.body()[..], &body[..], "{f}");
    assert_eq!(m.to_bytes(), input, "{f}");
    let again = Message::parse(m.to_bytes()).unwrap();
    assert_eq!(&again.body()[..], &body[..], "{f}");

    // And set_body with every byte value on a corpus message.
    let mut m = Message::parse(common::load("valid", "unkhdr")).unwrap();
    m.set_body(Bytes::from(body.clone()));
    let again = Message::parse(m.to_bytes()).unwrap();
    assert_eq!(&again.body()[..], &body[..], "valid/unkhdr.sip + set_body");
    assert_eq!(again.content_length(), Some(256), "valid/unkhdr.sip + set_body");
}

#[test]
fn bare_lf_line_endings_are_written_as_crlf() {
    let f = "bare LF (built in Rust)";
    // A corpus file as stored (bare LF), without the CRLF conversion; it
    // has folded lines and no body.
    let path = common::corpus_dir("valid").join("semiuri.sip");
    let lf = std::fs::read(path).unwrap();
    let m = Message::parse(Bytes::from(lf)).unwrap_or_else(|e| panic!("{f}: {e:?}"));
    assert_eq!(m.to_bytes(), common::load("valid", "semiuri"), "{f}");

    let raw = "OPTIONS sip:bob@example.com SIP/2.0\n\
Via: SIP/2.0/UDP h.example.com;branch=z9hG4bKlf\n\
To: <sip:bob@example.com>\n\
From: <sip:alice@example.com>;\n  tag=lf1\n\
Call-ID: lf.1@h.example.com\n\
CSeq: 9 OPTIONS\n\
Content-Length: 5\n\nab\ncd";
    let m = Message::parse(Bytes::from(raw)).unwrap_or_else(|e| panic!("{f}: {e:?}"));
    assert_eq!(m.from_header().unwrap().tag(), Some("lf1"), "{f}");
    assert_eq!(&m.body()[..], b"ab\ncd", "{f}");
    let out = m.to_bytes();
    let want = "OPTIONS sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP h.example.com;branch=z9hG4bKlf\r\n\
To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;\r\n  tag=lf1\r\n\
Call-ID: lf.1@h.example.com\r\n\
CSeq: 9 OPTIONS\r\n\
Content-Length: 5\r\n\r\nab\ncd";
    assert_eq!(String::from_utf8_lossy(&out), want, "{f}");
    let again = Message::parse(out).unwrap();
    assert_eq!(fields(&again), fields(&m), "{f}");
}

#[test]
fn bare_lf_message_whose_body_holds_crlfcrlf() {
    // The header section ends at the first blank line, whichever line break
    // it is written with: a CRLF CRLF inside the body must not be taken as
    // the end of the header section.
    let f = "bare LF with CRLFCRLF in body (built in Rust)";
    let raw = b"MESSAGE sip:bob@example.com SIP/2.0\n\
Via: SIP/2.0/UDP h.example.com;branch=z9hG4bKlf2\n\
To: <sip:bob@example.com>\n\
From: <sip:alice@example.com>;tag=lf2\n\
Call-ID: lf.2@h.example.com\n\
CSeq: 9 MESSAGE\n\
Content-Type: text/plain\n\
Content-Length: 8\n\nab\r\n\r\ncd";
    let m = Message::parse(Bytes::from_static(raw)).unwrap_or_else(|e| panic!("{f}: {e:?}"));
    assert_eq!(&m.body()[..], b"ab\r\n\r\ncd", "{f}");
    assert_eq!(m.headers().len(), 7, "{f}");
    let again = Message::parse(m.to_bytes()).unwrap();
    assert_eq!(again.body(), m.body(), "{f}");
    assert_eq!(fields(&again), fields(&m), "{f}");
}
