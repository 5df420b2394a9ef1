//! The messages sipbus writes on a leg: requests inside a dialog, and the
//! Contact that brings the peer's next requests back through the edge.

use sip_message::{Known, Message, Method};

use edge_api::{Flow, Transport};

use crate::state::Leg;

/// sipbus's Contact on a leg: the session id as user part, so a request
/// that reaches the edge by it is easy to trace, at the edge address the
/// leg's flow uses (or the configured host).
pub fn contact(id: &str, flow: Option<&Flow>, contact_host: &str) -> String {
    let local = flow.and_then(|f| f.local).map(|l| l.to_string()).unwrap_or_default();
    let host = if contact_host.is_empty() {
        local.as_str()
    } else {
        contact_host
    };
    let tcp = flow.is_some_and(|f| f.transport == Transport::Tcp);
    let transport = if tcp { ";transport=tcp" } else { "" };
    format!("<sip:{id}@{host}{transport}>")
}

/// A header value (name-addr with parameters) without its `tag`.
pub fn without_tag(value: &str) -> String {
    // Parameters follow the closing `>`, or, without brackets, the first
    // `;` (RFC 3261 20.10); a tag inside a bracketed URI is not a header tag.
    let split = value
        .rfind('>')
        .map_or_else(|| value.find(';').unwrap_or(value.len()), |i| i + 1);
    let (head, params) = value.split_at(split);
    let kept: Vec<&str> = params
        .split(';')
        .filter(|p| {
            let p = p.trim();
            !p.is_empty() && !p.to_ascii_lowercase().starts_with("tag=")
        })
        .collect();
    let mut out = head.trim_end().to_owned();
    for p in kept {
        out.push(';');
        out.push_str(p.trim());
    }
    out
}

fn with_tag(value: &str, tag: &str) -> String {
    if tag.is_empty() {
        value.to_owned()
    } else {
        format!("{value};tag={tag}")
    }
}

/// A request sipbus sends inside the dialog of `leg` (RFC 3261 12.2.1.1).
pub fn in_dialog(leg: &Leg, method: Method, cseq: u32, contact: &str) -> Message {
    let mut m = Message::request(method.clone(), &leg.remote_target);
    for r in &leg.route_set {
        m.push_header(Known::Route, r);
    }
    m.push_header(Known::From, &with_tag(&leg.local_uri, &leg.local_tag));
    m.push_header(Known::To, &with_tag(&leg.remote_uri, &leg.remote_tag));
    m.push_header(Known::CallId, &leg.call_id);
    m.push_header(Known::CSeq, &format!("{cseq} {method}"));
    m.push_header(Known::MaxForwards, "70");
    if method != Method::Bye && method != Method::Ack {
        m.push_header(Known::Contact, contact);
    }
    m
}

/// Copies the body of `from` (with its Content-Type) onto `to`.
pub fn copy_body(from: &Message, to: &mut Message) {
    if from.body().is_empty() {
        return;
    }
    if let Some(ct) = from.known_header(Known::ContentType) {
        to.set_header(Known::ContentType, ct);
    }
    to.set_body(from.body().clone());
}

/// The URI of the first Contact (a remote target), or "" when there is
/// none.
pub fn first_contact(m: &Message) -> String {
    match m.contacts() {
        Ok(sip_message::typed::Contacts::List(l)) if !l.is_empty() => l[0].uri_text.to_owned(),
        _ => String::new(),
    }
}

/// A body as `application/sdp`.
pub fn set_sdp(m: &mut Message, sdp: &str) {
    m.set_header(Known::ContentType, "application/sdp");
    m.set_body(bytes::Bytes::from(sdp.to_owned()));
}

/// The SDP of a message, when it carries one.
pub fn sdp_of(m: &Message) -> Option<&str> {
    if m.body().is_empty() {
        return None;
    }
    let ct = m.known_header(Known::ContentType)?;
    let essence = ct.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/sdp") {
        return None;
    }
    std::str::from_utf8(m.body()).ok()
}

/// Header fields relayed from a request on one leg to the same request on
/// the other (the rest is the dialog's, or hop-by-hop).
pub const RELAYED: [&str; 9] = [
    "Event",
    "Subscription-State",
    "Refer-To",
    "Referred-By",
    "Replaces",
    "Content-Disposition",
    "Info-Package",
    "Allow-Events",
    "Supported",
];

pub fn relay_headers(from: &Message, to: &mut Message) {
    for name in RELAYED {
        let header = name.into();
        let values: Vec<String> = from.header_fields(&header).map(str::to_owned).collect();
        for v in values {
            to.push_header_as_spelled(name, &v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_removed_from_header_params_only() {
        assert_eq!(
            without_tag("\"A\" <sip:a@x;tag=u>;tag=1;foo"),
            "\"A\" <sip:a@x;tag=u>;foo"
        );
        assert_eq!(without_tag("<sip:a@x>"), "<sip:a@x>");
        assert_eq!(without_tag("sip:a@x;tag=9"), "sip:a@x");
    }
}
