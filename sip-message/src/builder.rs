//! The messages the core generates from others, so nobody assembles SIP by
//! hand: responses (RFC 3261 8.2.6), ACK for a non-2xx final response
//! (17.1.1.3) and CANCEL (9.1).

use crate::message::Message;
use crate::method::Method;
use crate::name::Known;

impl Message {
    /// A response to this request: Via fields, From, Call-ID, CSeq and To
    /// copied; `to_tag` added to To when it has none (never on 100);
    /// Timestamp echoed on 100 Trying; an empty body with Content-Length 0.
    pub fn make_response(&self, code: u16, reason: &str, to_tag: Option<&str>) -> Message {
        let has_tag = self.to_header().map(|t| t.tag().is_some()).unwrap_or(true);
        let mut resp = respond(
            code,
            reason,
            self.known_fields(Known::Via),
            [Known::From, Known::To, Known::CallId, Known::CSeq].map(|k| self.known_header(k)),
            to_tag.filter(|_| !has_tag),
        );
        if code == 100 {
            if let Some(ts) = self.known_header(Known::Timestamp) {
                resp.push_header(Known::Timestamp, ts);
            }
        }
        resp.push_header(Known::ContentLength, "0");
        resp
    }

    /// What a response to this request copies from it, to answer it later
    /// without keeping (or parsing again) the request.
    pub fn response_head(&self) -> ResponseHead {
        let get = |k| self.known_header(k).unwrap_or_default().to_owned();
        ResponseHead {
            vias: self.known_fields(Known::Via).map(str::to_owned).collect(),
            from: get(Known::From),
            to: get(Known::To),
            call_id: get(Known::CallId),
            cseq: get(Known::CSeq),
            to_has_tag: self.to_header().map(|t| t.tag().is_some()).unwrap_or(true),
        }
    }

    /// The ACK a client INVITE transaction sends for a non-2xx final
    /// `response` to this INVITE: same Request-URI, Call-ID, From, CSeq
    /// number and Route set, the top Via only, To from the response.
    pub fn make_ack(&self, response: &Message) -> Message {
        self.make_hop_by_hop(Method::Ack, response.known_header(Known::To))
    }

    /// A CANCEL for this request (RFC 3261 9.1).
    pub fn make_cancel(&self) -> Message {
        self.make_hop_by_hop(Method::Cancel, None)
    }

    fn make_hop_by_hop(&self, method: Method, to_override: Option<&str>) -> Message {
        let mut m = Message::request(method.clone(), self.request_uri().unwrap_or_default());
        if let Some(top) = self.known_values(Known::Via).next() {
            m.push_header(Known::Via, top);
        }
        let max_forwards = self.known_header(Known::MaxForwards).unwrap_or("70");
        m.push_header(Known::MaxForwards, max_forwards);
        for route in self.known_fields(Known::Route) {
            m.push_header(Known::Route, route);
        }
        if let Some(from) = self.known_header(Known::From) {
            m.push_header(Known::From, from);
        }
        if let Some(to) = to_override.or_else(|| self.known_header(Known::To)) {
            m.push_header(Known::To, to);
        }
        if let Some(call_id) = self.known_header(Known::CallId) {
            m.push_header(Known::CallId, call_id);
        }
        let seq = self.cseq().map(|c| c.seq).unwrap_or(0);
        m.push_header(Known::CSeq, &format!("{seq} {method}"));
        m.push_header(Known::ContentLength, "0");
        m
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::Message;
    use crate::name::Known;

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds, SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p1.example.com;lr>\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Timestamp: 54\r\n\
Content-Length: 0\r\n\r\n";

    fn invite() -> Message {
        Message::parse(Bytes::from_static(INVITE.as_bytes())).unwrap()
    }

    #[test]
    fn response_copies_the_right_headers() {
        let inv = invite();
        let r = inv.make_response(486, "Busy Here", Some("xyz"));
        let r = Message::parse(r.to_bytes()).unwrap();
        assert_eq!(r.status(), Some(486));
        assert_eq!(r.reason(), Some("Busy Here"));
        assert_eq!(r.vias().count(), 2);
        assert_eq!(r.to_header().unwrap().tag(), Some("xyz"));
        assert_eq!(r.from_header().unwrap().tag(), Some("1928301774"));
        assert_eq!(r.cseq().unwrap().seq, 314159);
        assert!(r.known_header(Known::Timestamp).is_none());
        let trying = inv.make_response(100, "Trying", Some("xyz"));
        assert_eq!(trying.to_header().unwrap().tag(), None);
        assert_eq!(trying.known_header(Known::Timestamp), Some("54"));
    }

    #[test]
    fn a_split_response_is_rebuilt_byte_for_byte() {
        let inv = invite();
        let mut r = inv.make_response(200, "OK", Some("xyz"));
        r.push_header("Contact", "<sip:bob@192.0.2.4>;expires=60");
        r.set_body(Bytes::from_static(b"v=0\r\n"));
        let tail = r.response_tail().expect("made by make_response");
        assert_eq!((tail.code, tail.reason, tail.to_tag), (200, "OK", Some("xyz")));
        assert!(
            tail.rest.len() < r.to_bytes().len() / 2,
            "the copied fields are most of it"
        );
        let again = Message::parse(inv.to_bytes()).unwrap();
        assert_eq!(
            again.rebuild_response(tail.code, tail.reason, tail.to_tag, &tail.rest),
            r.to_bytes()
        );
        // A request whose To already has a tag keeps it.
        let mut in_dialog = invite();
        in_dialog.set_header(Known::To, "Bob <sip:bob@example.com>;tag=abc");
        let r = in_dialog.make_response(481, "Gone", Some("ignored"));
        let tail = r.response_tail().unwrap();
        assert_eq!(
            in_dialog.rebuild_response(tail.code, tail.reason, tail.to_tag, &tail.rest),
            r.to_bytes()
        );
    }

    #[test]
    fn a_response_in_another_shape_is_not_split() {
        let inv = invite();
        let mut r = inv.make_response(200, "OK", Some("xyz"));
        r.push_header(Known::Via, "SIP/2.0/UDP late.example.com;branch=z9hG4bKlate");
        assert_eq!(r.response_tail(), None, "a Via after the other fields");
        let mut r = Message::response(200, "OK");
        r.push_header(Known::CallId, "x");
        assert_eq!(r.response_tail(), None, "fields missing");
        assert_eq!(inv.response_tail(), None, "a request");
    }

    #[test]
    fn ack_and_cancel() {
        let inv = invite();
        let resp = inv.make_response(486, "Busy Here", Some("xyz"));
        let ack = Message::parse(inv.make_ack(&resp).to_bytes()).unwrap();
        assert_eq!(ack.method().map(|m| m.as_str()), Some("ACK"));
        assert_eq!(ack.request_uri(), Some("sip:bob@example.com"));
        assert_eq!(ack.vias().count(), 1);
        assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(ack.to_header().unwrap().tag(), Some("xyz"));
        assert_eq!(ack.cseq().unwrap().seq, 314159);
        assert_eq!(ack.routes().unwrap().len(), 1);
        let cancel = Message::parse(inv.make_cancel().to_bytes()).unwrap();
        assert_eq!(cancel.cseq().unwrap().method.as_str(), "CANCEL");
        assert_eq!(cancel.to_header().unwrap().tag(), None);
    }
}

/// The fields a response copies from its request (RFC 3261 8.2.6): every
/// Via, From, To, Call-ID, CSeq. Kept with a dialog's record so any replica
/// can answer the request later.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ResponseHead {
    vias: Vec<String>,
    from: String,
    to: String,
    call_id: String,
    cseq: String,
    to_has_tag: bool,
}

impl ResponseHead {
    /// A response as [`Message::make_response`] makes it (without the
    /// Timestamp of a 100, which only the transaction sends).
    pub fn response(&self, code: u16, reason: &str, to_tag: Option<&str>) -> Message {
        let fields =
            [&self.from, &self.to, &self.call_id, &self.cseq].map(|v| Some(v.as_str()).filter(|v| !v.is_empty()));
        let mut resp = respond(
            code,
            reason,
            self.vias.iter().map(String::as_str),
            fields,
            to_tag.filter(|_| !self.to_has_tag),
        );
        resp.push_header(Known::ContentLength, "0");
        resp
    }
}

/// A final response split into what a retransmission of its request gives
/// again (every Via, From, To, Call-ID and CSeq: RFC 3261 8.2.6.2 copies
/// them) and the rest, so a completed server transaction keeps a fraction
/// of the bytes and rebuilds the same response with
/// [`Message::rebuild_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseTail<'a> {
    pub code: u16,
    pub reason: &'a str,
    /// The To tag the response added, if any.
    pub to_tag: Option<&'a str>,
    /// Everything after the copied fields: the other fields (each ending in
    /// CRLF), the blank line and the body.
    pub rest: Vec<u8>,
}

impl Message {
    /// Splits this response as [`ResponseTail`] says. `None` when it does
    /// not begin with the copied fields in the order
    /// [`Message::make_response`] writes them (or repeats one later): keep
    /// such a response whole.
    pub fn response_tail(&self) -> Option<ResponseTail<'_>> {
        let code = self.status()?;
        if self.version() != "SIP/2.0" {
            return None;
        }
        let entries = &self.entries;
        let mut i = entries.iter().take_while(|e| e.known == Some(Known::Via)).count();
        for k in [Known::From, Known::To, Known::CallId, Known::CSeq] {
            if entries.get(i)?.known != Some(k) {
                return None;
            }
            i += 1;
        }
        let copied = |e: &crate::message::Entry| {
            matches!(
                e.known,
                Some(Known::Via | Known::From | Known::To | Known::CallId | Known::CSeq)
            )
        };
        if entries[i..].iter().any(copied) {
            return None;
        }
        let mut rest = Vec::with_capacity(32 * (entries.len() - i) + 2 + self.body.len());
        self.write_fields(&entries[i..], &mut rest);
        rest.extend_from_slice(b"\r\n");
        rest.extend_from_slice(&self.body);
        Some(ResponseTail {
            code,
            reason: self.reason().unwrap_or_default(),
            to_tag: self.to_header().ok().and_then(|t| t.tag()),
            rest,
        })
    }

    /// The response a [`ResponseTail`] was split from, for this request (a
    /// retransmission of the one it answered): this request's copied
    /// fields, then `rest`.
    pub fn rebuild_response(&self, code: u16, reason: &str, to_tag: Option<&str>, rest: &[u8]) -> Vec<u8> {
        let has_tag = self.to_header().map(|t| t.tag().is_some()).unwrap_or(true);
        let head = respond(
            code,
            reason,
            self.known_fields(Known::Via),
            [Known::From, Known::To, Known::CallId, Known::CSeq].map(|k| self.known_header(k)),
            to_tag.filter(|_| !has_tag),
        );
        let mut out = Vec::with_capacity(head.head.len() + 64 * head.entries.len() + rest.len());
        head.write_to(&mut out);
        // `head` has no body: drop its blank line, `rest` brings its own.
        out.truncate(out.len() - 2);
        out.extend_from_slice(rest);
        out
    }
}

/// A response with the copied fields: Vias, then From, To (with `to_tag`
/// added, never on 100), Call-ID and CSeq.
fn respond<'a>(
    code: u16,
    reason: &str,
    vias: impl Iterator<Item = &'a str>,
    [from, to, call_id, cseq]: [Option<&str>; 4],
    to_tag: Option<&str>,
) -> Message {
    let mut resp = Message::response(code, reason);
    for via in vias {
        resp.push_header(Known::Via, via);
    }
    if let Some(from) = from {
        resp.push_header(Known::From, from);
    }
    if let Some(to) = to {
        match to_tag {
            Some(tag) if code > 100 => resp.push_header(Known::To, &format!("{to};tag={tag}")),
            _ => resp.push_header(Known::To, to),
        }
    }
    for (known, value) in [(Known::CallId, call_id), (Known::CSeq, cseq)] {
        if let Some(v) = value {
            resp.push_header(known, v);
        }
    }
    resp
}
