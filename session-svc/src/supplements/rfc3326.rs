//! Built-in `reason`: the Reason header (RFC 3326). Causes read from BYE,
//! CANCEL and error responses are carried to the other leg; a CANCEL of a
//! forked branch that lost to another branch says so (cause 200).

use std::sync::Arc;

use async_trait::async_trait;
use extension::{ConfigProblem, Settings};
use serde::{Deserialize, Serialize};
use sip_message::{Message, Method};

use super::chain::Erased;
use super::{Cx, Draft, SessionSupplement, Verdict};
use crate::config::SessionConfig;
use crate::session::Side;

pub const COMPLETED_ELSEWHERE: &str = "SIP;cause=200;text=\"Call completed elsewhere\"";

pub struct ReasonRelay;

/// The causes heard so far in a session.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Causes {
    /// Of the last BYE or CANCEL, for the one sent on the other leg.
    request: Option<String>,
    /// Of the callee's error response, for the caller's.
    response: Option<String>,
    /// A branch answered: the others are cancelled as completed elsewhere.
    answered: bool,
}

pub fn build(settings: &Settings<'_>, _config: &SessionConfig) -> Result<Arc<dyn Erased>, ConfigProblem> {
    settings.parse::<NoSettings>()?;
    Ok(Arc::new(ReasonRelay))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

fn reasons(m: &Message) -> Option<String> {
    let name = "Reason".into();
    let all: Vec<&str> = m.header_fields(&name).collect();
    (!all.is_empty()).then(|| all.join(", "))
}

#[async_trait]
impl SessionSupplement for ReasonRelay {
    type State = Causes;

    async fn incoming_request(&self, cx: &mut Cx<'_, Causes>, _side: Side, req: &Message) -> Verdict {
        if matches!(req.method(), Some(Method::Bye | Method::Cancel)) {
            cx.state.request = reasons(req);
        }
        Verdict::Continue
    }

    async fn incoming_response(&self, cx: &mut Cx<'_, Causes>, side: Side, resp: &Message) {
        let invite = resp.cseq().is_ok_and(|c| c.method == Method::Invite);
        let code = resp.status().unwrap_or(0);
        if !invite || side != Side::B {
            return;
        }
        if (200..300).contains(&code) {
            cx.state.answered = true;
        } else if code >= 300
            && let Some(v) = reasons(resp)
        {
            cx.state.response = Some(v);
        }
    }

    async fn outgoing_request(&self, cx: &mut Cx<'_, Causes>, _side: Side, draft: &mut Draft<'_>) {
        match draft.message().method() {
            Some(Method::Cancel) if cx.state.answered => draft.replace("Reason", COMPLETED_ELSEWHERE),
            Some(Method::Cancel | Method::Bye) => {
                if let Some(v) = cx.state.request.clone() {
                    draft.replace("Reason", &v);
                }
            }
            _ => {}
        }
    }

    async fn outgoing_response(&self, cx: &mut Cx<'_, Causes>, _side: Side, draft: &mut Draft<'_>) {
        let resp = draft.message();
        let invite = resp.cseq().is_ok_and(|c| c.method == Method::Invite);
        if invite
            && resp.status().unwrap_or(0) >= 300
            && let Some(v) = cx.state.response.clone()
        {
            draft.replace("Reason", &v);
        }
    }
}
