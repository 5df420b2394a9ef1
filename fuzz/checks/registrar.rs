// `registrar`: a REGISTER through registrar-svc over the embedded store,
// the whole of RFC 3261 10.3 as sipbus runs it: Request-URI and To,
// Contact and Expires, q, +sip.instance and reg-id, Path, the bindings
// written and read back, digest authentication. What must hold, whatever
// the request:
// - the answer is a response that parses;
// - a 200 lists exactly the bindings the store holds, each with an expiry
//   within the configured bounds; a refusal binds nothing;
// - with authentication on, nothing gets a 2xx without credentials; with
//   the right ones, the request is answered again.

use bytes::Bytes;
use edge_api::{EdgeId, Flow, Transport};
use registrar_svc::config::UserConfig;
use registrar_svc::{Registrar, RegistrarConfig};
use sip_message::typed::{ContactParams, Contacts};
use sip_message::{Known, Message, Method};
use state_store::Store;

const MAX_BINDINGS: usize = 4;
/// The only user: an AOR of another is refused before its contacts are read.
const AORS: [&str; 2] = ["sip:alice@example.com", "sips:alice@example.com"];

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
}

pub fn check(data: &[u8]) {
    let Ok(req) = Message::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    // The edge hands registrar-svc REGISTER requests only.
    if req.method() != Some(&Method::Register) {
        return;
    }
    RUNTIME.with(|rt| rt.block_on(register(&req)));
}

async fn register(req: &Message) {
    let r = registrar(false);
    let resp = r.register(req, flow()).await;
    bindings_listed(&r, &resp, true).await;
    // The same again: a retransmission after the transaction ended, or a
    // refresh that reuses its CSeq.
    let resp = r.register(req, flow()).await;
    bindings_listed(&r, &resp, false).await;

    let r = registrar(true);
    let resp = r.register(req, flow()).await;
    let status = answered(&resp);
    assert!(!(200..300).contains(&status), "a {status} without credentials");
    if status != 401 {
        return;
    }
    let uri = req.request_uri().unwrap_or_default();
    let Some(credentials) = resp
        .known_fields(Known::WwwAuthenticate)
        .find_map(|c| sip_auth::client::answer(c, "REGISTER", uri, "alice", "secret", "0a4f113b"))
    else {
        return;
    };
    let mut retry = req.clone();
    retry.push_header(Known::Authorization, &credentials);
    let resp = r.register(&retry, flow()).await;
    answered(&resp);
}

fn registrar(auth: bool) -> Registrar {
    let mut config = RegistrarConfig {
        domains: vec!["example.com".into()],
        max_bindings: MAX_BINDINGS,
        ..RegistrarConfig::default()
    };
    config.auth.enabled = auth;
    // Nonces from a fixed key: the same input runs the same way.
    config.auth.nonce_key = "fuzz".into();
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
        local: Some(std::net::SocketAddr::from(([192, 0, 2, 9], 5060))),
        edge: Some(EdgeId::new("e")),
        ..Flow::to(Transport::Tcp, std::net::SocketAddr::from(([192, 0, 2, 1], 5060)))
    }
}

/// The response's status, once it is known to parse as written.
fn answered(resp: &Message) -> u16 {
    let status = resp.status().expect("the registrar answers with a response");
    assert!((200..700).contains(&status), "status {status}");
    let bytes = resp.to_bytes();
    if let Err(e) = Message::parse(bytes.clone()) {
        panic!(
            "the {status} does not parse ({e}):\n{}",
            String::from_utf8_lossy(&bytes)
        );
    }
    status
}

/// A 200 lists what the store holds; a refusal of the first REGISTER
/// (`fresh`) leaves the store empty.
async fn bindings_listed(r: &Registrar, resp: &Message, fresh: bool) {
    let status = answered(resp);
    let mut held = Vec::new();
    for aor in AORS {
        held.extend(r.lookup(aor).await.expect("the embedded store answers"));
    }
    assert!(held.len() <= MAX_BINDINGS, "{} bindings", held.len());
    for b in &held {
        let _ = (b.reach(), b.identity());
    }
    if status != 200 {
        assert!(!fresh || held.is_empty(), "a {status} bound {held:?}");
        return;
    }
    let listed = match resp.contacts() {
        Ok(Contacts::List(l)) => l,
        Ok(Contacts::Star) => panic!("a 200 with Contact: *"),
        Err(e) => panic!(
            "the 200's Contact does not parse ({e}): {:?}",
            resp.known_header(Known::Contact)
        ),
    };
    assert_eq!(
        listed.len(),
        held.len(),
        "the 200 lists {listed:?}, the store holds {held:?}"
    );
    for c in &listed {
        let expires = c.expires().unwrap_or_else(|| panic!("no expires in {c:?}"));
        assert!((1..=7200).contains(&expires), "expires={expires}");
    }
}
