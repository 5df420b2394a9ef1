//! pubsub-svc as a cluster (split mode, Redis): a replica killed during a
//! fan-out to 200 subscriptions loses none and every subscriber ends with
//! the final state; every pubsub-svc process restarted and Redis restarted
//! with persistence: subscriptions and publications go on, NOTIFY CSeqs
//! continue where they were.
#![allow(clippy::unwrap_used)]
// Real processes on real sockets: wall-clock time is what counts here.
#![allow(clippy::disallowed_types)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use sipbus_tests::{Background, CallSplit, Replicas, Sipbus, filled, free_port, notifies_by_call, sipbus_bin, sipp_to};
use state_store::testing::RedisServer;

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "fan", password = "secret"}, {user = "pres", password = "secret"}]"#,
        ),
        ("SIPBUS_PUBSUB__AUTHENTICATE", "false"),
        ("SIPBUS_PUBLISH__AUTHENTICATE", "false"),
        // A dead replica's work is taken over after 3 s (40 s by default).
        ("SIPBUS_PUBSUB__RECLAIM_AFTER_MS", "3000"),
    ]
}

/// `calls` watchers of `user`'s `event`, each unsubscribing after
/// `idle_ms` without a NOTIFY, logging into `log`.
fn watchers(server: SocketAddr, user: &str, event: &str, calls: u32, idle_ms: u32, log: &str) -> Background {
    let sf = filled(
        "subscriber.xml",
        &[
            ("EVENT", event),
            ("ACCEPT", "*/*"),
            ("EXPIRES", "600"),
            ("IDLE_MS", &idle_ms.to_string()),
            ("FROM", "watcher"),
        ],
    )
    .unwrap();
    let calls = calls.to_string();
    let args = sipp_to(
        server,
        &sf,
        user,
        &[
            "-m",
            &calls,
            "-l",
            &calls,
            "-r",
            "100",
            "-buff_size",
            "4194304",
            "-timeout",
            "60s",
            "-timeout_error",
            "-trace_msg",
            "-message_file",
            log,
        ],
    )
    .unwrap();
    Background::start(args, Duration::from_secs(90))
}

fn mwi_set(grpc: SocketAddr, new: u32) {
    let out = Command::new(sipbus_bin().unwrap())
        .args(["mwi", "set", "fan", "--new", &new.to_string(), "--server"])
        .arg(format!("http://{grpc}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_pubsub_replica_killed_mid_fan_out_loses_no_subscription() {
    let redis = RedisServer::start().unwrap();
    let mut split = CallSplit::start_with(
        &redis.url(),
        &env(),
        Replicas {
            sessions: 0,
            sdps: 0,
            pubsubs: 3,
            publishes: 1,
        },
    )
    .unwrap();
    let grpc = split.publishes[0].grpc;
    let log = std::env::temp_dir().join(format!("fan-out-{}.log", split.edge.sip.port()));
    let log = log.to_str().unwrap().to_owned();
    // Idle long enough to outlast the 3 s a dead replica's NOTIFYs are held.
    let w = watchers(split.edge.sip, "fan", "message-summary", 200, 10_000, &log);
    // Every watcher subscribed (100 per second) and got its first NOTIFY.
    std::thread::sleep(Duration::from_millis(3500));
    mwi_set(grpc, 1);
    mwi_set(grpc, 2);
    // Killed while the third change fans out.
    let third = std::thread::spawn(move || mwi_set(grpc, 3));
    std::thread::sleep(Duration::from_millis(30));
    split.pubsubs[0].kill().unwrap();
    third.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    mwi_set(grpc, 9);
    let r = w.finish().unwrap();
    let logs = split.logs();
    assert_eq!(
        (r.exit_code, r.failed, r.successful),
        (Some(0), 0, 200),
        "{}\n{logs}",
        r.output
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let by_call = notifies_by_call(&text);
    assert_eq!(by_call.len(), 200, "every watcher got NOTIFYs");
    let mut duplicates = 0;
    for (call, list) in &by_call {
        let last_state = list
            .iter()
            .rev()
            .find(|n| !n.state.starts_with("terminated"))
            .unwrap_or_else(|| panic!("{call}: no NOTIFY before the end: {list:?}"));
        assert!(
            last_state.body.contains("Voice-Message: 9/0"),
            "{call}: last state {:?}",
            last_state.body
        );
        assert!(list.last().unwrap().state.starts_with("terminated"), "{call}");
        duplicates += list
            .windows(2)
            .filter(|w| w[0].body == w[1].body && !w[1].state.starts_with("terminated"))
            .count();
    }
    eprintln!("fan-out with a replica killed: 200 subscriptions, {duplicates} NOTIFYs repeating the previous state");
}

#[test]
fn subscriptions_and_publications_survive_restarts() {
    let dir = std::env::temp_dir().join(format!("sipbus-events-persist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut redis = RedisServer::start_persistent(dir, free_port().unwrap()).unwrap();
    let url = redis.url();
    let mut split = CallSplit::start_with(
        &url,
        &env(),
        Replicas {
            sessions: 0,
            sdps: 0,
            pubsubs: 2,
            publishes: 1,
        },
    )
    .unwrap();
    let server = split.edge.sip;
    let log = std::env::temp_dir().join(format!("restarts-{}.log", server.port()));
    let log = log.to_str().unwrap().to_owned();
    // One watcher that unsubscribes after 8 s of silence.
    let w = watchers(server, "pres", "presence", 1, 8000, &log);
    std::thread::sleep(Duration::from_millis(500));
    // A publication that refreshes after 3 s and is removed 1 s later.
    let pidf = "<?xml version=\"1.0\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:pres@example.com\"><tuple id=\"kept\"><status><basic>open</basic></status></tuple></presence>";
    let sf = filled(
        "publisher.xml",
        &[
            ("EVENT", "presence"),
            ("TYPE", "application/pidf+xml"),
            ("BODY", pidf),
            ("FROM", "pres"),
            ("HOLD1_MS", "3000"),
            ("HOLD2_MS", "1000"),
        ],
    )
    .unwrap();
    let p = Background::start(
        sipp_to(server, &sf, "pres", &["-m", "1", "-timeout", "40s", "-timeout_error"]).unwrap(),
        Duration::from_secs(50),
    );
    std::thread::sleep(Duration::from_millis(700));
    // Every pubsub-svc process goes, new ones come on the same addresses.
    let mut env = env();
    env.push(("SIPBUS_STORE__REDIS", url.as_str()));
    let edges = format!("{{ edge1 = \"http://{}\" }}", split.edge.grpc);
    let registrar = format!("[\"http://{}\"]", split.registrar.grpc);
    env.push(("SIPBUS_BUS__EDGES", edges.as_str()));
    env.push(("SIPBUS_BUS__REGISTRAR", registrar.as_str()));
    env.push(("SIPBUS_REGISTRAR__AUTH__NONCE_KEY", "shared test key"));
    for replica in split.pubsubs.iter_mut() {
        replica.kill().unwrap();
    }
    let addresses: Vec<SocketAddr> = split.pubsubs.iter().map(|p| p.grpc).collect();
    split.pubsubs = addresses
        .into_iter()
        .map(|a| Sipbus::start_service("pubsub-svc", &env, a).unwrap())
        .collect();
    // And Redis, with its append-only file.
    redis.restart().unwrap();
    let published = p.finish().unwrap();
    let watched = w.finish().unwrap();
    let logs = split.logs();
    assert_eq!(
        (published.exit_code, published.failed),
        (Some(0), 0),
        "the publication's refresh and removal after the restarts: {}\n{logs}",
        published.output
    );
    assert_eq!(
        (watched.exit_code, watched.failed),
        (Some(0), 0),
        "the watcher's NOTIFYs and unsubscribe after the restarts: {}\n{logs}",
        watched.output
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let list = notifies_by_call(&text).into_values().next().unwrap_or_default();
    // Published, then removed (derived again), then the end: CSeqs go on
    // from where the old processes left them.
    assert!(list.iter().any(|n| n.body.contains("\"kept\"")), "{list:?}");
    // Closed, published, derived again after the removal, terminated: the
    // last two sent by the new processes.
    assert!(list.len() >= 4, "{list:?}");
    let cseqs: Vec<u32> = list.iter().map(|n| n.cseq).collect();
    assert_eq!(cseqs, (1..=cseqs.len() as u32).collect::<Vec<_>>(), "{list:?}");
    assert!(list.last().unwrap().state.starts_with("terminated"), "{list:?}");
}
