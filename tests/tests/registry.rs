//! The extension registry end to end: a session supplement served by the
//! test registers with all-in-one through `sipbus.extension.v1.Registry`,
//! joins new calls, shows in `sipbus extensions`, leaves when its lease
//! lapses (a call it already joined meets its failure policy), and joins
//! again when it registers anew. A wrong token is refused. Then
//! `sipbus extension-check` finds the faults of two broken supplements.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use proto::extension::v1 as rpb;
use proto::extension::v1::registry_client::RegistryClient;
use proto::session::v1 as spb;
use proto::session::v1::session_supplement_server::{SessionSupplement, SessionSupplementServer};
use sipbus_tests::examples::{extension_check, extensions, listed, wait_listing};
use sipbus_tests::{
    Background, Sipbus, free_port, register_contact, scenario_path, serve_grpc, sipp_args, sipp_callee, temp_file,
};
use tonic::{Request, Response, Status};

const TOKEN: &str = "registry-test-token-0123456789";

/// A supplement that tags outgoing INVITEs with its own name; `calls`
/// counts every callback it serves.
#[derive(Clone)]
struct Tagger {
    tag: &'static str,
    /// ADD instead of REPLACE, with a counter: not idempotent.
    counting: bool,
    delay: Duration,
    calls: Arc<AtomicU64>,
}

impl Tagger {
    fn new(tag: &'static str) -> Self {
        Self {
            tag,
            counting: false,
            delay: Duration::ZERO,
            calls: Arc::default(),
        }
    }
}

#[tonic::async_trait]
impl SessionSupplement for Tagger {
    async fn begin(&self, _r: Request<spb::BeginRequest>) -> Result<Response<spb::BeginReply>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(spb::BeginReply::default()))
    }
    async fn end(&self, _r: Request<spb::EndRequest>) -> Result<Response<spb::EndReply>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(spb::EndReply {}))
    }
    async fn incoming_request(&self, _r: Request<spb::RequestEvent>) -> Result<Response<spb::RequestVerdict>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.delay).await;
        Ok(Response::new(spb::RequestVerdict::default()))
    }
    async fn incoming_response(&self, _r: Request<spb::ResponseEvent>) -> Result<Response<spb::ResponseReply>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(spb::ResponseReply::default()))
    }
    async fn outgoing_request(&self, r: Request<spb::OutgoingEvent>) -> Result<Response<spb::OutgoingReply>, Status> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let is_invite = matches!(
            r.into_inner().message.and_then(|m| m.start_line),
            Some(proto::edge::v1::sip_message::StartLine::Request(l)) if l.method == "INVITE"
        );
        let edits = if is_invite {
            let (op, value) = if self.counting {
                (spb::header_edit::Op::Add, format!("{} {n}", self.tag))
            } else {
                (spb::header_edit::Op::Replace, self.tag.to_owned())
            };
            vec![spb::HeaderEdit {
                op: op as i32,
                name: "X-Tagged-By".into(),
                value,
            }]
        } else {
            Vec::new()
        };
        Ok(Response::new(spb::OutgoingReply {
            edits,
            ..Default::default()
        }))
    }
    async fn outgoing_response(&self, _r: Request<spb::OutgoingEvent>) -> Result<Response<spb::OutgoingReply>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(spb::OutgoingReply::default()))
    }
    async fn timer(&self, _r: Request<spb::TimerEvent>) -> Result<Response<spb::TimerReply>, Status> {
        Ok(Response::new(spb::TimerReply::default()))
    }
}

/// Serves a supplement; dropping the runtime stops it like a crash.
fn serve(s: Tagger) -> anyhow::Result<(SocketAddr, tokio::runtime::Runtime)> {
    serve_grpc(tonic::transport::Server::builder().add_service(SessionSupplementServer::new(s)))
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

fn registration(name: &str, address: SocketAddr, lease_seconds: u32) -> rpb::RegisterRequest {
    rpb::RegisterRequest {
        point: rpb::Point::SessionSupplement as i32,
        name: name.into(),
        address: format!("http://{address}"),
        filters: Vec::new(),
        types: Vec::new(),
        priority: Some(50),
        timeout_ms: 300,
        on_failure: rpb::FailurePolicy::FailOpen as i32,
        reject_status: 0,
        lease_seconds,
    }
}

/// One call alice -> bob; the callee's trace.
fn call(server: SocketAddr, round: &str, hold_ms: u32) -> anyhow::Result<(Background, Background, String)> {
    let port = free_port()?;
    register_contact(server, "bob", port)?;
    let trace = temp_file(&format!("registry-uas-{round}.msg"), "")?;
    let trace_text = trace.to_str().unwrap_or_default().to_owned();
    let callee = sipp_callee("call_uas.xml", port, &["-trace_msg", "-message_file", &trace_text]);
    let hold = hold_ms.to_string();
    let args = sipp_args(server, &scenario_path("call_uac.xml"), "bob", &["-d", &hold]);
    let caller = Background::start(args, Duration::from_secs(50));
    Ok((caller, callee, trace_text))
}

fn finish(caller: Background, callee: Background, trace: &str, logs: &dyn Fn() -> String) -> String {
    let a = caller.finish().unwrap();
    assert_eq!(a.exit_code, Some(0), "caller: {}\n{}", a.output, logs());
    let b = callee.finish().unwrap();
    assert_eq!(b.exit_code, Some(0), "callee: {}\n{}", b.output, logs());
    let text = std::fs::read_to_string(trace).unwrap();
    let invite = text.split("INVITE sip:").nth(1).unwrap_or("").to_owned();
    assert!(
        invite.contains("Call-ID"),
        "the callee's trace holds its INVITE: {text}"
    );
    invite
}

#[test]
fn a_registered_supplement_joins_lapses_and_returns() -> anyhow::Result<()> {
    let env = [
        ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5", "SHA-256"]"#),
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "alice", password = "secret"}, {user = "bob", password = "secret"}]"#,
        ),
        ("SIPBUS_SESSION__AUTHENTICATE", "false"),
        ("SIPBUS_REGISTRY__TOKEN", TOKEN),
        ("SIPBUS_REGISTRY__REFRESH_MS", "200"),
        ("SIPBUS_REGISTRY__MIN_LEASE_S", "1"),
    ];
    let sipbus = Sipbus::start("all", &env)?;
    let logs = || sipbus.log_text();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut registry = rt.block_on(async { RegistryClient::connect(format!("http://{}", sipbus.grpc)).await })?;

    let first = Tagger::new("first");
    let (addr, server) = serve(first.clone())?;

    // A wrong token is refused, and logged.
    let refused = rt
        .block_on(registry.register(with_token(registration("tagger", addr, 2), "not-the-token-at-all")))
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(logs().contains("registry call refused"), "{}", logs());
    // A name a built-in has is refused.
    let taken = rt
        .block_on(registry.register(with_token(registration("caller-id", addr, 2), TOKEN)))
        .unwrap_err();
    assert_eq!(taken.code(), tonic::Code::AlreadyExists, "{taken:?}");

    let reg = rt
        .block_on(registry.register(with_token(registration("tagger", addr, 2), TOKEN)))?
        .into_inner();
    assert_eq!(reg.lease_seconds, 2);
    let listing = wait_listing(sipbus.grpc, TOKEN, "registered, listed", |l| {
        listed(l, "tagger").is_some()
    })?;
    let cells = listed(&listing, "tagger").unwrap();
    assert_eq!(cells[1], "registered", "{listing}");
    assert_eq!(cells[3], format!("http://{addr}"), "{listing}");
    assert_eq!(
        (cells[5].as_str(), cells[6].as_str(), cells[7].as_str()),
        ("50", "300ms", "open")
    );
    assert!(
        listed(&listing, "caller-id").is_some_and(|c| c[1] == "built-in"),
        "{listing}"
    );

    // Renewed (every 500 ms, as a module would), it joins a new call.
    let renewing = Arc::new(AtomicBool::new(true));
    let renewer = {
        let (renewing, id, grpc) = (renewing.clone(), reg.id.clone(), sipbus.grpc);
        std::thread::spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let mut client = rt.block_on(RegistryClient::connect(format!("http://{grpc}")))?;
            while renewing.load(Ordering::Relaxed) {
                rt.block_on(client.renew(with_token(rpb::RenewRequest { id: id.clone() }, TOKEN)))?;
                std::thread::sleep(Duration::from_millis(500));
            }
            Ok(())
        })
    };
    let (a, b, trace) = call(sipbus.sip, "joined", 0)?;
    let invite = finish(a, b, &trace, &logs);
    assert!(invite.contains("X-Tagged-By: first"), "{invite}\n{}", logs());
    let listing = extensions(sipbus.grpc, TOKEN, Some("supplement"));
    let calls: u64 = listed(&listing, "tagger").unwrap()[9].parse()?;
    assert!(calls >= 4, "begin, INVITE, responses, end counted: {listing}");

    // A call that begins with it, then it dies without deregistering: the
    // call goes on (fail open: its BYE meets the lapsed module's policy)
    // and new calls no longer call it.
    let before = first.calls.load(Ordering::Relaxed);
    let (a, b, trace) = call(sipbus.sip, "lapsing", 6000)?;
    // Begin, the INVITE, its forwarding: the call began with it.
    let start = std::time::Instant::now();
    while first.calls.load(Ordering::Relaxed) < before + 3 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the call never reached the supplement\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    renewing.store(false, Ordering::Relaxed);
    renewer.join().map_err(|_| anyhow::anyhow!("renewer panicked"))??;
    drop(server);
    wait_listing(sipbus.grpc, TOKEN, "lapsed after its lease", |l| {
        listed(l, "tagger").is_some_and(|c| c[8] == "lapsed")
    })?;
    let invite = finish(a, b, &trace, &logs);
    assert!(invite.contains("X-Tagged-By: first"), "{invite}");
    assert!(
        logs().contains("no live instance"),
        "the running call's BYE met the lapsed module's policy:\n{}",
        logs()
    );
    let renewal = rt
        .block_on(registry.renew(with_token(rpb::RenewRequest { id: reg.id.clone() }, TOKEN)))
        .unwrap_err();
    assert_eq!(renewal.code(), tonic::Code::NotFound, "{renewal:?}");
    let (a, b, trace) = call(sipbus.sip, "lapsed", 0)?;
    let invite = finish(a, b, &trace, &logs);
    assert!(!invite.contains("X-Tagged-By"), "{invite}");

    // Back on another address, registered again: new calls use it.
    let (addr, _server) = serve(Tagger::new("second"))?;
    let reg = rt
        .block_on(registry.register(with_token(registration("tagger", addr, 30), TOKEN)))?
        .into_inner();
    let (a, b, trace) = call(sipbus.sip, "returned", 0)?;
    let invite = finish(a, b, &trace, &logs);
    assert!(invite.contains("X-Tagged-By: second"), "{invite}\n{}", logs());
    // Deregistered: gone from new calls at once.
    rt.block_on(registry.deregister(with_token(rpb::DeregisterRequest { id: reg.id }, TOKEN)))?;
    let listing = extensions(sipbus.grpc, TOKEN, Some("supplement"));
    assert_eq!(listed(&listing, "tagger").unwrap()[8], "lapsed", "{listing}");
    Ok(())
}

#[test]
fn extension_check_finds_a_repeating_and_a_slow_supplement() -> anyhow::Result<()> {
    let (good, _g) = serve(Tagger::new("good"))?;
    let (code, out) = extension_check("supplement", &format!("http://{good}"), &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("0 failed"), "{out}");

    let mut counting = Tagger::new("counting");
    counting.counting = true;
    let (addr, _c) = serve(counting)?;
    let (code, out) = extension_check("supplement", &format!("http://{addr}"), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL  OutgoingRequest called twice gives the same message"),
        "{out}"
    );
    assert!(out.contains("prefer REPLACE to ADD"), "the rule is quoted: {out}");
    assert!(out.contains("pass  every call answers within the deadline"), "{out}");

    let mut slow = Tagger::new("slow");
    slow.delay = Duration::from_millis(800);
    let (addr, _s) = serve(slow)?;
    let (code, out) = extension_check("supplement", &format!("http://{addr}"), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL  every call answers within the deadline"), "{out}");
    assert!(out.contains("IncomingRequest took"), "{out}");
    assert!(out.contains("pass  OutgoingRequest called twice"), "{out}");

    // Nothing listening: the contract's cases fail (only the deadline
    // case passes, having nothing late to report).
    let (code, out) = extension_check("sdp", &format!("http://127.0.0.1:{}", free_port()?), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL  Negotiate of an offered audio stream"), "{out}");
    assert_eq!(out.matches("pass  ").count(), 1, "{out}");
    Ok(())
}
