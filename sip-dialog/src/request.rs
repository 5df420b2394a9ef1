//! Requests inside a dialog and where they go (RFC 3261 12.2.1.1,
//! 13.2.2.4 for the ACK of a 2xx).

use sip_message::typed::MAX_CSEQ;
use sip_message::{Known, Message, Method, Uri};

use crate::dialog::Dialog;
use crate::header::{uri_of, with_tag};

/// URI parameters a Request-URI may not carry (RFC 3261 19.1.1, table 1,
/// column "Req.-URI"); URI headers (`?...`) are always dropped too. Every
/// other parameter (`maddr`, `transport`, `ttl`, `lr`, ...) is allowed
/// there and kept: a strict router may need them to recognise its URI.
const NOT_IN_REQUEST_URI: &[&str] = &["method"];

/// URI parameters a Route value may not carry (same table, column
/// "dialog Contact/R-R/Route"); headers dropped too.
const NOT_IN_ROUTE: &[&str] = &["method", "ttl"];

impl Dialog {
    /// 12.2.1.1: the next request in the dialog, with its own new CSeq
    /// number: `local_cseq` plus one. CSeq numbers stay below 2^31 (RFC
    /// 3261 8.1.1.5): at 2^31 - 1 the number stays there.
    ///
    /// Request-URI and Route: empty route set -> R-URI = remote target, no
    /// Route; first route a loose router (`lr`) -> R-URI = remote target,
    /// Route = route set; first route a strict router (no `lr`) -> R-URI =
    /// its URI, Route = the rest of the route set followed by `<remote
    /// target>`. URIs moved into the Request-URI or a Route lose their
    /// headers and the parameters not allowed there by RFC 3261 19.1.1
    /// table 1: `method` (and in a Route, `ttl`); `maddr`, `transport` and
    /// the rest stay. A first route whose URI cannot be read counts as loose.
    /// While the remote target is unknown (Calling, or Early after a
    /// provisional without Contact) the remote URI stands in for it.
    ///
    /// Headers: Max-Forwards: 70, Route, From = local_uri;tag=local_tag,
    /// To = remote_uri;tag=remote_tag (no tag while it is unknown),
    /// Call-ID, CSeq `<n> <METHOD>`. No Contact, no Via, no body: the
    /// caller adds those, and the transaction layer Content-Length.
    ///
    /// The state is not checked: a Terminated dialog still builds the BYE
    /// that ends a 2xx which crossed our CANCEL.
    ///
    /// ACK and CANCEL belong to an earlier request and reuse the number of
    /// our last request instead of taking one; prefer [`Dialog::ack`], and
    /// `Message::make_cancel` on the request being cancelled.
    pub fn request(&mut self, method: Method) -> Message {
        let seq = match method {
            Method::Ack | Method::Cancel => self.local_cseq,
            _ => {
                self.local_cseq = self.local_cseq.saturating_add(1).min(MAX_CSEQ);
                self.local_cseq
            }
        };
        self.build(method, seq)
    }

    /// The ACK of a 2xx to the INVITE whose CSeq number was `invite_cseq` (13.2.2.4): same
    /// routing and headers as [`Dialog::request`], CSeq `<invite_cseq> ACK`, local_cseq unchanged.
    pub fn ack(&self, invite_cseq: u32) -> Message {
        self.build(Method::Ack, invite_cseq)
    }

    fn build(&self, method: Method, seq: u32) -> Message {
        let target = self.target();
        let strict = self.route_set.first().and_then(|first| strict_route_uri(first));
        let mut m = Message::request(method.clone(), &clean_uri(strict.unwrap_or(target), NOT_IN_REQUEST_URI));
        m.push_header(Known::MaxForwards, "70");
        let skip = usize::from(strict.is_some());
        for route in self.route_set.iter().skip(skip) {
            m.push_header(Known::Route, route);
        }
        if strict.is_some() {
            m.push_header(Known::Route, &format!("<{}>", clean_uri(target, NOT_IN_ROUTE)));
        }
        m.push_header(Known::From, &with_tag(&self.local_uri, &self.local_tag));
        m.push_header(Known::To, &with_tag(&self.remote_uri, &self.remote_tag));
        m.push_header(Known::CallId, &self.call_id);
        m.push_header(Known::CSeq, &format!("{seq} {method}"));
        m
    }

    /// The remote target, or the remote URI while the target is unknown.
    fn target(&self) -> &str {
        if self.remote_target.is_empty() {
            uri_of(&self.remote_uri).unwrap_or(&self.remote_uri)
        } else {
            &self.remote_target
        }
    }
}

/// The URI of a route that is a strict router: a SIP or SIPS URI without
/// `lr` (RFC 3261 16.4, 19.1.1).
fn strict_route_uri(route: &str) -> Option<&str> {
    let uri = uri_of(route)?;
    match Uri::parse(uri) {
        Ok(Uri::Sip(sip)) if !sip.params.contains("lr") => Some(uri),
        _ => None,
    }
}

/// A SIP or SIPS URI without the parameters named in `drop` and without
/// headers; any other URI as it is.
fn clean_uri(uri: &str, drop: &[&str]) -> String {
    let Ok(Uri::Sip(sip)) = Uri::parse(uri) else {
        return uri.to_owned();
    };
    // Host and port end at the first ';' or '?' after the last '@', as the
    // parser reads them.
    let host_start = uri.rfind('@').map_or(0, |at| at + 1);
    let end = uri[host_start..].find([';', '?']).map_or(uri.len(), |i| host_start + i);
    let mut out = uri[..end].to_owned();
    for param in sip.params.as_str().split(';') {
        let name = param.split('=').next().unwrap_or_default();
        if param.is_empty() || drop.iter().any(|d| name.eq_ignore_ascii_case(d)) {
            continue;
        }
        out.push(';');
        out.push_str(param);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{INVITE, parse, with_headers};

    /// Bob's dialog with Alice (UAS), confirmed, with these Record-Route lines.
    fn bob(record_route: &[&str]) -> Dialog {
        let mut d = Dialog::uas(&parse(&with_headers(INVITE, record_route)), "b-tag").unwrap();
        d.confirm();
        d
    }

    fn routes(m: &Message) -> Vec<&str> {
        m.known_values(Known::Route).collect()
    }

    #[test]
    fn no_route_set() {
        let mut d = bob(&[]);
        let bye = d.request(Method::Bye);
        assert_eq!(bye.request_uri(), Some("sip:alice@pc33.atlanta.com"));
        assert!(routes(&bye).is_empty());
        assert_eq!(
            bye.known_header(Known::From),
            Some("Bob <sip:bob@biloxi.com>;tag=b-tag")
        );
        assert_eq!(
            bye.known_header(Known::To),
            Some("Alice <sip:alice@atlanta.com>;tag=1928301774")
        );
        assert_eq!(bye.known_header(Known::CallId), Some("a84b4c76e66710@pc33.atlanta.com"));
        assert_eq!(bye.known_header(Known::CSeq), Some("1 BYE"));
        assert_eq!(bye.known_header(Known::MaxForwards), Some("70"));
        assert!(!bye.has(Known::Contact) && !bye.has(Known::Via) && bye.body().is_empty());
    }

    #[test]
    fn loose_routers() {
        let mut d = bob(&["Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>"]);
        let info = d.request(Method::Info);
        assert_eq!(info.request_uri(), Some("sip:alice@pc33.atlanta.com"));
        assert_eq!(routes(&info), ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]);
    }

    #[test]
    fn strict_router_rfc_example() {
        // RFC 3261 12.2.1.1: <sip:proxy1>,<sip:proxy2>,<sip:proxy3;lr>,<sip:proxy4>.
        let mut d = Dialog::uac("c", "l", "<sip:me@here>", "<sip:user@remoteua>", 1);
        d.route_set = ["<sip:proxy1>", "<sip:proxy2>", "<sip:proxy3;lr>", "<sip:proxy4>"]
            .map(String::from)
            .into();
        d.remote_target = "sip:user@remoteua".into();
        let m = d.request(Method::Bye);
        assert_eq!(m.request_uri(), Some("sip:proxy1"));
        assert_eq!(
            routes(&m),
            ["<sip:proxy2>", "<sip:proxy3;lr>", "<sip:proxy4>", "<sip:user@remoteua>"]
        );
    }

    #[test]
    fn strict_router_uri_loses_what_a_request_uri_may_not_carry() {
        let mut d = bob(&["Record-Route: <sip:p1.example.com;transport=tcp;method=INVITE;maddr=192.0.2.9?X=y>"]);
        d.remote_target = "sip:alice@pc33.atlanta.com;ttl=5;transport=udp?Subject=hi".into();
        let m = d.request(Method::Bye);
        assert_eq!(
            m.request_uri(),
            Some("sip:p1.example.com;transport=tcp;maddr=192.0.2.9")
        );
        assert_eq!(routes(&m), ["<sip:alice@pc33.atlanta.com;transport=udp>"]);
        // Loose: the target becomes the Request-URI and keeps its ttl.
        d.route_set = vec!["<sip:p1;lr>".into()];
        let m = d.request(Method::Bye);
        assert_eq!(m.request_uri(), Some("sip:alice@pc33.atlanta.com;ttl=5;transport=udp"));
        assert_eq!(
            clean_uri("tel:+15551234;method=x", NOT_IN_ROUTE),
            "tel:+15551234;method=x"
        );
        assert_eq!(
            clean_uri("sip:u;x=1@[2001:db8::1]:5060;;lr", NOT_IN_ROUTE),
            "sip:u;x=1@[2001:db8::1]:5060;lr"
        );
    }

    #[test]
    fn cseq_counts_requests_and_ack_reuses_the_invite_number() {
        let mut d = bob(&[]);
        let reinvite = d.request(Method::Invite);
        assert_eq!(reinvite.cseq().unwrap().seq, 1);
        let ack = d.ack(1);
        assert_eq!(ack.known_header(Known::CSeq), Some("1 ACK"));
        assert_eq!(ack.request_uri(), reinvite.request_uri());
        assert_eq!(d.local_cseq(), 1);
        assert_eq!(d.request(Method::Update).cseq().unwrap().seq, 2);
        assert_eq!(d.request(Method::Ack).known_header(Known::CSeq), Some("2 ACK"));
        assert_eq!(d.request(Method::Bye).cseq().unwrap().seq, 3);
        assert_eq!(d.local_cseq(), 3);
        d.local_cseq = MAX_CSEQ;
        assert_eq!(d.request(Method::Bye).cseq().unwrap().seq, MAX_CSEQ);
    }

    #[test]
    fn built_requests_parse_back() {
        let mut d = bob(&["Record-Route: <sip:p1.example.com>, <sip:p2.example.com;lr>"]);
        for mut m in [
            d.request(Method::Bye),
            d.ack(7),
            d.request(Method::Extension("FOO".into())),
        ] {
            m.prepend_header(Known::Via, "SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKx");
            let back = Message::parse(m.to_bytes()).unwrap();
            assert_eq!(back.to_bytes(), m.to_bytes());
            assert_eq!(back.from_tag(), Some("b-tag"));
            assert_eq!(back.to_tag(), Some("1928301774"));
            assert_eq!(back.routes().unwrap().len(), 2);
        }
    }

    #[test]
    fn calling_dialog_requests_go_to_the_remote_uri() {
        let mut d = Dialog::uac("c", "l", "<sip:me@here>", "Bob <sip:bob@biloxi.com>", 4);
        let m = d.request(Method::Info);
        assert_eq!(m.request_uri(), Some("sip:bob@biloxi.com"));
        assert_eq!(m.known_header(Known::To), Some("Bob <sip:bob@biloxi.com>"));
        assert_eq!(m.known_header(Known::CSeq), Some("5 INFO"));
    }
}
