//! The UAS side of dialog creation (RFC 3261 12.1.1).

use sip_message::Message;

use crate::dialog::Dialog;
use crate::error::DialogError;
use crate::header::{contact_uri, record_routes, without_tag};
use crate::state::DialogState;

impl Dialog {
    /// UAS side (12.1.1), from a dialog-creating request received (INVITE, SUBSCRIBE, REFER, ...)
    /// and the tag we chose (the one our responses put in To).
    ///
    /// route_set = Record-Route values in order (every value of every
    /// Record-Route field); remote_target = URI of the first Contact;
    /// remote_cseq = the request's CSeq number; local_cseq = 0; local_uri =
    /// To value without tag; remote_uri = From value without tag; remote_tag
    /// = From tag; secure = Request-URI scheme is sips (12.1.1 also asks
    /// for TLS: the transport is the edge's knowledge, not checked here);
    /// state = Early.
    ///
    /// Errors: no From tag, no Contact (or Contact `*`), unparsable
    /// From / To / CSeq / Call-ID / Contact / Record-Route. Neither the
    /// method nor a To tag is checked: which requests create dialogs is the
    /// caller's business.
    pub fn uas(request: &Message, local_tag: &str) -> Result<Dialog, DialogError> {
        let Some(request_uri) = request.request_uri() else {
            return Err(DialogError::NotDialogCreating(request.status().unwrap_or(0)));
        };
        let call_id = call_id(request)?;
        let from = request.from_header().map_err(|_| DialogError::BadHeader("From"))?;
        let remote_tag = match from.tag() {
            Some(tag) if !tag.is_empty() => tag.to_owned(),
            _ => return Err(DialogError::MissingTag("From")),
        };
        request.to_header().map_err(|_| DialogError::BadHeader("To"))?;
        let cseq = request.cseq().map_err(|_| DialogError::BadHeader("CSeq"))?;
        let remote_target = contact_uri(request)?.to_owned();
        let route_set = record_routes(request)?;
        let header = |known| without_tag(request.known_header(known).unwrap_or_default());
        Ok(Dialog {
            call_id,
            local_tag: local_tag.to_owned(),
            remote_tag,
            local_uri: header(sip_message::Known::To),
            remote_uri: header(sip_message::Known::From),
            local_cseq: 0,
            remote_cseq: Some(cseq.seq),
            remote_target,
            route_set,
            secure: is_sips(request_uri),
            state: DialogState::Early,
        })
    }
}

/// The Call-ID, refused when empty or holding white space (RFC 3261 25.1
/// `callid = word [ "@" word ]`).
pub(crate) fn call_id(message: &Message) -> Result<String, DialogError> {
    match message.call_id() {
        Ok(id) if !id.is_empty() && !id.bytes().any(|b| b <= b' ') => Ok(id.to_owned()),
        _ => Err(DialogError::BadHeader("Call-ID")),
    }
}

fn is_sips(uri: &str) -> bool {
    uri.get(..5).is_some_and(|scheme| scheme.eq_ignore_ascii_case("sips:"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{INVITE, parse, with_headers, without_header};
    use sip_message::Known;

    #[test]
    fn dialog_from_invite() {
        let d = Dialog::uas(&parse(INVITE), "b-tag").unwrap();
        assert_eq!(d.state(), DialogState::Early);
        assert_eq!(d.call_id(), "a84b4c76e66710@pc33.atlanta.com");
        assert_eq!(d.local_tag(), "b-tag");
        assert_eq!(d.remote_tag(), "1928301774");
        assert_eq!(d.local_uri(), "Bob <sip:bob@biloxi.com>");
        assert_eq!(d.remote_uri(), "Alice <sip:alice@atlanta.com>");
        assert_eq!(d.remote_target(), "sip:alice@pc33.atlanta.com");
        assert_eq!(d.remote_cseq(), Some(314159));
        assert_eq!(d.local_cseq(), 0);
        assert!(d.route_set().is_empty());
        assert!(!d.is_secure());
    }

    #[test]
    fn route_set_keeps_record_route_order() {
        // One comma-separated field and a second field.
        let msg = with_headers(
            INVITE,
            &[
                "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
                "Record-Route: <sip:p3.example.com;lr;transport=tcp>",
            ],
        );
        let d = Dialog::uas(&parse(&msg), "b").unwrap();
        assert_eq!(
            d.route_set(),
            [
                "<sip:p1.example.com;lr>",
                "<sip:p2.example.com;lr>",
                "<sip:p3.example.com;lr;transport=tcp>"
            ]
        );
    }

    #[test]
    fn sips_request_uri_is_secure() {
        let msg = INVITE.replacen("INVITE sip:bob@biloxi.com", "INVITE sips:bob@biloxi.com", 1);
        assert!(Dialog::uas(&parse(&msg), "b").unwrap().is_secure());
    }

    #[test]
    fn refused_requests() {
        let no_tag = INVITE.replace(";tag=1928301774", "");
        assert_eq!(Dialog::uas(&parse(&no_tag), "b"), Err(DialogError::MissingTag("From")));
        let no_contact = without_header(INVITE, "Contact");
        assert_eq!(Dialog::uas(&parse(&no_contact), "b"), Err(DialogError::MissingContact));
        let star = INVITE.replace("Contact: <sip:alice@pc33.atlanta.com>", "Contact: *");
        assert_eq!(Dialog::uas(&parse(&star), "b"), Err(DialogError::MissingContact));

        let mut m = parse(INVITE);
        m.set_header(Known::CSeq, "x INVITE");
        assert_eq!(Dialog::uas(&m, "b"), Err(DialogError::BadHeader("CSeq")));
        let mut m = parse(INVITE);
        m.remove_header(Known::CallId);
        assert_eq!(Dialog::uas(&m, "b"), Err(DialogError::BadHeader("Call-ID")));
        let mut m = parse(INVITE);
        m.set_header(Known::To, "<sip:bob@biloxi.com");
        assert_eq!(Dialog::uas(&m, "b"), Err(DialogError::BadHeader("To")));
        let mut m = parse(INVITE);
        m.set_header(Known::From, "Bell, Alexander <sip:a@b>;tag=1");
        assert_eq!(Dialog::uas(&m, "b"), Err(DialogError::BadHeader("From")));
        let response = parse(INVITE).make_response(200, "OK", Some("b"));
        assert_eq!(Dialog::uas(&response, "b"), Err(DialogError::NotDialogCreating(200)));
    }
}
