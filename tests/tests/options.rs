//! SIPp drives the real binary: OPTIONS at a fixed rate for a bounded time,
//! over UDP and over TCP, with zero failures.

use std::time::Duration;

use sipbus_tests::{Sipbus, run_sipp, scenario};

fn options_run(transport: &str, calls: u32, rate: u32) -> anyhow::Result<()> {
    let sipbus = Sipbus::start("all", &[])?;
    let scenario = scenario("options.xml");
    let target = sipbus.sip.to_string();
    let calls_s = calls.to_string();
    let rate_s = rate.to_string();
    let args = vec![
        target.as_str(),
        "-sf",
        scenario.to_str().unwrap_or_default(),
        "-t",
        transport,
        "-i",
        "127.0.0.1",
        "-m",
        &calls_s,
        "-r",
        &rate_s,
        "-l",
        "500",
        "-timeout",
        "30s",
        "-recv_timeout",
        "5000",
    ];
    let result = run_sipp(&args, Duration::from_secs(60))?;
    let log = sipbus.log_text();
    assert_eq!(
        (result.exit_code, result.successful, result.failed),
        (Some(0), u64::from(calls), 0),
        "SIPp over {transport}: {}\n--- sipbus log ---\n{log}",
        result.output
    );
    assert_eq!(sipbus.stop()?, Some(0), "sipbus exits cleanly on SIGTERM");
    Ok(())
}

#[test]
fn sipp_options_over_udp_at_fixed_rate() -> anyhow::Result<()> {
    options_run("u1", 3000, 1000)
}

#[test]
fn sipp_options_over_tcp_at_fixed_rate() -> anyhow::Result<()> {
    options_run("t1", 1000, 500)
}
