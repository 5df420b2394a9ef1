//! Cases of `sipbus.session.v1.SessionSupplement`.

use bytes::Bytes;
use proto::edge::v1 as epb;
use proto::session::v1 as pb;
use proto::session::v1::session_supplement_client::SessionSupplementClient;
use session_svc::supplements::edit_refusal;
use sip_message::Message;
use tonic::transport::Channel;

use super::Report;
use crate::cli::CheckArgs;

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-check-1;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=check-a\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: extension-check-1@192.0.2.10\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@192.0.2.10:5060>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 0\r\n\r\n";

const RINGING: &str = "SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-check-1\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=check-a\r\n\
To: <sip:bob@example.com>;tag=check-b\r\n\
Call-ID: extension-check-1@192.0.2.10\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:bob@192.0.2.20:5060>\r\n\
Content-Length: 0\r\n\r\n";

fn message(text: &str) -> epb::SipMessage {
    match Message::parse(Bytes::from(text.to_owned())) {
        Ok(m) => proto::convert::to_proto(&m),
        // The texts above are valid; an empty message would show as a
        // failed case, not a crash.
        Err(_) => epb::SipMessage::default(),
    }
}

/// The same message with its method (for `--filter`) in the request line
/// and CSeq.
fn with_method(text: &str, method: &str) -> epb::SipMessage {
    message(
        &text
            .replace("INVITE sip:", &format!("{method} sip:"))
            .replace("CSeq: 1 INVITE", &format!("CSeq: 1 {method}")),
    )
}

fn session() -> Option<pb::Session> {
    Some(pb::Session {
        id: "extension-check-session".into(),
        caller: "sip:alice@example.com".into(),
        callee: "sip:bob@example.com".into(),
        endpoint: "alice".into(),
    })
}

/// Applies edits as sipbus does; `Err` names one sipbus would refuse.
fn apply(m: &epb::SipMessage, edits: &[pb::HeaderEdit]) -> Result<epb::SipMessage, String> {
    let mut m = m.clone();
    for e in edits {
        let op = pb::header_edit::Op::try_from(e.op).unwrap_or(pb::header_edit::Op::Unspecified);
        let value = (op != pb::header_edit::Op::Remove).then_some(e.value.as_str());
        if let Some(why) = edit_refusal(&e.name, value) {
            return Err(format!("edit of `{}` is refused: {why}", e.name));
        }
        let same = |h: &epb::Header| h.name.eq_ignore_ascii_case(&e.name);
        match op {
            pb::header_edit::Op::Add => m.headers.push(epb::Header {
                name: e.name.clone(),
                value: e.value.clone(),
            }),
            pb::header_edit::Op::Replace => {
                m.headers.retain(|h| !same(h));
                m.headers.push(epb::Header {
                    name: e.name.clone(),
                    value: e.value.clone(),
                });
            }
            pb::header_edit::Op::Remove => m.headers.retain(|h| !same(h)),
            pb::header_edit::Op::Unspecified => return Err(format!("edit of `{}` has no op", e.name)),
        }
    }
    Ok(m)
}

fn headers(m: &epb::SipMessage) -> Vec<String> {
    m.headers.iter().map(|h| format!("{}: {}", h.name, h.value)).collect()
}

/// The stored values stay within what sipbus keeps (64 values, keys of
/// 256 bytes, values of 4096).
fn data_ok(data: &Option<pb::Datastore>) -> Result<(), String> {
    let Some(d) = data else { return Ok(()) };
    if d.values.len() > 64 {
        return Err(format!("{} datastore values (sipbus keeps 64)", d.values.len()));
    }
    if let Some((k, v)) = d.values.iter().find(|(k, v)| k.len() > 256 || v.len() > 4096) {
        return Err(format!("datastore value `{k}` of {} bytes is over the bounds", v.len()));
    }
    Ok(())
}

const RULE_BEGIN: &str = "Begin / End: once per session, End also when the call failed";
const RULE_REQUEST: &str = "IncomingRequest: a supplement may stop the chain with a response (a status line, 300 to 699), or let the request go on";
const RULE_RESPONSE: &str = "IncomingResponse: every supplement runs; none can stop it";
const RULE_EDITS: &str = "OutgoingRequest / OutgoingResponse: supplements return header edits (names are tokens, values one line, Via, Call-ID, CSeq, To, Content-Length, Max-Forwards and Route are sipbus's)";
const RULE_TWICE: &str =
    "They may be called more than once for one message (a retried send) and must be idempotent: prefer REPLACE to ADD";
const RULE_DATA: &str = "Datastore: named values a supplement keeps for the session (sipbus keeps up to 64, keys to 256 bytes, values to 4096)";
const RULE_TIMER: &str = "Timer: the supplement's timer fired (see Action.set_timer_ms)";

pub(super) async fn run(channel: Channel, args: &CheckArgs, report: &mut Report) {
    let mut client = SessionSupplementClient::new(channel);
    let method = args.filter.clone().unwrap_or_else(|| "INVITE".into());
    let request = with_method(INVITE, &method);

    let begun = report
        .call(
            "Begin",
            client.begin(pb::BeginRequest {
                session: session(),
                data: None,
            }),
        )
        .await;
    let data = begun.as_ref().ok().and_then(|r| r.data.clone());
    report.check(
        "Begin answers",
        RULE_BEGIN,
        begun.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    if let Ok(r) = &begun {
        report.check("Begin keeps its datastore within bounds", RULE_DATA, data_ok(&r.data));
    }

    let verdict = report
        .call(
            "IncomingRequest",
            client.incoming_request(pb::RequestEvent {
                session: session(),
                leg: pb::Leg::A as i32,
                request: Some(request.clone()),
                data: data.clone(),
            }),
        )
        .await;
    report.check(
        format!("IncomingRequest ({method} from the caller) continues or stops with a usable response"),
        RULE_REQUEST,
        verdict.and_then(|v| match v.stop.and_then(|s| s.start_line) {
            None => Ok(()),
            Some(epb::sip_message::StartLine::Status(s)) if (300..700).contains(&s.code) => Ok(()),
            Some(epb::sip_message::StartLine::Status(s)) => Err(format!("stop with status {}", s.code)),
            Some(epb::sip_message::StartLine::Request(_)) => Err("stop with a request, not a response".into()),
        }),
    );

    let odd = report
        .call(
            "IncomingRequest (no headers, no session)",
            client.incoming_request(pb::RequestEvent {
                session: None,
                leg: pb::Leg::B as i32,
                request: Some(epb::SipMessage {
                    start_line: Some(epb::sip_message::StartLine::Request(epb::RequestLine {
                        method: method.clone(),
                        uri: "sip:bob@example.com".into(),
                    })),
                    headers: Vec::new(),
                    body: Default::default(),
                }),
                data: None,
            }),
        )
        .await;
    report.check(
        "IncomingRequest answers a request with no headers and no session",
        "What another process sends is checked before it is used: a module answers odd input instead of failing",
        odd.map(|_| ()),
    );

    let heard = report
        .call(
            "IncomingResponse",
            client.incoming_response(pb::ResponseEvent {
                session: session(),
                leg: pb::Leg::B as i32,
                response: Some(message(RINGING)),
                data: data.clone(),
            }),
        )
        .await;
    report.check("IncomingResponse (180) answers", RULE_RESPONSE, heard.map(|_| ()));

    for (hook, leg, msg) in [
        ("OutgoingRequest", pb::Leg::B, request.clone()),
        ("OutgoingResponse", pb::Leg::A, message(RINGING)),
    ] {
        let event = || pb::OutgoingEvent {
            session: session(),
            leg: leg as i32,
            message: Some(msg.clone()),
            data: data.clone(),
        };
        let first = match hook {
            "OutgoingRequest" => report.call(hook, client.outgoing_request(event())).await,
            _ => report.call(hook, client.outgoing_response(event())).await,
        };
        let once = first.clone().and_then(|r| apply(&msg, &r.edits));
        report.check(
            format!("{hook} edits are ones sipbus applies"),
            RULE_EDITS,
            once.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        let (Ok(first), Ok(once)) = (first, once) else {
            continue;
        };
        let second = match hook {
            "OutgoingRequest" => report.call(hook, client.outgoing_request(event())).await,
            _ => report.call(hook, client.outgoing_response(event())).await,
        };
        let twice = second.and_then(|r| {
            if r.edits != first.edits {
                return Err(format!(
                    "the second call gave other edits: {:?} then {:?}",
                    first.edits.iter().map(|e| &e.name).collect::<Vec<_>>(),
                    r.edits.iter().map(|e| &e.name).collect::<Vec<_>>()
                ));
            }
            let again = apply(&once, &r.edits)?;
            if headers(&again) != headers(&once) {
                let extra: Vec<String> = headers(&again)
                    .into_iter()
                    .filter(|h| !headers(&once).contains(h) || headers(&again).iter().filter(|x| *x == h).count() > 1)
                    .collect();
                return Err(format!(
                    "applied twice the message differs from applied once: {extra:?}"
                ));
            }
            Ok(())
        });
        report.check(format!("{hook} called twice gives the same message"), RULE_TWICE, twice);
    }

    let timer = report
        .call(
            "Timer",
            client.timer(pb::TimerEvent {
                session: session(),
                data: data.clone(),
            }),
        )
        .await;
    report.check("Timer answers", RULE_TIMER, timer.map(|_| ()));

    let end = report
        .call(
            "End",
            client.end(pb::EndRequest {
                session: session(),
                data,
            }),
        )
        .await;
    report.check("End answers", RULE_BEGIN, end.map(|_| ()));
}
