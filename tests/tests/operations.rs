//! What an operator relies on, against the real binary: Prometheus metrics
//! that move with the calls SIPp places (and pass `promtool check
//! metrics`), `/livez` and `/readyz`, gRPC health, and a drain on SIGTERM
//! that loses no call, for an edge and for a session-svc replica under
//! SIPp load in split mode.
#![allow(clippy::unwrap_used)]
// Real processes on real sockets: wall-clock time is what counts here.
#![allow(clippy::disallowed_types)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use sipbus_tests::{
    CallSplit, Sipbus, free_port, http_get, register_contact, run_sipp, sample, scenario_path, sipp_callee_many,
    sipp_callers,
};
use state_store::testing::RedisServer;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        // SIPp answers MD5 challenges only.
        ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5", "SHA-256"]"#),
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "alice", password = "secret"}, {user = "bob", password = "secret"}]"#,
        ),
        ("SIPBUS_SESSION__AUTHENTICATE", "false"),
    ]
}

fn scrape(admin: SocketAddr) -> String {
    let (code, body) = http_get(admin, "/metrics").unwrap();
    assert_eq!(code, 200, "{body}");
    body
}

fn promtool_check(exposition: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test.sh installs it)");
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn grpc_health(addr: SocketAddr) -> anyhow::Result<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await?;
    Ok(reply.into_inner().status())
}

#[test]
fn metrics_move_with_the_calls_and_pass_promtool() -> anyhow::Result<()> {
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let admin_text = admin.to_string();
    let mut all = env();
    all.push(("SIPBUS_ADMIN__LISTEN", &admin_text));
    let sipbus = Sipbus::start("all", &all)?;
    let before = scrape(admin);
    assert_eq!(sample(&before, "sipbus_calls_started_total"), Some(0.0), "{before}");

    const CALLS: u32 = 20;
    let port = free_port()?;
    register_contact(sipbus.sip, "bob", port)?;
    let b = sipp_callee_many(port, CALLS, Duration::from_secs(70));
    let a = sipp_callers(sipbus.sip, "bob", CALLS, 10, 200).finish()?;
    let b = b.finish()?;
    assert_eq!(
        a.successful,
        u64::from(CALLS),
        "callers: {}\n{}",
        a.output,
        sipbus.log_text()
    );
    assert_eq!(b.successful, u64::from(CALLS), "callee: {}", b.output);

    let after = scrape(admin);
    let n = f64::from(CALLS);
    assert_eq!(sample(&after, "sipbus_calls_started_total"), Some(n), "{after}");
    assert_eq!(sample(&after, "sipbus_calls_ended_total"), Some(n), "{after}");
    // The callers' INVITEs and BYEs (retransmissions are counted apart).
    for method in ["INVITE", "BYE"] {
        let series = format!("sipbus_sip_requests_received_total{{method=\"{method}\",transport=\"UDP\"}}");
        assert_eq!(sample(&after, &series), Some(n), "{series}\n{after}");
    }
    // INVITEs sent to the callee, and its 200s.
    assert_eq!(
        sample(&after, "sipbus_sip_requests_sent_total{method=\"INVITE\"}"),
        Some(n),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "sipbus_sip_responses_received_total{method=\"INVITE\",code=\"200\"}"
        ),
        Some(n),
        "{after}"
    );
    assert!(
        sample(
            &after,
            "sipbus_sip_responses_sent_total{method=\"REGISTER\",code=\"200\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "{after}"
    );
    // The store counts bindings every 5 s.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let now = scrape(admin);
        if sample(&now, "sipbus_registrations") == Some(1.0) {
            promtool_check(&now);
            break;
        }
        assert!(Instant::now() < deadline, "registrations gauge never 1:\n{now}");
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_grpc_health_follow_a_drain() -> anyhow::Result<()> {
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let admin_text = admin.to_string();
    let mut all = env();
    all.push(("SIPBUS_ADMIN__LISTEN", &admin_text));
    all.push(("SIPBUS_SHUTDOWN__DRAIN_S", "3"));
    let mut sipbus = Sipbus::start("all", &all)?;
    assert_eq!(http_get(admin, "/livez")?, (200, "ok\n".into()));
    assert_eq!(http_get(admin, "/readyz")?, (200, "ready\n".into()));
    assert_eq!(http_get(admin, "/nothing")?.0, 404);
    assert_eq!(grpc_health(sipbus.grpc).await?, ServingStatus::Serving);

    let asked = Instant::now();
    sipbus.sigterm()?;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if http_get(admin, "/readyz")? == (503, "not ready: draining\n".into()) {
            break;
        }
        assert!(Instant::now() < deadline, "still ready after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Alive all along: draining is not dying.
    assert_eq!(http_get(admin, "/livez")?.0, 200);
    assert_eq!(grpc_health(sipbus.grpc).await?, ServingStatus::NotServing);
    // A new request gets 503 with Retry-After; an OPTIONS probe too.
    let probe = run_sipp(
        &[
            &sipbus.sip.to_string(),
            "-sf",
            &scenario_path("options.xml"),
            "-i",
            "127.0.0.1",
            "-p",
            &free_port()?.to_string(),
            "-m",
            "1",
            "-trace_msg",
            "-message_file",
            std::env::temp_dir()
                .join(format!("drain-options-{}.msg", sipbus.sip.port()))
                .to_str()
                .unwrap(),
            "-timeout",
            "5s",
        ],
        Duration::from_secs(10),
    )?;
    let trace = std::fs::read_to_string(std::env::temp_dir().join(format!("drain-options-{}.msg", sipbus.sip.port())))?;
    assert!(
        trace.contains("SIP/2.0 503 Service Unavailable (draining)") && trace.contains("Retry-After:"),
        "{}\n{trace}",
        probe.output
    );
    let code = sipbus.exited_within(Duration::from_secs(6))?;
    let took = asked.elapsed();
    assert_eq!(code, Some(Some(0)), "{}", sipbus.log_text());
    assert!(
        took >= Duration::from_secs(3),
        "exited {took:?} after SIGTERM, before drain_s"
    );
    Ok(())
}

/// session-svc replica 0 gets SIGTERM while SIPp places calls through the
/// edge: calls it was handling finish, new ones go to replica 1, none
/// fails. Then the edge gets SIGTERM with calls established: their BYEs
/// still go through it while it drains.
#[test]
fn draining_a_session_replica_and_the_edge_under_load_fails_no_call() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let mut split = CallSplit::start(
        &redis.url(),
        &[env(), vec![("SIPBUS_SHUTDOWN__DRAIN_S", "4")]].concat(),
        2,
        1,
    )?;
    const CALLS: u32 = 120;
    let port = free_port()?;
    register_contact(split.edge.sip, "bob", port)?;
    let b = sipp_callee_many(port, CALLS + 10, Duration::from_secs(70));
    // 20 calls/s for 6 s, each held 1 s.
    let a = sipp_callers(split.edge.sip, "bob", CALLS, 20, 1000);
    std::thread::sleep(Duration::from_secs(2));
    split.sessions[0].sigterm()?;
    let a = a.finish()?;
    assert_eq!(a.failed, 0, "callers: {}\n{}", a.output, split.logs());
    assert_eq!(
        a.successful,
        u64::from(CALLS),
        "callers: {}\n{}",
        a.output,
        split.logs()
    );
    let exit = split.sessions[0].exited_within(Duration::from_secs(10))?;
    assert_eq!(
        exit,
        Some(Some(0)),
        "session-svc 0 did not drain and exit:\n{}",
        split.logs()
    );

    // Ten calls held 5 s; the edge drains meanwhile (4 s) and their BYEs
    // go through it.
    let a = sipp_callers(split.edge.sip, "bob", 10, 20, 3000);
    std::thread::sleep(Duration::from_millis(1500));
    split.edge.sigterm()?;
    let a = a.finish()?;
    assert_eq!(a.failed, 0, "callers: {}\n{}", a.output, split.logs());
    assert_eq!(a.successful, 10, "callers: {}\n{}", a.output, split.logs());
    let b = b.finish()?;
    assert_eq!(b.failed, 0, "callee: {}", b.output);
    let exit = split.edge.exited_within(Duration::from_secs(10))?;
    assert_eq!(
        exit,
        Some(Some(0)),
        "the edge did not drain and exit:\n{}",
        split.logs()
    );
    Ok(())
}

/// A service whose Redis stops answering is not ready (HTTP and gRPC
/// health) until it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_is_not_ready_while_its_store_does_not_answer() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let url = redis.url();
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let admin_text = admin.to_string();
    let grpc: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let mut all = env();
    all.push(("SIPBUS_STORE__REDIS", &url));
    all.push(("SIPBUS_REGISTRAR__AUTH__NONCE_KEY", "k"));
    all.push(("SIPBUS_ADMIN__LISTEN", &admin_text));
    let registrar = Sipbus::start_service("registrar-svc", &all, grpc)?;
    let wait_for = |want: (u16, &'static str), within: Duration| async move {
        let deadline = Instant::now() + within;
        loop {
            let got = http_get(admin, "/readyz")?;
            if got == (want.0, want.1.to_owned()) {
                return anyhow::Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "/readyz: {got:?}, waited for {want:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    wait_for((200, "ready\n"), Duration::from_secs(5)).await?;
    assert_eq!(grpc_health(grpc).await?, ServingStatus::Serving);
    // SIGSTOP: the store stops answering (a hung node, not a closed port).
    let signal = |sig: &str| Command::new("kill").arg(sig).arg(redis.pid().to_string()).status();
    signal("-STOP")?;
    // Probed every 5 s with a 2 s deadline.
    let paused = wait_for((503, "not ready: store unreachable\n"), Duration::from_secs(12)).await;
    let health = grpc_health(grpc).await;
    signal("-CONT")?;
    paused.map_err(|e| anyhow::anyhow!("{e}\n{}", registrar.log_text()))?;
    assert_eq!(health?, ServingStatus::NotServing);
    wait_for((200, "ready\n"), Duration::from_secs(12)).await?;
    assert_eq!(grpc_health(grpc).await?, ServingStatus::Serving);
    Ok(())
}
