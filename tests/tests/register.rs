//! REGISTER with digest authentication, driven by SIPp against the real
//! binary: the whole registration life, and each refusal a phone can meet,
//! against all-in-one and against split mode (two registrar replicas) over
//! a Redis node and over a Redis Cluster.

use std::time::Duration;

use sipbus_tests::{Sipbus, SplitRun, run_sipp, scenario, temp_file};
use state_store::testing::{RedisCluster, RedisServer};

/// Two users in `example.com`, a 60 s minimum expiry. SIPp answers only
/// the first challenge and knows only MD5, so MD5 is offered first here (the
/// default offers SHA-256 first, RFC 8760); SHA-256 is still offered.
pub fn registrar_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5", "SHA-256"]"#),
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "alice", password = "secret"}, {user = "bob", password = "hunter2"}]"#,
        ),
        ("SIPBUS_REGISTRAR__EXPIRES__MIN_S", "60"),
    ]
}

fn sipp(sipbus: &Sipbus, scenario_path: &str, csv: &str, extra: &[&str]) -> anyhow::Result<sipbus_tests::SippResult> {
    let target = sipbus.sip.to_string();
    // SIPp digests `sip:<remote address>` unless told the Request-URI's.
    let mut args = vec![
        target.as_str(),
        "-sf",
        scenario_path,
        "-inf",
        csv,
        "-i",
        "127.0.0.1",
        "-m",
        "1",
        "-auth_uri",
        "example.com",
        "-timeout",
        "20s",
        "-recv_timeout",
        "5000",
    ];
    args.extend_from_slice(extra);
    run_sipp(&args, Duration::from_secs(40))
}

fn assert_ok(result: &sipbus_tests::SippResult, logs: &dyn Fn() -> String, what: &str) {
    assert_eq!(
        (result.exit_code, result.successful, result.failed),
        (Some(0), 1, 0),
        "{what}: {}\n--- sipbus logs ---\n{}",
        result.output,
        logs()
    );
}

fn registration_life(edge: &Sipbus, logs: &dyn Fn() -> String) -> anyhow::Result<()> {
    let flow = scenario("register_flow.xml");
    let csv = temp_file(
        &format!("alice-{}.csv", edge.sip.port()),
        "SEQUENTIAL\nalice;example.com;secret\n",
    )?;
    for transport in ["u1", "t1"] {
        let r = sipp(
            edge,
            flow.to_str().unwrap_or_default(),
            csv.to_str().unwrap_or_default(),
            &["-t", transport, "-au", "alice", "-ap", "secret"],
        )?;
        assert_ok(&r, logs, &format!("register flow over {transport}"));
    }
    Ok(())
}

#[test]
fn registration_life_all_in_one() -> anyhow::Result<()> {
    let sipbus = Sipbus::start("all", &registrar_env())?;
    registration_life(&sipbus, &|| sipbus.log_text())
}

#[test]
fn registration_life_split_over_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let split = SplitRun::start(&redis.url(), &registrar_env(), 2)?;
    registration_life(&split.edge, &|| split.logs())
}

#[test]
fn registration_life_split_over_redis_cluster() -> anyhow::Result<()> {
    let cluster = RedisCluster::start()?;
    let split = SplitRun::start(&cluster.urls(), &registrar_env(), 2)?;
    registration_life(&split.edge, &|| split.logs())
}

/// Runs register_reject.xml expecting `status` for the given credentials
/// and Expires.
fn rejected(
    edge: &Sipbus,
    logs: &dyn Fn() -> String,
    user: &str,
    password: &str,
    expires: u32,
    status: u16,
) -> anyhow::Result<()> {
    let template = std::fs::read_to_string(scenario("register_reject.xml"))?;
    let tag = format!("{status}-{}", edge.sip.port());
    let path = temp_file(
        &format!("reject-{tag}.xml"),
        &template.replace("[status]", &status.to_string()),
    )?;
    let csv = temp_file(
        &format!("reject-{tag}.csv"),
        &format!("SEQUENTIAL\n{user};example.com;{password};{expires}\n"),
    )?;
    let r = sipp(
        edge,
        path.to_str().unwrap_or_default(),
        csv.to_str().unwrap_or_default(),
        &["-au", user, "-ap", password],
    )?;
    assert_ok(&r, logs, &format!("expected {status}"));
    Ok(())
}

fn refusals(edge: &Sipbus, logs: &dyn Fn() -> String) -> anyhow::Result<()> {
    rejected(edge, logs, "bob", "hunter2", 10, 423)?;
    rejected(edge, logs, "bob", "wrong", 300, 403)?;
    // An unknown user is challenged like a known one and then refused
    // like a wrong password: a prober learns nothing.
    rejected(edge, logs, "nobody", "guess", 300, 403)?;
    Ok(())
}

#[test]
fn too_short_wrong_password_and_unknown_user_all_in_one() -> anyhow::Result<()> {
    let sipbus = Sipbus::start("all", &registrar_env())?;
    refusals(&sipbus, &|| sipbus.log_text())
}

#[test]
fn too_short_wrong_password_and_unknown_user_split() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let split = SplitRun::start(&redis.url(), &registrar_env(), 2)?;
    refusals(&split.edge, &|| split.logs())
}
