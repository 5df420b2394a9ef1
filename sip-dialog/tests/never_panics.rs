//! Whatever the header values, creating and establishing dialogs (and
//! using what they make) returns, never panics.

use proptest::prelude::*;
use sip_dialog::{Dialog, first_contact, without_tag};
use sip_message::{Message, Method};

/// Any text: SIP-looking punctuation, or any string at all.
fn junk() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9<>\"\\\\;=,:@?*. \t%\\[\\]-]{0,40}", any::<String>()]
}

/// A name-addr or addr-spec, often valid, with URI parameters (`lr`,
/// `method`, `ttl`), URI headers and header parameters (`tag`, `lr`).
fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "(\"[a-z<; ]{0,5}\" |[a-z]{1,3} )?<sips?:([a-z0-9]{1,4}@)?[a-z][a-z0-9.]{0,7}(:[0-9]{1,4})?\
              (;(lr|method|ttl|x)(=[a-z0-9]{1,3})?){0,3}(\\?[a-z]=[a-z])?>(;(tag|lr|x)(=[a-z0-9\"]{0,4})?){0,3}",
        1 => "sips?:([a-z0-9]{1,4}@)?[a-z][a-z0-9.]{0,7}(;(tag|lr|x)(=[a-z0-9]{1,3})?){0,3}",
        1 => "tel:[0-9+]{1,5}|<urn:[a-z:]{1,6}>",
    ]
}

/// A value for `header`: usually plausible for it, sometimes junk.
fn value(header: &'static str) -> BoxedStrategy<String> {
    let plausible = match header {
        "From" => (address(), "[a-z0-9]{0,4}")
            .prop_map(|(a, tag)| format!("{a};tag={tag}"))
            .boxed(),
        "Contact" => prop_oneof![4 => address(), 1 => Just("*".to_owned())].boxed(),
        "Record-Route" => prop::collection::vec(address(), 0..3)
            .prop_map(|v| v.join(", "))
            .boxed(),
        "CSeq" => "[0-9]{1,11}[ \t]{1,2}[A-Z]{1,7}".boxed(),
        "Call-ID" => "[a-z0-9@.]{1,10}".boxed(),
        "Request-URI" => "sips?:[a-z0-9@.]{1,8}(;[a-z]{1,3})?".boxed(),
        _ => address().boxed(),
    };
    prop_oneof![8 => plausible, 1 => junk()].boxed()
}

/// Uses a dialog the way a caller would.
fn exercise(mut dialog: Dialog, message: &Message) {
    let _ = dialog.request(Method::Bye).to_bytes();
    let _ = dialog.request(Method::Ack);
    let _ = dialog.ack(1).to_bytes();
    let _ = dialog.matches(message);
    let _ = dialog.receive(message);
    let _ = dialog.refresh_target(message);
    let _ = dialog.request(Method::Invite).to_bytes();
    let _ = dialog.id();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn uas_never_panics(
        ruri in value("Request-URI"), from in value("From"), to in value("To"),
        contact in value("Contact"), rr1 in value("Record-Route"), rr2 in value("Record-Route"),
        cseq in value("CSeq"), call_id in value("Call-ID"),
    ) {
        let mut m = Message::request(Method::Invite, &ruri);
        m.push_header_as_spelled("From", &from);
        m.push_header_as_spelled("t", &to);
        m.push_header_as_spelled("Call-ID", &call_id);
        m.push_header_as_spelled("CSeq", &cseq);
        m.push_header_as_spelled("m", &contact);
        m.push_header_as_spelled("Record-Route", &rr1);
        m.push_header_as_spelled("RECORD-ROUTE", &rr2);
        let _ = without_tag(&from);
        let _ = first_contact(&m);
        if let Ok(dialog) = Dialog::uas(&m, "tag") {
            exercise(dialog, &m);
        }
    }

    #[test]
    fn establish_never_panics(
        status in prop_oneof![0u16..1000, 100u16..300], ours in any::<bool>(), from in value("From"),
        to in value("From"), contact in value("Contact"), rr1 in value("Record-Route"),
        rr2 in value("Record-Route"), call_id in value("Call-ID"), second in value("From"),
    ) {
        let mut dialog = Dialog::uac("call", "ours", "<sip:a@x>", "<sip:b@y>", 1);
        let mut r = Message::response(status, "Whatever");
        if ours {
            r.push_header_as_spelled("From", "<sip:a@x>;tag=ours");
            r.push_header_as_spelled("Call-ID", "call");
        } else {
            r.push_header_as_spelled("f", &from);
            r.push_header_as_spelled("i", &call_id);
        }
        r.push_header_as_spelled("To", &to);
        r.push_header_as_spelled("Contact", &contact);
        r.push_header_as_spelled("Record-Route", &rr1);
        r.push_header_as_spelled("Record-Route", &rr2);
        if dialog.establish(&r).is_ok() {
            // A later response: same or another To tag.
            let _ = dialog.establish(&r);
            r.set_header(sip_message::Known::To, &second);
            let _ = dialog.establish(&r);
            exercise(dialog, &r);
        }
    }
}
