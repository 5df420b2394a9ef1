#![allow(clippy::unwrap_used)]

//! One conformance suite, run against the embedded store, a real
//! redis-server (plain, and TLS-only with client certificates) and a real
//! three-node Redis Cluster (all started on free
//! loopback ports): the services may not tell the backends apart.

use std::time::Duration;

use bytes::Bytes;
use state_store::testing::{RedisCluster, RedisServer, TestCa};
use state_store::{Expect, RedisTls, Store, StoreError, now_ms};

async fn records(store: &Store, prefix: &str) {
    let key = format!("{prefix}:rec:{{a}}");
    assert_eq!(store.get(&key).await.unwrap(), None);
    let v1 = store
        .put(&key, Bytes::from_static(b"one"), Expect::Absent, None)
        .await
        .unwrap();
    let got = store.get(&key).await.unwrap().unwrap();
    assert_eq!((got.value.as_ref(), got.version), (&b"one"[..], v1));
    // Create-only fails once it exists.
    assert!(matches!(
        store.put(&key, Bytes::from_static(b"x"), Expect::Absent, None).await,
        Err(StoreError::Conflict { .. })
    ));
    // Compare-and-set: the current version wins, a stale one loses.
    let v2 = store
        .put(&key, Bytes::from_static(b"two"), Expect::Version(v1), None)
        .await
        .unwrap();
    assert!(v2 > v1);
    assert!(matches!(
        store
            .put(&key, Bytes::from_static(b"stale"), Expect::Version(v1), None)
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.get(&key).await.unwrap().unwrap().value.as_ref(), b"two");
    // Delete with a stale version fails; with the current one succeeds.
    assert!(matches!(
        store.delete(&key, Expect::Version(v1)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(store.delete(&key, Expect::Version(v2)).await.unwrap());
    assert!(!store.delete(&key, Expect::Any).await.unwrap());
    // A re-created record never reuses a version a stale writer holds.
    let v3 = store
        .put(&key, Bytes::from_static(b"again"), Expect::Absent, None)
        .await
        .unwrap();
    assert!(v3 != v1 && v3 != v2, "{v1} {v2} {v3}");
    assert!(matches!(
        store
            .put(&key, Bytes::from_static(b"aba"), Expect::Version(v1), None)
            .await,
        Err(StoreError::Conflict { .. })
    ));
    // Binary values survive.
    let all: Vec<u8> = (0..=255).collect();
    store
        .put(&key, Bytes::from(all.clone()), Expect::Any, None)
        .await
        .unwrap();
    assert_eq!(store.get(&key).await.unwrap().unwrap().value.as_ref(), &all[..]);
}

async fn ttl(store: &Store, prefix: &str) {
    let key = format!("{prefix}:ttl:{{b}}");
    store
        .put(
            &key,
            Bytes::from_static(b"short"),
            Expect::Any,
            Some(Duration::from_millis(150)),
        )
        .await
        .unwrap();
    assert!(store.get(&key).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.get(&key).await.unwrap(), None, "expired record is gone");
    // A write without TTL makes it permanent again.
    store
        .put(
            &key,
            Bytes::from_static(b"a"),
            Expect::Any,
            Some(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    store
        .put(&key, Bytes::from_static(b"b"), Expect::Any, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(store.get(&key).await.unwrap().is_some());
}

async fn timers(store: &Store, prefix: &str) {
    let now = now_ms();
    let lease = Duration::from_millis(300);
    let ids: Vec<String> = (0..40).map(|i| format!("{prefix}:timer:{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let due = if i < 30 { now - 10 } else { now + 60_000 };
        store.schedule(id, due, Bytes::from(format!("p{i}"))).await.unwrap();
    }
    // Moving a timer: the old due time no longer counts.
    store
        .schedule(&ids[0], now + 60_000, Bytes::from_static(b"moved"))
        .await
        .unwrap();
    store.cancel(&ids[1]).await.unwrap();

    // Another queue's claimer sees none of them.
    let other = format!("{prefix}-other");
    assert!(store.claim_due(&other, now, lease, 100).await.unwrap().is_empty());

    // Two claimers race: each due timer goes to exactly one of them.
    let (a, b) = tokio::join!(
        store.claim_due(prefix, now, lease, 100),
        store.claim_due(prefix, now, lease, 100)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut claimed: Vec<&str> = a.iter().chain(&b).map(|t| t.id.as_str()).collect();
    claimed.sort();
    let mut expected: Vec<&str> = ids[2..30].iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(claimed, expected, "each due timer claimed exactly once");
    let t5 = a.iter().chain(&b).find(|t| t.id == ids[5]).unwrap();
    assert_eq!(t5.payload.as_ref(), b"p5");

    // Complete all but one; the uncompleted one (its claimer "died") comes
    // back after its lease, to someone else, and only once.
    let mut kept = None;
    for t in a.iter().chain(&b) {
        if t.id == ids[7] {
            kept = Some(t.clone());
            continue;
        }
        assert!(store.complete(t).await.unwrap());
    }
    assert!(
        store.claim_due(prefix, now_ms(), lease, 100).await.unwrap().is_empty(),
        "nothing due while leased"
    );
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let again = store.claim_due(prefix, now_ms(), lease, 100).await.unwrap();
    assert_eq!(
        again.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec![ids[7].as_str()]
    );
    // The first claimer's late completion is refused: its claim was lost.
    assert!(!store.complete(&kept.unwrap()).await.unwrap());
    assert!(store.complete(&again[0]).await.unwrap());
    assert!(
        store
            .claim_due(prefix, now_ms() + 1_000, lease, 100)
            .await
            .unwrap()
            .is_empty()
    );
    for id in &ids {
        store.cancel(id).await.unwrap();
    }
}

async fn events(store: &Store, prefix: &str) {
    let stream = format!("{prefix}:events:{{e}}");
    for i in 0..3 {
        store.publish(&stream, Bytes::from(format!("ev{i}"))).await.unwrap();
    }
    // Several at once keep their order after the single ones.
    store
        .publish_many(&stream, &[Bytes::from("ev3"), Bytes::from("ev4")])
        .await
        .unwrap();
    let first = store.read_events(&stream, "0", 3).await.unwrap();
    assert_eq!(
        first.iter().map(|(_, p)| p.as_ref()).collect::<Vec<_>>(),
        vec![&b"ev0"[..], b"ev1", b"ev2"]
    );
    let rest = store.read_events(&stream, &first[2].0, 10).await.unwrap();
    assert_eq!(
        rest.iter().map(|(_, p)| p.as_ref()).collect::<Vec<_>>(),
        vec![&b"ev3"[..], b"ev4"]
    );
}

async fn consumer_groups(store: &Store, prefix: &str) {
    let stream = format!("{prefix}:changes:{{g}}");
    let reclaim = Duration::from_millis(300);
    // The group starts at the end of the log: older events are not handed out.
    store.publish(&stream, Bytes::from("old")).await.unwrap();
    assert!(
        store
            .consume(&stream, "grp", "c1", 10, reclaim)
            .await
            .unwrap()
            .is_empty()
    );
    for i in 0..4 {
        store.publish(&stream, Bytes::from(format!("ev{i}"))).await.unwrap();
    }
    let a = store.consume(&stream, "grp", "c1", 2, reclaim).await.unwrap();
    let b = store.consume(&stream, "grp", "c2", 10, reclaim).await.unwrap();
    let payloads = |v: &[(String, Bytes)]| v.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>();
    // Each event to one consumer.
    assert_eq!(payloads(&a), vec![Bytes::from("ev0"), Bytes::from("ev1")]);
    assert_eq!(payloads(&b), vec![Bytes::from("ev2"), Bytes::from("ev3")]);
    // Another group sees them all again.
    let other = store.consume(&stream, "other", "x", 10, reclaim).await.unwrap();
    assert!(other.is_empty(), "a new group starts at the end");
    store.ack(&stream, "grp", &[a[0].0.clone()]).await.unwrap();
    store
        .ack(&stream, "grp", &b.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    // c1 "dies" with ev1 unacknowledged: after the idle time c3 gets it.
    assert!(
        store
            .consume(&stream, "grp", "c3", 10, reclaim)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = store.consume(&stream, "grp", "c3", 10, reclaim).await.unwrap();
    assert_eq!(payloads(&again), vec![Bytes::from("ev1")]);
    store.ack(&stream, "grp", &[again[0].0.clone()]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        store
            .consume(&stream, "grp", "c3", 10, reclaim)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn suite(store: Store, prefix: &str) {
    records(&store, prefix).await;
    ttl(&store, prefix).await;
    timers(&store, prefix).await;
    events(&store, prefix).await;
    consumer_groups(&store, prefix).await;
}

#[tokio::test]
async fn embedded_store_conforms() {
    suite(Store::memory(), "mem").await;
}

#[tokio::test]
async fn redis_single_node_conforms() {
    let server = RedisServer::start().expect("redis-server");
    let store = Store::redis(&server.url()).await.unwrap();
    suite(store, "single").await;
}

#[tokio::test]
async fn redis_over_tls_conforms() {
    // Mutual TLS: the server wants our certificate too.
    let (server, ca, client) = RedisServer::start_tls(true).expect("redis-server with TLS");
    assert!(server.url().starts_with("rediss://"));
    let tls = RedisTls {
        ca: Some(std::fs::read(&ca.cert).unwrap()),
        client: Some((
            std::fs::read(&client.cert).unwrap(),
            std::fs::read(&client.key).unwrap(),
        )),
    };
    let store = Store::redis_with_tls(&server.url(), &tls).await.unwrap();
    suite(store, "tls").await;

    // Without our certificate, or trusting another CA, there is no store.
    let no_cert = RedisTls {
        client: None,
        ..tls.clone()
    };
    let refused = async { Store::redis_with_tls(&server.url(), &no_cert).await?.get("k").await };
    assert!(refused.await.is_err(), "a client without a certificate was served");
    let stranger = TestCa::new(&server.dir.join("stranger"), "stranger").unwrap();
    let wrong_ca = RedisTls {
        ca: Some(std::fs::read(&stranger.cert).unwrap()),
        ..tls
    };
    assert!(Store::redis_with_tls(&server.url(), &wrong_ca).await.is_err());
}

#[tokio::test]
async fn redis_cluster_conforms() {
    let cluster = RedisCluster::start().expect("redis cluster");
    let store = Store::redis(&cluster.urls()).await.unwrap();
    suite(store, "cluster").await;
}

#[tokio::test]
async fn redis_restart_with_persistence_keeps_records_and_reports_failures() {
    let mut server = RedisServer::start_persistent(
        std::env::temp_dir().join(format!("sipbus-redis-persist-{}", std::process::id())),
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(),
    )
    .unwrap();
    let store = Store::redis(&server.url()).await.unwrap();
    let v = store
        .put("persist:{p}", Bytes::from_static(b"kept"), Expect::Any, None)
        .await
        .unwrap();
    server.restart().unwrap();
    // The connection manager reconnects; a call made while it does may fail,
    // and says so, but none succeeds wrongly.
    let mut got = None;
    for _ in 0..50 {
        match store.get("persist:{p}").await {
            Ok(v) => {
                got = v;
                break;
            }
            Err(StoreError::Unavailable { .. }) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    let got = got.expect("record survives a restart of a persisting Redis");
    assert_eq!((got.value.as_ref(), got.version), (&b"kept"[..], v));
}
