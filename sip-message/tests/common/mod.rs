//! Shared corpus loading for the RFC 4475, round-trip and property tests.
//!
//! The corpus files under `tests/corpus/{valid,invalid}/NAME.sip` are stored
//! with LF line endings so that they stay readable and diffable; [`load`]
//! converts every "\n" to "\r\n" before the bytes reach the parser (so
//! Content-Length values in the files count the CRLF form of the body).
//! Cases that need bytes a text file cannot hold (binary bodies, invalid
//! UTF-8) are built in Rust by [`built_valid_cases`] and the tests
//! themselves.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use bytes::Bytes;

pub fn corpus_dir(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("corpus")
        .join(kind)
}

/// The file `tests/corpus/{kind}/{name}.sip` with every "\n" turned into
/// "\r\n".
pub fn load(kind: &str, name: &str) -> Bytes {
    let path = corpus_dir(kind).join(format!("{name}.sip"));
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        !raw.contains(&b'\r'),
        "{kind}/{name}.sip must be stored with LF line endings only"
    );
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 16);
    for b in raw {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    Bytes::from(out)
}

/// Names (without `.sip`) of every file in `tests/corpus/{kind}`, sorted.
pub fn names(kind: &str) -> Vec<String> {
    let dir = corpus_dir(kind);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sip"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The body of the multipart/mixed case: a text part and a binary part that
/// holds every byte value, CR and LF sequences included.
pub fn mpart01_body() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(b"--boundary42\r\nContent-Type: text/plain\r\n\r\nsee the binary part\r\n");
    body.extend_from_slice(
        b"--boundary42\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n",
    );
    body.extend((0..=255u8).rev());
    body.extend_from_slice(b"\r\n\r\n\n\n\r\r\x00\xff\xfe");
    body.extend(0..=255u8);
    body.extend_from_slice(b"\r\n--boundary42--\r\n");
    body
}

/// RFC 4475 3.1.1.11 "mpart01" in spirit: a multipart/mixed body with binary
/// content that must survive untouched.
pub fn mpart01() -> Bytes {
    let body = mpart01_body();
    let mut msg = Vec::new();
    msg.extend_from_slice(
        b"MESSAGE sip:kumiko@example.org SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.120:5060;branch=z9hG4bKmpart01\r\n\
Max-Forwards: 70\r\n\
From: \"Hiro\" <sip:hiro@example.com>;tag=mp4rt\r\n\
To: <sip:kumiko@example.org>\r\n\
Call-ID: mpart01.0skdf83@192.0.2.120\r\n\
CSeq: 4 MESSAGE\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed;boundary=boundary42\r\n",
    );
    msg.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    msg.extend_from_slice(&body);
    Bytes::from(msg)
}

/// A response whose body holds all 256 byte values.
pub fn allbytes() -> Bytes {
    let body: Vec<u8> = (0..=255u8).collect();
    let mut msg = Vec::new();
    msg.extend_from_slice(
        b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/TCP 192.0.2.121;branch=z9hG4bKallbytes\r\n\
From: <sip:a@example.com>;tag=ab1\r\n\
To: <sip:b@example.com>;tag=ab2\r\n\
Call-ID: allbytes.1@192.0.2.121\r\n\
CSeq: 1 INFO\r\n\
Content-Type: application/octet-stream\r\n\
Content-Length: 256\r\n\r\n",
    );
    msg.extend_from_slice(&body);
    Bytes::from(msg)
}

/// Valid cases built in Rust.
pub fn built_valid_cases() -> Vec<(String, Bytes)> {
    vec![
        ("mpart01 (built in Rust)".to_owned(), mpart01()),
        ("allbytes (built in Rust)".to_owned(), allbytes()),
    ]
}

/// Every valid case: the corpus files (named `valid/NAME.sip`) and the
/// cases built in Rust.
pub fn valid_cases() -> Vec<(String, Bytes)> {
    let mut cases: Vec<(String, Bytes)> = names("valid")
        .into_iter()
        .map(|n| {
            let bytes = load("valid", &n);
            (format!("valid/{n}.sip"), bytes)
        })
        .collect();
    cases.extend(built_valid_cases());
    cases
}

/// What serialising a valid case must give back: the input itself, except
/// for "dblreq" whose bytes after Content-Length are dropped.
pub fn expected_serialisation(label: &str, input: &Bytes) -> Bytes {
    if label == "valid/dblreq.sip" {
        let end = input.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        // Content-Length: 0, so the message ends with its header section.
        input.slice(..end + 4)
    } else {
        input.clone()
    }
}
