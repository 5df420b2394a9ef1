//! Built-in `caller-id`: caller identity (RFC 3325 P-Asserted-Identity,
//! the older Remote-Party-ID, RFC 3323 Privacy). The identity a caller may
//! assert is taken from its P-Asserted-Identity / Remote-Party-ID only when
//! its endpoint is trusted, else from its From (or, authenticated, the
//! user it proved); it is sent on the callee's leg as PAI and / or RPID as
//! each callee's settings say, and From becomes anonymous when the caller
//! asked for privacy. Trust per endpoint is `[session.identity]`.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use extension::{ConfigProblem, Settings};
use serde::{Deserialize, Serialize};
use sip_message::typed::NameAddr;
use sip_message::{Known, Message, Method, Uri};

use super::chain::Erased;
use super::{Cx, Draft, SessionInfo, SessionSupplement, Verdict};
use crate::config::{IdentityTrust, SessionConfig};
use crate::session::Side;

pub const ANONYMOUS: &str = "\"Anonymous\" <sip:anonymous@anonymous.invalid>";

pub struct CallerId {
    trust: BTreeMap<String, IdentityTrust>,
}

/// What the caller's INVITE established.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Identity {
    /// `"display" <uri>` to assert on the callee's leg.
    asserted: Option<String>,
    /// The Privacy the caller asked for, lower case ("" for none).
    privacy: String,
}

pub fn build(settings: &Settings<'_>, config: &SessionConfig) -> Result<Arc<dyn Erased>, ConfigProblem> {
    settings.parse::<NoSettings>()?;
    Ok(Arc::new(CallerId {
        trust: config.identity.clone(),
    }))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

impl CallerId {
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

/// The endpoint names of the caller (authenticated user, else From user)
/// and of the callee.
fn endpoints(s: &SessionInfo) -> (String, String) {
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

fn initial_invite(m: &Message) -> bool {
    m.method() == Some(&Method::Invite) && m.to_tag().is_none()
}

fn wants_privacy(privacy: &str) -> bool {
    privacy
        .split(';')
        .map(str::trim)
        .any(|p| p.eq_ignore_ascii_case("id") || p.eq_ignore_ascii_case("user") || p.eq_ignore_ascii_case("header"))
}

#[async_trait]
impl SessionSupplement for CallerId {
    type State = Identity;

    async fn incoming_request(&self, cx: &mut Cx<'_, Identity>, side: Side, req: &Message) -> Verdict {
        if side != Side::A || !initial_invite(req) {
            return Verdict::Continue;
        }
        let (caller, _) = endpoints(cx.session);
        let trust = self.trust_for(&caller);
        let pai = req.header("P-Asserted-Identity").and_then(identity_of);
        let rpid_raw = req.header("Remote-Party-ID");
        let rpid = rpid_raw.and_then(identity_of);
        let from_value = req.known_header(Known::From).unwrap_or("");
        // An authenticated caller is who it proved to be, whatever its From
        // says; an unauthenticated one is its From.
        let authenticated = Some(cx.session.endpoint.as_str())
            .filter(|e| !e.is_empty())
            .and_then(|user| authenticated_identity(from_value, user));
        let from = authenticated.or_else(|| identity_of(from_value));
        let mut privacy = req.header("Privacy").unwrap_or("").trim().to_ascii_lowercase();
        if privacy.is_empty() && trust.trust_inbound && rpid_raw.is_some_and(|v| v.contains("privacy=full")) {
            privacy = "id".into();
        }
        *cx.state = Identity {
            asserted: if trust.trust_inbound { pai.or(rpid) } else { None }.or(from),
            privacy,
        };
        Verdict::Continue
    }

    async fn outgoing_request(&self, cx: &mut Cx<'_, Identity>, side: Side, draft: &mut Draft<'_>) {
        if side != Side::B || !initial_invite(draft.message()) {
            return;
        }
        let (_, callee) = endpoints(cx.session);
        let trust = self.trust_for(&callee);
        let privacy = cx.state.privacy.clone();
        let private = wants_privacy(&privacy);
        draft.remove("P-Asserted-Identity");
        draft.remove("Remote-Party-ID");
        draft.remove("Privacy");
        if let Some(asserted) = &cx.state.asserted {
            if trust.send_pai {
                draft.replace("P-Asserted-Identity", asserted);
            }
            if trust.send_rpid {
                let p = if private { "full" } else { "off" };
                draft.replace(
                    "Remote-Party-ID",
                    &format!("{asserted};party=calling;screen=yes;privacy={p}"),
                );
            }
        }
        if !privacy.is_empty() && privacy != "none" {
            draft.replace("Privacy", &privacy);
        }
        if private {
            draft.replace("From", ANONYMOUS);
        }
    }

    async fn outgoing_response(&self, cx: &mut Cx<'_, Identity>, side: Side, draft: &mut Draft<'_>) {
        let resp = draft.message();
        let to_invite = resp.cseq().is_ok_and(|c| c.method == Method::Invite);
        let code = resp.status().unwrap_or(0);
        if side != Side::A || !to_invite || !(180..300).contains(&code) {
            return;
        }
        // The connected identity (RFC 4916 style) for a trusted caller.
        let (caller, _) = endpoints(cx.session);
        draft.remove("P-Asserted-Identity");
        draft.remove("Remote-Party-ID");
        if self.trust_for(&caller).send_pai && !cx.session.callee.is_empty() {
            draft.replace("P-Asserted-Identity", &format!("<{}>", cx.session.callee));
        }
    }
}
