//! Between `sip_message::Message` and the contract's `SipMessage`.

use crate::edge::v1 as pb;
use sip_message::{Limits, Message, Method, ParseError};

/// The contract form of a message: start line, fields in order, body.
pub fn to_proto(msg: &Message) -> pb::SipMessage {
    let start_line = match (msg.method(), msg.status()) {
        (Some(method), _) => pb::sip_message::StartLine::Request(pb::RequestLine {
            method: method.as_str().to_owned(),
            uri: msg.request_uri().unwrap_or_default().to_owned(),
        }),
        (None, code) => pb::sip_message::StartLine::Status(pb::StatusLine {
            code: u32::from(code.unwrap_or(500)),
            reason: msg.reason().unwrap_or_default().to_owned(),
        }),
    };
    pb::SipMessage {
        start_line: Some(start_line),
        headers: msg
            .headers()
            .map(|h| pb::Header {
                name: h.name.to_owned(),
                value: h.value.to_owned(),
            })
            .collect(),
        body: msg.body().clone(),
    }
}

/// Why a message from a service cannot go on the wire.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("no start line")]
    NoStartLine,
    #[error("method `{0}` is not a token")]
    BadMethod(String),
    #[error("status code {0} is not from 100 to 699")]
    BadStatus(u32),
    #[error("invalid message: {0}")]
    Invalid(#[from] ParseError),
}

/// Builds a message from its contract form and validates it as the edge
/// validates what it receives; Content-Length is recomputed.
pub fn from_proto(m: pb::SipMessage) -> Result<Message, ConvertError> {
    let msg = build(m)?;
    // Round-trip through the parser: what a service sends must pass the
    // checks the edge applies to what it receives.
    Ok(Message::parse_with(msg.to_bytes(), &Limits::default())?)
}

/// Builds a request a service asks the edge to send. It has no Via yet
/// (the edge's transaction layer adds its own), so it is validated only
/// after that, by the transaction layer.
pub fn outgoing_from_proto(m: pb::SipMessage) -> Result<Message, ConvertError> {
    let msg = build(m)?;
    if !msg.is_request() {
        return Err(ConvertError::NoStartLine);
    }
    Ok(msg)
}

/// A message still being composed (an outgoing request has no Via until
/// the edge adds its own), as supplements see it: built, not validated.
pub fn draft_from_proto(m: pb::SipMessage) -> Result<Message, ConvertError> {
    build(m)
}

fn build(m: pb::SipMessage) -> Result<Message, ConvertError> {
    let mut msg = match m.start_line.ok_or(ConvertError::NoStartLine)? {
        pb::sip_message::StartLine::Request(r) => {
            let method = Method::parse(&r.method).ok_or(ConvertError::BadMethod(r.method))?;
            Message::request(method, &r.uri)
        }
        pb::sip_message::StartLine::Status(s) => {
            let code = u16::try_from(s.code)
                .ok()
                .filter(|c| (100..700).contains(c))
                .ok_or(ConvertError::BadStatus(s.code))?;
            Message::response(code, &s.reason)
        }
    };
    for h in &m.headers {
        msg.push_header_as_spelled(&h.name, &h.value);
    }
    msg.set_body(m.body);
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn round_trip_keeps_fields_and_body() {
        let raw = "REGISTER sip:example.com SIP/2.0\r\nv: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nf: <sip:a@example.com>;tag=1\r\nt: <sip:a@example.com>\r\ni: c1\r\nCSeq: 1 REGISTER\r\nX-Custom: keep me\r\nl: 4\r\n\r\nbody";
        let msg = Message::parse(Bytes::from_static(raw.as_bytes())).unwrap();
        let back = from_proto(to_proto(&msg)).unwrap();
        assert_eq!(back.to_bytes(), msg.to_bytes());
        assert!(from_proto(pb::SipMessage::default()).is_err());
        let bad = pb::SipMessage {
            start_line: Some(pb::sip_message::StartLine::Status(pb::StatusLine {
                code: 1000,
                reason: "x".into(),
            })),
            ..Default::default()
        };
        assert!(matches!(from_proto(bad), Err(ConvertError::BadStatus(1000))));
    }
}
