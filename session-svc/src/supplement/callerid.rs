//! Built-in: caller identity (RFC 3325 P-Asserted-Identity, the older
//! Remote-Party-ID, RFC 3323 Privacy). The identity a caller may assert is
//! taken from its P-Asserted-Identity / Remote-Party-ID only when its
//! endpoint is trusted, else from its From; it is sent on the B-leg as PAI
//! and / or RPID as each callee's settings say, and From becomes anonymous
//! when the caller asked for privacy.

use std::collections::BTreeMap;

use proto::session::v1 as spb;
use proto::session::v1::header_edit::Op;
use proto::session::v1::session_supplement_server::SessionSupplement;
use sip_message::typed::NameAddr;
use sip_message::{Message, Method, Uri};
use tonic::{Request, Response, Status};

use super::{draft_of, edit, message_of};
use crate::config::IdentityTrust;

pub const ANONYMOUS: &str = "\"Anonymous\" <sip:anonymous@anonymous.invalid>";

pub struct CallerId {
    trust: BTreeMap<String, IdentityTrust>,
}

impl CallerId {
    pub fn new(trust: BTreeMap<String, IdentityTrust>) -> Self {
        Self { trust }
    }

    fn trust_for(&self, endpoint: &str) -> IdentityTrust {
        self.trust
            .get(endpoint)
            .or_else(|| self.trust.get("default"))
            .copied()
            .unwrap_or_default()
    }
}

/// The user part of a SIP URI, or the whole text.
fn user_of(uri: &str) -> String {
    match Uri::parse(uri) {
        Ok(Uri::Sip(u)) => u.user_decoded().map(|c| c.into_owned()).unwrap_or_default(),
        _ => uri.to_owned(),
    }
}

fn endpoints(s: &Option<spb::Session>) -> (String, String) {
    let Some(s) = s else {
        return (String::new(), String::new());
    };
    let a = if s.endpoint.is_empty() {
        user_of(&s.caller)
    } else {
        s.endpoint.clone()
    };
    (a, user_of(&s.callee))
}

/// `"display" <uri>` without parameters.
fn identity_of(value: &str) -> Option<String> {
    let na = NameAddr::parse(value).ok()?;
    Some(match na.display_name() {
        Some(d) if !d.is_empty() => format!("\"{}\" <{}>", d.replace('"', ""), na.uri_text),
        _ => format!("<{}>", na.uri_text),
    })
}

/// `"display" <sip:user@host>` for the authenticated `user`, with the
/// display name and host of the From.
fn authenticated_identity(from: &str, user: &str) -> Option<String> {
    let na = NameAddr::parse(from).ok()?;
    let host = match &na.uri {
        Uri::Sip(u) => u.host.to_string(),
        _ => return None,
    };
    let uri = format!("sip:{user}@{host}");
    Some(match na.display_name() {
        Some(d) if !d.is_empty() => format!("\"{}\" <{uri}>", d.replace('"', "")),
        _ => format!("<{uri}>"),
    })
}

fn get(d: &Option<spb::Datastore>, k: &str) -> Option<String> {
    d.as_ref()?
        .values
        .get(k)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
}

fn initial_invite(m: &Message) -> bool {
    m.method() == Some(&Method::Invite) && m.to_tag().is_none()
}

fn wants_privacy(privacy: &str) -> bool {
    privacy
        .split(';')
        .map(str::trim)
        .any(|p| p.eq_ignore_ascii_case("id") || p.eq_ignore_ascii_case("user") || p.eq_ignore_ascii_case("header"))
}

#[tonic::async_trait]
impl SessionSupplement for CallerId {
    async fn begin(&self, _r: Request<spb::BeginRequest>) -> Result<Response<spb::BeginReply>, Status> {
        Ok(Response::new(spb::BeginReply { data: None }))
    }

    async fn end(&self, _r: Request<spb::EndRequest>) -> Result<Response<spb::EndReply>, Status> {
        Ok(Response::new(spb::EndReply {}))
    }

    async fn incoming_request(&self, r: Request<spb::RequestEvent>) -> Result<Response<spb::RequestVerdict>, Status> {
        let ev = r.into_inner();
        let req = message_of(ev.request)?;
        if ev.leg != spb::Leg::A as i32 || !initial_invite(&req) {
            return Ok(Response::new(spb::RequestVerdict { stop: None, data: None }));
        }
        let (caller, _) = endpoints(&ev.session);
        let trust = self.trust_for(&caller);
        let pai = req.header("P-Asserted-Identity").and_then(identity_of);
        let rpid_raw = req.header("Remote-Party-ID");
        let rpid = rpid_raw.and_then(identity_of);
        let from_value = req.known_header(sip_message::Known::From).unwrap_or("");
        // An authenticated caller is who it proved to be, whatever its From
        // says; an unauthenticated one is its From.
        let authenticated = ev
            .session
            .as_ref()
            .filter(|s| !s.endpoint.is_empty())
            .and_then(|s| authenticated_identity(from_value, &s.endpoint));
        let from = authenticated.or_else(|| identity_of(from_value));
        let asserted = if trust.trust_inbound { pai.or(rpid) } else { None }.or(from);
        let mut privacy = req.header("Privacy").unwrap_or("").trim().to_ascii_lowercase();
        if privacy.is_empty() && trust.trust_inbound && rpid_raw.is_some_and(|v| v.contains("privacy=full")) {
            privacy = "id".into();
        }
        let mut data = spb::Datastore::default();
        if let Some(a) = asserted {
            data.values.insert("asserted".into(), a.into_bytes().into());
        }
        data.values.insert("privacy".into(), privacy.into_bytes().into());
        Ok(Response::new(spb::RequestVerdict {
            stop: None,
            data: Some(data),
        }))
    }

    async fn incoming_response(&self, _r: Request<spb::ResponseEvent>) -> Result<Response<spb::ResponseReply>, Status> {
        Ok(Response::new(spb::ResponseReply { data: None }))
    }

    async fn outgoing_request(&self, r: Request<spb::OutgoingEvent>) -> Result<Response<spb::OutgoingReply>, Status> {
        let ev = r.into_inner();
        let req = draft_of(ev.message)?;
        let mut edits = Vec::new();
        if ev.leg == spb::Leg::B as i32 && initial_invite(&req) {
            let (_, callee) = endpoints(&ev.session);
            let trust = self.trust_for(&callee);
            let privacy = get(&ev.data, "privacy").unwrap_or_default();
            let private = wants_privacy(&privacy);
            edits.push(edit(Op::Remove, "P-Asserted-Identity", ""));
            edits.push(edit(Op::Remove, "Remote-Party-ID", ""));
            edits.push(edit(Op::Remove, "Privacy", ""));
            if let Some(asserted) = get(&ev.data, "asserted") {
                if trust.send_pai {
                    edits.push(edit(Op::Replace, "P-Asserted-Identity", &asserted));
                }
                if trust.send_rpid {
                    let p = if private { "full" } else { "off" };
                    edits.push(edit(
                        Op::Replace,
                        "Remote-Party-ID",
                        &format!("{asserted};party=calling;screen=yes;privacy={p}"),
                    ));
                }
            }
            if !privacy.is_empty() && privacy != "none" {
                edits.push(edit(Op::Replace, "Privacy", &privacy));
            }
            if private {
                edits.push(edit(Op::Replace, "From", ANONYMOUS));
            }
        }
        Ok(Response::new(spb::OutgoingReply { edits, data: None }))
    }

    async fn outgoing_response(&self, r: Request<spb::OutgoingEvent>) -> Result<Response<spb::OutgoingReply>, Status> {
        let ev = r.into_inner();
        let resp = draft_of(ev.message)?;
        let mut edits = Vec::new();
        let to_invite = resp.cseq().is_ok_and(|c| c.method == Method::Invite);
        let code = resp.status().unwrap_or(0);
        if ev.leg == spb::Leg::A as i32 && to_invite && (180..300).contains(&code) {
            // The connected identity (RFC 4916 style) for a trusted caller.
            let (caller, _) = endpoints(&ev.session);
            edits.push(edit(Op::Remove, "P-Asserted-Identity", ""));
            edits.push(edit(Op::Remove, "Remote-Party-ID", ""));
            if self.trust_for(&caller).send_pai
                && let Some(s) = &ev.session
                && !s.callee.is_empty()
            {
                edits.push(edit(Op::Replace, "P-Asserted-Identity", &format!("<{}>", s.callee)));
            }
        }
        Ok(Response::new(spb::OutgoingReply { edits, data: None }))
    }
}
