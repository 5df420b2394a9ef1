// `parse`: arbitrary bytes through the SIP parser, every typed accessor,
// and the round trip: nothing may panic, and what parses must serialise
// to something that parses to the same bytes again.

use bytes::Bytes;
use sip_message::{Known, Message};

pub fn check(data: &[u8]) {
    let Ok(msg) = Message::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    let _ = msg.top_via();
    let _ = msg.vias().count();
    let _ = (msg.branch(), msg.from_tag(), msg.to_tag(), msg.call_id(), msg.cseq());
    let _ = (
        msg.from_header(),
        msg.to_header(),
        msg.contacts(),
        msg.routes(),
        msg.record_routes(),
    );
    let _ = (
        msg.max_forwards(),
        msg.expires(),
        msg.min_expires(),
        msg.content_type(),
        msg.accept(),
    );
    let _ = (
        msg.event(),
        msg.subscription_state(),
        msg.reasons(),
        msg.p_asserted_identity(),
    );
    let _ = msg.credentials(Known::Authorization);
    let _ = msg.challenges(Known::WwwAuthenticate);
    let _ = msg.tokens(Known::Require).count();
    if let Some(uri) = msg.request_uri() {
        let _ = sip_message::Uri::parse(uri);
    }
    let once = msg.to_bytes();
    let again = Message::parse(once.clone()).expect("a serialised message parses");
    assert_eq!(again.to_bytes(), once, "serialisation is idempotent");
}
