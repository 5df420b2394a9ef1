//! Messages for the unit tests (RFC 3261 24.2, Alice calls Bob).

use bytes::Bytes;
use sip_message::Message;

pub(crate) const INVITE: &str = "INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.com>\r\n\
Content-Length: 0\r\n\r\n";

pub(crate) fn parse(text: &str) -> Message {
    match Message::parse(Bytes::from(text.to_owned())) {
        Ok(m) => m,
        Err(e) => panic!("{e}: {text}"),
    }
}

/// `text` with `lines` (`Name: value`) added at the end of its header.
pub(crate) fn with_headers(text: &str, lines: &[&str]) -> String {
    let head = text.trim_end_matches("\r\n");
    let mut out = format!("{head}\r\n");
    for line in lines {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out
}

/// `text` without its `name` fields.
pub(crate) fn without_header(text: &str, name: &str) -> String {
    let prefix = format!("{name}:");
    text.split_inclusive("\r\n")
        .filter(|line| !line.starts_with(&prefix))
        .collect()
}

/// A response to `request` with To tag `to_tag` and the extra `lines`.
pub(crate) fn response(request: &Message, code: u16, to_tag: Option<&str>, lines: &[&str]) -> Message {
    let mut r = request.make_response(code, "Reason", to_tag);
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        r.push_header_as_spelled(name, value.trim());
    }
    r
}
