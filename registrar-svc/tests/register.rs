//! REGISTER processing against the embedded store: every rule of RFC 3261
//! 10.3 the SIPp tests do not reach, one request at a time.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use edge_api::{EdgeId, Flow, Transport};
use registrar_svc::config::UserConfig;
use registrar_svc::{Registrar, RegistrarConfig};
use sip_message::{Known, Message};
use state_store::Store;

fn registrar(auth: bool) -> Registrar {
    let mut config = RegistrarConfig {
        domains: vec!["example.com".into()],
        ..RegistrarConfig::default()
    };
    config.auth.enabled = auth;
    config.max_bindings = 3;
    config.users = vec![UserConfig {
        user: "alice".into(),
        domain: None,
        password: Some("secret".into()),
        ha1_md5: None,
        ha1_sha256: None,
    }];
    Registrar::new(config, Store::memory())
}

fn flow() -> Flow {
    Flow {
        local: Some("192.0.2.9:5060".parse().unwrap()),
        edge: Some(EdgeId::new("e")),
        ..Flow::to(Transport::Udp, "192.0.2.1:5060".parse().unwrap())
    }
}

fn register(call_id: &str, cseq: u32, extra: &str) -> Message {
    let raw = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{call_id}{cseq}\r\nFrom: <sip:alice@example.com>;tag=t\r\nTo: <sip:alice@example.com>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(raw)).unwrap()
}

fn contacts(resp: &Message) -> Vec<String> {
    resp.known_values(Known::Contact).map(str::to_owned).collect()
}

#[tokio::test]
async fn expiry_rules() {
    let r = registrar(false);
    let resp = r
        .register(
            &register("c1", 1, "Contact: <sip:a@192.0.2.1>\r\nExpires: 10\r\n"),
            flow(),
        )
        .await;
    assert_eq!(resp.status(), Some(423));
    assert_eq!(resp.known_header(Known::MinExpires), Some("60"));
    // The contact parameter wins over the header; above max is shortened.
    let resp = r
        .register(
            &register("c1", 2, "Contact: <sip:a@192.0.2.1>;expires=99999\r\nExpires: 10\r\n"),
            flow(),
        )
        .await;
    assert_eq!(resp.status(), Some(200));
    assert_eq!(contacts(&resp), vec!["<sip:a@192.0.2.1>;expires=7200"]);
    // No expiry anywhere: the default.
    let resp = r
        .register(&register("c1", 3, "Contact: <sip:b@192.0.2.1>\r\n"), flow())
        .await;
    assert!(
        contacts(&resp).contains(&"<sip:b@192.0.2.1>;expires=3600".to_owned()),
        "{:?}",
        contacts(&resp)
    );
    assert!(resp.known_header(Known::Date).is_some());
}

#[tokio::test]
async fn cseq_order_star_and_limits() {
    let r = registrar(false);
    assert_eq!(
        r.register(&register("c1", 5, "Contact: <sip:a@192.0.2.1>\r\n"), flow())
            .await
            .status(),
        Some(200)
    );
    // Same Call-ID, lower or equal CSeq: refused, nothing changes.
    for cseq in [4, 5] {
        let resp = r
            .register(
                &register("c1", cseq, "Contact: <sip:a@192.0.2.1>;expires=0\r\n"),
                flow(),
            )
            .await;
        assert_eq!(resp.status(), Some(500), "CSeq {cseq}");
    }
    assert_eq!(r.lookup("sip:alice@example.com").await.unwrap().len(), 1);
    // Another Call-ID may replace it whatever its CSeq.
    assert_eq!(
        r.register(&register("c2", 1, "Contact: <sip:a@192.0.2.1>;expires=120\r\n"), flow())
            .await
            .status(),
        Some(200)
    );
    // `*` needs Expires: 0 and no other contact.
    assert_eq!(
        r.register(&register("c3", 1, "Contact: *\r\n"), flow()).await.status(),
        Some(400)
    );
    assert_eq!(
        r.register(&register("c3", 2, "Contact: *, <sip:x@y>\r\nExpires: 0\r\n"), flow())
            .await
            .status(),
        Some(400)
    );
    // Bindings per AOR are bounded (3 here).
    let many = "Contact: <sip:p@192.0.2.1>, <sip:q@192.0.2.1>, <sip:r@192.0.2.1>\r\n";
    assert_eq!(r.register(&register("c4", 1, many), flow()).await.status(), Some(403));
    let resp = r
        .register(&register("c3", 3, "Contact: *\r\nExpires: 0\r\n"), flow())
        .await;
    assert_eq!(resp.status(), Some(200));
    assert!(contacts(&resp).is_empty());
    assert!(r.lookup("sip:alice@example.com").await.unwrap().is_empty());
}

#[tokio::test]
async fn instance_bindings_replace_and_path_is_kept() {
    let r = registrar(false);
    let inst = "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1";
    let first = format!("Contact: <sip:a@192.0.2.1:5060;transport=tcp>;{inst}\r\nPath: <sip:edge.example.com;lr>\r\n");
    assert_eq!(r.register(&register("c1", 1, &first), flow()).await.status(), Some(200));
    // Same instance and reg-id from a new address (the phone moved): it
    // replaces the old binding instead of adding one (RFC 5626 6).
    let moved =
        format!("Contact: <sip:a@198.51.100.7:6000;transport=tcp>;{inst}\r\nPath: <sip:edge.example.com;lr>\r\n");
    let resp = r.register(&register("c2", 1, &moved), flow()).await;
    assert_eq!(resp.status(), Some(200));
    assert_eq!(resp.known_header(Known::Path), Some("<sip:edge.example.com;lr>"));
    let b = r.lookup("sip:alice@example.com").await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].uri, "sip:a@198.51.100.7:6000;transport=tcp");
    assert_eq!(b[0].reg_id, Some(1));
    assert_eq!(b[0].path, vec!["<sip:edge.example.com;lr>"]);
    assert_eq!(b[0].flow, flow());
    // Without Supported: outbound the registrar does not claim outbound.
    assert_eq!(resp.known_header(Known::Require), None);
}

#[tokio::test]
async fn an_outbound_registration_over_websocket_is_reached_over_its_flow() {
    let r = registrar(false);
    let ws = Flow {
        connection: Some(edge_api::ConnectionId(42)),
        ..Flow {
            transport: Transport::Wss,
            ..flow()
        }
    };
    // What JsSIP sends: an .invalid host, reg-id and instance, Supported
    // outbound (RFC 5626, RFC 7118).
    let headers = "Supported: path, gruu, outbound\r\nContact: <sip:k7b3@df7jal23ls0d.invalid;transport=ws>;\
         +sip.instance=\"<urn:uuid:8c9b6c1f-55d6-4c9b-9a86-2a5b46f0b8c2>\";reg-id=1;expires=600\r\n";
    let resp = r.register(&register("ob1", 1, headers), ws.clone()).await;
    assert_eq!(resp.status(), Some(200));
    assert_eq!(resp.known_header(Known::Require), Some("outbound"));
    let b = r.lookup("sip:alice@example.com").await.unwrap();
    assert_eq!(
        b[0].reach(),
        Some(ws),
        "the .invalid contact is reached over its connection"
    );
    // Over UDP sipbus does not claim outbound: the client would send STUN
    // keep-alives the edge does not answer.
    let resp = r.register(&register("ob2", 1, headers), flow()).await;
    assert_eq!(resp.status(), Some(200));
    assert_eq!(resp.known_header(Known::Require), None);
}

#[tokio::test]
async fn domains_users_and_authentication() {
    let r = registrar(true);
    let mut other = register("c1", 1, "Contact: <sip:a@192.0.2.1>\r\n");
    other.set_request_uri("sip:elsewhere.org");
    assert_eq!(r.register(&other, flow()).await.status(), Some(404));
    // No credentials: one challenge per algorithm, SHA-256 first.
    let resp = r
        .register(&register("c1", 1, "Contact: <sip:a@192.0.2.1>\r\n"), flow())
        .await;
    assert_eq!(resp.status(), Some(401));
    let challenges: Vec<&str> = resp.known_fields(Known::WwwAuthenticate).collect();
    assert_eq!(challenges.len(), 2);
    assert!(challenges[0].contains("algorithm=SHA-256") && challenges[1].contains("algorithm=MD5"));
    // Garbage credentials for our realm: 403.
    let bad = "Contact: <sip:a@192.0.2.1>\r\nAuthorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"00\", uri=\"sip:example.com\", response=\"00\"\r\n";
    assert_eq!(r.register(&register("c1", 2, bad), flow()).await.status(), Some(403));
}

/// A REGISTER for `user` (From and To) answering `challenge` with
/// `password`.
fn answered(user: &str, call_id: &str, cseq: u32, challenge: &str, password: &str) -> Message {
    let auth = sip_auth::client::answer(challenge, "REGISTER", "sip:example.com", user, password, "cn").unwrap();
    let mut req = register(
        call_id,
        cseq,
        &format!("Contact: <sip:a@192.0.2.1>\r\nAuthorization: {auth}\r\n"),
    );
    req.set_header(Known::From, &format!("<sip:{user}@example.com>;tag=t"));
    req.set_header(Known::To, &format!("<sip:{user}@example.com>"));
    req
}

async fn challenge_for(r: &Registrar, user: &str) -> (u16, String) {
    let mut req = register("q", 1, "Contact: <sip:a@192.0.2.1>\r\n");
    req.set_header(Known::To, &format!("<sip:{user}@example.com>"));
    let resp = r.register(&req, flow()).await;
    let first = resp
        .known_fields(Known::WwwAuthenticate)
        .next()
        .unwrap_or_default()
        .to_owned();
    (resp.status().unwrap(), first)
}

#[tokio::test]
async fn unknown_users_look_like_known_ones() {
    let r = registrar(true);
    // The same challenge whether the user exists or not.
    let (alice, alice_challenge) = challenge_for(&r, "alice").await;
    let (mallory, mallory_challenge) = challenge_for(&r, "mallory").await;
    assert_eq!((alice, mallory), (401, 401));
    let shape = |c: &str| c.split("nonce=").next().unwrap().to_owned();
    assert_eq!(shape(&alice_challenge), shape(&mallory_challenge));
    // After credentials: a wrong password and an unknown user get the one
    // same answer.
    let wrong = r
        .register(&answered("alice", "w", 2, &alice_challenge, "guess"), flow())
        .await;
    let unknown = r
        .register(&answered("mallory", "u", 2, &mallory_challenge, "guess"), flow())
        .await;
    assert_eq!(wrong.status(), Some(403));
    assert_eq!((wrong.status(), wrong.reason()), (unknown.status(), unknown.reason()));
    // The right password registers.
    let ok = r
        .register(&answered("alice", "ok", 2, &alice_challenge, "secret"), flow())
        .await;
    assert_eq!(ok.status(), Some(200));
}

#[tokio::test]
async fn a_replayed_authorization_is_challenged_again() {
    let r = registrar(true);
    let (_, challenge) = challenge_for(&r, "alice").await;
    let req = answered("alice", "r1", 2, &challenge, "secret");
    assert_eq!(r.register(&req, flow()).await.status(), Some(200));
    // The same nonce and nonce count again (a captured request, sent
    // anew): not served, challenged with a fresh nonce.
    let mut again = answered("alice", "r2", 3, &challenge, "secret");
    again.set_header(Known::Contact, "<sip:attacker@203.0.113.66>");
    let resp = r.register(&again, flow()).await;
    assert_eq!(resp.status(), Some(401));
    assert!(
        resp.known_header(Known::WwwAuthenticate)
            .unwrap()
            .contains("stale=true")
    );
    let bindings = r.lookup("sip:alice@example.com").await.unwrap();
    assert_eq!(bindings.len(), 1, "the replay bound nothing");
}

#[tokio::test]
async fn guessing_locks_the_name_out() {
    let r = registrar(true);
    // The default: 10 failures in a minute lock the name out for 5.
    for i in 0..10 {
        let (_, c) = challenge_for(&r, "alice").await;
        let resp = r
            .register(&answered("alice", &format!("g{i}"), 2, &c, "guess"), flow())
            .await;
        assert_eq!(resp.status(), Some(403));
    }
    let (_, c) = challenge_for(&r, "alice").await;
    let resp = r.register(&answered("alice", "late", 2, &c, "secret"), flow()).await;
    assert_eq!(resp.status(), Some(403), "locked out, even with the password");
    // Unknown names are counted alike: a lockout tells nothing either.
    for i in 0..10 {
        let (_, c) = challenge_for(&r, "mallory").await;
        let resp = r
            .register(&answered("mallory", &format!("m{i}"), 2, &c, "guess"), flow())
            .await;
        assert_eq!(resp.status(), Some(403));
    }
}

#[tokio::test]
async fn a_lapsed_binding_removed_by_a_later_register_still_says_expired() {
    let mut config = RegistrarConfig {
        domains: vec!["example.com".into()],
        ..RegistrarConfig::default()
    };
    config.auth.enabled = false;
    config.expires.min_s = 1;
    config.users = vec![UserConfig {
        user: "alice".into(),
        domain: None,
        password: Some("x".into()),
        ha1_md5: None,
        ha1_sha256: None,
    }];
    let r = Registrar::new(config, Store::memory());
    let first = r
        .register(&register("c1", 1, "Contact: <sip:old@192.0.2.1>;expires=1\r\n"), flow())
        .await;
    assert_eq!(first.status(), Some(200));
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    // No expiry pass ran; this REGISTER rewrites the record without it.
    let second = r
        .register(&register("c2", 1, "Contact: <sip:new@192.0.2.1>\r\n"), flow())
        .await;
    assert_eq!(second.status(), Some(200));
    let events = r
        .store()
        .read_events(registrar_svc::EVENT_STREAM, "0", 10)
        .await
        .unwrap();
    let kinds: Vec<String> = events
        .iter()
        .map(|(_, p)| {
            serde_json::from_slice::<serde_json::Value>(p).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds, vec!["registered", "expired", "registered"]);
    // And the expiry worker finds nothing more to do.
    assert_eq!(r.expire_due().await.unwrap(), 0);
}
