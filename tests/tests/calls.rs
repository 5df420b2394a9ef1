//! Calls through sipbus with SIPp as caller and SIPp as callee (registered
//! through the registrar), against all-in-one and against split mode (an
//! edge, a registrar-svc, two session-svc and two sdp-svc replicas on one
//! Redis): basic call, callee hang-up, busy, caller CANCEL, no answer,
//! hold and resume, 488, unknown and unregistered users, two bindings
//! ringing in parallel, and a session-svc replica killed mid-call.
#![allow(clippy::unwrap_used)]
// Real processes on real sockets: wall-clock time is what counts here.
#![allow(clippy::disallowed_types)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipbus_tests::{
    CallSplit, Sipbus, SippResult, call_pair, free_port, register_contact, register_contact_with, scenario,
    scenario_path, sipp_callee, sipp_caller, temp_file,
};
use state_store::testing::RedisServer;

/// Callee users each get their own AOR, so no test rings another's
/// leftover bindings.
pub fn call_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5", "SHA-256"]"#),
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "alice", password = "secret"}, {user = "basic", password = "secret"},
                {user = "byer", password = "secret"}, {user = "busy", password = "secret"},
                {user = "cancel", password = "secret"}, {user = "noanswer", password = "secret"},
                {user = "hold", password = "secret"}, {user = "fork", password = "secret"},
                {user = "carol", password = "secret"}, {user = "survivor", password = "secret"},
                {user = "info", password = "secret"}, {user = "tcp", password = "secret"}]"#,
        ),
        ("SIPBUS_SESSION__NO_ANSWER_S", "2"),
        // The battery's callers do not authenticate; calls_need_credentials
        // covers the 407 path.
        ("SIPBUS_SESSION__AUTHENTICATE", "false"),
    ]
}

/// The caller: one call from alice to `user` with `scenario`.
fn caller(server: SocketAddr, scenario_path: &str, user: &str, extra: &[&str]) -> anyhow::Result<SippResult> {
    sipp_caller(server, scenario_path, user, "example.com", extra)
}

fn check(r: &SippResult, what: &str, logs: &dyn Fn() -> String) {
    sipbus_tests::ok(r, what, logs);
    assert!(r.successful >= 1, "{what}: no successful call: {}", r.output);
}

/// A caller expecting `status` from sipbus.
fn refused(server: SocketAddr, user: &str, status: u16) -> anyhow::Result<SippResult> {
    let template = std::fs::read_to_string(scenario("call_uac_reject.xml"))?;
    let text = template.replace("[status]", &status.to_string());
    let file = temp_file(&format!("reject-{status}-{user}-{}.xml", server.port()), &text)?;
    caller(server, file.to_str().unwrap_or_default(), user, &[])
}

/// One call with a callee scenario and a caller scenario.
fn pair(server: SocketAddr, user: &str, uas: &str, uac: &str, logs: &dyn Fn() -> String) -> anyhow::Result<()> {
    let (a, b) = call_pair(server, user, uas, uac)?;
    check(&a, &format!("{uac} (caller)"), logs);
    check(&b, &format!("{uas} (callee)"), logs);
    Ok(())
}

fn battery(server: SocketAddr, logs: &dyn Fn() -> String) -> anyhow::Result<()> {
    pair(server, "basic", "call_uas.xml", "call_uac.xml", logs)?;
    pair(server, "byer", "call_uas_bye.xml", "call_uac_callee_bye.xml", logs)?;
    pair(server, "hold", "call_uas_hold.xml", "call_uac_hold.xml", logs)?;
    pair(server, "info", "call_uas_info.xml", "call_uac_info.xml", logs)?;

    // Over TCP: the callee registered over a connection is called over it.
    let port = free_port()?;
    register_contact_with(server, "tcp", port, &["-t", "t1"])?;
    let b = sipp_callee("call_uas.xml", port, &["-t", "t1"]);
    // Over TCP nothing retransmits an INVITE that found no listener yet.
    let listening = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            listening.elapsed() < Duration::from_secs(10),
            "the TCP callee never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    check(
        &caller(server, &scenario_path("call_uac.xml"), "tcp", &["-t", "t1"])?,
        "TCP call (caller)",
        logs,
    );
    check(&b.finish()?, "TCP call (callee)", logs);
    pair(server, "cancel", "uas_noanswer.xml", "call_uac_cancel.xml", logs)?;

    // Busy: the callee's 486 reaches the caller.
    let port = free_port()?;
    register_contact(server, "busy", port)?;
    let b = sipp_callee("uas_busy.xml", port, &[]);
    check(
        &caller(server, &scenario_path("call_uac_busy.xml"), "busy", &[])?,
        "busy (caller)",
        logs,
    );
    check(&b.finish()?, "busy (callee)", logs);

    // No answer: after session.no_answer_s the callee is cancelled and the
    // caller gets 480.
    let port = free_port()?;
    register_contact(server, "noanswer", port)?;
    let b = sipp_callee("uas_noanswer.xml", port, &[]);
    let started = Instant::now();
    check(&refused(server, "noanswer", 480)?, "no answer (caller)", logs);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "480 before the no-answer timer"
    );
    check(&b.finish()?, "no answer (callee, cancelled)", logs);

    // Refusals sipbus makes itself.
    check(&refused(server, "nobody", 404)?, "unknown user", logs);
    check(&refused(server, "carol", 480)?, "not registered", logs);
    check(
        &caller(server, &scenario_path("call_uac_488.xml"), "basic", &[])?,
        "no acceptable codec",
        logs,
    );

    // Two bindings ring in parallel; the second answers, the first is
    // cancelled with "Call completed elsewhere".
    let (p1, p2) = (free_port()?, free_port()?);
    register_contact(server, "fork", p1)?;
    register_contact(server, "fork", p2)?;
    let trace = temp_file(&format!("fork-{}.msg", server.port()), "")?;
    let trace_text = trace.to_str().unwrap_or_default().to_owned();
    let ringing = sipp_callee("uas_noanswer.xml", p1, &["-trace_msg", "-message_file", &trace_text]);
    let answering = sipp_callee("call_uas.xml", p2, &[]);
    check(
        &caller(server, &scenario_path("call_uac.xml"), "fork", &[])?,
        "fork (caller)",
        logs,
    );
    check(&answering.finish()?, "fork (answering callee)", logs);
    check(&ringing.finish()?, "fork (cancelled callee)", logs);
    let seen = std::fs::read_to_string(&trace)?;
    assert!(
        seen.contains("Reason: SIP;cause=200;text=\"Call completed elsewhere\""),
        "the losing branch's CANCEL carries Reason: {seen}"
    );
    Ok(())
}

#[test]
fn calls_all_in_one() -> anyhow::Result<()> {
    let sipbus = Sipbus::start("all", &call_env())?;
    battery(sipbus.sip, &|| sipbus.log_text())
}

#[test]
fn calls_split_over_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    // Every replica list a DNS name, as on Kubernetes (headless Services).
    let split = CallSplit::start_by_dns_names(
        &redis.url(),
        &call_env(),
        sipbus_tests::Replicas {
            sessions: 2,
            sdps: 2,
            pubsubs: 0,
            publishes: 0,
        },
    )?;
    battery(split.edge.sip, &|| split.logs())?;

    // Every leg's dialog states went to the store's event log (for BLF).
    let rt = tokio::runtime::Runtime::new()?;
    let events = rt.block_on(async {
        let store = state_store::Store::redis(&redis.url()).await?;
        store.read_events("sipbus:dialog:events", "0", 10_000).await
    })?;
    let parsed: Vec<serde_json::Value> = events
        .iter()
        .filter_map(|(_, payload)| serde_json::from_slice(payload).ok())
        .collect();
    assert_eq!(parsed.len(), events.len(), "every event is JSON");
    let basic: Vec<(String, String)> = parsed
        .iter()
        .filter(|e| {
            e["party"].as_str().is_some_and(|p| p.contains("basic"))
                || e["peer"].as_str().is_some_and(|p| p.contains("basic"))
        })
        .map(|e| {
            (
                e["leg"].as_str().unwrap_or("").to_owned(),
                e["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for wanted in [
        ("a", "trying"),
        ("a", "early"),
        ("b", "early"),
        ("a", "confirmed"),
        ("b", "confirmed"),
        ("a", "terminated"),
        ("b", "terminated"),
    ] {
        assert!(
            basic.iter().any(|(l, st)| l == wanted.0 && st == wanted.1),
            "no {wanted:?} event for the basic call: {basic:?}"
        );
    }
    let cancelled = parsed
        .iter()
        .any(|e| e["state"] == "terminated" && e["reason"] == "cancelled" && e["direction"] == "initiator");
    assert!(cancelled, "the cancelled call's caller leg ended as cancelled");
    Ok(())
}

/// The replica that set up a call is SIGKILLed while the call is up; the
/// caller's BYE, later, is handled by the other one from the store.
#[test]
fn bye_survives_the_death_of_the_replica_that_set_up_the_call() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let mut split = CallSplit::start(&redis.url(), &call_env(), 2, 2)?;
    let server = split.edge.sip;
    let port = free_port()?;
    register_contact(server, "survivor", port)?;
    let b = sipp_callee("call_uas.xml", port, &[]);
    let uac = scenario_path("call_uac.xml");
    let a = std::thread::spawn(move || caller(server, &uac, "survivor", &["-d", "4000"]));
    let start = Instant::now();
    let owner = loop {
        if let Some(i) = split
            .sessions
            .iter()
            .position(|s| s.log_text().contains("call answered"))
        {
            break i;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "call not answered:\n{}",
            split.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    split.sessions[owner].kill()?;
    let a = a.join().map_err(|_| anyhow::anyhow!("caller thread panicked"))??;
    let logs = || split.logs();
    check(&a, "caller after the kill", &logs);
    check(&b.finish()?, "callee after the kill", &logs);
    let survivor = &split.sessions[1 - owner];
    assert!(
        survivor.log_text().contains("call ended"),
        "the BYE was handled by the surviving replica:\n{}",
        split.logs()
    );
    Ok(())
}

/// With session.authenticate on (the default), a call needs the caller's
/// credentials (407, then Proxy-Authorization); bad ones get 403; and the
/// callee sees the identity the caller proved, not the From it wrote.
#[test]
fn calls_need_credentials() -> anyhow::Result<()> {
    let env: Vec<_> = call_env()
        .into_iter()
        .filter(|(k, _)| *k != "SIPBUS_SESSION__AUTHENTICATE")
        .collect();
    let sipbus = Sipbus::start("all", &env)?;
    let logs = || sipbus.log_text();
    let server = sipbus.sip;

    let port = free_port()?;
    register_contact(server, "basic", port)?;
    let trace = temp_file(&format!("auth-{}.msg", server.port()), "")?;
    let trace_text = trace.to_str().unwrap_or_default().to_owned();
    let b = sipp_callee("call_uas.xml", port, &["-trace_msg", "-message_file", &trace_text]);
    // SIPp digests `sip:<remote address>` unless told the Request-URI.
    let credentials = [
        "-key",
        "from_user",
        "mallory",
        "-au",
        "alice",
        "-ap",
        "secret",
        "-auth_uri",
        "basic@example.com",
    ];
    let a = caller(server, &scenario_path("call_uac_auth.xml"), "basic", &credentials)?;
    check(&a, "authenticated caller", &logs);
    check(&b.finish()?, "callee of the authenticated caller", &logs);
    let seen = std::fs::read_to_string(&trace)?;
    assert!(
        seen.contains("P-Asserted-Identity: <sip:alice@example.com>"),
        "the asserted identity is the authenticated user's: {seen}"
    );

    let wrong = [
        "-key",
        "from_user",
        "alice",
        "-au",
        "alice",
        "-ap",
        "wrong",
        "-auth_uri",
        "basic@example.com",
    ];
    let r = caller(server, &scenario_path("call_uac_auth_reject.xml"), "basic", &wrong)?;
    check(&r, "bad credentials get 403", &logs);
    Ok(())
}

/// Calls to a domain that is not ours: 404 by default; with
/// `session.non_local = "outbound"` they go to `session.outbound`.
#[test]
fn calls_to_other_domains() -> anyhow::Result<()> {
    let other = |domain: &str, status: u16, server: SocketAddr| -> anyhow::Result<SippResult> {
        let text = std::fs::read_to_string(scenario("call_uac_reject.xml"))?.replace("[status]", &status.to_string());
        let file = temp_file(&format!("other-{status}-{}.xml", server.port()), &text)?;
        sipp_caller(server, file.to_str().unwrap_or_default(), "dave", domain, &[])
    };
    let closed = Sipbus::start("all", &call_env())?;
    check(&other("elsewhere.example", 404, closed.sip)?, "non-local: 404", &|| {
        closed.log_text()
    });

    let gateway = free_port()?;
    let outbound = format!("sip:127.0.0.1:{gateway}");
    let mut env = call_env();
    env.push(("SIPBUS_SESSION__NON_LOCAL", "outbound"));
    env.push(("SIPBUS_SESSION__OUTBOUND", &outbound));
    let open = Sipbus::start("all", &env)?;
    let b = sipp_callee("call_uas.xml", gateway, &[]);
    let a = sipp_caller(
        open.sip,
        &scenario_path("call_uac.xml"),
        "dave",
        "elsewhere.example",
        &[],
    )?;
    check(&a, "non-local through the outbound target (caller)", &|| {
        open.log_text()
    });
    check(&b.finish()?, "the outbound target answered", &|| open.log_text());
    Ok(())
}
