//! Events through sipbus with SIPp watchers, publishers and phones,
//! against all-in-one and against split mode (an edge, a registrar-svc,
//! a session-svc, three pubsub-svc and two publish-svc replicas on one
//! Redis): message-waiting from `sipbus mwi set` and from PUBLISH, presence
//! derived from registrations and composed from two publications, the busy
//! lamp during a call, fetch, expiry, NOTIFY answered 481, the refusals
//! (489 with Allow-Events, 423, 406, 404, 412, 415), and pager-mode
//! MESSAGE. Watchers log what they receive (`-trace_msg`); the tests read
//! the NOTIFYs back from those logs.
#![allow(clippy::unwrap_used)]
// Real processes on real sockets: wall-clock time is what counts here.
#![allow(clippy::disallowed_types)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use sipbus_tests::{
    Background, CallSplit, Notify, Replicas, Sipbus, Watch, expect, free_port, notifies_by_call, ok, register_contact,
    run_sipp, scenario, scenario_path, sipbus_bin, sipp_args, sipp_callee, sipp_caller,
};
use state_store::testing::RedisServer;

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        // SIPp answers the first challenge, MD5.
        ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5", "SHA-256"]"#),
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "mbox", password = "secret"}, {user = "pres", password = "secret"},
                {user = "blf", password = "secret"}, {user = "alice", password = "secret"},
                {user = "watcher", password = "secret"}, {user = "fetch", password = "secret"},
                {user = "brief", password = "secret"}, {user = "r481", password = "secret"},
                {user = "msg", password = "secret"}, {user = "gone", password = "secret"},
                {user = "desk", password = "secret"}, {user = "blfp", password = "secret"}]"#,
        ),
        ("SIPBUS_PUBSUB__UNSOLICITED_MWI", r#"["desk"]"#),
        ("SIPBUS_SESSION__AUTHENTICATE", "false"),
        ("SIPBUS_PUBSUB__AUTHENTICATE", "false"),
        ("SIPBUS_PUBLISH__AUTHENTICATE", "false"),
        // One-second subscriptions for the expiry check.
        (
            "SIPBUS_PUBSUB__PACKAGES__PRESENCE",
            "{ min_expires_s = 1, min_interval_ms = 100 }",
        ),
    ]
}

fn filled(template: &str, fields: &[(&str, &str)]) -> String {
    sipbus_tests::filled(template, fields).unwrap()
}

fn show(n: &[Notify]) -> String {
    n.iter()
        .map(|n| format!("#{} [{}]\n{}\n", n.cseq, n.state, n.body))
        .collect()
}

fn publisher(server: SocketAddr, user: &str, event: &str, ty: &str, body: &str, hold1: u32, hold2: u32) -> Background {
    let sf = filled(
        "publisher.xml",
        &[
            ("EVENT", event),
            ("TYPE", ty),
            ("BODY", body),
            ("FROM", user),
            ("HOLD1_MS", &hold1.to_string()),
            ("HOLD2_MS", &hold2.to_string()),
        ],
    );
    Background::start(sipp_args(server, &sf, user, &[]), Duration::from_secs(50))
}

fn pidf(user: &str, tuple: &str, basic: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
         entity=\"sip:{user}@example.com\"><tuple id=\"{tuple}\"><status><basic>{basic}</basic></status></tuple></presence>"
    )
}

fn refusals(server: SocketAddr, logs: &dyn Fn() -> String) {
    // (method, user, headers, body, status, header to check, its pattern)
    type Case<'a> = (&'a str, &'a str, Vec<&'a str>, &'a str, u16, &'a str, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "SUBSCRIBE",
            "pres",
            vec!["Event: nothing"],
            "",
            489,
            "Allow-Events:",
            "dialog, message-summary, presence",
        ),
        ("SUBSCRIBE", "pres", vec![], "", 489, "Allow-Events:", "presence"),
        (
            "SUBSCRIBE",
            "pres",
            vec!["Event: presence", "Expires: 0"],
            "",
            200,
            "Expires:",
            "^ *0$",
        ),
        (
            "SUBSCRIBE",
            "mbox",
            vec!["Event: message-summary", "Expires: 5"],
            "",
            423,
            "Min-Expires:",
            "60",
        ),
        (
            "SUBSCRIBE",
            "pres",
            vec!["Event: presence", "Accept: text/plain"],
            "",
            406,
            "Accept:",
            "application/pidf",
        ),
        ("SUBSCRIBE", "nobody", vec!["Event: presence"], "", 404, "To:", "nobody"),
        (
            "PUBLISH",
            "pres",
            vec!["Event: presence", "SIP-If-Match: 0123456789abcdef0123456789abcdef"],
            "",
            412,
            "To:",
            "pres",
        ),
        (
            "PUBLISH",
            "pres",
            vec!["Event: presence", "Content-Type: text/plain"],
            "hi",
            415,
            "Accept:",
            "application/pidf",
        ),
        (
            "PUBLISH",
            "pres",
            vec!["Event: bogus", "Content-Type: text/plain"],
            "hi",
            489,
            "Allow-Events:",
            "message-summary",
        ),
        (
            "PUBLISH",
            "pres",
            vec!["Event: presence", "Expires: 10", "Content-Type: application/pidf+xml"],
            "x",
            423,
            "Min-Expires:",
            "60",
        ),
        (
            "PUBLISH",
            "pres",
            vec!["Event: presence", "Content-Type: application/pidf+xml"],
            "<nope/>",
            400,
            "To:",
            "pres",
        ),
        (
            "MESSAGE",
            "nobody",
            vec!["Content-Type: text/plain"],
            "hi",
            404,
            "To:",
            "nobody",
        ),
        (
            "MESSAGE",
            "gone",
            vec!["Content-Type: text/plain"],
            "hi",
            480,
            "To:",
            "gone",
        ),
    ];
    for (method, user, headers, body, status, header, re) in cases {
        let r = expect(server, method, user, &headers, body, status, header, re);
        ok(&r, &format!("{method} {user} {headers:?} -> {status}"), logs);
    }
}

fn mwi(server: SocketAddr, grpc: SocketAddr, logs: &dyn Fn() -> String) {
    let w = Watch::start(
        server,
        "mbox",
        "message-summary",
        "application/simple-message-summary",
        600,
        2500,
    );
    let out = Command::new(sipbus_bin().unwrap())
        .args(["mwi", "set", "mbox", "--new", "2", "--old", "1", "--server"])
        .arg(format!("http://{grpc}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sipbus mwi set: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sip:mbox@example.com"));
    std::thread::sleep(Duration::from_millis(600));
    let p = publisher(
        server,
        "mbox",
        "message-summary",
        "application/simple-message-summary",
        "Messages-Waiting: yes\nVoice-Message: 5/0 (1/0)",
        400,
        400,
    );
    ok(&p.finish().unwrap(), "message-summary publisher", logs);
    let (r, n) = w.finish();
    ok(&r, "mwi watcher", logs);
    let pos = |needle: &str| n.iter().position(|x| x.body.contains(needle));
    assert!(n[0].body.contains("Messages-Waiting: no"), "{}", show(&n));
    let api = pos("Voice-Message: 2/1").unwrap_or_else(|| panic!("no 2/1: {}", show(&n)));
    let published = pos("5/0 (1/0)").unwrap_or_else(|| panic!("no 5/0: {}", show(&n)));
    assert!(api < published, "{}", show(&n));
    // Removing the publication leaves the state set through the API.
    assert!(n[published..].iter().any(|x| x.body.contains("2/1")), "{}", show(&n));
    assert!(n.last().unwrap().state.starts_with("terminated"), "{}", show(&n));
    assert_eq!(n.iter().filter(|x| x.state.starts_with("terminated")).count(), 1);
    // Clear it for the next run against the same store.
    let out = Command::new(sipbus_bin().unwrap())
        .args(["mwi", "clear", "mbox", "--server"])
        .arg(format!("http://{grpc}"))
        .output()
        .unwrap();
    assert!(out.status.success());
}

fn presence(server: SocketAddr, logs: &dyn Fn() -> String) {
    let w = Watch::start(server, "pres", "presence", "application/pidf+xml", 600, 2500);
    // A binding: derived "open".
    register_contact(server, "pres", free_port().unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // Two devices publish; their tuples are composed into one document.
    let desk = publisher(
        server,
        "pres",
        "presence",
        "application/pidf+xml",
        &pidf("pres", "desk", "open"),
        1500,
        300,
    );
    std::thread::sleep(Duration::from_millis(400));
    let mobile = publisher(
        server,
        "pres",
        "presence",
        "application/pidf+xml",
        &pidf("pres", "mobile", "closed"),
        300,
        300,
    );
    ok(&mobile.finish().unwrap(), "mobile publisher", logs);
    ok(&desk.finish().unwrap(), "desk publisher", logs);
    let (r, n) = w.finish();
    ok(&r, "presence watcher", logs);
    let closed_first = n[0].body.contains("<basic>closed</basic>") && !n[0].body.contains("desk");
    assert!(closed_first, "no binding yet: closed\n{}", show(&n));
    let derived_open = n
        .iter()
        .position(|x| x.body.contains("<basic>open</basic>") && x.body.contains("sipbus"));
    let both = n
        .iter()
        .position(|x| x.body.contains("\"desk\"") && x.body.contains("\"mobile\""));
    assert!(derived_open.is_some() && both.is_some(), "{}", show(&n));
    assert!(derived_open < both, "{}", show(&n));
    // Both removed: derived from the binding again.
    let after = &n[both.unwrap()..];
    assert!(
        after
            .iter()
            .any(|x| x.body.contains("tuple id=\"sipbus\"") && x.body.contains("open")),
        "{}",
        show(&n)
    );
}

fn blf(server: SocketAddr, logs: &dyn Fn() -> String) {
    let w = Watch::start(server, "blf", "dialog", "application/dialog-info+xml", 600, 2500);
    // A call of a second, so the lamp has a confirmed state to show.
    let port = free_port().unwrap();
    register_contact(server, "blf", port).unwrap();
    let b = sipp_callee("call_uas.xml", port, &[]);
    let a = sipp_caller(
        server,
        &scenario_path("call_uac.xml"),
        "blf",
        "example.com",
        &["-d", "1000"],
    )
    .unwrap();
    let b = b.finish().unwrap();
    ok(&a, "blf caller", logs);
    ok(&b, "blf callee", logs);
    let (r, n) = w.finish();
    ok(&r, "blf watcher", logs);
    let confirmed = n.iter().position(|x| x.body.contains(">confirmed</state>"));
    let terminated = n.iter().position(|x| x.body.contains(">terminated</state>"));
    assert!(
        confirmed.is_some() && terminated.is_some() && confirmed < terminated,
        "{}",
        show(&n)
    );
    assert!(
        n[confirmed.unwrap()].body.contains("sip:alice@example.com"),
        "{}",
        show(&n)
    );
    // version counts the NOTIFYs of the subscription.
    for (i, x) in n.iter().filter(|x| !x.body.is_empty()).enumerate() {
        assert!(x.body.contains(&format!("version=\"{i}\"")), "{}", show(&n));
    }
}

/// A caller that asks for privacy (RFC 3323 Privacy: id) is not named on
/// the callee's lamp.
fn blf_private(server: SocketAddr, logs: &dyn Fn() -> String) {
    let w = Watch::start(server, "blfp", "dialog", "application/dialog-info+xml", 600, 2500);
    let port = free_port().unwrap();
    register_contact(server, "blfp", port).unwrap();
    let b = sipp_callee("call_uas.xml", port, &[]);
    let text = std::fs::read_to_string(scenario("call_uac.xml")).unwrap().replacen(
        "Max-Forwards: 70",
        "Privacy: id\n      Max-Forwards: 70",
        1,
    );
    let private = filled_text("call_uac_private.xml", &text);
    let a = sipp_caller(server, &private, "blfp", "example.com", &["-d", "1000"]).unwrap();
    ok(&a, "private caller", logs);
    ok(&b.finish().unwrap(), "callee of the private caller", logs);
    let (r, n) = w.finish();
    ok(&r, "lamp of the private call", logs);
    assert!(n.iter().any(|x| x.body.contains(">confirmed</state>")), "{}", show(&n));
    assert!(!n.iter().any(|x| x.body.contains("sip:alice@")), "{}", show(&n));
}

fn filled_text(name: &str, text: &str) -> String {
    let file = sipbus_tests::temp_file(&format!("{name}-{}", free_port().unwrap()), text).unwrap();
    file.to_str().unwrap().to_owned()
}

fn fetch_expiry_and_481(server: SocketAddr, logs: &dyn Fn() -> String) {
    let w = Watch::start(server, "fetch", "presence", "application/pidf+xml", 0, 10_000);
    let (r, n) = w.finish();
    ok(&r, "fetch", logs);
    assert_eq!(n.len(), 1, "{}", show(&n));
    assert!(
        n[0].state.starts_with("terminated") && n[0].body.contains("<presence"),
        "{}",
        show(&n)
    );

    let w = Watch::start(server, "brief", "presence", "application/pidf+xml", 1, 10_000);
    let (r, n) = w.finish();
    ok(&r, "one-second subscription", logs);
    let ends: Vec<&Notify> = n.iter().filter(|x| x.state.starts_with("terminated")).collect();
    assert_eq!(ends.len(), 1, "{}", show(&n));
    assert_eq!(ends[0].state, "terminated;reason=timeout", "{}", show(&n));

    let a = sipp_args(server, scenario("subscriber_481.xml").to_str().unwrap(), "r481", &[]);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    ok(
        &run_sipp(&refs, Duration::from_secs(50)).unwrap(),
        "NOTIFY answered 481",
        logs,
    );

    let a = sipp_args(server, scenario("subscriber_retry.xml").to_str().unwrap(), "r481", &[]);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    ok(
        &run_sipp(&refs, Duration::from_secs(50)).unwrap(),
        "NOTIFY answered 500 with Retry-After",
        logs,
    );
}

fn pager(server: SocketAddr, logs: &dyn Fn() -> String) {
    let port = free_port().unwrap();
    register_contact(server, "msg", port).unwrap();
    let phone = sipp_callee("message_uas.xml", port, &[]);
    let r = expect(
        server,
        "MESSAGE",
        "msg",
        &["Content-Type: text/plain"],
        "hello from sipbus",
        200,
        "To:",
        "tag=",
    );
    ok(&r, "MESSAGE to a registered user", logs);
    ok(&phone.finish().unwrap(), "MESSAGE recipient", logs);
}

/// A phone listed for unsolicited MWI gets its mailbox's NOTIFYs without
/// subscribing.
fn unsolicited_mwi(server: SocketAddr, grpc: SocketAddr, logs: &dyn Fn() -> String) {
    let port = free_port().unwrap();
    register_contact(server, "desk", port).unwrap();
    let log = std::env::temp_dir().join(format!("desk-{port}.log"));
    let log_text = log.to_str().unwrap().to_owned();
    // Up to ten NOTIFYs (one on registering, one per change), for 4 s.
    let phone = Background::start(
        [
            "-sf",
            &scenario_path("mwi_phone.xml"),
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            "10",
            "-timeout",
            "4s",
            "-trace_msg",
            "-message_file",
            &log_text,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new(sipbus_bin().unwrap())
        .args(["mwi", "set", "desk", "--new", "3", "--server"])
        .arg(format!("http://{grpc}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // It runs out its 4 s: its exit status says nothing here.
    let _ = phone.finish().unwrap();
    let seen = notifies_by_call(&std::fs::read_to_string(&log).unwrap_or_default());
    assert!(
        seen.values().flatten().any(|n| n.body.contains("Voice-Message: 3/0")),
        "no unsolicited NOTIFY with the new count: {seen:?}\n{}",
        logs()
    );
}

fn battery(server: SocketAddr, grpc: SocketAddr, logs: &dyn Fn() -> String) {
    refusals(server, logs);
    mwi(server, grpc, logs);
    presence(server, logs);
    blf(server, logs);
    blf_private(server, logs);
    fetch_expiry_and_481(server, logs);
    pager(server, logs);
    unsolicited_mwi(server, grpc, logs);
}

/// Watchers and publishers prove who they are; the authorization policy
/// and the publishing rule then apply to the authenticated user.
#[test]
fn events_need_credentials() {
    let env: Vec<(&str, &str)> = env()
        .into_iter()
        .filter(|(k, _)| {
            !k.ends_with("PUBSUB__AUTHENTICATE")
                && !k.ends_with("PUBLISH__AUTHENTICATE")
                && !k.ends_with("SESSION__AUTHENTICATE")
        })
        .collect();
    let sipbus = Sipbus::start("all", &env).unwrap();
    let server = sipbus.sip;
    let presence = ["Event: presence", "Expires: 0"];
    let mwi = ["Event: message-summary", "Expires: 0"];
    let pidf_alice = pidf("alice", "t", "open");
    let pidf_other = pidf("pres", "t", "open");
    let publish = ["Event: presence", "Content-Type: application/pidf+xml"];
    let cases: Vec<(&str, &str, &[&str], &str, u16)> = vec![
        ("SUBSCRIBE", "pres", &presence, "", 200),
        // message-summary: only one's own mailbox.
        ("SUBSCRIBE", "mbox", &mwi, "", 403),
        ("SUBSCRIBE", "alice", &mwi, "", 200),
        // One publishes one's own state only.
        ("PUBLISH", "pres", &publish, &pidf_other, 403),
        ("PUBLISH", "alice", &publish, &pidf_alice, 200),
        ("MESSAGE", "gone", &["Content-Type: text/plain"], "hi", 480),
    ];
    for (method, user, headers, body, status) in cases {
        let headers: Vec<String> = headers.iter().map(|h| format!("      {h}")).collect();
        let sf = filled(
            "auth_request_status.xml",
            &[
                ("METHOD", method),
                ("FROM", "alice"),
                ("HEADERS", &headers.join("\n")),
                ("BODY", body),
                ("STATUS", &status.to_string()),
            ],
        );
        // SIPp digests `sip:<remote address>` unless told the Request-URI.
        let uri = format!("{user}@example.com");
        let a = sipp_args(server, &sf, user, &["-au", "alice", "-ap", "secret", "-auth_uri", &uri]);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let r = run_sipp(&refs, Duration::from_secs(50)).unwrap();
        ok(&r, &format!("{method} {user} as alice -> {status}"), &|| {
            sipbus.log_text()
        });
    }
}

#[test]
fn events_all_in_one() {
    let sipbus = Sipbus::start("all", &env()).unwrap();
    battery(sipbus.sip, sipbus.grpc, &|| sipbus.log_text());
}

#[test]
fn events_split_with_three_pubsub_replicas() {
    let redis = RedisServer::start().unwrap();
    let split = CallSplit::start_with(
        &redis.url(),
        &env(),
        Replicas {
            sessions: 1,
            sdps: 1,
            pubsubs: 3,
            publishes: 2,
        },
    )
    .unwrap();
    let grpc = split.publishes[1].grpc;
    battery(split.edge.sip, grpc, &|| split.logs());
}

/// The subscriber role against a SIPp notifier: sipbus subscribes to the
/// voicemail server with the configured credentials (401 answered), hands
/// its NOTIFY's counts to local watchers of the mailbox, and subscribes
/// again when the notifier ends the subscription.
#[test]
fn subscriber_role_brings_an_external_mailbox_to_local_watchers() {
    let vm_port = free_port().unwrap();
    let upstream = format!(
        r#"[{{package = "message-summary", resource = "mbox", target = "sip:mbox@vm.example.com", outbound = "sip:127.0.0.1:{vm_port}", username = "vm", password = "vm-secret", retry_s = 1}}]"#
    );
    let mut env = env();
    env.push(("SIPBUS_PUBSUB__UPSTREAM", upstream.as_str()));
    // The notifier exists before sipbus subscribes.
    let vm = sipp_callee("notifier.xml", vm_port, &["-m", "2"]);
    let sipbus = Sipbus::start("all", &env).unwrap();
    let server = sipbus.sip;
    let w = Watch::start(
        server,
        "mbox",
        "message-summary",
        "application/simple-message-summary",
        600,
        3000,
    );
    let notifier = vm.finish().unwrap();
    ok(&notifier, "SIPp notifier", &|| sipbus.log_text());
    let (r, n) = w.finish();
    ok(&r, "watcher of the upstream mailbox", &|| sipbus.log_text());
    let first = n.iter().position(|x| x.body.contains("Voice-Message: 1/4"));
    let second = n.iter().position(|x| x.body.contains("Voice-Message: 2/4"));
    assert!(first.is_some() && second.is_some() && first < second, "{}", show(&n));
}
