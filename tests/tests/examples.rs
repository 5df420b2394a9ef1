//! The example extensions of `examples/` in Python, Node and Go, each
//! started as its own process that registers itself with sipbus through
//! the registry API, driven with SIPp through sipbus all-in-one and split:
//! the Python screening supplement (603 for a blocked caller, X-Screened on
//! the callee's INVITE), the Python `x-status` subscription handler (its
//! body in the NOTIFY), the Node T.140 SDP handler (the text stream of an
//! audio + text offer), the Node presence-note publication handler (PIDF
//! kept, anything else refused), the Go route-tag supplement (its header on
//! the callee's INVITE). Each passes `sipbus extension-check`; `sipbus
//! extensions` lists them; one killed with SIGKILL leaves the chain after
//! its lease and joins again when it comes back.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use std::net::SocketAddr;
use std::time::Duration;

use sipbus_tests::examples::{Example, Program, extension_check, extensions, listed, wait_listing};
use sipbus_tests::{
    Background, CallSplit, Replicas, Sipbus, Watch, expect, free_port, ok, register_contact, scenario, sipp_callee_at,
    sipp_caller, temp_file,
};
use state_store::testing::RedisServer;

const TOKEN: &str = "examples-test-token-0123456789";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5", "SHA-256"]"#),
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "alice", password = "secret"}, {user = "bob", password = "secret"},
                {user = "mallory", password = "secret"}, {user = "watcher", password = "secret"}]"#,
        ),
        ("SIPBUS_SESSION__AUTHENTICATE", "false"),
        ("SIPBUS_PUBSUB__AUTHENTICATE", "false"),
        ("SIPBUS_PUBLISH__AUTHENTICATE", "false"),
        ("SIPBUS_REGISTRY__TOKEN", TOKEN),
        ("SIPBUS_REGISTRY__REFRESH_MS", "200"),
        ("SIPBUS_REGISTRY__MIN_LEASE_S", "1"),
    ]
}

/// The five examples, each registered with the service of its point.
struct Examples {
    screening: Example,
    status: Example,
    text: Example,
    note: Example,
    route: Example,
    block_list: String,
}

/// Where each point is served: all-in-one serves every one on one address.
struct Registries {
    supplement: SocketAddr,
    sdp: SocketAddr,
    subscription: SocketAddr,
    publication: SocketAddr,
}

fn start_examples(at: &Registries, lease: &str) -> anyhow::Result<Examples> {
    let block_list = temp_file(
        &format!("blocked-{}.txt", free_port()?),
        "# callers screened out\nmallory\n",
    )?;
    let block_list = block_list.to_str().unwrap().to_owned();
    let status = temp_file(&format!("status-{}.txt", free_port()?), "alice in a meeting\n")?;
    let registry = |a: SocketAddr| format!("http://{a}");
    let (sup, sdp, sub, publ) = (
        registry(at.supplement),
        registry(at.sdp),
        registry(at.subscription),
        registry(at.publication),
    );
    let common = |r: &str| -> Vec<(String, String)> {
        vec![
            ("SIPBUS_REGISTRY".into(), r.to_owned()),
            ("SIPBUS_REGISTRY_TOKEN".into(), TOKEN.into()),
            ("LEASE_SECONDS".into(), lease.into()),
        ]
    };
    let start = |p: Program, args: &[&str], r: &str| {
        let env = common(r);
        let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Example::start(p, args, &refs)
    };
    Ok(Examples {
        screening: start(Program::Python("screening.py"), &["--block-list", &block_list], &sup)?,
        status: start(
            Program::Python("status_package.py"),
            &["--status-file", status.to_str().unwrap()],
            &sub,
        )?,
        text: start(Program::Node("text-handler.js"), &[], &sdp)?,
        note: start(Program::Node("presence-note.js"), &[], &publ)?,
        route: start(Program::Go("route-tag"), &[], &sup)?,
        block_list,
    })
}

/// call_uac / call_uas with a T.140 text stream after the audio one.
fn with_text(name: &str, port: u16, caller: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(scenario(name))?;
    let marker = "a=fmtp:101 0-16\n      a=sendrecv";
    anyhow::ensure!(text.contains(marker), "{name} changed: no SDP marker");
    let text = text
        .replacen(
            marker,
            &format!("{marker}\n      m=text {port} RTP/AVP 98\n      a=rtpmap:98 t140/1000"),
            1,
        )
        .replace("sip:alice@", &format!("sip:{caller}@"));
    let file = temp_file(&format!("{caller}-{name}-{}", free_port()?), &text)?;
    Ok(file.to_str().unwrap().to_owned())
}

/// A call from `caller` to bob with audio and text: the callee's INVITE
/// and the caller's 200 as they arrived.
fn text_call(server: SocketAddr, caller: &str, logs: &dyn Fn() -> String) -> anyhow::Result<(String, String)> {
    let port = free_port()?;
    register_contact(server, "bob", port)?;
    let callee_trace = temp_file(&format!("ex-uas-{port}.msg"), "")?;
    let caller_trace = temp_file(&format!("ex-uac-{port}.msg"), "")?;
    let b = sipp_callee_at(
        &with_text("call_uas.xml", 11002, caller)?,
        port,
        &["-trace_msg", "-message_file", callee_trace.to_str().unwrap()],
    );
    let a = sipp_caller(
        server,
        &with_text("call_uac.xml", 11000, caller)?,
        "bob",
        "example.com",
        &["-trace_msg", "-message_file", caller_trace.to_str().unwrap()],
    )?;
    ok(&a, "caller", logs);
    ok(&b.finish()?, "callee", logs);
    let callee = std::fs::read_to_string(callee_trace)?;
    let caller = std::fs::read_to_string(caller_trace)?;
    anyhow::ensure!(
        callee.contains("INVITE sip:"),
        "no INVITE in the callee's trace: {callee}"
    );
    Ok((
        callee.split("INVITE sip:").nth(1).unwrap_or("").to_owned(),
        caller.split("SIP/2.0 200").nth(1).unwrap_or("").to_owned(),
    ))
}

/// A call from `caller` refused with `status`.
fn refused(server: SocketAddr, caller: &str, status: u16) -> anyhow::Result<sipbus_tests::SippResult> {
    let text = std::fs::read_to_string(scenario("call_uac_reject.xml"))?
        .replace("[status]", &status.to_string())
        .replace("sip:alice@", &format!("sip:{caller}@"));
    let file = temp_file(&format!("ex-reject-{caller}-{}.xml", free_port()?), &text)?;
    sipp_caller(server, file.to_str().unwrap(), "bob", "example.com", &[])
}

fn pidf(note: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
         entity=\"sip:alice@example.com\"><tuple id=\"t1\"><status><basic>open</basic></status>\
         <note>{note}</note></tuple></presence>"
    )
}

/// What every example does through sipbus at `server`.
fn drive(server: SocketAddr, ex: &Examples, logs: &dyn Fn() -> String) -> anyhow::Result<()> {
    // Python and Go supplements on the callee's INVITE; the Node handler
    // claims the text stream (its own port), the built-in RTP the audio.
    let (invite, answer) = text_call(server, "alice", logs)?;
    assert!(invite.contains("X-Screened: passed"), "{invite}\n{}", logs());
    assert!(invite.contains("X-Route-Tag: go"), "{invite}");
    assert!(invite.contains("m=audio "), "{invite}");
    let text_line = invite.lines().find(|l| l.starts_with("m=text")).unwrap_or("");
    assert!(
        text_line.starts_with("m=text 4") && !text_line.starts_with("m=text 0"),
        "text claimed by the Node handler on its port: {invite}\n{}",
        ex.text.log_text()
    );
    assert!(invite.contains("t140/1000"), "{invite}");
    assert!(
        answer
            .lines()
            .any(|l| l.starts_with("m=text ") && !l.starts_with("m=text 0")),
        "text answered: {answer}"
    );

    // A blocked caller gets the Python supplement's 603.
    let r = refused(server, "mallory", 603)?;
    ok(&r, "mallory refused", logs);
    assert!(
        ex.screening.log_text().contains("mallory"),
        "{}",
        ex.screening.log_text()
    );

    // The Python subscription handler's package and body.
    let w = Watch::start(server, "alice", "x-status", "text/plain", 60, 1000);
    let (r, notifies) = w.finish();
    ok(&r, "x-status watcher", logs);
    let first = notifies.first().map(|n| n.body.clone()).unwrap_or_default();
    assert_eq!(first, "sip:alice@example.com in a meeting", "{notifies:?}\n{}", logs());

    // The Node publication handler keeps PIDF and refuses what is not.
    let r = expect(
        server,
        "PUBLISH",
        "alice",
        &["Event: presence", "Expires: 60", "Content-Type: application/pidf+xml"],
        &pidf("lunch at noon"),
        200,
        "SIP-ETag",
        ".+",
    );
    ok(&r, "PIDF published", logs);
    let r = expect(
        server,
        "PUBLISH",
        "alice",
        &["Event: presence", "Expires: 60", "Content-Type: application/pidf+xml"],
        "<html><body>not presence</body></html>",
        400,
        "Via",
        ".+",
    );
    ok(&r, "not PIDF refused", logs);
    let note_log = ex.note.log_text();
    assert!(note_log.contains("lunch at noon"), "the note is kept: {note_log}");
    Ok(())
}

/// Each example passes the conformance check of its point.
fn checked(ex: &Examples) {
    for (point, e, extra) in [
        ("supplement", &ex.screening, vec![]),
        ("supplement", &ex.route, vec![]),
        (
            "subscription",
            &ex.status,
            vec!["--filter", "x-status", "--content-type", "text/plain"],
        ),
        ("sdp", &ex.text, vec!["--filter", "text"]),
        ("publication", &ex.note, vec![]),
    ] {
        let (code, out) = extension_check(point, &e.address, &extra);
        assert_eq!(code, Some(0), "{} fails extension-check:\n{out}", e.name);
    }
}

#[test]
fn examples_in_python_node_and_go_all_in_one() -> anyhow::Result<()> {
    let sipbus = Sipbus::start("all", &env())?;
    let logs = || sipbus.log_text();
    let here = Registries {
        supplement: sipbus.grpc,
        sdp: sipbus.grpc,
        subscription: sipbus.grpc,
        publication: sipbus.grpc,
    };
    let mut ex = start_examples(&here, "4")?;
    let listing = wait_listing(sipbus.grpc, TOKEN, "all five listed", |l| {
        ["screening", "route-tag", "t140", "x-status", "presence-note"]
            .iter()
            .all(|n| listed(l, n).is_some_and(|c| c[1] == "registered"))
    })?;
    // Built-in, and registered next to them, with what they asked for.
    for (name, filters, types) in [
        ("screening", "INVITE", "-"),
        ("route-tag", "INVITE", "-"),
        ("t140", "text", "-"),
        ("x-status", "x-status", "text/plain"),
        ("presence-note", "presence", "application/pidf+xml"),
    ] {
        let c = listed(&listing, name).unwrap();
        assert_eq!((c[4].as_str(), c[12].as_str()), (filters, types), "{listing}");
        assert_eq!(c[7], "open", "{listing}");
    }
    for builtin in ["caller-id", "reason", "rtp", "dialog", "message-summary"] {
        assert!(
            listed(&listing, builtin).is_some_and(|c| c[1] == "built-in"),
            "{listing}"
        );
    }
    // The registered presence handler serves presence in place of the
    // default built-in while it is live.
    let presence_rows: Vec<String> = listing
        .lines()
        .filter(|l| l.contains(" presence "))
        .map(str::to_owned)
        .collect();
    assert!(presence_rows.iter().any(|l| l.contains("presence-note")), "{listing}");

    drive(sipbus.sip, &ex, &logs)?;
    checked(&ex);
    let listing = extensions(sipbus.grpc, TOKEN, Some("supplement"));
    let calls: u64 = listed(&listing, "screening").unwrap()[9].parse()?;
    assert!(calls >= 2, "calls counted: {listing}");

    // SIGKILL: the screening supplement leaves the chain after its lease,
    // a call started before goes on; restarted, it joins new calls again.
    let port = free_port()?;
    register_contact(sipbus.sip, "bob", port)?;
    let held = Background::start(
        sipbus_tests::sipp_args(
            sipbus.sip,
            &sipbus_tests::scenario_path("call_uac.xml"),
            "bob",
            &["-d", "4000"],
        ),
        Duration::from_secs(50),
    );
    let held_trace = temp_file(&format!("ex-held-{port}.msg"), "")?;
    let callee = sipbus_tests::sipp_callee(
        "call_uas.xml",
        port,
        &["-trace_msg", "-message_file", held_trace.to_str().unwrap()],
    );
    // Killed once the call has begun with it (its INVITE screened).
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&held_trace)?.contains("X-Screened: passed") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the held call was not screened\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ex.screening.kill()?;
    wait_listing(sipbus.grpc, TOKEN, "screening lapsed", |l| {
        listed(l, "screening").is_some_and(|c| c[8] == "lapsed")
    })?;
    ok(&held.finish()?, "call held across the lapse", &logs);
    ok(&callee.finish()?, "its callee", &logs);
    let (invite, _) = text_call(sipbus.sip, "alice", &logs)?;
    assert!(!invite.contains("X-Screened"), "lapsed: not called: {invite}");
    assert!(invite.contains("X-Route-Tag: go"), "{invite}");
    ex.screening = Example::start(
        Program::Python("screening.py"),
        &["--block-list", &ex.block_list],
        &[
            ("SIPBUS_REGISTRY", &format!("http://{}", sipbus.grpc)),
            ("SIPBUS_REGISTRY_TOKEN", TOKEN),
        ],
    )?;
    let (invite, _) = text_call(sipbus.sip, "alice", &logs)?;
    assert!(invite.contains("X-Screened: passed"), "back: {invite}\n{}", logs());

    // Paused past its lease, the Go supplement lapses; resumed, its renewal
    // is refused (NOT_FOUND) and it registers again by itself.
    ex.route.forget_output();
    ex.route.pause(true)?;
    wait_listing(sipbus.grpc, TOKEN, "route-tag lapsed while paused", |l| {
        listed(l, "route-tag").is_some_and(|c| c[8] == "lapsed")
    })?;
    ex.route.pause(false)?;
    ex.route.wait_registered(Duration::from_secs(15))?;
    let (invite, _) = text_call(sipbus.sip, "alice", &logs)?;
    assert!(invite.contains("X-Route-Tag: go"), "registered again: {invite}");

    // SIGTERM: each deregisters and exits 0.
    let Examples {
        screening,
        status,
        text,
        note,
        route,
        ..
    } = ex;
    for e in [screening, status, text, note, route] {
        let name = e.name.clone();
        assert_eq!(e.stop()?, Some(0), "{name} on SIGTERM");
    }
    let listing = extensions(sipbus.grpc, TOKEN, None);
    for name in ["screening", "route-tag", "t140", "x-status", "presence-note"] {
        assert_eq!(
            listed(&listing, name).unwrap()[8],
            "lapsed",
            "{name} deregistered:\n{listing}"
        );
    }
    Ok(())
}

#[test]
fn examples_in_split_mode_with_two_session_replicas() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let split = CallSplit::start_with(
        &redis.url(),
        &env(),
        Replicas {
            sessions: 2,
            sdps: 1,
            pubsubs: 1,
            publishes: 1,
        },
    )?;
    let logs = || split.logs();
    let at = Registries {
        supplement: split.sessions[0].grpc,
        sdp: split.sdps[0].grpc,
        subscription: split.pubsubs[0].grpc,
        publication: split.publishes[0].grpc,
    };
    let ex = start_examples(&at, "10")?;
    // Registered with one session-svc replica, seen by both.
    for s in &split.sessions {
        wait_listing(s.grpc, TOKEN, "both supplements on every session replica", |l| {
            listed(l, "screening").is_some() && listed(l, "route-tag").is_some()
        })?;
    }
    // A registry answers for its own points only.
    let other = extensions(split.sdps[0].grpc, TOKEN, Some("supplement"));
    assert!(other.contains("has no session-supplement point"), "{other}");
    // Calls land on either session replica: both carry the supplements.
    for _ in 0..2 {
        drive(split.edge.sip, &ex, &logs)?;
    }
    // Calls landed on both session replicas...
    for (i, s) in split.sessions.iter().enumerate() {
        let log = s.log_text();
        assert!(
            log.contains("call answered") || log.contains("call refused"),
            "session-svc {i} took no call:\n{log}"
        );
    }
    // ... and either replica's listing counts the supplement's calls of
    // both (each shares its minute through the store).
    let calls_on = |i: usize| -> u64 {
        let listing = extensions(split.sessions[i].grpc, TOKEN, Some("supplement"));
        listed(&listing, "screening").map_or(0, |c| c[9].parse().unwrap_or(0))
    };
    let start = std::time::Instant::now();
    while calls_on(0) != calls_on(1) || calls_on(0) < 16 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "listings disagree: {} vs {} calls",
            calls_on(0),
            calls_on(1)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Each example's own tests (its calls and registration against a fake
/// registry in its language's test tooling), so what an author copies
/// keeps working.
#[test]
fn each_example_passes_its_own_tests() -> anyhow::Result<()> {
    let dir = sipbus_tests::examples::examples_dir();
    for (what, mut cmd) in [
        ("python", {
            let mut c = std::process::Command::new(dir.join("python").join("run.sh"));
            c.arg("smoke_test.py");
            c
        }),
        ("node", {
            let mut c = std::process::Command::new("node");
            c.arg(dir.join("node").join("smoke_test.js"));
            c
        }),
        ("go", {
            let mut c = std::process::Command::new(dir.join("go").join("build.sh"));
            c.arg("test");
            c
        }),
    ] {
        let out = cmd.output()?;
        assert!(
            out.status.success(),
            "{what} example tests:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
