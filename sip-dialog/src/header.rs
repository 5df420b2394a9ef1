//! The header values a dialog keeps: From / To without their tags, the
//! remote target from Contact, the route set from Record-Route.

use sip_message::text::{split_top_level, trim_ws};
use sip_message::typed::NameAddr;
use sip_message::{Known, Message};

use crate::error::DialogError;

/// A header value (name-addr or addr-spec with parameters) without its `tag`
/// parameter. A `tag` inside a bracketed URI is not a header tag.
///
/// Header parameters follow the closing `>` of a name-addr, or the first
/// `;` of an addr-spec (RFC 3261 20.10); quoted strings are skipped, so a
/// display name holding `<` or `;` changes nothing.
pub fn without_tag(value: &str) -> String {
    let mut parts = split_top_level(trim_ws(value), b';').map(trim_ws);
    let mut out = parts.next().unwrap_or_default().to_owned();
    for param in parts {
        let name = trim_ws(param.split('=').next().unwrap_or_default());
        if param.is_empty() || name.eq_ignore_ascii_case("tag") {
            continue;
        }
        out.push(';');
        out.push_str(param);
    }
    out
}

/// `value;tag=tag`, or `value` alone while the tag is unknown.
pub(crate) fn with_tag(value: &str, tag: &str) -> String {
    if tag.is_empty() {
        value.to_owned()
    } else {
        format!("{value};tag={tag}")
    }
}

/// The URI of the first Contact of a message (a remote target), None when there is none.
/// Contact `*` and an unparsable first Contact count as none.
pub fn first_contact(message: &Message) -> Option<String> {
    contact_uri(message).ok().map(str::to_owned)
}

/// The URI of the first Contact, or why there is none to use.
pub(crate) fn contact_uri(message: &Message) -> Result<&str, DialogError> {
    let first = message.known_values(Known::Contact).next();
    match first {
        None | Some("*") => Err(DialogError::MissingContact),
        Some(value) => NameAddr::parse(value)
            .map(|addr| addr.uri_text)
            .map_err(|_| DialogError::BadHeader("Contact")),
    }
}

/// Every Record-Route value of a message, in order (12.1.1, 12.1.2), each
/// in name-addr form: the grammar allows nothing else, but a bare URI is
/// wrapped in `<>` so that all its parameters (`lr` among them) stay URI
/// parameters.
pub(crate) fn record_routes(message: &Message) -> Result<Vec<String>, DialogError> {
    const BAD: DialogError = DialogError::BadHeader("Record-Route");
    message
        .known_values(Known::RecordRoute)
        .map(|value| {
            let addr = NameAddr::parse(value).map_err(|_| BAD)?;
            if addr.display.is_some() || value.starts_with('<') {
                return Ok(value.to_owned());
            }
            let wrapped = format!("<{value}>");
            NameAddr::parse(&wrapped).map_err(|_| BAD)?;
            Ok(wrapped)
        })
        .collect()
}

/// The URI of a name-addr (a route), when it parses.
pub(crate) fn uri_of(name_addr: &str) -> Option<&str> {
    NameAddr::parse(name_addr).ok().map(|addr| addr.uri_text)
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

    #[test]
    fn quoted_text_and_odd_spellings() {
        assert_eq!(
            without_tag("\"a;tag=1 <b>\" <sip:a@x> ; TAG = 7 ;x=\"q;tag=2\""),
            "\"a;tag=1 <b>\" <sip:a@x>;x=\"q;tag=2\""
        );
        assert_eq!(without_tag("  Bob <sip:b@y>;tag  "), "Bob <sip:b@y>");
        assert_eq!(without_tag("<sip:unterminated;tag=1"), "<sip:unterminated;tag=1");
        assert_eq!(without_tag(""), "");
    }

    #[test]
    fn first_contact_uri() {
        let mut m = Message::request(sip_message::Method::Invite, "sip:b@y");
        assert_eq!(first_contact(&m), None);
        m.push_header(
            Known::Contact,
            "\"A\" <sip:a@192.0.2.1;transport=tcp>;expires=60, <sip:a@h2>",
        );
        assert_eq!(first_contact(&m).as_deref(), Some("sip:a@192.0.2.1;transport=tcp"));
        let mut star = Message::request(sip_message::Method::Register, "sip:y");
        star.push_header(Known::Contact, "*");
        assert_eq!(first_contact(&star), None);
        assert_eq!(contact_uri(&star), Err(DialogError::MissingContact));
        let mut bad = Message::request(sip_message::Method::Invite, "sip:y");
        bad.push_header(Known::Contact, "<sip:a@b");
        assert_eq!(contact_uri(&bad), Err(DialogError::BadHeader("Contact")));
    }

    #[test]
    fn record_routes_kept_in_order_as_name_addrs() {
        let mut m = Message::request(sip_message::Method::Invite, "sip:b@y");
        m.push_header(Known::RecordRoute, "<sip:p1;lr>, <sip:p2;lr>");
        m.push_header(Known::RecordRoute, "sip:p3;lr");
        assert_eq!(
            record_routes(&m),
            Ok(vec!["<sip:p1;lr>".into(), "<sip:p2;lr>".into(), "<sip:p3;lr>".into()])
        );
        m.push_header(Known::RecordRoute, "<sip:p4");
        assert_eq!(record_routes(&m), Err(DialogError::BadHeader("Record-Route")));
    }
}
