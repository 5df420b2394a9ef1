//! `sipbus ctl` against a running sipbus, all-in-one and split: the
//! registrations, calls, subscriptions, publications and extensions it
//! lists are the ones SIPp made, and its actions act (a contact removed, a
//! call hung up with BYE on both legs, a mailbox set).
#![allow(clippy::unwrap_used)]
// Real processes on real sockets: wall-clock time is what counts here.
#![allow(clippy::disallowed_types)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sipbus_tests::{
    CallSplit, Sipbus, Watch, free_port, register_contact, scenario_path, sipbus_bin, sipp_callee, sipp_caller,
};
use state_store::testing::RedisServer;

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        // SIPp answers MD5 challenges only.
        ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5", "SHA-256"]"#),
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "alice", password = "secret"}, {user = "bob", password = "secret"},
                {user = "carol", password = "secret"}, {user = "watcher", password = "secret"}]"#,
        ),
        ("SIPBUS_SESSION__AUTHENTICATE", "false"),
        ("SIPBUS_PUBSUB__AUTHENTICATE", "false"),
    ]
}

/// `sipbus ctl --server <grpc> <args> --json`: the parsed output, or the
/// error text when it failed.
fn ctl(grpc: SocketAddr, args: &[&str]) -> Result<Value, String> {
    let out = Command::new(sipbus_bin().unwrap())
        .arg("ctl")
        .arg("--server")
        .arg(format!("http://{grpc}"))
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    match out.status.success() {
        true => serde_json::from_str(&stdout).map_err(|e| format!("{e}: {stdout}")),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

fn list<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key].as_array().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// Waits for `cond` on the listing `args` gives.
fn until(grpc: SocketAddr, args: &[&str], what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = ctl(grpc, args).unwrap();
        if cond(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A call from alice to carol (registered at `port`) that only an
/// operator's hang-up ends: the caller's scenario waits for a BYE, the
/// callee answers one.
struct HeldCall {
    caller: std::thread::JoinHandle<anyhow::Result<sipbus_tests::SippResult>>,
    callee: sipbus_tests::Background,
}

impl HeldCall {
    fn start(server: SocketAddr, port: u16) -> HeldCall {
        let callee = sipp_callee("call_uas.xml", port, &[]);
        let caller = std::thread::spawn(move || {
            sipp_caller(
                server,
                &scenario_path("call_uac_callee_bye.xml"),
                "carol",
                "example.com",
                &[],
            )
        });
        HeldCall { caller, callee }
    }

    /// Both legs ended with the BYE sipbus sent them.
    fn both_got_bye(self, logs: &dyn Fn() -> String) {
        let a = self.caller.join().unwrap().unwrap();
        let b = self.callee.finish().unwrap();
        assert_eq!(
            (a.successful, b.successful),
            (1, 1),
            "{}\n{}\n{}",
            a.output,
            b.output,
            logs()
        );
    }
}

/// What every deployment shape must answer the same way.
fn exercise(server: SocketAddr, grpc: SocketAddr, logs: &dyn Fn() -> String) {
    // Registrations: two contacts of bob, one of carol.
    let (b1, b2, c1) = (free_port().unwrap(), free_port().unwrap(), free_port().unwrap());
    register_contact(server, "bob", b1).unwrap();
    register_contact(server, "bob", b2).unwrap();
    register_contact(server, "carol", c1).unwrap();
    let all = ctl(grpc, &["registrations"]).unwrap();
    assert_eq!(list(&all, "registrations").len(), 3, "{all}");
    let bob = ctl(grpc, &["registrations", "--user", "bob"]).unwrap();
    let bobs = list(&bob, "registrations");
    assert_eq!(bobs.len(), 2, "{bob}");
    assert!(
        bobs.iter()
            .all(|b| b["aor"] == "sip:bob@example.com" && b["transport"] == "UDP"),
        "{bob}"
    );
    assert!(
        bobs.iter().all(|b| b["expires_in_s"].as_u64().is_some_and(|s| s > 60)),
        "{bob}"
    );
    let one = bobs
        .iter()
        .find(|b| b["contact"].as_str().unwrap().contains(&format!(":{b1}")))
        .unwrap_or_else(|| panic!("no contact on port {b1}: {bob}"));
    let removed = ctl(
        grpc,
        &[
            "unregister",
            "bob@example.com",
            "--contact",
            one["contact"].as_str().unwrap(),
        ],
    )
    .unwrap();
    assert_eq!(removed["count"], 1, "{removed}");
    let bob = ctl(grpc, &["registrations", "--user", "bob"]).unwrap();
    let left = list(&bob, "registrations");
    assert_eq!(left.len(), 1, "{bob}");
    assert!(
        left[0]["contact"].as_str().unwrap().contains(&format!(":{b2}")),
        "{bob}"
    );
    let err = ctl(grpc, &["unregister", "bob"]).unwrap_err();
    assert!(err.contains("user@domain"), "{err}");

    // A call from alice to carol, hung up by the operator: both legs get
    // a BYE (the caller's scenario waits for one, the callee answers one).
    let held = HeldCall::start(server, c1);
    let calls = until(grpc, &["calls"], "the call never showed as confirmed", |v| {
        list(v, "calls").iter().any(|c| c["state"] == "confirmed")
    });
    let call = &list(&calls, "calls")[0];
    assert!(call["caller"].as_str().unwrap().contains("alice"), "{calls}");
    assert!(call["callee"].as_str().unwrap().contains("carol"), "{calls}");
    assert!(call["a"]["call_id"].as_str().is_some_and(|c| !c.is_empty()), "{calls}");
    assert!(
        call["b"]["target"].as_str().unwrap().contains(&format!(":{c1}")),
        "{calls}"
    );
    assert!(call["last_replica"].as_str().is_some_and(|r| !r.is_empty()), "{calls}");
    std::thread::sleep(Duration::from_millis(1100));
    let calls = ctl(grpc, &["calls"]).unwrap();
    assert!(list(&calls, "calls")[0]["duration_s"].as_u64().unwrap() >= 1, "{calls}");
    let id = call["id"].as_str().unwrap().to_owned();
    let hung = ctl(grpc, &["hangup", &id]).unwrap();
    assert_eq!(hung["count"], 1, "{hung}");
    held.both_got_bye(logs);
    until(grpc, &["calls"], "the call is still listed", |v| {
        list(v, "calls").is_empty()
    });
    let err = ctl(grpc, &["hangup", &id]).unwrap_err();
    assert!(err.contains("no call"), "{err}");

    // A subscription, listed while it lasts.
    let watch = Watch::start(server, "bob", "presence", "application/pidf+xml", 600, 2500);
    let subs = ctl(grpc, &["subscriptions"]).unwrap();
    let found = list(&subs, "subscriptions");
    assert!(
        found.iter().any(|s| s["package"] == "presence"
            && s["resource"].as_str().unwrap().contains("bob")
            && s["state"] == "active"),
        "{subs}\n{}",
        logs()
    );
    let (w, _) = watch.finish();
    assert_eq!(w.failed, 0, "{}", w.output);

    // A mailbox set through ctl is a publication ctl lists.
    let set = ctl(grpc, &["mwi", "sip:carol@example.com", "--new", "3"]).unwrap();
    assert_eq!(set["new"], 3, "{set}");
    let pubs = ctl(grpc, &["publications", "--filter", "carol"]).unwrap();
    let p = list(&pubs, "publications");
    assert!(
        p.iter()
            .any(|p| p["package"] == "message-summary" && p["expires_in_s"].is_null()),
        "{pubs}"
    );

    // The extension points, as the registry sees them.
    let ext = ctl(grpc, &["extensions"]).unwrap();
    let names: Vec<&str> = list(&ext, "chains")
        .iter()
        .flat_map(|c| c["modules"].as_array().unwrap())
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"caller-id") && names.contains(&"rtp"), "{ext}");
}

#[test]
fn ctl_lists_and_acts_on_all_in_one() {
    let sipbus = Sipbus::start("all", &env()).unwrap();
    exercise(sipbus.sip, sipbus.grpc, &|| sipbus.log_text());
    // No TLS listener: nothing to reload but the CA bundle.
    let reloaded = ctl(sipbus.grpc, &["reload-tls"]).unwrap();
    assert!(
        reloaded["reloaded"].as_str().unwrap().contains("no certificate"),
        "{reloaded}"
    );
}

#[test]
fn ctl_asks_the_replicas_that_run_each_service_in_split_mode() {
    let redis = RedisServer::start().unwrap();
    let split = CallSplit::start_with(
        &redis.url(),
        &env(),
        sipbus_tests::Replicas {
            sessions: 2,
            sdps: 1,
            pubsubs: 1,
            publishes: 1,
        },
    )
    .unwrap();
    // A process answers only for what it runs.
    let err = ctl(split.edge.grpc, &["calls"]).unwrap_err();
    assert!(err.contains("does not run session-svc"), "{err}");
    // Registrations come from registrar-svc, calls from either session-svc
    // (both read the shared store), and so on: one front per service, as an
    // operator would port-forward to one pod of each.
    let front = Front {
        registrar: split.registrar.grpc,
        session: split.sessions[1].grpc,
        pubsub: split.pubsubs[0].grpc,
        publish: split.publishes[0].grpc,
    };
    front.exercise(split.edge.sip, &|| split.logs());
}

/// Which replica answers what, in split mode.
struct Front {
    registrar: SocketAddr,
    session: SocketAddr,
    pubsub: SocketAddr,
    publish: SocketAddr,
}

impl Front {
    fn exercise(&self, server: SocketAddr, logs: &dyn Fn() -> String) {
        let (b1, c1) = (free_port().unwrap(), free_port().unwrap());
        register_contact(server, "bob", b1).unwrap();
        register_contact(server, "carol", c1).unwrap();
        let regs = ctl(self.registrar, &["registrations"]).unwrap();
        assert_eq!(list(&regs, "registrations").len(), 2, "{regs}");
        let held = HeldCall::start(server, c1);
        let calls = until(self.session, &["calls"], "the call never showed", |v| {
            list(v, "calls").iter().any(|c| c["state"] == "confirmed")
        });
        let call = &list(&calls, "calls")[0];
        let id = call["id"].as_str().unwrap().to_owned();
        assert!(call["last_replica"].as_str().is_some_and(|r| !r.is_empty()), "{calls}");
        ctl(self.session, &["hangup", &id]).unwrap();
        held.both_got_bye(logs);
        let watch = Watch::start(server, "bob", "presence", "application/pidf+xml", 600, 2500);
        let subs = ctl(self.pubsub, &["subscriptions"]).unwrap();
        assert!(!list(&subs, "subscriptions").is_empty(), "{subs}\n{}", logs());
        let _ = watch.finish();
        ctl(self.publish, &["mwi", "sip:carol@example.com", "--new", "1"]).unwrap();
        let pubs = ctl(self.publish, &["publications"]).unwrap();
        assert!(!list(&pubs, "publications").is_empty(), "{pubs}");
    }
}

/// With a token configured, the admin API and the event state API (`sipbus
/// mwi`) refuse callers without it, loopback ones included.
#[test]
fn the_operator_apis_need_the_token_once_one_is_set() {
    let mut all = env();
    all.push(("SIPBUS_REGISTRY__TOKEN", "s3cret-t0ken-for-ops"));
    let sipbus = Sipbus::start("all", &all).unwrap();
    let err = ctl(sipbus.grpc, &["calls"]).unwrap_err();
    assert!(err.contains("missing or wrong token"), "{err}");
    let calls = ctl(sipbus.grpc, &["--token", "s3cret-t0ken-for-ops", "calls"]).unwrap();
    assert!(list(&calls, "calls").is_empty(), "{calls}");
    let mwi = |token: Option<&str>| {
        let mut cmd = Command::new(sipbus_bin().unwrap());
        cmd.args(["mwi", "set", "sip:carol@example.com", "--new", "1", "--server"])
            .arg(format!("http://{}", sipbus.grpc))
            .env_remove("SIPBUS_REGISTRY_TOKEN");
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        cmd.output().unwrap()
    };
    let refused = mwi(None);
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("missing or wrong token"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let ok = mwi(Some("s3cret-t0ken-for-ops"));
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}
