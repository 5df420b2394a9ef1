//! Messages the unit tests build.

use bytes::Bytes;
use sip_message::Message;

fn parse(text: String) -> Message {
    Message::parse(Bytes::from(text.replace('\n', "\r\n"))).expect("test messages parse")
}

/// The caller's INVITE of a test call.
pub(crate) fn invite_from(call_id: &str, from_tag: &str) -> Message {
    parse(format!(
        "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{from_tag}\n\
From: <sip:alice@example.com>;tag={from_tag}\nTo: <sip:bob@example.com>\nCall-ID: {call_id}\n\
CSeq: 1 INVITE\nContact: <sip:alice@192.0.2.1:5060>\nMax-Forwards: 70\nContent-Length: 0\n\n"
    ))
}

/// The callee's 200 to a test callee-leg INVITE.
pub(crate) fn answer_from(call_id: &str, our_tag: &str, their_tag: &str) -> Message {
    parse(format!(
        "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKb\n\
From: <sip:alice@example.com>;tag={our_tag}\nTo: <sip:bob@example.com>;tag={their_tag}\nCall-ID: {call_id}\n\
CSeq: 1 INVITE\nContact: <sip:bob@192.0.2.2:5060>\nContent-Length: 0\n\n"
    ))
}

/// A request in a dialog, from the peer whose tag is `from_tag` to sipbus
/// (`to_tag`).
pub(crate) fn request_in(call_id: &str, from_tag: &str, to_tag: &str) -> Message {
    parse(format!(
        "INFO sip:x@192.0.2.9 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKi{from_tag}\n\
From: <sip:peer@example.com>;tag={from_tag}\nTo: <sip:sipbus@example.com>;tag={to_tag}\nCall-ID: {call_id}\n\
CSeq: 5 INFO\nMax-Forwards: 70\nContent-Length: 0\n\n"
    ))
}
