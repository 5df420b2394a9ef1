//! RFC 4028 session timers through the built-in `session-timer`
//! supplement, with SIPp as caller and callee: refreshes by UPDATE and by
//! re-INVITE carried across with the timer headers each leg needs, 422
//! with Min-SE for an interval below the minimum, a session nobody
//! refreshes ended on both legs with a Reason (all-in-one, and split over
//! Redis with two session-svc replicas, where any replica fires the
//! timer), and sipbus refreshing both legs itself when neither phone does
//! timers.
#![allow(clippy::unwrap_used)]

use sipbus_tests::{CallSplit, Sipbus, call_pair, scenario_path, sipp_caller};
use state_store::testing::RedisServer;
use std::net::SocketAddr;

fn env(timer_settings: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5", "SHA-256"]"#),
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "alice", password = "secret"}, {user = "refresh", password = "secret"},
                {user = "short", password = "secret"}, {user = "plain", password = "secret"},
                {user = "small", password = "secret"}]"#,
        ),
        ("SIPBUS_SESSION__AUTHENTICATE", "false"),
        ("SIPBUS_SESSION__SUPPLEMENTS", timer_settings),
        ("SIPBUS_SESSION__TIMER_POLL_MS", "100"),
    ]
}

/// The defaults (1800 s asked, 90 s at least).
const DEFAULTS: &str = r#"[{name = "caller-id"}, {name = "reason"}, {name = "session-timer"}]"#;
/// Short enough for a test: 4 s asked, 2 s at least.
const SHORT: &str =
    r#"[{name = "caller-id"}, {name = "reason"}, {name = "session-timer", settings = {expires_s = 4, min_se_s = 2}}]"#;

/// One call between the two scenarios, callee registered as `user`.
fn pair(server: SocketAddr, user: &str, uas: &str, uac: &str, logs: &dyn Fn() -> String) -> anyhow::Result<()> {
    let (a, b) = call_pair(server, user, uas, uac)?;
    for (who, r) in [("caller", &a), ("callee", &b)] {
        assert_eq!(
            (r.exit_code, r.failed),
            (Some(0), 0),
            "{uac} / {uas} ({who}): {}\n--- sipbus ---\n{}",
            r.output,
            logs()
        );
    }
    Ok(())
}

#[test]
fn refreshes_by_update_and_reinvite_and_422_below_min_se() -> anyhow::Result<()> {
    let sipbus = Sipbus::start("all", &env(DEFAULTS))?;
    let logs = || sipbus.log_text();
    pair(
        sipbus.sip,
        "refresh",
        "timer_uas_refresh.xml",
        "timer_uac_refresh.xml",
        &logs,
    )?;
    let r = sipp_caller(
        sipbus.sip,
        &scenario_path("timer_uac_422.xml"),
        "small",
        "example.com",
        &[],
    )?;
    assert_eq!((r.exit_code, r.failed), (Some(0), 0), "422: {}\n{}", r.output, logs());
    Ok(())
}

#[test]
fn a_missed_refresh_ends_both_legs_and_sipbus_refreshes_when_nobody_does() -> anyhow::Result<()> {
    let sipbus = Sipbus::start("all", &env(SHORT))?;
    let logs = || sipbus.log_text();
    pair(
        sipbus.sip,
        "short",
        "timer_uas_expire.xml",
        "timer_uac_expire.xml",
        &logs,
    )?;
    pair(
        sipbus.sip,
        "plain",
        "timer_uas_sipbus.xml",
        "timer_uac_sipbus.xml",
        &logs,
    )?;
    Ok(())
}

#[test]
fn a_missed_refresh_ends_both_legs_in_split_mode() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let split = CallSplit::start(&redis.url(), &env(SHORT), 2, 1)?;
    pair(
        split.edge.sip,
        "short",
        "timer_uas_expire.xml",
        "timer_uac_expire.xml",
        &|| split.logs(),
    )
}
