//! The checks the edge makes before a request reaches any service, beyond
//! what the parser enforces: URI scheme (416), Max-Forwards (483) and
//! Require (420).

use sip_message::{Known, Message, Method, Uri};

/// A request the edge answers itself with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: u16,
    pub reason: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Rejection {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }

    /// The response to send.
    pub fn response(&self, req: &Message, to_tag: &str) -> Message {
        let mut resp = req.make_response(self.code, &self.reason, Some(to_tag));
        for (name, value) in &self.headers {
            resp.push_header(*name, value);
        }
        resp
    }
}

/// Checks a parsed, validated request against the edge's rules.
pub fn check_request(req: &Message, supported: &[String]) -> Result<(), Rejection> {
    let method = req.method().cloned().unwrap_or(Method::Options);
    match req.request_uri().map(Uri::parse) {
        Some(Ok(Uri::Sip(_) | Uri::Tel(_))) => {}
        Some(Ok(Uri::Absolute { scheme, .. })) => {
            return Err(Rejection::new(416, format!("Unsupported URI Scheme ({scheme})")));
        }
        _ => return Err(Rejection::new(400, "Bad Request (Request-URI)")),
    }
    // The edge answers OPTIONS itself, so a Max-Forwards of 0 still reaches
    // its destination; everything else would be forwarded on.
    if method != Method::Options && req.max_forwards().ok().flatten() == Some(0) {
        return Err(Rejection::new(483, "Too Many Hops"));
    }
    // RFC 3261 8.2.2.3: not for CANCEL, nor for the ACK of a non-2xx.
    if !matches!(method, Method::Cancel | Method::Ack) {
        let unsupported: Vec<&str> = req
            .tokens(Known::Require)
            .filter(|t| !supported.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unsupported.is_empty() {
            let mut r = Rejection::new(420, format!("Bad Extension ({})", unsupported.join(", ")));
            r.headers.push(("Unsupported", unsupported.join(", ")));
            return Err(r);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn req(method: &str, uri: &str, extra: &str) -> Message {
        let raw = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(raw)).unwrap()
    }

    #[test]
    fn rules() {
        assert_eq!(check_request(&req("INVITE", "sip:a@b", ""), &[]), Ok(()));
        assert_eq!(check_request(&req("INVITE", "tel:+123", ""), &[]), Ok(()));
        assert_eq!(
            check_request(&req("INVITE", "unknown:x", ""), &[]).unwrap_err().code,
            416
        );
        assert_eq!(
            check_request(&req("INVITE", "sip:a@b", "Max-Forwards: 0\r\n"), &[])
                .unwrap_err()
                .code,
            483
        );
        assert_eq!(
            check_request(&req("OPTIONS", "sip:a@b", "Max-Forwards: 0\r\n"), &[]),
            Ok(())
        );
        let r = check_request(
            &req("INVITE", "sip:a@b", "Require: nothingwecando, path\r\n"),
            &["path".into()],
        )
        .unwrap_err();
        assert_eq!(r.code, 420);
        assert_eq!(r.headers, vec![("Unsupported", "nothingwecando".to_owned())]);
        assert_eq!(
            check_request(&req("CANCEL", "sip:a@b", "Require: foo\r\n"), &[]),
            Ok(())
        );
    }
}
