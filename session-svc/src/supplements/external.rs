//! A session supplement in another process: the
//! `sipbus.session.v1.SessionSupplement` gRPC service turned into
//! [`SessionSupplement`]. Deadline, counters and failure policy come from
//! [`extension::External`]; what the supplement sends back is checked
//! before use (edits as every supplement's are, a stop's status and
//! headers, the size of what it stores).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use extension::{External, Failure};
use proto::convert::to_proto;
use proto::edge::v1 as epb;
use proto::session::v1 as pb;
use proto::session::v1::session_supplement_client::SessionSupplementClient;
use serde::{Deserialize, Serialize};
use sip_message::{Known, Message, Refusal};
use tonic::transport::Channel;

use super::draft;
use super::{Cx, Draft, SessionInfo, SessionSupplement, Verdict};
use crate::session::Side;

/// The most header fields a stop's answer carries.
const MAX_STOP_HEADERS: usize = 32;

/// Bounds on what one supplement may keep per session.
const MAX_VALUES: usize = 64;
const MAX_KEY_BYTES: usize = 256;
const MAX_VALUE_BYTES: usize = 4096;

pub struct ExternalSupplement {
    module: External,
    client: SessionSupplementClient<Channel>,
}

/// An external supplement's named values (the contract's `Datastore`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Datastore(BTreeMap<String, Vec<u8>>);

impl Datastore {
    fn to_proto(&self) -> Option<pb::Datastore> {
        Some(pb::Datastore {
            values: self.0.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect(),
        })
    }

    /// A reply's data replaces ours; none leaves it. Bounded.
    fn keep(&mut self, data: Option<pb::Datastore>) {
        let Some(d) = data else { return };
        self.0 = d
            .values
            .into_iter()
            .filter(|(k, v)| k.len() <= MAX_KEY_BYTES && v.len() <= MAX_VALUE_BYTES)
            .take(MAX_VALUES)
            .map(|(k, v)| (k, v.to_vec()))
            .collect();
    }
}

fn session(s: &SessionInfo) -> Option<pb::Session> {
    Some(pb::Session {
        id: s.id.clone(),
        caller: s.caller.clone(),
        callee: s.callee.clone(),
        endpoint: s.endpoint.clone(),
    })
}

fn leg(side: Side) -> i32 {
    match side {
        Side::A => pb::Leg::A as i32,
        Side::B => pb::Leg::B as i32,
    }
}

/// The most actions one reply may ask for (a timer, a refresh per leg
/// and a hang-up leave room to spare).
const MAX_ACTIONS: usize = 8;

/// Applies the actions of a reply; an unusable one is dropped, and so is
/// any past the first [`MAX_ACTIONS`].
fn act(cx: &mut Cx<'_, Datastore>, actions: Vec<pb::Action>) {
    use pb::action::Action as A;
    if actions.len() > MAX_ACTIONS {
        tracing::warn!(actions = actions.len(), kept = MAX_ACTIONS, "supplement asked too much");
    }
    for a in actions.into_iter().take(MAX_ACTIONS) {
        match a.action {
            Some(A::SetTimerMs(ms)) => cx.set_timer(Duration::from_millis(u64::from(ms))),
            Some(A::CancelTimer(true)) => cx.cancel_timer(),
            Some(A::Refresh(l)) if l == pb::Leg::A as i32 => cx.refresh(Side::A),
            Some(A::Refresh(l)) if l == pb::Leg::B as i32 => cx.refresh(Side::B),
            Some(A::HangUp(reason)) if draft::check("Reason", Some(&reason)).is_ok() => cx.hang_up(&reason),
            other => tracing::warn!(action = ?other, "supplement action refused"),
        }
    }
}

/// The refusal a supplement's stop message asks for: its status (300 to
/// 699, else 500) and reason, its headers but those sipbus owns, and its
/// body.
fn refusal_of(stop: epb::SipMessage) -> Refusal {
    let mut refusal = match &stop.start_line {
        Some(epb::sip_message::StartLine::Status(s)) if (300..700).contains(&s.code) => {
            Refusal::new(u16::try_from(s.code).unwrap_or(500), s.reason.clone())
        }
        _ => Refusal::server_error("supplement sent no valid status"),
    };
    let usable = stop
        .headers
        .into_iter()
        .filter(|h| matches!(draft::check(&h.name, Some(&h.value)), Ok(k) if k != Some(Known::From)));
    for h in usable.take(MAX_STOP_HEADERS) {
        refusal = refusal.with_header(h.name.as_str(), h.value);
    }
    // A body as large as sipbus would accept from the network, no larger.
    if stop.body.len() <= sip_message::Limits::default().max_body_bytes {
        refusal = refusal.with_body(stop.body);
    } else {
        tracing::warn!(bytes = stop.body.len(), "supplement's stop body too large: dropped");
    }
    refusal
}

impl ExternalSupplement {
    pub fn new(module: External) -> Self {
        let client = SessionSupplementClient::new(module.channel());
        Self { module, client }
    }
}

#[async_trait]
impl SessionSupplement for ExternalSupplement {
    type State = Datastore;
    // Whether a module will ask is not known here.
    const TIMER: bool = true;

    async fn begin(&self, cx: &mut Cx<'_, Datastore>) {
        let msg = pb::BeginRequest {
            session: session(cx.session),
            data: cx.state.to_proto(),
        };
        let request = self.module.request(msg, None);
        if let Ok(r) = self.module.call("begin", self.client.clone().begin(request)).await {
            cx.state.keep(r.data);
            act(cx, r.actions);
        }
    }

    async fn end(&self, cx: &mut Cx<'_, Datastore>) {
        let msg = pb::EndRequest {
            session: session(cx.session),
            data: cx.state.to_proto(),
        };
        let request = self.module.request(msg, None);
        let _ = self.module.call("end", self.client.clone().end(request)).await;
    }

    async fn incoming_request(&self, cx: &mut Cx<'_, Datastore>, side: Side, req: &Message) -> Verdict {
        let msg = pb::RequestEvent {
            session: session(cx.session),
            leg: leg(side),
            request: Some(to_proto(req)),
            data: cx.state.to_proto(),
        };
        let request = self.module.request(msg, None);
        match self
            .module
            .call("incoming_request", self.client.clone().incoming_request(request))
            .await
        {
            Ok(v) => {
                cx.state.keep(v.data);
                act(cx, v.actions);
                match v.stop {
                    Some(stop) => Verdict::Stop(refusal_of(stop)),
                    None => Verdict::Continue,
                }
            }
            Err(_) => match self.module.refusal() {
                Some(r) => Verdict::Stop(r),
                None => Verdict::Continue,
            },
        }
    }

    async fn incoming_response(&self, cx: &mut Cx<'_, Datastore>, side: Side, resp: &Message) {
        let msg = pb::ResponseEvent {
            session: session(cx.session),
            leg: leg(side),
            response: Some(to_proto(resp)),
            data: cx.state.to_proto(),
        };
        let request = self.module.request(msg, None);
        if let Ok(r) = self
            .module
            .call("incoming_response", self.client.clone().incoming_response(request))
            .await
        {
            cx.state.keep(r.data);
            act(cx, r.actions);
        }
    }

    async fn outgoing_request(&self, cx: &mut Cx<'_, Datastore>, side: Side, draft: &mut Draft<'_>) {
        let msg = self.outgoing_event(cx, side, draft);
        let request = self.module.request(msg, None);
        let reply = self
            .module
            .call("outgoing_request", self.client.clone().outgoing_request(request))
            .await;
        apply(cx, draft, reply);
    }

    async fn outgoing_response(&self, cx: &mut Cx<'_, Datastore>, side: Side, draft: &mut Draft<'_>) {
        let msg = self.outgoing_event(cx, side, draft);
        let request = self.module.request(msg, None);
        let reply = self
            .module
            .call("outgoing_response", self.client.clone().outgoing_response(request))
            .await;
        apply(cx, draft, reply);
    }

    async fn timer(&self, cx: &mut Cx<'_, Datastore>) {
        let msg = pb::TimerEvent {
            session: session(cx.session),
            data: cx.state.to_proto(),
        };
        let request = self.module.request(msg, None);
        if let Ok(r) = self.module.call("timer", self.client.clone().timer(request)).await {
            cx.state.keep(r.data);
            act(cx, r.actions);
        }
    }
}

impl ExternalSupplement {
    fn outgoing_event(&self, cx: &Cx<'_, Datastore>, side: Side, draft: &Draft<'_>) -> pb::OutgoingEvent {
        pb::OutgoingEvent {
            session: session(cx.session),
            leg: leg(side),
            message: Some(to_proto(draft.message())),
            data: cx.state.to_proto(),
        }
    }
}

/// The edits of a reply, through the draft's rules.
fn apply(cx: &mut Cx<'_, Datastore>, draft: &mut Draft<'_>, reply: Result<pb::OutgoingReply, Failure>) {
    let Ok(r) = reply else { return };
    cx.state.keep(r.data);
    act(cx, r.actions);
    for e in r.edits {
        match pb::header_edit::Op::try_from(e.op) {
            Ok(pb::header_edit::Op::Add) => draft.add(&e.name, &e.value),
            Ok(pb::header_edit::Op::Replace) => draft.replace(&e.name, &e.value),
            Ok(pb::header_edit::Op::Remove) => draft.remove(&e.name),
            _ => tracing::warn!(header = %e.name, "header edit without an operation refused"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_keep_their_status_and_headers_but_not_ours() {
        let mut m = Message::response(486, "Busy Here");
        m.push_header_as_spelled("Retry-After", "30");
        m.push_header_as_spelled("Call-ID", "hijack");
        m.push_header_as_spelled("From", "x");
        let r = refusal_of(to_proto(&m));
        assert_eq!((r.code(), r.reason()), (486, "Busy Here"));
        let names: Vec<&str> = r.headers().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Retry-After"]);
        assert_eq!(refusal_of(to_proto(&Message::response(200, "OK"))).code(), 500);
    }

    #[test]
    fn a_stop_keeps_its_body_up_to_the_network_limit() {
        let mut m = Message::response(403, "Forbidden");
        m.push_header_as_spelled("Content-Type", "text/plain");
        m.set_body(bytes::Bytes::from_static(b"no calls to premium numbers"));
        let r = refusal_of(to_proto(&m));
        assert_eq!(r.body().as_ref(), b"no calls to premium numbers");
        let answered = r.response_to(&crate::testing::invite_from("c", "t"), Some("x"));
        assert_eq!(answered.body().as_ref(), b"no calls to premium numbers");
        assert_eq!(answered.header("Content-Type"), Some("text/plain"));
        let huge = sip_message::Limits::default().max_body_bytes + 1;
        m.set_body(bytes::Bytes::from(vec![b'x'; huge]));
        assert!(refusal_of(to_proto(&m)).body().is_empty());
    }

    #[test]
    fn what_a_supplement_keeps_is_bounded() {
        let mut d = Datastore::default();
        let mut values = std::collections::HashMap::new();
        for i in 0..100 {
            values.insert(format!("k{i}"), vec![0u8; 10].into());
        }
        values.insert("big".into(), vec![0u8; MAX_VALUE_BYTES + 1].into());
        d.keep(Some(pb::Datastore { values }));
        assert_eq!(d.0.len(), MAX_VALUES);
        assert!(!d.0.contains_key("big"));
    }
}
