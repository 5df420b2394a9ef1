//! Split sipbus on Redis under Sentinel (real redis-server and three
//! redis-sentinel processes): the master is killed during a SIPp call
//! load, Sentinel promotes the replica, and calls and registrations go on
//! on the new master. Calls that needed the store during the failover may
//! fail (each got an answer: 503 or 500, never silence); after it none
//! does. The counts are printed for the record.
#![allow(clippy::unwrap_used)]
// Real processes on real sockets: wall-clock time is what counts here.
#![allow(clippy::disallowed_types)]

use std::time::{Duration, Instant};

use sipbus_tests::{CallSplit, free_port, register_contact, sipp_callee_many, sipp_callers};
use state_store::testing::RedisSentinels;

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        // SIPp answers MD5 challenges only.
        ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5", "SHA-256"]"#),
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "before", password = "secret"}, {user = "after", password = "secret"}]"#,
        ),
        ("SIPBUS_SESSION__AUTHENTICATE", "false"),
    ]
}

#[test]
fn calls_and_registrations_continue_after_a_sentinel_failover() -> anyhow::Result<()> {
    let mut redis = RedisSentinels::start()?;
    let split = CallSplit::start(&redis.url(), &env(), 2, 1)?;

    const DURING: u32 = 150;
    let port = free_port()?;
    register_contact(split.edge.sip, "before", port)?;
    let callee = sipp_callee_many(port, DURING, Duration::from_secs(45));
    // 15 calls/s for 10 s, each held 500 ms; the master dies at 3 s.
    let load = sipp_callers(split.edge.sip, "before", DURING, 15, 500);
    std::thread::sleep(Duration::from_secs(3));
    let replica_port = redis.replica.port;
    let killed = Instant::now();
    redis.kill_master()?;
    while redis.master_port()? != Some(replica_port) {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "Sentinel never promoted the replica"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let promoted = killed.elapsed();
    let during = load.finish()?;
    assert_eq!(
        during.successful + during.failed,
        u64::from(DURING),
        "every call placed during the failover ended one way or the other: {}",
        during.output
    );

    // After the failover: a new registration and calls, none failing.
    const AFTER: u32 = 40;
    let port = free_port()?;
    register_contact(split.edge.sip, "after", port)?;
    let callee_after = sipp_callee_many(port, AFTER, Duration::from_secs(40));
    let after = sipp_callers(split.edge.sip, "after", AFTER, 20, 200).finish()?;
    let callee_after = callee_after.finish()?;
    eprintln!(
        "sentinel failover: replica promoted {promoted:?} after the master was killed; calls during: {} ok, {} \
         failed of {DURING}; after: {} ok, {} failed of {AFTER}",
        during.successful, during.failed, after.successful, after.failed
    );
    assert_eq!(
        after.failed,
        0,
        "after the failover: {}\n{}",
        after.output,
        split.logs()
    );
    assert_eq!(after.successful, u64::from(AFTER), "{}\n{}", after.output, split.logs());
    assert_eq!(callee_after.successful, u64::from(AFTER), "{}", callee_after.output);
    // The first callee only answers what reached it; it ends on its own.
    drop(callee);
    Ok(())
}
