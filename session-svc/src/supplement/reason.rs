//! Built-in: Reason (RFC 3326). Causes read from BYE, CANCEL and error
//! responses are carried to the other leg; a CANCEL of a forked branch
//! that lost to another branch says so (RFC 3326 with cause 200).

use proto::session::v1 as spb;
use proto::session::v1::header_edit::Op;
use proto::session::v1::session_supplement_server::SessionSupplement;
use sip_message::{Message, Method};
use tonic::{Request, Response, Status};

use super::{draft_of, edit, message_of};

pub const COMPLETED_ELSEWHERE: &str = "SIP;cause=200;text=\"Call completed elsewhere\"";

pub struct ReasonRelay;

fn reasons(m: &Message) -> Option<String> {
    let name = "Reason".into();
    let all: Vec<&str> = m.header_fields(&name).collect();
    (!all.is_empty()).then(|| all.join(", "))
}

fn get<'a>(d: &'a Option<spb::Datastore>, k: &str) -> Option<&'a [u8]> {
    d.as_ref()?.values.get(k).map(|v| v.as_ref())
}

#[tonic::async_trait]
impl SessionSupplement for ReasonRelay {
    async fn begin(&self, _r: Request<spb::BeginRequest>) -> Result<Response<spb::BeginReply>, Status> {
        Ok(Response::new(spb::BeginReply { data: None }))
    }

    async fn end(&self, _r: Request<spb::EndRequest>) -> Result<Response<spb::EndReply>, Status> {
        Ok(Response::new(spb::EndReply {}))
    }

    async fn incoming_request(&self, r: Request<spb::RequestEvent>) -> Result<Response<spb::RequestVerdict>, Status> {
        let ev = r.into_inner();
        let req = message_of(ev.request)?;
        let mut data = ev.data.unwrap_or_default();
        if matches!(req.method(), Some(Method::Bye | Method::Cancel)) {
            match reasons(&req) {
                Some(v) => data.values.insert("reason".into(), v.into_bytes().into()),
                None => data.values.remove("reason"),
            };
        }
        Ok(Response::new(spb::RequestVerdict {
            stop: None,
            data: Some(data),
        }))
    }

    async fn incoming_response(&self, r: Request<spb::ResponseEvent>) -> Result<Response<spb::ResponseReply>, Status> {
        let ev = r.into_inner();
        let resp = message_of(ev.response)?;
        let mut data = ev.data.unwrap_or_default();
        let invite = resp.cseq().is_ok_and(|c| c.method == Method::Invite);
        let code = resp.status().unwrap_or(0);
        if invite && ev.leg == spb::Leg::B as i32 {
            if (200..300).contains(&code) {
                data.values.insert("answered".into(), b"1".to_vec().into());
            } else if code >= 300
                && let Some(v) = reasons(&resp)
            {
                data.values.insert("response_reason".into(), v.into_bytes().into());
            }
        }
        Ok(Response::new(spb::ResponseReply { data: Some(data) }))
    }

    async fn outgoing_request(&self, r: Request<spb::OutgoingEvent>) -> Result<Response<spb::OutgoingReply>, Status> {
        let ev = r.into_inner();
        let req = draft_of(ev.message)?;
        let mut edits = Vec::new();
        match req.method() {
            Some(Method::Cancel) if get(&ev.data, "answered").is_some() => {
                edits.push(edit(Op::Replace, "Reason", COMPLETED_ELSEWHERE));
            }
            Some(Method::Cancel | Method::Bye) => {
                if let Some(v) = get(&ev.data, "reason").and_then(|v| std::str::from_utf8(v).ok()) {
                    edits.push(edit(Op::Replace, "Reason", v));
                }
            }
            _ => {}
        }
        Ok(Response::new(spb::OutgoingReply { edits, data: None }))
    }

    async fn outgoing_response(&self, r: Request<spb::OutgoingEvent>) -> Result<Response<spb::OutgoingReply>, Status> {
        let ev = r.into_inner();
        let resp = draft_of(ev.message)?;
        let mut edits = Vec::new();
        let invite = resp.cseq().is_ok_and(|c| c.method == Method::Invite);
        if invite
            && resp.status().unwrap_or(0) >= 300
            && let Some(v) = get(&ev.data, "response_reason").and_then(|v| std::str::from_utf8(v).ok())
        {
            edits.push(edit(Op::Replace, "Reason", v));
        }
        Ok(Response::new(spb::OutgoingReply { edits, data: None }))
    }
}
