//! Session supplements: the chain a session runs at each event. The
//! interface is the generated `SessionSupplement` trait of
//! `proto/sipbus/session/v1/supplement.proto`, whose comments are the
//! semantics; built-ins implement it in process, external supplements are
//! reached through [`external::External`], which implements it too.

pub mod callerid;
pub mod external;
pub mod reason;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proto::convert::{draft_from_proto, from_proto, to_proto};
use proto::session::v1 as spb;
use proto::session::v1::session_supplement_server::SessionSupplement;
use sip_message::{Known, Message, Method};
use tonic::{Request, Status};
use tracing::warn;

use crate::config::{OnFailure, SessionConfig};
use crate::state::{Session, Side};

/// One configured supplement.
pub struct Registered {
    pub name: String,
    /// Empty: every method.
    methods: Vec<Method>,
    priority: i32,
    imp: Arc<dyn SessionSupplement>,
    /// External ones: the deadline of each call.
    timeout: Option<Duration>,
    on_failure: OnFailure,
    reject_status: u16,
}

impl Registered {
    fn hears(&self, method: Option<&Method>) -> bool {
        self.methods.is_empty() || method.is_some_and(|m| self.methods.contains(m))
    }

    async fn call<T, R, F>(
        &self,
        msg: T,
        f: impl FnOnce(Arc<dyn SessionSupplement>, Request<T>) -> F,
    ) -> Result<R, Status>
    where
        F: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let mut req = Request::new(msg);
        let fut = f(self.imp.clone(), {
            if let Some(t) = self.timeout {
                req.set_timeout(t);
            }
            req
        });
        let r = match self.timeout {
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => Err(Status::deadline_exceeded("supplement did not answer in time")),
            },
            None => fut.await,
        };
        r.map(tonic::Response::into_inner)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SupplementConfigError {
    #[error("session.supplements[{index}] `{name}`: {reason}")]
    Invalid { index: usize, name: String, reason: String },
}

/// Every configured supplement, ordered by priority (stable).
pub struct Supplements {
    list: Vec<Registered>,
}

/// A supplement stopped a request with this response.
pub struct Stop(pub Message);

impl Supplements {
    pub fn from_config(config: &SessionConfig) -> Result<Self, SupplementConfigError> {
        let mut list = Vec::new();
        for (index, c) in config.supplements.iter().enumerate() {
            let invalid = |reason: String| SupplementConfigError::Invalid {
                index,
                name: c.name.clone(),
                reason,
            };
            let methods = c
                .methods
                .iter()
                .map(|m| Method::parse(m).ok_or_else(|| invalid(format!("`{m}` is not a method"))))
                .collect::<Result<Vec<_>, _>>()?;
            let (imp, timeout): (Arc<dyn SessionSupplement>, _) = if c.url.is_empty() {
                let imp: Arc<dyn SessionSupplement> = match c.name.as_str() {
                    "caller-id" => Arc::new(callerid::CallerId::new(config.identity.clone())),
                    "reason" => Arc::new(reason::ReasonRelay),
                    other => {
                        return Err(invalid(format!(
                            "no built-in supplement `{other}` (built-ins: caller-id, reason; external ones need url)"
                        )));
                    }
                };
                (imp, None)
            } else {
                let ext = external::External::new(&c.url).map_err(|e| invalid(e.to_string()))?;
                (Arc::new(ext), Some(Duration::from_millis(c.timeout_ms.max(1))))
            };
            if !(300..700).contains(&c.reject_status) {
                return Err(invalid(format!("reject_status {} is not 300-699", c.reject_status)));
            }
            list.push(Registered {
                name: c.name.clone(),
                methods,
                priority: c.priority,
                imp,
                timeout,
                on_failure: c.on_failure,
                reject_status: c.reject_status,
            });
        }
        list.sort_by_key(|r| r.priority);
        Ok(Self { list })
    }

    /// The chain a new session keeps for its whole life.
    pub fn chain(&self) -> Vec<String> {
        self.list.iter().map(|r| r.name.clone()).collect()
    }

    fn of<'a>(&'a self, s: &'a Session) -> impl Iterator<Item = &'a Registered> + 'a {
        // In the session's order; a supplement removed from the
        // configuration since the session began is skipped.
        s.chain.iter().filter_map(|n| self.list.iter().find(|r| &r.name == n))
    }

    fn failed(&self, r: &Registered, hook: &str, status: &Status) {
        warn!(supplement = %r.name, hook, %status, "supplement failed");
    }

    pub async fn begin(&self, s: &mut Session) {
        let info = info(s);
        for r in self.of(&s.clone()) {
            let msg = spb::BeginRequest {
                session: Some(info.clone()),
                data: Some(datastore(s, &r.name)),
            };
            match r.call(msg, |imp, req| async move { imp.begin(req).await }).await {
                Ok(reply) => keep(s, &r.name, reply.data),
                Err(status) => self.failed(r, "begin", &status),
            }
        }
    }

    pub async fn end(&self, s: &Session) {
        let info = info(s);
        for r in self.of(s) {
            let msg = spb::EndRequest {
                session: Some(info.clone()),
                data: Some(datastore(s, &r.name)),
            };
            if let Err(status) = r.call(msg, |imp, req| async move { imp.end(req).await }).await {
                self.failed(r, "end", &status);
            }
        }
    }

    /// Runs the chain on a request that arrived on `side`; `Err(Stop)` when
    /// a supplement (or a failure policy) answered it.
    pub async fn incoming_request(&self, s: &mut Session, side: Side, req: &Message) -> Result<(), Stop> {
        let info = info(s);
        let wire = to_proto(req);
        for r in self.of(&s.clone()) {
            if !r.hears(req.method()) {
                continue;
            }
            let msg = spb::RequestEvent {
                session: Some(info.clone()),
                leg: leg(side) as i32,
                request: Some(wire.clone()),
                data: Some(datastore(s, &r.name)),
            };
            match r.call(msg, |imp, q| async move { imp.incoming_request(q).await }).await {
                Ok(v) => {
                    keep(s, &r.name, v.data);
                    if let Some(stop) = v.stop {
                        return Err(Stop(stop_response(req, stop)));
                    }
                }
                Err(status) => {
                    self.failed(r, "incoming_request", &status);
                    if r.on_failure == OnFailure::Reject {
                        let text = format!("Service Unavailable (supplement {} failed)", r.name);
                        let reason = if r.reject_status == 503 {
                            text.as_str()
                        } else {
                            "Supplement Failed"
                        };
                        return Err(Stop(req.make_response(r.reject_status, reason, None)));
                    }
                }
            }
        }
        Ok(())
    }

    pub async fn incoming_response(&self, s: &mut Session, side: Side, resp: &Message) {
        let info = info(s);
        let wire = to_proto(resp);
        let method = resp.cseq().ok().map(|c| c.method);
        for r in self.of(&s.clone()) {
            if !r.hears(method.as_ref()) {
                continue;
            }
            let msg = spb::ResponseEvent {
                session: Some(info.clone()),
                leg: leg(side) as i32,
                response: Some(wire.clone()),
                data: Some(datastore(s, &r.name)),
            };
            match r
                .call(msg, |imp, q| async move { imp.incoming_response(q).await })
                .await
            {
                Ok(v) => keep(s, &r.name, v.data),
                Err(status) => self.failed(r, "incoming_response", &status),
            }
        }
    }

    /// Runs the outgoing hooks on a message about to leave on `side`.
    pub async fn outgoing(&self, s: &mut Session, side: Side, out: &mut Message) {
        let info = info(s);
        let request = out.is_request();
        let method = if request {
            out.method().cloned()
        } else {
            out.cseq().ok().map(|c| c.method)
        };
        for r in self.of(&s.clone()) {
            if !r.hears(method.as_ref()) {
                continue;
            }
            let msg = spb::OutgoingEvent {
                session: Some(info.clone()),
                leg: leg(side) as i32,
                message: Some(to_proto(out)),
                data: Some(datastore(s, &r.name)),
            };
            let reply = if request {
                r.call(msg, |imp, q| async move { imp.outgoing_request(q).await }).await
            } else {
                r.call(msg, |imp, q| async move { imp.outgoing_response(q).await })
                    .await
            };
            match reply {
                Ok(v) => {
                    keep(s, &r.name, v.data);
                    for e in v.edits {
                        if let Err(why) = apply_edit(out, &e) {
                            warn!(supplement = %r.name, header = %e.name, why, "header edit refused");
                        }
                    }
                }
                Err(status) => self.failed(r, "outgoing", &status),
            }
        }
    }
}

fn leg(side: Side) -> spb::Leg {
    match side {
        Side::A => spb::Leg::A,
        Side::B => spb::Leg::B,
    }
}

fn info(s: &Session) -> spb::Session {
    spb::Session {
        id: s.id.clone(),
        caller: s.caller.clone(),
        callee: s.callee.clone(),
        endpoint: s.endpoint.clone(),
    }
}

fn datastore(s: &Session, name: &str) -> spb::Datastore {
    spb::Datastore {
        values: s
            .data
            .get(name)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), bytes::Bytes::from(v.clone())))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Bounds on what one supplement may keep per session.
const MAX_VALUES: usize = 64;
const MAX_VALUE_BYTES: usize = 4096;

fn keep(s: &mut Session, name: &str, data: Option<spb::Datastore>) {
    let Some(d) = data else { return };
    let values: BTreeMap<String, Vec<u8>> = d
        .values
        .into_iter()
        .filter(|(k, v)| k.len() <= 256 && v.len() <= MAX_VALUE_BYTES)
        .take(MAX_VALUES)
        .map(|(k, v)| (k, v.to_vec()))
        .collect();
    s.data.insert(name.to_owned(), values);
}

/// Header fields sipbus owns: supplements may not edit them (the dialog
/// and the transaction depend on them). From is the exception on an
/// initial INVITE: its tag is kept (RFC 3323 anonymity needs a new From).
const PROTECTED: [Known; 7] = [
    Known::Via,
    Known::CallId,
    Known::CSeq,
    Known::To,
    Known::ContentLength,
    Known::MaxForwards,
    Known::Route,
];

fn apply_edit(m: &mut Message, e: &spb::HeaderEdit) -> Result<(), &'static str> {
    if !sip_message::text::is_token(&e.name) {
        return Err("not a header name");
    }
    if e.value.contains(['\r', '\n']) || e.value.len() > 4096 {
        return Err("value has a line break or is too long");
    }
    let known = Known::lookup(&e.name);
    if known.is_some_and(|k| PROTECTED.contains(&k)) {
        return Err("sipbus owns this header");
    }
    let op = spb::header_edit::Op::try_from(e.op).unwrap_or(spb::header_edit::Op::Unspecified);
    if known == Some(Known::From) {
        // Only the display name and URI change; the tag stays.
        if op != spb::header_edit::Op::Replace {
            return Err("From can only be replaced");
        }
        let tag = m.from_tag().map(str::to_owned);
        let value = match tag {
            Some(t) => format!("{};tag={t}", e.value),
            None => e.value.clone(),
        };
        m.set_header(Known::From, &value);
        return Ok(());
    }
    match op {
        spb::header_edit::Op::Add => m.push_header_as_spelled(&e.name, &e.value),
        spb::header_edit::Op::Replace => {
            m.remove_header(e.name.as_str());
            m.push_header_as_spelled(&e.name, &e.value);
        }
        spb::header_edit::Op::Remove => {
            m.remove_header(e.name.as_str());
        }
        spb::header_edit::Op::Unspecified => return Err("no operation"),
    }
    Ok(())
}

/// The response a supplement chose, completed from the request (Via, From,
/// To, Call-ID, CSeq come from it; the supplement's other headers and body
/// are kept).
fn stop_response(req: &Message, stop: proto::edge::v1::SipMessage) -> Message {
    let (code, reason) = match &stop.start_line {
        Some(proto::edge::v1::sip_message::StartLine::Status(s)) if (300..700).contains(&s.code) => {
            (s.code as u16, s.reason.clone())
        }
        _ => (
            500,
            "Server Internal Error (supplement sent no valid status)".to_owned(),
        ),
    };
    let mut resp = req.make_response(code, &reason, None);
    for h in &stop.headers {
        let known = Known::lookup(&h.name);
        if known.is_some_and(|k| PROTECTED.contains(&k) || k == Known::From) || !sip_message::text::is_token(&h.name) {
            continue;
        }
        if h.value.contains(['\r', '\n']) {
            continue;
        }
        resp.push_header_as_spelled(&h.name, &h.value);
    }
    if !stop.body.is_empty() {
        resp.set_body(stop.body);
    }
    resp
}

/// Reads a message a built-in received over the contract.
pub(crate) fn message_of(m: Option<proto::edge::v1::SipMessage>) -> Result<Message, Status> {
    let m = m.ok_or_else(|| Status::invalid_argument("no message"))?;
    from_proto(m).map_err(|e| Status::invalid_argument(format!("message: {e}")))
}

/// Reads a message about to be sent (no Via yet).
pub(crate) fn draft_of(m: Option<proto::edge::v1::SipMessage>) -> Result<Message, Status> {
    let m = m.ok_or_else(|| Status::invalid_argument("no message"))?;
    draft_from_proto(m).map_err(|e| Status::invalid_argument(format!("message: {e}")))
}

/// An edit, for built-ins.
pub(crate) fn edit(op: spb::header_edit::Op, name: &str, value: &str) -> spb::HeaderEdit {
    spb::HeaderEdit {
        op: op as i32,
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use proto::session::v1::header_edit::Op;
    use tonic::Response;

    use super::*;

    /// Records what it heard in a shared log; optionally stops INVITEs;
    /// counts its calls in its datastore.
    struct Probe {
        name: &'static str,
        log: Arc<Mutex<Vec<String>>>,
        stop_invites: bool,
    }

    fn counted(data: Option<spb::Datastore>) -> spb::Datastore {
        let mut d = data.unwrap_or_default();
        let n = d
            .values
            .get("calls")
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u32>().ok())
            .unwrap_or(0);
        d.values.insert("calls".into(), (n + 1).to_string().into_bytes().into());
        d
    }

    #[tonic::async_trait]
    impl SessionSupplement for Probe {
        async fn begin(&self, r: Request<spb::BeginRequest>) -> Result<tonic::Response<spb::BeginReply>, Status> {
            self.log.lock().unwrap().push(format!("{}:begin", self.name));
            Ok(Response::new(spb::BeginReply {
                data: Some(counted(r.into_inner().data)),
            }))
        }
        async fn end(&self, _r: Request<spb::EndRequest>) -> Result<tonic::Response<spb::EndReply>, Status> {
            Ok(Response::new(spb::EndReply {}))
        }
        async fn incoming_request(
            &self,
            r: Request<spb::RequestEvent>,
        ) -> Result<tonic::Response<spb::RequestVerdict>, Status> {
            self.log.lock().unwrap().push(format!("{}:request", self.name));
            let stop = self
                .stop_invites
                .then(|| to_proto(&Message::response(403, "Forbidden (probe)")));
            Ok(Response::new(spb::RequestVerdict {
                stop,
                data: Some(counted(r.into_inner().data)),
            }))
        }
        async fn incoming_response(
            &self,
            _r: Request<spb::ResponseEvent>,
        ) -> Result<tonic::Response<spb::ResponseReply>, Status> {
            Ok(Response::new(spb::ResponseReply { data: None }))
        }
        async fn outgoing_request(
            &self,
            _r: Request<spb::OutgoingEvent>,
        ) -> Result<tonic::Response<spb::OutgoingReply>, Status> {
            self.log.lock().unwrap().push(format!("{}:outgoing", self.name));
            Ok(Response::new(spb::OutgoingReply {
                edits: vec![
                    edit(Op::Replace, "X-Probe", self.name),
                    edit(Op::Replace, "Call-ID", "hijacked"),
                    edit(Op::Add, "Bad Name", "x"),
                    edit(Op::Replace, "From", "\"Anonymous\" <sip:anonymous@anonymous.invalid>"),
                ],
                data: None,
            }))
        }
        async fn outgoing_response(
            &self,
            _r: Request<spb::OutgoingEvent>,
        ) -> Result<tonic::Response<spb::OutgoingReply>, Status> {
            Ok(Response::new(spb::OutgoingReply::default()))
        }
    }

    fn registered(name: &'static str, priority: i32, methods: Vec<Method>, imp: Probe) -> Registered {
        Registered {
            name: name.to_owned(),
            methods,
            priority,
            imp: Arc::new(imp),
            timeout: None,
            on_failure: OnFailure::Skip,
            reject_status: 503,
        }
    }

    fn session(chain: Vec<String>) -> Session {
        Session {
            chain,
            ..Session::for_tests("s1")
        }
    }

    fn invite() -> Message {
        let text = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
                    From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\n\
                    CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        Message::parse(bytes::Bytes::from(text)).unwrap()
    }

    fn probes(stop_second: bool) -> (Supplements, Arc<Mutex<Vec<String>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let probe = |name, stop| Probe {
            name,
            log: log.clone(),
            stop_invites: stop,
        };
        let mut list = vec![
            registered("late", 200, Vec::new(), probe("late", false)),
            registered("first", 10, Vec::new(), probe("first", false)),
            registered("second", 10, vec![Method::Invite], probe("second", stop_second)),
            registered("bye-only", 5, vec![Method::Bye], probe("bye-only", false)),
        ];
        list.sort_by_key(|r| r.priority);
        (Supplements { list }, log)
    }

    #[tokio::test]
    async fn chain_runs_by_priority_then_configuration_order_with_method_filters() {
        let (sups, log) = probes(false);
        let mut s = session(sups.chain());
        sups.begin(&mut s).await;
        assert!(sups.incoming_request(&mut s, Side::A, &invite()).await.is_ok());
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
        assert_eq!(s.data["first"]["calls"], b"2");
        assert_eq!(s.data["bye-only"]["calls"], b"1");
    }

    #[tokio::test]
    async fn a_stop_ends_the_chain_with_the_supplements_response() {
        let (sups, log) = probes(true);
        let mut s = session(sups.chain());
        let Err(Stop(resp)) = sups.incoming_request(&mut s, Side::A, &invite()).await else {
            panic!("the chain was not stopped");
        };
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
        let ext = |policy| Registered {
            name: "ext".into(),
            methods: Vec::new(),
            priority: 1,
            // Nothing listens on port 9 of loopback.
            imp: Arc::new(external::External::new("http://127.0.0.1:9").unwrap()),
            timeout: Some(Duration::from_millis(300)),
            on_failure: policy,
            reject_status: 503,
        };
        let skip = Supplements {
            list: vec![ext(OnFailure::Skip)],
        };
        let mut s = session(skip.chain());
        assert!(skip.incoming_request(&mut s, Side::A, &invite()).await.is_ok());
        let reject = Supplements {
            list: vec![ext(OnFailure::Reject)],
        };
        let Err(Stop(resp)) = reject.incoming_request(&mut s, Side::A, &invite()).await else {
            panic!("reject policy did not answer");
        };
        assert_eq!(resp.status(), Some(503));
    }
}
