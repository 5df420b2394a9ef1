//! REGISTER with digest authentication, driven by SIPp against the real
//! binary: the whole registration life, and each refusal a phone can meet.

use std::time::Duration;

use sipbus_tests::{Sipbus, run_sipp, scenario, temp_file};

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

fn assert_ok(result: &sipbus_tests::SippResult, sipbus: &Sipbus, what: &str) {
    assert_eq!(
        (result.exit_code, result.successful, result.failed),
        (Some(0), 1, 0),
        "{what}: {}\n--- sipbus log ---\n{}",
        result.output,
        sipbus.log_text()
    );
}

#[test]
fn registration_life_over_udp_and_tcp() -> anyhow::Result<()> {
    let sipbus = Sipbus::start("all", &registrar_env())?;
    let flow = scenario("register_flow.xml");
    let csv = temp_file("alice.csv", "SEQUENTIAL\nalice;example.com;secret\n")?;
    for transport in ["u1", "t1"] {
        let r = sipp(
            &sipbus,
            flow.to_str().unwrap_or_default(),
            csv.to_str().unwrap_or_default(),
            &["-t", transport, "-au", "alice", "-ap", "secret"],
        )?;
        assert_ok(&r, &sipbus, &format!("register flow over {transport}"));
    }
    Ok(())
}

/// Runs register_reject.xml expecting `status` for the given credentials
/// and Expires.
fn rejected(sipbus: &Sipbus, user: &str, password: &str, expires: u32, status: u16) -> anyhow::Result<()> {
    let template = std::fs::read_to_string(scenario("register_reject.xml"))?;
    let path = temp_file(
        &format!("reject-{status}.xml"),
        &template.replace("[status]", &status.to_string()),
    )?;
    let csv = temp_file(
        &format!("reject-{status}.csv"),
        &format!("SEQUENTIAL\n{user};example.com;{password};{expires}\n"),
    )?;
    let r = sipp(
        sipbus,
        path.to_str().unwrap_or_default(),
        csv.to_str().unwrap_or_default(),
        &["-au", user, "-ap", password],
    )?;
    assert_ok(&r, sipbus, &format!("expected {status}"));
    Ok(())
}

#[test]
fn too_short_wrong_password_and_unknown_user() -> anyhow::Result<()> {
    let sipbus = Sipbus::start("all", &registrar_env())?;
    rejected(&sipbus, "bob", "hunter2", 10, 423)?;
    rejected(&sipbus, "bob", "wrong", 300, 403)?;
    let csv = temp_file("nobody.csv", "SEQUENTIAL\nnobody;example.com\n")?;
    let r = sipp(
        &sipbus,
        scenario("register_unknown.xml").to_str().unwrap_or_default(),
        csv.to_str().unwrap_or_default(),
        &[],
    )?;
    assert_ok(&r, &sipbus, "unknown user gets 404");
    Ok(())
}
