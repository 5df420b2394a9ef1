//! The supplement chain: order, method filters, stops, state, the edits
//! supplements may and may not make, and failure policies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use extension::{External, ModuleConfig, OnFailure, Point};
use serde::{Deserialize, Serialize};
use sip_message::{Known, Message, Method, Refusal};

use crate::session::{Session, Side};
use crate::supplements::chain::Erased;
use crate::supplements::external::ExternalSupplement;
use crate::supplements::{Cx, Draft, SessionSupplement, Supplements, Verdict};

/// Records what it heard in a shared log; optionally stops INVITEs;
/// counts its calls in its state.
struct Probe {
    name: &'static str,
    log: Arc<Mutex<Vec<String>>>,
    stop_invites: bool,
}

#[derive(Default, Serialize, Deserialize)]
struct Calls(u32);

#[async_trait]
impl SessionSupplement for Probe {
    type State = Calls;

    async fn begin(&self, cx: &mut Cx<'_, Calls>) {
        self.log.lock().unwrap().push(format!("{}:begin", self.name));
        cx.state.0 += 1;
    }

    async fn incoming_request(&self, cx: &mut Cx<'_, Calls>, _side: Side, _req: &Message) -> Verdict {
        self.log.lock().unwrap().push(format!("{}:request", self.name));
        cx.state.0 += 1;
        if self.stop_invites {
            Verdict::Stop(Refusal::forbidden("probe"))
        } else {
            Verdict::Continue
        }
    }

    async fn outgoing_request(&self, _cx: &mut Cx<'_, Calls>, _side: Side, draft: &mut Draft<'_>) {
        self.log.lock().unwrap().push(format!("{}:outgoing", self.name));
        draft.replace("X-Probe", self.name);
        draft.replace("Call-ID", "hijacked");
        draft.add("Bad Name", "x");
        draft.replace("From", "\"Anonymous\" <sip:anonymous@anonymous.invalid>");
    }
}

fn probes(stop_second: bool) -> (Supplements, Arc<Mutex<Vec<String>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let probe = |name, stop| -> Arc<dyn Erased> {
        Arc::new(Probe {
            name,
            log: log.clone(),
            stop_invites: stop,
        })
    };
    let sups = Supplements::of_list(vec![
        ("late", 200, Vec::new(), probe("late", false)),
        ("first", 10, Vec::new(), probe("first", false)),
        ("second", 10, vec![Method::Invite], probe("second", stop_second)),
        ("bye-only", 5, vec![Method::Bye], probe("bye-only", false)),
    ]);
    (sups, log)
}

fn session(chain: Vec<String>) -> Session {
    Session {
        chain,
        ..Session::for_tests("s1")
    }
}

fn invite() -> Message {
    crate::testing::invite_from("c1", "a1")
}

#[tokio::test]
async fn chain_runs_by_priority_then_configuration_order_with_method_filters() {
    let (sups, log) = probes(false);
    let mut s = session(sups.chain());
    sups.begin(&mut s).await;
    assert!(sups.incoming_request(&mut s, Side::A, &invite()).await.0.is_ok());
    let heard: Vec<String> = log.lock().unwrap().clone();
    assert_eq!(
        heard,
        [
            "bye-only:begin",
            "first:begin",
            "second:begin",
            "late:begin",
            // bye-only does not hear INVITE.
            "first:request",
            "second:request",
            "late:request",
        ]
    );
    // Each kept its own count: begin and the request.
    assert_eq!(s.data["first"], serde_json::json!(2));
    assert_eq!(s.data["bye-only"], serde_json::json!(1));
}

#[tokio::test]
async fn a_stop_ends_the_chain_with_the_supplements_response() {
    let (sups, log) = probes(true);
    let mut s = session(sups.chain());
    let (Err(refusal), _) = sups.incoming_request(&mut s, Side::A, &invite()).await else {
        panic!("the chain was not stopped");
    };
    let resp = refusal.response_to(&invite(), None);
    assert_eq!(resp.status(), Some(403));
    assert_eq!(resp.call_id().unwrap(), "c1", "completed from the request");
    assert!(!log.lock().unwrap().contains(&"late:request".to_owned()));
}

#[tokio::test]
async fn the_chain_is_the_sessions_not_the_configurations() {
    let (sups, log) = probes(false);
    // A session that started when only `late` was configured.
    let mut s = session(vec!["late".into(), "gone".into()]);
    sups.begin(&mut s).await;
    assert_eq!(log.lock().unwrap().clone(), ["late:begin"]);
}

#[tokio::test]
async fn outgoing_edits_apply_but_never_to_headers_sipbus_owns() {
    let (sups, _) = probes(false);
    let mut s = session(vec!["first".into(), "late".into()]);
    let mut out = invite();
    sups.outgoing(&mut s, Side::B, &mut out).await;
    // REPLACE twice leaves one value: the last writer's.
    assert_eq!(out.header_fields(&"X-Probe".into()).collect::<Vec<_>>(), ["late"]);
    assert_eq!(out.call_id().unwrap(), "c1");
    assert!(out.header("Bad Name").is_none());
    // From may change, its tag may not.
    assert_eq!(
        out.known_header(Known::From),
        Some("\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=a1")
    );
    // Idempotent: running the hooks again changes nothing.
    let once = out.to_bytes();
    sups.outgoing(&mut s, Side::B, &mut out).await;
    assert_eq!(out.to_bytes(), once);
}

#[tokio::test]
async fn a_failing_external_supplement_applies_its_policy() {
    let ext = |policy| -> Arc<dyn Erased> {
        let module = ModuleConfig {
            // Nothing listens on port 9 of loopback.
            url: "http://127.0.0.1:9".into(),
            timeout_ms: 300,
            on_failure: policy,
            reject_status: 503,
            ..ModuleConfig::builtin("ext")
        };
        Arc::new(ExternalSupplement::new(
            External::connect(Point::SessionSupplement, &module, "k").unwrap(),
        ))
    };
    let skip = Supplements::of_list(vec![("ext", 1, Vec::new(), ext(OnFailure::Open))]);
    let mut s = session(skip.chain());
    assert!(skip.incoming_request(&mut s, Side::A, &invite()).await.0.is_ok());
    let reject = Supplements::of_list(vec![("ext", 1, Vec::new(), ext(OnFailure::Closed))]);
    let (Err(refusal), _) = reject.incoming_request(&mut s, Side::A, &invite()).await else {
        panic!("reject policy did not answer");
    };
    assert_eq!(refusal.code(), 503);
}

/// Asks for its timer at begin, and for a hang-up when it fires.
struct Alarm;

#[async_trait]
impl SessionSupplement for Alarm {
    type State = ();
    const TIMER: bool = true;

    async fn begin(&self, cx: &mut Cx<'_, ()>) {
        cx.set_timer(Duration::from_secs(30));
    }

    async fn timer(&self, cx: &mut Cx<'_, ()>) {
        cx.hang_up("SIP;cause=480");
    }
}

#[tokio::test]
async fn actions_are_named_by_their_supplement() {
    let sups = Supplements::of_list(vec![("alarm", 1, Vec::new(), Arc::new(Alarm) as Arc<dyn Erased>)]);
    let mut s = session(sups.chain());
    let asked = sups.begin(&mut s).await;
    assert_eq!(
        asked,
        [("alarm".to_owned(), crate::Action::SetTimer(Duration::from_secs(30)))]
    );
    assert!(s.data.is_empty(), "a stateless supplement stores nothing");
    let asked = sups.timer(&mut s, "alarm").await;
    assert_eq!(
        asked,
        [("alarm".to_owned(), crate::Action::HangUp("SIP;cause=480".into()))]
    );
    assert!(sups.timer(&mut s, "other").await.is_empty());
    assert_eq!(s.chain, ["alarm"], "the chain is left as it was");
}

/// Arms a timer without declaring one.
struct Undeclared;

#[async_trait]
impl SessionSupplement for Undeclared {
    type State = ();

    async fn begin(&self, cx: &mut Cx<'_, ()>) {
        cx.set_timer(Duration::from_secs(30));
        cx.refresh(crate::Side::B);
    }
}

#[tokio::test]
async fn only_supplements_that_declare_a_timer_arm_one_and_have_it_cancelled() {
    let sups = Supplements::of_list(vec![
        ("alarm", 1, Vec::new(), Arc::new(Alarm) as Arc<dyn Erased>),
        ("undeclared", 2, Vec::new(), Arc::new(Undeclared) as Arc<dyn Erased>),
    ]);
    let mut s = session(sups.chain());
    let asked = sups.begin(&mut s).await;
    assert_eq!(
        asked,
        [
            ("alarm".to_owned(), crate::Action::SetTimer(Duration::from_secs(30))),
            ("undeclared".to_owned(), crate::Action::Refresh(crate::Side::B)),
        ],
        "the undeclared timer is dropped, its other action kept"
    );
    assert_eq!(sups.timed(&s.chain), ["alarm"]);
}

#[test]
fn the_guide_shows_the_built_in_as_it_is() {
    // docs/extending.md shows rfc3326.rs whole: it must not drift.
    let guide = include_str!("../../../docs/extending.md");
    let source = include_str!("../supplements/rfc3326.rs");
    assert!(
        guide.contains(source),
        "docs/extending.md no longer shows rfc3326.rs as it is"
    );
    assert!(guide.contains("name: \"reason\",\n        build: rfc3326::build,"));
}
