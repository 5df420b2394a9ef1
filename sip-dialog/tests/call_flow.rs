//! Alice calls Bob through two record-routing proxies; both ends keep a
//! [`Dialog`] and every message crosses the wire (serialised and parsed
//! again, as RFC 3261 24.2 and 12.2 describe).

use sip_dialog::{Dialog, DialogError, DialogState};
use sip_message::{Known, Message, Method};

const CALL_ID: &str = "a84b4c76e66710@pc33.atlanta.com";
const ALICE: &str = "Alice <sip:alice@atlanta.com>";
const BOB: &str = "Bob <sip:bob@biloxi.com>";

/// Sends `m` over the wire from `host`: a Via is added, then it is
/// serialised and parsed as the next hop would.
fn wire(mut m: Message, host: &str) -> Message {
    if m.is_request() {
        m.prepend_header(
            Known::Via,
            &format!("SIP/2.0/UDP {host};branch=z9hG4bK{}", m.to_bytes().len()),
        );
    }
    match Message::parse(m.to_bytes()) {
        Ok(parsed) => parsed,
        Err(e) => panic!("{e}:\n{m}"),
    }
}

/// What the two proxies do to a request on its way to Bob: each adds its
/// Record-Route on top (only to the dialog-creating request), and each
/// removes its own Route entry (loose routing, RFC 3261 16.4).
fn through_proxies(mut m: Message, record: bool) -> Message {
    for proxy in ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"] {
        if record {
            m.prepend_header(Known::RecordRoute, proxy);
        }
        if m.known_values(Known::Route).next() == Some(proxy) {
            m.remove_top_value(Known::Route);
        }
    }
    m
}

/// Bob's response to `request`, with the Record-Route copied (12.1.1).
fn answer(request: &Message, code: u16, contact: &str) -> Message {
    let mut r = request.make_response(code, "Whatever", Some("bob-tag"));
    for rr in request.known_fields(Known::RecordRoute) {
        r.push_header(Known::RecordRoute, rr);
    }
    r.push_header(Known::Contact, contact);
    wire(r, "biloxi.com")
}

#[test]
fn alice_calls_bob() {
    // Alice's INVITE (the dialog-creating request is the caller's to build).
    let mut alice = Dialog::uac(CALL_ID, "alice-tag", ALICE, BOB, 1);
    let mut invite = Message::request(Method::Invite, "sip:bob@biloxi.com");
    invite.push_header(Known::MaxForwards, "70");
    invite.push_header(Known::From, &format!("{ALICE};tag=alice-tag"));
    invite.push_header(Known::To, BOB);
    invite.push_header(Known::CallId, CALL_ID);
    invite.push_header(Known::CSeq, "1 INVITE");
    invite.push_header(Known::Contact, "<sip:alice@pc33.atlanta.com>");
    let invite = through_proxies(wire(invite, "pc33.atlanta.com"), true);

    // Bob's side: route set as received, toward Alice.
    let mut bob = Dialog::uas(&invite, "bob-tag").unwrap();
    assert_eq!(bob.route_set(), ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]);
    assert_eq!(bob.remote_target(), "sip:alice@pc33.atlanta.com");
    assert_eq!(bob.state(), DialogState::Early);

    // 180 then 200: Alice's route set is the reverse.
    alice
        .establish(&answer(&invite, 180, "<sip:bob@ringing.biloxi.com>"))
        .unwrap();
    assert_eq!(alice.state(), DialogState::Early);
    let ok = answer(&invite, 200, "<sip:bob@192.0.2.4>");
    bob.confirm();
    alice.establish(&ok).unwrap();
    assert_eq!(alice.state(), DialogState::Confirmed);
    assert_eq!(alice.remote_target(), "sip:bob@192.0.2.4");
    assert_eq!(
        alice.route_set(),
        ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    );
    assert_eq!(alice.id().remote_tag, bob.id().local_tag);
    assert_eq!(alice.id().local_tag, bob.id().remote_tag);

    // ACK: through both proxies to Bob's target; Bob accepts it unchanged.
    let ack = through_proxies(wire(alice.ack(1), "pc33.atlanta.com"), false);
    assert_eq!(ack.request_uri(), Some("sip:bob@192.0.2.4"));
    assert_eq!(ack.known_values(Known::Route).count(), 0);
    assert!(bob.matches(&ack));
    bob.receive(&ack).unwrap();
    assert_eq!(alice.local_cseq(), 1);

    // Alice moves (re-INVITE with a new Contact): a target refresh for Bob.
    let mut reinvite = alice.request(Method::Invite);
    reinvite.push_header(Known::Contact, "<sip:alice@198.51.100.7>");
    let reinvite = through_proxies(wire(reinvite, "198.51.100.7"), false);
    assert_eq!(reinvite.cseq().unwrap().seq, 2);
    assert!(bob.matches(&reinvite));
    bob.receive(&reinvite).unwrap();
    assert!(bob.refresh_target(&reinvite));
    assert_eq!(bob.remote_cseq(), Some(2));

    // A stale request from Alice is out of order.
    let mut old = wire(
        Dialog::uac(CALL_ID, "alice-tag", ALICE, BOB, 0).request(Method::Info),
        "x",
    );
    old.set_header(Known::To, &format!("{BOB};tag=bob-tag"));
    let err = bob.receive(&old).unwrap_err();
    assert_eq!(err, DialogError::OutOfOrder { got: 1, last: 2 });
    assert_eq!(
        (err.refusal().code(), err.refusal().reason()),
        (500, "Server Internal Error (CSeq out of order)")
    );

    // Bob hangs up toward Alice's new target, along p2 then p1.
    let bye = wire(bob.request(Method::Bye), "192.0.2.4");
    assert_eq!(bye.request_uri(), Some("sip:alice@198.51.100.7"));
    assert_eq!(
        bye.known_values(Known::Route).collect::<Vec<_>>(),
        ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    );
    assert_eq!(bye.cseq().unwrap().seq, 1);
    assert!(alice.matches(&bye));
    alice.receive(&bye).unwrap();
    assert_eq!(alice.remote_cseq(), Some(1));
    alice.terminate();
    bob.terminate();
    assert_eq!(alice.state(), DialogState::Terminated);
}

#[test]
fn a_second_fork_is_a_dialog_of_its_own() {
    let mut invite = Message::request(Method::Invite, "sip:bob@biloxi.com");
    invite.push_header(Known::From, &format!("{ALICE};tag=alice-tag"));
    invite.push_header(Known::To, BOB);
    invite.push_header(Known::CallId, CALL_ID);
    invite.push_header(Known::CSeq, "1 INVITE");
    let invite = wire(invite, "pc33.atlanta.com");
    let mut first = Dialog::uac(CALL_ID, "alice-tag", ALICE, BOB, 1);
    let fresh = first.clone();
    let ringing = {
        let mut r = invite.make_response(180, "Ringing", Some("fork-1"));
        r.push_header(Known::Contact, "<sip:bob@desk>");
        r
    };
    let ok = {
        let mut r = invite.make_response(200, "OK", Some("fork-2"));
        r.push_header(Known::Contact, "<sip:bob@mobile>");
        wire(r, "mobile")
    };
    first.establish(&ringing).unwrap();
    assert_eq!(first.establish(&ok), Err(DialogError::OtherFork));
    // The caller starts the other fork's dialog from the same half.
    let mut second = fresh;
    second.establish(&ok).unwrap();
    assert_eq!(second.remote_tag(), "fork-2");
    assert_eq!(second.state(), DialogState::Confirmed);
    let ack = wire(second.ack(1), "pc33.atlanta.com");
    assert_eq!(ack.request_uri(), Some("sip:bob@mobile"));
    assert_eq!(ack.to_tag(), Some("fork-2"));
}
