#![allow(clippy::unwrap_used)]

//! A publication runs out on its store timer, exactly once: the composed
//! state goes, and the change is announced for pubsub-svc; a refreshed one
//! gets a new entity tag and its old tag no longer matches (412).

use std::time::Duration;

use bytes::Bytes;
use edge_api::{Flow, Transport};
use publish_svc::{PublishConfig, Publisher, RESOURCE_CHANGES};
use registrar_svc::{Directory, RegistrarConfig};
use sip_message::{Known, Message};
use state_store::Store;

fn publisher(store: &Store) -> Publisher {
    let registrar: RegistrarConfig =
        toml::from_str("domains = [\"example.com\"]\nusers = [{ user = \"alice\", password = \"secret\" }]").unwrap();
    let config = PublishConfig {
        authenticate: false,
        min_expires_s: 1,
        ..PublishConfig::default()
    };
    Publisher::new(
        config,
        store.clone(),
        Directory::from_config(&registrar, false, store),
        &Default::default(),
    )
    .unwrap()
}

fn publish(expires: u32, if_match: Option<&str>, body: &str) -> Message {
    let mut text = format!(
        "PUBLISH sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-{expires}-{}\r\n\
         From: <sip:alice@example.com>;tag=a\r\nTo: <sip:alice@example.com>\r\nCall-ID: c1\r\nCSeq: 1 PUBLISH\r\n\
         Max-Forwards: 70\r\nEvent: presence\r\nExpires: {expires}\r\n",
        body.len()
    );
    if let Some(tag) = if_match {
        text.push_str(&format!("SIP-If-Match: {tag}\r\n"));
    }
    if !body.is_empty() {
        text.push_str("Content-Type: application/pidf+xml\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    Message::parse(Bytes::from(text)).unwrap()
}

const PIDF: &str = "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:alice@example.com\"><tuple id=\"t\"><status><basic>open</basic></status></tuple></presence>";

#[tokio::test]
async fn a_publication_expires_once_and_a_refresh_replaces_its_tag() {
    let store = Store::memory();
    let p = publisher(&store);
    let flow = Flow::to(Transport::Udp, "192.0.2.1:5060".parse().unwrap());
    let ok = p.publish(&publish(1, None, PIDF), &flow).await;
    assert_eq!(ok.status(), Some(200));
    let first = ok.known_header(Known::SipEtag).unwrap().to_owned();
    // Refresh: a new tag; the old one is gone.
    let refreshed = p.publish(&publish(1, Some(&first), ""), &flow).await;
    assert_eq!(refreshed.status(), Some(200));
    let second = refreshed.known_header(Known::SipEtag).unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(
        p.publish(&publish(1, Some(&first), ""), &flow).await.status(),
        Some(412)
    );
    assert!(
        publish_svc::state::composed(&store, "presence", "sip:alice@example.com")
            .await
            .unwrap()
            .is_some()
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut fired = 0;
    for _ in 0..3 {
        fired += p.expire_due().await.unwrap();
    }
    assert_eq!(fired, 1, "one timer, fired once (the refreshed tag's)");
    assert!(
        publish_svc::state::composed(&store, "presence", "sip:alice@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        p.publish(&publish(60, Some(&second), ""), &flow).await.status(),
        Some(412)
    );
    // Initialized, then expired: two changes for pubsub-svc.
    let changes = store.read_events(RESOURCE_CHANGES, "0", 10).await.unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
}
