//! The first two extension points over gRPC, with real servers started by
//! the test and registered by configuration: a session supplement that adds
//! a header to outgoing INVITEs and refuses a blocked number with 403, and
//! an SDP handler that claims `m=text` (RFC 4103), which the built-in RTP
//! handler declines. Then each server is stopped and the configured failure
//! policy applies: the SDP handler's `decline` (the text stream gets port
//! 0, the call goes on) and the supplement's `reject` (503).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use proto::convert::to_proto;
use proto::edge::v1 as epb;
use proto::sdp::v1 as dpb;
use proto::sdp::v1::sdp_handler_server::{SdpHandler, SdpHandlerServer};
use proto::session::v1 as spb;
use proto::session::v1::session_supplement_server::{SessionSupplement, SessionSupplementServer};
use sip_message::Message;
use sipbus_tests::{Sipbus, free_port, register_contact, scenario, serve_grpc, sipp_callee_at, sipp_caller, temp_file};
use tonic::{Request, Response, Status};

struct Screen;

fn ruri_user(m: &Option<epb::SipMessage>) -> String {
    match m.as_ref().and_then(|m| m.start_line.clone()) {
        Some(epb::sip_message::StartLine::Request(r)) => r
            .uri
            .trim_start_matches("sip:")
            .split('@')
            .next()
            .unwrap_or("")
            .to_owned(),
        _ => String::new(),
    }
}

fn has_to_tag(m: &Option<epb::SipMessage>) -> bool {
    m.as_ref().is_some_and(|m| {
        m.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("To") && h.value.contains("tag="))
    })
}

#[tonic::async_trait]
impl SessionSupplement for Screen {
    async fn begin(&self, _r: Request<spb::BeginRequest>) -> Result<Response<spb::BeginReply>, Status> {
        Ok(Response::new(spb::BeginReply::default()))
    }
    async fn end(&self, _r: Request<spb::EndRequest>) -> Result<Response<spb::EndReply>, Status> {
        Ok(Response::new(spb::EndReply {}))
    }
    async fn incoming_request(&self, r: Request<spb::RequestEvent>) -> Result<Response<spb::RequestVerdict>, Status> {
        let ev = r.into_inner();
        let stop = (ruri_user(&ev.request) == "blocked")
            .then(|| to_proto(&Message::response(403, "Forbidden (blocked number)")));
        Ok(Response::new(spb::RequestVerdict {
            stop,
            ..Default::default()
        }))
    }
    async fn incoming_response(&self, _r: Request<spb::ResponseEvent>) -> Result<Response<spb::ResponseReply>, Status> {
        Ok(Response::new(spb::ResponseReply::default()))
    }
    async fn outgoing_request(&self, r: Request<spb::OutgoingEvent>) -> Result<Response<spb::OutgoingReply>, Status> {
        let ev = r.into_inner();
        let mut edits = Vec::new();
        if ev.leg == spb::Leg::B as i32 && !has_to_tag(&ev.message) {
            edits.push(spb::HeaderEdit {
                op: spb::header_edit::Op::Replace as i32,
                name: "X-Screened".into(),
                value: "by-external-supplement".into(),
            });
        }
        Ok(Response::new(spb::OutgoingReply {
            edits,
            ..Default::default()
        }))
    }
    async fn outgoing_response(&self, _r: Request<spb::OutgoingEvent>) -> Result<Response<spb::OutgoingReply>, Status> {
        Ok(Response::new(spb::OutgoingReply::default()))
    }
    async fn timer(&self, _r: Request<spb::TimerEvent>) -> Result<Response<spb::TimerReply>, Status> {
        Ok(Response::new(spb::TimerReply::default()))
    }
}

/// Claims every `m=text` stream and forwards it unchanged (media flows
/// directly between the phones).
struct T140;

#[tonic::async_trait]
impl SdpHandler for T140 {
    async fn negotiate(&self, r: Request<dpb::NegotiateRequest>) -> Result<Response<dpb::NegotiateReply>, Status> {
        let offered = r.into_inner().offered.unwrap_or_default();
        let result = if offered.section.contains("t140/1000") {
            dpb::negotiate_reply::Result::Claim(offered.section)
        } else {
            dpb::negotiate_reply::Result::Decline(dpb::Decline {
                reason: "not T.140".into(),
            })
        };
        Ok(Response::new(dpb::NegotiateReply { result: Some(result) }))
    }
    async fn apply(&self, r: Request<dpb::ApplyRequest>) -> Result<Response<dpb::ApplyReply>, Status> {
        let answered = r.into_inner().answered.unwrap_or_default();
        Ok(Response::new(dpb::ApplyReply {
            section: answered.section,
        }))
    }
    async fn ended(&self, _r: Request<dpb::EndedRequest>) -> Result<Response<dpb::EndedReply>, Status> {
        Ok(Response::new(dpb::EndedReply {}))
    }
}

fn with_text(scenario_name: &str, port: u16, file: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(scenario(scenario_name))?;
    let marker = "a=fmtp:101 0-16\n      a=sendrecv";
    anyhow::ensure!(text.contains(marker), "{scenario_name} changed: no SDP marker");
    let with = text.replacen(
        marker,
        &format!("{marker}\n      m=text {port} RTP/AVP 98\n      a=rtpmap:98 t140/1000"),
        1,
    );
    Ok(temp_file(file, &with)?.to_str().unwrap_or_default().to_owned())
}

struct CallTraces {
    caller: String,
    callee: String,
}

/// One call from alice to `ext` with audio + text, both sides traced.
fn text_call(server: SocketAddr, round: &str) -> anyhow::Result<CallTraces> {
    let uas = with_text("call_uas.xml", 11002, &format!("text-uas-{round}.xml"))?;
    let uac = with_text("call_uac.xml", 11000, &format!("text-uac-{round}.xml"))?;
    let port = free_port()?;
    register_contact(server, "ext", port)?;
    let callee_trace = temp_file(&format!("text-uas-{round}.msg"), "")?;
    let caller_trace = temp_file(&format!("text-uac-{round}.msg"), "")?;
    let b = sipp_callee_at(
        &uas,
        port,
        &["-trace_msg", "-message_file", callee_trace.to_str().unwrap_or_default()],
    );
    let a = sipp_caller(
        server,
        &uac,
        "ext",
        "example.com",
        &["-trace_msg", "-message_file", caller_trace.to_str().unwrap_or_default()],
    )?;
    assert_eq!(a.exit_code, Some(0), "caller ({round}): {}", a.output);
    let b = b.finish()?;
    assert_eq!(b.exit_code, Some(0), "callee ({round}): {}", b.output);
    Ok(CallTraces {
        caller: std::fs::read_to_string(caller_trace)?,
        callee: std::fs::read_to_string(callee_trace)?,
    })
}

fn refused(server: SocketAddr, user: &str, status: u16) -> anyhow::Result<sipbus_tests::SippResult> {
    let text = std::fs::read_to_string(scenario("call_uac_reject.xml"))?.replace("[status]", &status.to_string());
    let file = temp_file(&format!("ext-reject-{status}-{user}.xml"), &text)?;
    sipp_caller(server, file.to_str().unwrap_or_default(), user, "example.com", &[])
}

#[test]
fn external_supplement_and_sdp_handler_with_failure_policies() -> anyhow::Result<()> {
    let (supp_addr, supp_rt) =
        serve_grpc(tonic::transport::Server::builder().add_service(SessionSupplementServer::new(Screen)))?;
    let (sdp_addr, sdp_rt) = serve_grpc(tonic::transport::Server::builder().add_service(SdpHandlerServer::new(T140)))?;
    let supplements = format!(
        r#"[{{name = "screen", url = "http://{supp_addr}", methods = ["INVITE"], priority = 10, timeout_ms = 300, on_failure = "reject", reject_status = 503}}, {{name = "caller-id"}}, {{name = "reason"}}]"#
    );
    let handlers = format!(
        r#"[{{name = "t140", url = "http://{sdp_addr}", media = ["text"], timeout_ms = 300, on_failure = "decline"}}]"#
    );
    let mut env = vec![
        ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5", "SHA-256"]"#),
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "alice", password = "secret"}, {user = "ext", password = "secret"}, {user = "blocked", password = "secret"}]"#,
        ),
    ];
    env.push(("SIPBUS_SESSION__AUTHENTICATE", "false"));
    env.push(("SIPBUS_SESSION__SUPPLEMENTS", &supplements));
    env.push(("SIPBUS_SDP__HANDLERS", &handlers));
    let sipbus = Sipbus::start("all", &env)?;
    let logs = || sipbus.log_text();

    // Both extensions up: the header is added, the text stream claimed and
    // answered, and the built-in caller-id asserts the caller's identity.
    let t = text_call(sipbus.sip, "up")?;
    let invite = t.callee.split("INVITE sip:").nth(1).unwrap_or("");
    assert!(
        invite.contains("X-Screened: by-external-supplement"),
        "{invite}\n{}",
        logs()
    );
    assert!(
        invite.contains("m=text 11000 RTP/AVP 98"),
        "text offered onwards: {invite}"
    );
    assert!(
        invite.contains("P-Asserted-Identity: <sip:alice@example.com>"),
        "{invite}"
    );
    assert!(
        t.caller.contains("m=text 11002 RTP/AVP 98"),
        "text answered: {}",
        t.caller
    );

    // The supplement stops calls to a blocked number.
    let r = refused(sipbus.sip, "blocked", 403)?;
    assert_eq!(r.exit_code, Some(0), "blocked: {}\n{}", r.output, logs());

    // SDP handler gone: its policy declines the text stream; audio goes on.
    sdp_rt.shutdown_background();
    let t = text_call(sipbus.sip, "sdp-down")?;
    let invite = t.callee.split("INVITE sip:").nth(1).unwrap_or("");
    assert!(
        invite.contains("m=text 0 RTP/AVP 98"),
        "text declined onwards: {invite}\n{}",
        logs()
    );
    assert!(invite.contains("m=audio "), "{invite}");
    assert!(
        t.caller.contains("m=text 0 "),
        "text declined to the caller: {}",
        t.caller
    );
    assert!(logs().contains("t140"), "the handler failure is logged:\n{}", logs());

    // Supplement gone: its policy rejects INVITEs with 503.
    supp_rt.shutdown_background();
    let r = refused(sipbus.sip, "ext", 503)?;
    assert_eq!(r.exit_code, Some(0), "supplement down: {}\n{}", r.output, logs());
    Ok(())
}
