//! OpenTelemetry traces from split sipbus (an edge, registrar-svc,
//! session-svc, sdp-svc and an external supplement written here) to an
//! OTLP receiver the test runs: the INVITE of one SIPp call is one trace
//! across the processes, every exported span's parent is in it, and the
//! hops link the right spans (edge bus call → session-svc, session-svc's
//! bus call → sdp-svc, session-svc's extension call → the supplement,
//! session-svc's edge call → the edge API).
#![allow(clippy::unwrap_used)]
// Real processes on real sockets: wall-clock time is what counts here.
#![allow(clippy::disallowed_types)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::session::v1 as spb;
use proto::session::v1::session_supplement_server::{SessionSupplement, SessionSupplementServer};
use sipbus_tests::otlp::{OtlpReceiver, Span};
use sipbus_tests::{CallSplit, call_pair, serve_grpc};
use state_store::testing::RedisServer;
use tonic::{Request, Response, Status};

/// A supplement that changes nothing and keeps the `traceparent` of every
/// call it gets.
#[derive(Clone, Default)]
struct Probe(Arc<Mutex<Vec<String>>>);

impl Probe {
    fn saw<T>(&self, r: &Request<T>) {
        if let Some(t) = r.metadata().get("traceparent").and_then(|v| v.to_str().ok()) {
            self.0.lock().unwrap().push(t.to_owned());
        }
    }
}

#[tonic::async_trait]
impl SessionSupplement for Probe {
    async fn begin(&self, r: Request<spb::BeginRequest>) -> Result<Response<spb::BeginReply>, Status> {
        self.saw(&r);
        Ok(Response::new(spb::BeginReply::default()))
    }
    async fn end(&self, r: Request<spb::EndRequest>) -> Result<Response<spb::EndReply>, Status> {
        self.saw(&r);
        Ok(Response::new(spb::EndReply {}))
    }
    async fn incoming_request(&self, r: Request<spb::RequestEvent>) -> Result<Response<spb::RequestVerdict>, Status> {
        self.saw(&r);
        Ok(Response::new(spb::RequestVerdict::default()))
    }
    async fn incoming_response(&self, r: Request<spb::ResponseEvent>) -> Result<Response<spb::ResponseReply>, Status> {
        self.saw(&r);
        Ok(Response::new(spb::ResponseReply::default()))
    }
    async fn outgoing_request(&self, r: Request<spb::OutgoingEvent>) -> Result<Response<spb::OutgoingReply>, Status> {
        self.saw(&r);
        Ok(Response::new(spb::OutgoingReply::default()))
    }
    async fn outgoing_response(&self, r: Request<spb::OutgoingEvent>) -> Result<Response<spb::OutgoingReply>, Status> {
        self.saw(&r);
        Ok(Response::new(spb::OutgoingReply::default()))
    }
    async fn timer(&self, r: Request<spb::TimerEvent>) -> Result<Response<spb::TimerReply>, Status> {
        self.saw(&r);
        Ok(Response::new(spb::TimerReply::default()))
    }
}

fn show(spans: &[&Span]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} {} {} <- {} {:?}",
                s.service, s.name, s.span_id, s.parent_span_id, s.attributes
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn one_call_is_one_trace_across_edge_services_and_an_external_supplement() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start()?;
    let probe = Probe::default();
    let (probe_addr, _probe_rt) =
        serve_grpc(tonic::transport::Server::builder().add_service(SessionSupplementServer::new(probe.clone())))?;
    let endpoint = receiver.endpoint();
    let supplements =
        format!(r#"[{{name = "probe", url = "http://{probe_addr}", methods = ["INVITE"]}}, {{name = "caller-id"}}]"#);
    let env = vec![
        ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5", "SHA-256"]"#),
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "alice", password = "secret"}, {user = "traced", password = "secret"}]"#,
        ),
        ("SIPBUS_SESSION__AUTHENTICATE", "false"),
        ("SIPBUS_SESSION__SUPPLEMENTS", supplements.as_str()),
        ("SIPBUS_TRACING__OTLP_ENDPOINT", endpoint.as_str()),
        // session-svc's INVITE work (and its span) lasts until the callee's
        // INVITE transaction ends, 64*T1 after the 200 (RFC 6026): 6.4 s.
        ("SIPBUS_EDGE__TIMERS__T1_MS", "100"),
    ];
    let redis = RedisServer::start()?;
    let split = CallSplit::start(&redis.url(), &env, 1, 1)?;
    let (a, b) = call_pair(split.edge.sip, "traced", "call_uas.xml", "call_uac.xml")?;
    assert_eq!((a.successful, b.successful), (1, 1), "{}\n{}", a.output, split.logs());

    // The edge's INVITE root, once every process has sent its batch.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (root, trace) = loop {
        let spans = receiver.spans();
        let root = spans
            .iter()
            .find(|s| s.name == "sip.request" && s.attr("sip.method") == Some("INVITE"))
            .cloned();
        if let Some(root) = root {
            let trace: Vec<Span> = spans.into_iter().filter(|s| s.trace_id == root.trace_id).collect();
            let services: HashSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
            // Parents end after their children: wait until they are in.
            let ids: HashSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
            let linked = trace
                .iter()
                .all(|s| s.parent_span_id.is_empty() || ids.contains(s.parent_span_id.as_str()));
            if ["sipbus-sip-edge", "sipbus-session-svc", "sipbus-sdp-svc"]
                .iter()
                .all(|s| services.contains(s))
                && trace
                    .iter()
                    .any(|s| s.service == "sipbus-sip-edge" && s.name.ends_with("/Respond"))
                && linked
            {
                break (root, trace);
            }
        }
        if Instant::now() > deadline {
            let spans = receiver.spans();
            let root = spans
                .iter()
                .find(|s| s.name == "sip.request" && s.attr("sip.method") == Some("INVITE"));
            let shown: Vec<&Span> = match root {
                Some(r) => spans.iter().filter(|s| s.trace_id == r.trace_id).collect(),
                None => spans.iter().collect(),
            };
            panic!("no complete INVITE trace; got:\n{}", show(&shown));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let all: Vec<&Span> = trace.iter().collect();
    let ids: HashSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
    assert!(root.parent_span_id.is_empty(), "the edge's request span is the root");
    assert_eq!(root.service, "sipbus-sip-edge");
    assert!(root.attr("sip.call_id").is_some_and(|c| !c.is_empty()), "{root:?}");
    assert_eq!(root.attr("net.transport"), Some("UDP"));
    // Every exported span hangs off another of the same trace.
    for s in &trace {
        assert!(
            s.span_id == root.span_id || ids.contains(s.parent_span_id.as_str()),
            "{} {} has a parent outside the trace:\n{}",
            s.service,
            s.name,
            show(&all)
        );
    }
    let by_id = |id: &str| trace.iter().find(|s| s.span_id == id);
    let parent_of = |s: &Span| by_id(&s.parent_span_id).cloned();
    // edge bus call → session-svc's server span.
    let session_serve = trace
        .iter()
        .find(|s| s.service == "sipbus-session-svc" && s.name.ends_with("RequestHandler/Handle"))
        .unwrap_or_else(|| panic!("no session-svc server span:\n{}", show(&all)));
    let caller = parent_of(session_serve).unwrap();
    assert_eq!(
        (
            caller.service.as_str(),
            caller.name.as_str(),
            caller.attr("rpc.service")
        ),
        ("sipbus-sip-edge", "bus.call", Some("session")),
        "{}",
        show(&all)
    );
    // session-svc's bus call → sdp-svc's server span.
    let sdp_serve = trace
        .iter()
        .find(|s| s.service == "sipbus-sdp-svc" && s.name.starts_with("/sipbus.sdp"))
        .unwrap_or_else(|| panic!("no sdp-svc server span:\n{}", show(&all)));
    let caller = parent_of(sdp_serve).unwrap();
    assert_eq!(
        (
            caller.service.as_str(),
            caller.name.as_str(),
            caller.attr("rpc.service")
        ),
        ("sipbus-session-svc", "bus.call", Some("sdp")),
        "{}",
        show(&all)
    );
    // session-svc's edge call → the edge API's server span.
    let respond = trace
        .iter()
        .find(|s| s.service == "sipbus-sip-edge" && s.name.ends_with("/Respond"))
        .unwrap();
    let caller = parent_of(respond).unwrap();
    assert_eq!(
        (caller.service.as_str(), caller.name.as_str()),
        ("sipbus-session-svc", "edge.respond"),
        "{}",
        show(&all)
    );
    // Store calls and built-in supplements inside session-svc's span tree.
    assert!(
        trace
            .iter()
            .any(|s| s.service == "sipbus-session-svc" && s.name.starts_with("store.")),
        "{}",
        show(&all)
    );
    assert!(
        trace
            .iter()
            .any(|s| s.name == "extension.call" && s.attr("extension.module") == Some("caller-id")),
        "{}",
        show(&all)
    );
    // The external supplement was called in this trace, as a child of
    // session-svc's extension span for it.
    let probe_calls: HashSet<String> = trace
        .iter()
        .filter(|s| s.name == "extension.call" && s.attr("extension.module") == Some("probe"))
        .map(|s| s.span_id.clone())
        .collect();
    assert!(!probe_calls.is_empty(), "{}", show(&all));
    let seen = probe.0.lock().unwrap().clone();
    let in_trace: Vec<&String> = seen.iter().filter(|t| t.contains(&root.trace_id)).collect();
    assert!(
        !in_trace.is_empty(),
        "the supplement saw {seen:?}, trace {}",
        root.trace_id
    );
    for t in in_trace {
        let parent = t.split('-').nth(2).unwrap_or_default();
        assert!(
            probe_calls.contains(parent),
            "supplement call {t}: parent is not a probe extension span:\n{}",
            show(&all)
        );
    }
    Ok(())
}
