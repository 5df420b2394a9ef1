//! Refusals: a request answered with an error. Every service forms its SIP
//! errors here, through named constructors that fix the status, the reason
//! phrase and the header fields that must go with them, so the same
//! failure gets the same answer wherever it happens (a store failure is
//! always 503 with Retry-After, a 423 always carries Min-Expires).

use std::borrow::Cow;

use bytes::Bytes;

use crate::message::Message;
use crate::name::{HeaderName, Known};

/// An error response waiting for the request it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    code: u16,
    reason: Cow<'static, str>,
    headers: Vec<(HeaderName, String)>,
    /// Usually empty; an external module may give its refusal a body (its
    /// Content-Type among the headers).
    body: Bytes,
}

/// Seconds a client is asked to wait after a failure of ours that should
/// pass (RFC 3261 20.33).
pub const RETRY_AFTER_S: u32 = 5;

/// The longest reason phrase a refusal carries.
pub const MAX_REASON: usize = 256;

/// Line breaks and control characters become spaces; the phrase is cut at
/// a character boundary below `MAX_REASON`.
fn one_line(reason: Cow<'static, str>) -> Cow<'static, str> {
    if reason.len() <= MAX_REASON && !reason.chars().any(char::is_control) {
        return reason;
    }
    let mut clean: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut cut = clean.len().min(MAX_REASON);
    while !clean.is_char_boundary(cut) {
        cut -= 1;
    }
    clean.truncate(cut);
    Cow::Owned(clean)
}

impl Refusal {
    /// A refusal with any final status from 300 to 699; anything else
    /// becomes 500, so a bad code never reaches the wire. The reason phrase
    /// is kept to one line of at most [`MAX_REASON`] bytes: it may come from
    /// another process (an external module's stop).
    pub fn new(code: u16, reason: impl Into<Cow<'static, str>>) -> Refusal {
        let (code, reason) = if (300..700).contains(&code) {
            (code, one_line(reason.into()))
        } else {
            (500, Cow::Borrowed("Server Internal Error"))
        };
        Refusal {
            code,
            reason,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Gives the response a body.
    pub fn with_body(mut self, body: Bytes) -> Refusal {
        self.body = body;
        self
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Adds a header field to the response.
    pub fn with_header(mut self, name: impl Into<HeaderName>, value: impl Into<String>) -> Refusal {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn code(&self) -> u16 {
        self.code
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    pub fn headers(&self) -> impl Iterator<Item = (&HeaderName, &str)> {
        self.headers.iter().map(|(n, v)| (n, v.as_str()))
    }

    /// The response to `request` (RFC 3261 8.2.6), with `to_tag` added when
    /// the request had none.
    pub fn response_to(&self, request: &Message, to_tag: Option<&str>) -> Message {
        let mut resp = request.make_response(self.code, &self.reason, to_tag);
        self.complete(&mut resp);
        resp
    }

    /// Adds this refusal's header fields and body to `resp`, a response
    /// with its status line built elsewhere (from a kept
    /// [`crate::ResponseHead`], say).
    pub fn complete(&self, resp: &mut Message) {
        for (name, value) in &self.headers {
            resp.push_header(name.clone(), value);
        }
        if !self.body.is_empty() {
            resp.set_body(self.body.clone());
        }
    }

    fn with_why(code: u16, phrase: &'static str, why: &str) -> Refusal {
        if why.is_empty() {
            Refusal::new(code, phrase)
        } else {
            Refusal::new(code, format!("{phrase} ({why})"))
        }
    }

    /// 400: the request lacks or garbles `what`.
    pub fn bad_request(what: &str) -> Refusal {
        Refusal::with_why(400, "Bad Request", what)
    }

    /// 403.
    pub fn forbidden(why: &str) -> Refusal {
        Refusal::with_why(403, "Forbidden", why)
    }

    /// 404.
    pub fn not_found(why: &str) -> Refusal {
        Refusal::with_why(404, "Not Found", why)
    }

    /// 408: the other side never answered.
    pub fn request_timeout() -> Refusal {
        Refusal::new(408, "Request Timeout")
    }

    /// 415 (RFC 3261 21.4.13).
    pub fn unsupported_media_type(why: &str) -> Refusal {
        Refusal::with_why(415, "Unsupported Media Type", why)
    }

    /// 416 (RFC 3261 21.4.14).
    pub fn unsupported_uri_scheme(why: &str) -> Refusal {
        Refusal::with_why(416, "Unsupported URI Scheme", why)
    }

    /// 406 with Accept (RFC 3261 21.4.7, RFC 6665 4.2.1.1): no body type
    /// the request accepts can be produced.
    pub fn not_acceptable(types: &[String]) -> Refusal {
        Refusal::new(406, "Not Acceptable").with_header(Known::Accept, types.join(", "))
    }

    /// 412 (RFC 3903 11.2.1): the entity tag names no publication.
    pub fn conditional_request_failed() -> Refusal {
        Refusal::new(412, "Conditional Request Failed")
    }

    /// 422 with Min-SE (RFC 4028 6): the session interval asked for is
    /// below what we accept.
    pub fn session_interval_too_small(min_se_s: u32) -> Refusal {
        Refusal::new(422, "Session Interval Too Small").with_header(Known::MinSe, min_se_s.to_string())
    }

    /// 423 with Min-Expires (RFC 3261 10.3, RFC 6665 4.2.1.1).
    pub fn interval_too_brief(min_s: u32) -> Refusal {
        Refusal::new(423, "Interval Too Brief").with_header(Known::MinExpires, min_s.to_string())
    }

    /// 480: nobody to ring, or nobody answered.
    pub fn temporarily_unavailable(why: &str) -> Refusal {
        Refusal::with_why(480, "Temporarily Unavailable", why)
    }

    /// 480 for a `sips:` request with no secure way to its target: RFC
    /// 5630 3.1.3 forbids a non-TLS hop, and warn-code 380 names why.
    pub fn sips_not_possible(why: &str) -> Refusal {
        Refusal::with_why(480, "Temporarily Unavailable", why)
            .with_header(crate::Known::Warning, "380 sipbus \"SIPS Not Allowed\"")
    }

    /// 481: no dialog or transaction for the request (RFC 3261 12.2.2).
    pub fn no_dialog() -> Refusal {
        Refusal::new(481, "Call/Transaction Does Not Exist")
    }

    /// 487: the request was cancelled.
    pub fn request_terminated() -> Refusal {
        Refusal::new(487, "Request Terminated")
    }

    /// 488, with a Warning (RFC 3261 20.43) when there is one.
    pub fn not_acceptable_here(why: &str, warning: Option<&str>) -> Refusal {
        let r = Refusal::with_why(488, "Not Acceptable Here", why);
        match warning {
            Some(w) => r.with_header(Known::Warning, w),
            None => r,
        }
    }

    /// 489 with Allow-Events (RFC 6665 8.3.2): an event package we do not
    /// serve.
    pub fn bad_event<S: AsRef<str>>(allowed: &[S]) -> Refusal {
        let allowed: Vec<&str> = allowed.iter().map(AsRef::as_ref).collect();
        Refusal::new(489, "Bad Event").with_header(Known::AllowEvents, allowed.join(", "))
    }

    /// 491: an offer crossed another one (RFC 3261 14.2).
    pub fn glare() -> Refusal {
        Refusal::new(491, "Request Pending")
    }

    /// 500: a request lower in CSeq than the last one of its dialog (RFC
    /// 3261 12.2.2).
    pub fn out_of_order() -> Refusal {
        Refusal::new(500, "Server Internal Error (CSeq out of order)")
    }

    /// 500 for our own failure.
    pub fn server_error(why: &str) -> Refusal {
        Refusal::with_why(500, "Server Internal Error", why)
    }

    /// 503 with Retry-After: the store did not answer. Any store failure,
    /// wherever it happens, is this answer.
    pub fn store_unavailable() -> Refusal {
        Refusal::service_unavailable("store unavailable")
    }

    /// 503 with Retry-After: something we depend on is down or overloaded.
    pub fn service_unavailable(why: &str) -> Refusal {
        Refusal::with_why(503, "Service Unavailable", why).with_header(Known::RetryAfter, RETRY_AFTER_S.to_string())
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn request() -> Message {
        let raw = "SUBSCRIBE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\nCall-ID: c\r\nCSeq: 1 SUBSCRIBE\r\n\
Content-Length: 0\r\n\r\n";
        Message::parse(Bytes::from_static(raw.as_bytes())).unwrap()
    }

    #[test]
    fn named_refusals_carry_their_headers() {
        let r = Refusal::interval_too_brief(60).response_to(&request(), Some("t"));
        assert_eq!((r.status(), r.reason()), (Some(423), Some("Interval Too Brief")));
        assert_eq!(r.known_header(Known::MinExpires), Some("60"));
        assert_eq!(r.to_tag(), Some("t"));
        let r = Refusal::bad_event(&["presence", "dialog"]).response_to(&request(), None);
        assert_eq!(r.known_header(Known::AllowEvents), Some("presence, dialog"));
        let r = Refusal::store_unavailable().response_to(&request(), None);
        assert_eq!(r.status(), Some(503));
        assert_eq!(r.known_header(Known::RetryAfter), Some("5"));
        let r = Refusal::session_interval_too_small(90).response_to(&request(), None);
        assert_eq!((r.status(), r.known_header(Known::MinSe)), (Some(422), Some("90")));
        assert_eq!(Refusal::no_dialog().code(), 481);
        assert_eq!(Refusal::glare().code(), 491);
        assert_eq!(Refusal::conditional_request_failed().code(), 412);
        assert_eq!(Refusal::bad_request("CSeq").reason(), "Bad Request (CSeq)");
        assert_eq!(Refusal::not_found("").reason(), "Not Found");
    }

    #[test]
    fn a_kept_response_head_answers_like_the_request() {
        let req = request();
        let head = req.response_head();
        for (code, tag) in [(180, Some("x")), (486, None), (100, Some("y"))] {
            assert_eq!(
                head.response(code, "R", tag).to_bytes(),
                req.make_response(code, "R", tag).to_bytes()
            );
        }
    }

    #[test]
    fn a_reason_is_one_bounded_line() {
        let r = Refusal::new(486, "Busy\r\nX-Injected: 1");
        assert_eq!(r.reason(), "Busy  X-Injected: 1");
        assert_eq!(Refusal::new(486, "é".repeat(200)).reason().len(), MAX_REASON);
    }

    #[test]
    fn a_bad_status_becomes_500() {
        assert_eq!(Refusal::new(200, "OK").code(), 500);
        assert_eq!(Refusal::new(99, "x").code(), 500);
        assert_eq!(Refusal::new(699, "x").code(), 699);
    }
}
