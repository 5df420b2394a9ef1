//! A new call: where it goes, the forked B-leg INVITEs, and what the
//! caller hears while they ring. The replica that received the INVITE
//! drives the branches (it holds their response streams); everything it
//! decides is written to the store first, so CANCEL, ACK, BYE and the
//! no-answer timer can be handled by any replica.

use std::sync::Arc;

use edge_api::{ClientEvent, Flow, ServerTxRef, Transport};
use sip_message::{Known, Message, Method, Uri};
use state_store::now_ms;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::compose::{self, contact, set_sdp, without_tag};
use crate::config::NonLocal;
use crate::events::{self, DialogState};
use crate::media::{self, MediaError, Offered};
use crate::service::{Core, end_setup, no_answer_timer};
use crate::state::{B_CALL_ID_PREFIX, Branch, Leg, Media, Phase, Session, Side};
use crate::{random_id, random_tag};

/// The session as last written by this replica, with its version: the next
/// write needs no read unless another replica wrote since.
type Current = Option<(Session, u64)>;

/// One place to ring.
struct Plan {
    uri: String,
    flow: Flow,
    /// RFC 3327 Path of the binding: the Route of requests to it.
    path: Vec<String>,
}

/// A SIP answer that ends the setup before any branch exists.
struct Refusal {
    code: u16,
    reason: String,
    /// Header fields for the answer: a Warning (RFC 3261 20.43) for a
    /// rejected offer, the challenges of a 407.
    headers: Vec<(&'static str, String)>,
}

impl Refusal {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Refusal {
            code,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }

    fn response(&self, req: &Message, tag: &str) -> Message {
        let mut resp = req.make_response(self.code, &self.reason, Some(tag));
        for (name, value) in &self.headers {
            resp.push_header_as_spelled(name, value);
        }
        resp
    }
}

/// RFC 3261 22.3 for a new call: the caller proves who it is to sipbus (a
/// proxy-style 407 challenge, so a phone's registrar credentials work).
/// Returns the authenticated user, or "" when calls are not authenticated.
fn authenticate(core: &Core, req: &Message) -> Result<String, Refusal> {
    let Some(auth) = core.directory.auth.as_ref().filter(|_| core.config.authenticate) else {
        return Ok(String::new());
    };
    let creds = req
        .credentials(Known::ProxyAuthorization)
        .map_err(|_| Refusal::new(400, "Bad Request (Proxy-Authorization)"))?;
    // Users are looked up in the caller's domain when it is ours.
    let from_domain = req
        .from_header()
        .ok()
        .and_then(|f| f.uri.as_sip().map(|u| u.host.to_string().to_ascii_lowercase()))
        .filter(|d| core.directory.serves(d))
        .or_else(|| core.directory.domains.first().cloned())
        .unwrap_or_default();
    let ruri = req.request_uri().unwrap_or("");
    let verdict = auth.verify(&creds, "INVITE", ruri, |u| {
        core.directory.users.get(&(u.to_owned(), from_domain.clone())).cloned()
    });
    match verdict {
        sip_auth::Verdict::Authenticated { user } => Ok(user),
        sip_auth::Verdict::Missing | sip_auth::Verdict::Stale => {
            let stale = verdict == sip_auth::Verdict::Stale;
            Err(Refusal {
                code: 407,
                reason: "Proxy Authentication Required".into(),
                headers: auth
                    .challenges(stale)
                    .into_iter()
                    .map(|c| ("Proxy-Authenticate", c))
                    .collect(),
            })
        }
        sip_auth::Verdict::Rejected(why) => {
            debug!(reason = %why, "call credentials rejected");
            Err(Refusal::new(403, "Forbidden (bad credentials)"))
        }
    }
}

pub(crate) async fn invite(core: Arc<Core>, tx: ServerTxRef, flow: Flow, req: Message) {
    // The session id is also sipbus's tag on the caller's leg: the
    // caller's requests in the call name their session.
    let a_tag = random_id();
    let prepared = match authenticate(&core, &req) {
        Ok(endpoint) => prepare(&core, &tx, &flow, &req, &a_tag, endpoint).await,
        Err(r) => Err(r),
    };
    let mut s = match prepared {
        Ok(s) => s,
        Err(r) => {
            info!(code = r.code, reason = %r.reason, "call refused");
            core.respond(&tx, r.response(&req, &a_tag)).await;
            return;
        }
    };
    let plans = match route(&core, &req, &flow).await {
        Ok(p) => p,
        Err(r) => {
            info!(code = r.code, reason = %r.reason, "call not routed");
            return fail_setup(&core, &mut s, r).await;
        }
    };
    if let Err(r) = offer_initial(&core, &mut s, &req).await {
        return fail_setup(&core, &mut s, r).await;
    }
    let version = match start(&core, &mut s).await {
        Ok(v) => v,
        Err(r) => {
            core.respond(&s.a_tx, r.response(&req, &a_tag)).await;
            core.supplements.end(&s).await;
            return;
        }
    };
    drive(core, s, version, req, plans).await;
}

/// The session as it starts, with the caller's leg; supplements begin and
/// hear the INVITE.
async fn prepare(
    core: &Core,
    tx: &ServerTxRef,
    flow: &Flow,
    req: &Message,
    a_tag: &str,
    endpoint: String,
) -> Result<Session, Refusal> {
    let bad = |what: &str| Refusal::new(400, format!("Bad Request ({what})"));
    let from = req.known_header(Known::From).ok_or_else(|| bad("From"))?;
    let to = req.known_header(Known::To).ok_or_else(|| bad("To"))?;
    let from_tag = req.from_tag().ok_or_else(|| bad("From without tag"))?.to_owned();
    let call_id = req.call_id().map_err(|_| bad("Call-ID"))?.to_owned();
    let cseq = req.cseq().map_err(|_| bad("CSeq"))?.seq;
    let target = compose::first_contact(req);
    if target.is_empty() {
        return Err(bad("INVITE without a Contact URI"));
    }
    let route_set: Vec<String> = req.known_values(Known::RecordRoute).map(str::to_owned).collect();
    let mut head = req.clone();
    head.set_body(bytes::Bytes::new());
    let a_request = String::from_utf8(head.to_bytes().to_vec()).map_err(|_| bad("not UTF-8"))?;
    let id = a_tag.to_owned();
    let ruri = req.request_uri().unwrap_or("").to_owned();
    let a_flow = Some(flow.clone());
    let mut s = Session {
        id: id.clone(),
        phase: Phase::Trying,
        caller: from_uri(from),
        callee: ruri,
        endpoint,
        a: Leg {
            call_id,
            local_tag: a_tag.to_owned(),
            remote_tag: from_tag,
            local_uri: without_tag(to),
            remote_uri: without_tag(from),
            remote_target: target,
            route_set,
            local_cseq: 0,
            remote_cseq: cseq,
            flow: a_flow,
        },
        b: Leg {
            call_id: format!("{B_CALL_ID_PREFIX}{id}"),
            local_tag: random_tag(),
            remote_tag: String::new(),
            local_uri: without_tag(from),
            remote_uri: without_tag(to),
            remote_target: String::new(),
            route_set: Vec::new(),
            local_cseq: 1,
            remote_cseq: 0,
            flow: None,
        },
        a_request,
        a_tx: tx.clone(),
        a_invite_cseq: cseq,
        b_invite_cseq: 1,
        branches: Vec::new(),
        a_acked: false,
        ack_pending: None,
        media: Media {
            origin_a: u64::from(fastrand::u32(..)),
            origin_b: u64::from(fastrand::u32(..)),
            ..Media::default()
        },
        offer_pending_since_ms: None,
        chain: core.supplements.chain(),
        data: Default::default(),
    };
    core.supplements.begin(&mut s).await;
    if let Err(stop) = core.supplements.incoming_request(&mut s, Side::A, req).await {
        let resp = stop.0;
        return Err(Refusal::new(
            resp.status().unwrap_or(500),
            resp.reason().unwrap_or("").to_owned(),
        ));
    }
    Ok(s)
}

fn from_uri(value: &str) -> String {
    sip_message::typed::NameAddr::parse(value)
        .map(|n| n.uri_text.to_owned())
        .unwrap_or_else(|_| value.to_owned())
}

/// Where the call goes: the bindings of a local address-of-record, or the
/// outbound target for other domains.
async fn route(core: &Core, req: &Message, flow: &Flow) -> Result<Vec<Plan>, Refusal> {
    let ruri = req.request_uri().unwrap_or("");
    let Ok(Uri::Sip(uri)) = Uri::parse(ruri) else {
        return Err(Refusal::new(416, "Unsupported URI Scheme"));
    };
    let host = uri.host.to_string().to_ascii_lowercase();
    // A request addressed to the edge's own IP is for our first domain.
    let to_me = uri.host.ip().is_some_and(|ip| flow.local.is_some_and(|l| l.ip() == ip));
    let domain = if core.directory.serves(&host) {
        host
    } else if to_me && let Some(d) = core.directory.domains.first() {
        d.to_ascii_lowercase()
    } else {
        return outbound(core, ruri);
    };
    let user = uri
        .user_decoded()
        .ok_or_else(|| Refusal::new(404, "Not Found (no user part)"))?
        .into_owned();
    if !core.directory.knows(&user, &domain) {
        return Err(Refusal::new(404, "Not Found (unknown user)"));
    }
    let aor = format!("sip:{user}@{domain}");
    let bindings = core.locations.lookup(&aor).await.map_err(|e| {
        warn!(error = %e, "registrar lookup failed");
        Refusal::new(503, "Service Unavailable (location service)")
    })?;
    let plans: Vec<Plan> = bindings
        .into_iter()
        .filter_map(plan_of)
        .take(core.config.max_branches.max(1))
        .collect();
    if plans.is_empty() {
        return Err(Refusal::new(480, "Temporarily Unavailable (not registered)"));
    }
    Ok(plans)
}

fn outbound(core: &Core, ruri: &str) -> Result<Vec<Plan>, Refusal> {
    match core.config.non_local {
        NonLocal::Reject403 => Err(Refusal::new(403, "Forbidden (domain not served here)")),
        NonLocal::Reject404 => Err(Refusal::new(404, "Not Found (domain not served here)")),
        NonLocal::Outbound => {
            let flow = flow_to(&core.config.outbound).ok_or_else(|| {
                warn!(outbound = %core.config.outbound, "session.outbound is not sip:ip:port");
                Refusal::new(503, "Service Unavailable (no outbound route)")
            })?;
            Ok(vec![Plan {
                uri: ruri.to_owned(),
                flow,
                path: Vec::new(),
            }])
        }
    }
}

/// The flow to a SIP URI with an IP host.
fn flow_to(uri: &str) -> Option<Flow> {
    let Ok(Uri::Sip(u)) = Uri::parse(uri) else {
        return None;
    };
    let ip = u.host.ip()?;
    let tcp = u.transport().is_some_and(|t| t.eq_ignore_ascii_case("tcp"));
    let port = u.port.unwrap_or(5060);
    let transport = if tcp { Transport::Tcp } else { Transport::Udp };
    Some(Flow::to(transport, std::net::SocketAddr::new(ip, port)))
}

/// How to reach one binding: over its registration flow when it asked for
/// that (RFC 5626 reg-id) or registered over a connection, else to its
/// Contact from the edge socket it registered through.
fn plan_of(b: registrar_svc::binding::Binding) -> Option<Plan> {
    let flow = if b.reg_id.is_some() || b.flow.connection.is_some() {
        b.flow
    } else {
        Flow {
            local: b.flow.local,
            edge: b.flow.edge,
            ..flow_to(&b.uri)?
        }
    };
    Some(Plan {
        uri: b.uri,
        flow,
        path: b.path,
    })
}

/// Offer/answer for the caller's INVITE: its offer goes through sdp-svc
/// now; an INVITE without SDP is a late offer.
async fn offer_initial(core: &Core, s: &mut Session, req: &Message) -> Result<(), Refusal> {
    let Some(body) = compose::sdp_of(req) else {
        if !req.body().is_empty() {
            return Err(Refusal::new(415, "Unsupported Media Type (only application/sdp)"));
        }
        s.media.late_offer = true;
        return Ok(());
    };
    match media::offer(&core.sdp, s, Side::A, body, true).await {
        Ok(Offered::Forward { sdp, handlers }) => {
            s.media.offer = body.to_owned();
            s.media.forwarded = sdp.clone();
            s.media.handlers = handlers;
            s.media.last_to_b = sdp;
            Ok(())
        }
        Ok(Offered::Reject { status, warning }) => Err(Refusal {
            code: status,
            reason: if status == 488 {
                "Not Acceptable Here"
            } else {
                "Media Negotiation Failed"
            }
            .to_owned(),
            headers: if warning.is_empty() {
                Vec::new()
            } else {
                vec![("Warning", warning)]
            },
        }),
        Err(MediaError::Invalid(why)) => Err(Refusal::new(488, format!("Not Acceptable Here (SDP: {why})"))),
        Err(e @ MediaError::Unavailable(_)) => {
            warn!(error = %e, "offer not negotiated");
            Err(Refusal::new(503, "Service Unavailable (media negotiation)"))
        }
    }
}

/// Stores the new session, arms its no-answer timer, tells the world.
async fn start(core: &Core, s: &mut Session) -> Result<u64, Refusal> {
    let version = match core.sessions.create(s).await {
        Ok(v) => v,
        Err(e) => {
            warn!(error = %e, "session not stored");
            return Err(Refusal::new(503, "Service Unavailable (session store)"));
        }
    };
    let due = now_ms() + core.config.no_answer_s.saturating_mul(1000);
    if let Err(e) = core
        .sessions
        .store()
        .schedule(&no_answer_timer(&s.id), due, bytes::Bytes::from(s.id.clone()))
        .await
    {
        warn!(error = %e, "no-answer timer not armed");
    }
    events::publish(core.sessions.store(), s, Side::A, DialogState::Trying, None).await;
    Ok(version)
}

/// Answers the caller with an error and ends a session that was not stored
/// yet (or is still setting up).
async fn fail_setup(core: &Core, s: &mut Session, r: Refusal) {
    if let Some(invite) = s.a_invite() {
        let mut resp = r.response(&invite, &s.a.local_tag);
        core.supplements.outgoing(s, Side::A, &mut resp).await;
        core.respond(&s.a_tx, resp).await;
    }
    core.supplements.end(s).await;
    debug!(code = r.code, reason = %r.reason, "setup failed");
}

/// The B-leg INVITE, before the binding's Request-URI and Route.
fn b_invite(s: &Session, req: &Message, contact_host: &str) -> Message {
    let mut m = Message::request(Method::Invite, "sip:placeholder@invalid");
    m.push_header(Known::From, &format!("{};tag={}", s.b.local_uri, s.b.local_tag));
    m.push_header(Known::To, &s.b.remote_uri);
    m.push_header(Known::CallId, &s.b.call_id);
    m.push_header(Known::CSeq, &format!("{} INVITE", s.b_invite_cseq));
    let mf = req
        .known_header(Known::MaxForwards)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .map_or(70, |n| n.saturating_sub(1));
    m.push_header(Known::MaxForwards, &mf.to_string());
    m.push_header(Known::Contact, &contact(&s.id, s.a.flow.as_ref(), contact_host));
    m.push_header(
        Known::Allow,
        "INVITE, ACK, CANCEL, BYE, UPDATE, INFO, MESSAGE, REFER, NOTIFY, OPTIONS",
    );
    if !s.media.forwarded.is_empty() {
        set_sdp(&mut m, &s.media.forwarded);
    }
    m
}

/// Sends the branches and relays what they answer until the call is
/// answered, fails, or is cancelled (by anyone).
async fn drive(core: Arc<Core>, mut s: Session, version: u64, req: Message, plans: Vec<Plan>) {
    let mut template = b_invite(&s, &req, &core.config.contact_host);
    core.supplements.outgoing(&mut s, Side::B, &mut template).await;
    if let Some(f) = template.known_header(Known::From) {
        s.b.local_uri = without_tag(f);
    }
    let (tx, mut rx) = mpsc::channel::<(usize, ClientEvent)>(64);
    let mut sent = Vec::new();
    for plan in plans {
        let mut invite = template.clone();
        invite.set_request_uri(&plan.uri);
        for p in &plan.path {
            invite.push_header(Known::Route, p);
        }
        if !core.config.contact_host.is_empty() || plan.flow.local.is_some() {
            invite.set_header(
                Known::Contact,
                &contact(&s.id, Some(&plan.flow), &core.config.contact_host),
            );
        }
        match core.edges.send_request(invite.clone(), plan.flow.clone()).await {
            Ok(mut client) => {
                let idx = sent.len();
                sent.push((invite, plan.flow.clone()));
                s.branches.push(Branch {
                    tx: client.id.clone(),
                    target: plan.uri,
                    flow: plan.flow,
                    done: false,
                });
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some(item) = client.next().await {
                        if tx.send((idx, item)).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Err(e) => warn!(error = %e, target = %plan.uri, "branch not sent"),
        }
    }
    drop(tx);
    let branches = s.branches.clone();
    let b_local_uri = s.b.local_uri.clone();
    let data = s.data.clone();
    // The record as created, plus what sending changed (`s` itself). A
    // CANCEL (or BYE) may have ended the call meanwhile: then the branches
    // just sent are cancelled here, nobody else knows them.
    let stored = core
        .sessions
        .update_from(&s.id, Some((s.clone(), version)), |st| {
            if st.phase == Phase::Ended {
                return None;
            }
            st.branches = branches.clone();
            st.b.local_uri = b_local_uri.clone();
            st.data = data.clone();
            Some(())
        })
        .await;
    if matches!(stored, Ok(None)) {
        // The loop below still runs: a branch that answers anyway is ACKed
        // and hung up.
        info!("call ended while its branches were sent: cancelling them");
        s.phase = Phase::Ended;
        core.cancel_branches(&mut s, None).await;
    }
    if s.branches.is_empty() && s.phase != Phase::Ended {
        if let Ok(Some(mut ended)) = end_setup(&core, &s.id).await {
            core.respond_invite(&mut ended, 480, "Temporarily Unavailable (no branch reachable)")
                .await;
            core.finish(&ended, "error").await;
        }
        return;
    }
    let mut current: Current = match stored {
        Ok(Some((st, v, ()))) => Some((st, v)),
        Ok(None) => None,
        Err(e) => {
            warn!(error = %e, "branches not stored: CANCEL from another replica cannot reach them");
            None
        }
    };
    let mut outcome = Outcome::default();
    while let Some((idx, item)) = rx.recv().await {
        let resp = item.response;
        let code = resp.status().unwrap_or(0);
        let Some((invite, flow)) = sent.get(idx) else { continue };
        match code {
            100 => {}
            101..=199 => provisional(&core, &s.id, &req, idx, &resp, &mut current).await,
            200..=299 => {
                let branch = Branch0 { idx, invite, flow };
                answered(&core, &s.id, &req, branch, &resp, &mut outcome, &mut current).await;
                if outcome.all_failed(sent.len()) {
                    all_failed(&core, &s.id, &req, &outcome).await;
                }
            }
            _ => {
                outcome.failed(idx, resp);
                if outcome.all_failed(sent.len()) {
                    all_failed(&core, &s.id, &req, &outcome).await;
                }
            }
        }
    }
    // Every stream ended. A branch that never gave a final answer (its edge
    // went away) counts as 408, so the caller is never left waiting.
    if outcome.winner.is_none() && !outcome.all_failed(sent.len()) {
        for (idx, (invite, _)) in sent.iter().enumerate() {
            outcome.failed(idx, invite.make_response(408, "Request Timeout", None));
        }
        all_failed(&core, &s.id, &req, &outcome).await;
    }
}

#[derive(Default)]
struct Outcome {
    /// Final error responses, by branch.
    failures: Vec<(usize, Message)>,
    /// The branch whose 2xx won, and that 2xx's To tag.
    winner: Option<usize>,
    winner_tag: String,
}

impl Outcome {
    fn failed(&mut self, idx: usize, resp: Message) {
        if !self.failures.iter().any(|(i, _)| *i == idx) {
            self.failures.push((idx, resp));
        }
    }

    fn all_failed(&self, branches: usize) -> bool {
        self.winner.is_none() && self.failures.len() == branches
    }

    /// RFC 3261 16.7 step 6, simplified: a 6xx wins, else the lowest class,
    /// first come first.
    fn best(&self) -> Option<&Message> {
        let rank = |m: &Message| {
            let c = m.status().unwrap_or(500);
            if c >= 600 { 0 } else { c / 100 }
        };
        self.failures.iter().map(|(_, m)| m).min_by_key(|m| rank(m))
    }
}

/// 18x from a branch: the caller hears it (with the early answer when the
/// branch sent SDP).
async fn provisional(
    core: &Core,
    id: &str,
    caller_invite: &Message,
    idx: usize,
    resp: &Message,
    current: &mut Current,
) {
    let early_sdp = compose::sdp_of(resp).map(str::to_owned);
    let written = core
        .sessions
        .update_from(id, current.take(), |s| {
            if !matches!(s.phase, Phase::Trying | Phase::Early) {
                return None;
            }
            let first = s.phase == Phase::Trying;
            s.phase = Phase::Early;
            Some(first)
        })
        .await;
    let Ok(Some((mut s, mut version, first))) = written else {
        return;
    };
    core.supplements.incoming_response(&mut s, Side::B, resp).await;
    let code = resp.status().unwrap_or(180);
    let mut out = s.a_response_to(caller_invite, code, resp.reason().unwrap_or("Ringing"));
    out.push_header(
        Known::Contact,
        &contact(&s.id, s.a.flow.as_ref(), &core.config.contact_host),
    );
    // The caller's dialog gets one early answer (RFC 3264: one answer per
    // offer): from the first branch that sends SDP; that branch repeats it.
    let early_owner = s.media.early_branch.is_none_or(|b| b == idx);
    if let Some(answer) = early_sdp.filter(|_| !s.media.late_offer && early_owner) {
        if s.media.early_branch == Some(idx) {
            set_sdp(&mut out, &s.media.answered);
        } else if let Ok(answered) = media::answer(&core.sdp, &s, Side::A, &answer).await {
            set_sdp(&mut out, &answered);
            let media_written = core
                .sessions
                .update_from(id, Some((s.clone(), version)), |st| {
                    st.media.answer = answer.clone();
                    st.media.answered = answered.clone();
                    st.media.last_to_a = answered.clone();
                    st.media.early_branch = Some(idx);
                    Some(())
                })
                .await;
            if let Ok(Some((st, v, ()))) = media_written {
                (s, version) = (st, v);
            }
        }
    }
    core.supplements.outgoing(&mut s, Side::A, &mut out).await;
    if !core.respond(&s.a_tx, out).await {
        // The caller's transaction is answered already: a CANCEL the edge
        // took before this call was stored. Stop ringing.
        caller_gone(core, id).await;
        *current = None;
        return;
    }
    if first {
        events::publish_both(core.sessions.store(), &s, DialogState::Early, None).await;
    }
    debug!(branch = idx, code, "provisional relayed");
    *current = Some((s, version));
}

/// The branch a response came from: its index, the INVITE sent and the flow.
struct Branch0<'a> {
    idx: usize,
    invite: &'a Message,
    flow: &'a Flow,
}

/// A 2xx from a branch. The first one wins the call; any other (a second
/// branch, or one after the call ended) is ACKed and hung up at once
/// (RFC 3261 13.2.2.4).
async fn answered(
    core: &Core,
    id: &str,
    caller_invite: &Message,
    branch: Branch0<'_>,
    resp: &Message,
    outcome: &mut Outcome,
    current: &mut Current,
) {
    let Branch0 { idx, invite, flow } = branch;
    if outcome.winner == Some(idx) && resp.to_tag() == Some(outcome.winner_tag.as_str()) {
        // A retransmission: our ACK was lost, or the caller's has not come.
        if let Ok(Some((s, _))) = core.sessions.load(id).await
            && s.a_acked
        {
            crate::dialog::ack_b(core, &s).await;
        }
        return;
    }
    if outcome.winner.is_some() {
        // Another 2xx (another branch, or a fork behind the winner's).
        hang_up_stray(core, invite, resp, flow).await;
        return;
    }
    let to_tag = resp.to_tag().unwrap_or("").to_owned();
    let target = compose::first_contact(resp);
    if target.is_empty() || to_tag.is_empty() {
        // Nothing to ACK or hang up: the branch failed.
        warn!("2xx without Contact or To tag: branch failed");
        outcome.failed(
            idx,
            invite.make_response(502, "Bad Gateway (callee's 2xx unusable)", None),
        );
        return;
    }
    let mut route_set: Vec<String> = resp.known_values(Known::RecordRoute).map(str::to_owned).collect();
    route_set.reverse();
    // The SDP work first, from the session as this replica last wrote it
    // (only the branch driver changes media while the call rings), so the
    // win and its media are one write.
    let base = match current.take() {
        Some(c) => Some(c),
        None => core.sessions.load(id).await.ok().flatten(),
    };
    let Some((mut s, version)) = base else {
        hang_up_stray(core, invite, resp, flow).await;
        return;
    };
    let sdp_for_a = negotiate_answer(core, &mut s, compose::sdp_of(resp)).await;
    let media_now = s.media.clone();
    let b_uri = resp.known_header(Known::To).map(without_tag).unwrap_or_default();
    let won = core
        .sessions
        .update_from(id, Some((s, version)), |st| {
            if !matches!(st.phase, Phase::Trying | Phase::Early) {
                return None;
            }
            st.phase = Phase::Confirmed;
            st.b.remote_tag = to_tag.clone();
            st.b.remote_target = target.clone();
            st.b.route_set = route_set.clone();
            st.b.flow = Some(flow.clone());
            st.b.remote_uri = b_uri.clone();
            st.media = media_now.clone();
            if let Some(b) = st.branches.get_mut(idx) {
                b.done = true;
            }
            Some(())
        })
        .await
        .ok()
        .flatten();
    let Some((mut s, version, ())) = won else {
        hang_up_stray(core, invite, resp, flow).await;
        return;
    };
    outcome.winner = Some(idx);
    outcome.winner_tag = to_tag.clone();
    core.supplements.incoming_response(&mut s, Side::B, resp).await;
    let mut ok = s.a_response_to(caller_invite, 200, "OK");
    ok.push_header(
        Known::Contact,
        &contact(&s.id, s.a.flow.as_ref(), &core.config.contact_host),
    );
    ok.push_header(
        Known::Allow,
        "INVITE, ACK, CANCEL, BYE, UPDATE, INFO, MESSAGE, REFER, NOTIFY, OPTIONS",
    );
    if let Some(sdp) = &sdp_for_a {
        set_sdp(&mut ok, sdp);
    }
    let data_before = s.data.clone();
    core.supplements.outgoing(&mut s, Side::A, &mut ok).await;
    if !core.respond(&s.a_tx, ok).await {
        // The caller cancelled as the callee answered (the edge sent 487
        // first): the callee is ACKed and hung up, the call is over.
        info!("callee answered a cancelled call: hanging up");
        if let Ok(Some((mut ended, _, ()))) = core
            .sessions
            .update(id, |st| {
                st.phase = Phase::Ended;
                Some(())
            })
            .await
        {
            hang_up_stray(core, invite, resp, flow).await;
            core.cancel_branches(&mut ended, Some(idx)).await;
            core.finish(&ended, "cancelled").await;
        }
        return;
    }
    core.cancel_branches(&mut s, Some(idx)).await;
    if s.data != data_before {
        let data = s.data.clone();
        let _ = core
            .sessions
            .update_from(id, Some((s.clone(), version)), |st| {
                st.data = data.clone();
                Some(())
            })
            .await;
    }
    // The same timer now waits for the caller's ACK (RFC 3261 13.3.1.4).
    let ack_due = now_ms() + core.config.ack_wait_s.saturating_mul(1000);
    if let Err(e) = core
        .sessions
        .store()
        .schedule(&no_answer_timer(id), ack_due, bytes::Bytes::from(id.to_owned()))
        .await
    {
        debug!(error = %e, "ACK timer not armed");
    }
    events::publish_both(core.sessions.store(), &s, DialogState::Confirmed, None).await;
    info!(branch = idx, "call answered");
}

/// What the caller's 200 carries: the answer built from the callee's, or
/// (late offer) the callee's offer; `s.media` is updated to match.
async fn negotiate_answer(core: &Core, s: &mut Session, body: Option<&str>) -> Option<String> {
    match (body, s.media.late_offer) {
        (Some(offer), true) => match media::offer(&core.sdp, s, Side::B, offer, true).await {
            Ok(Offered::Forward { sdp, handlers }) => {
                s.media.offer = offer.to_owned();
                s.media.forwarded = sdp.clone();
                s.media.handlers = handlers;
                s.media.last_to_a = sdp.clone();
                Some(sdp)
            }
            _ => None,
        },
        (Some(answer), false) => match media::answer(&core.sdp, s, Side::A, answer).await {
            Ok(answered) => {
                s.media.answer = answer.to_owned();
                s.media.answered = answered.clone();
                s.media.last_to_a = answered.clone();
                Some(answered)
            }
            Err(e) => {
                warn!(error = %e, "answer not negotiated");
                None
            }
        },
        (None, _) => (!s.media.answered.is_empty()).then(|| s.media.answered.clone()),
    }
}

/// ACK and BYE for a 2xx nobody wants.
async fn hang_up_stray(core: &Core, invite: &Message, resp: &Message, flow: &Flow) {
    let target = compose::first_contact(resp);
    if target.is_empty() {
        return;
    }
    let leg = Leg {
        call_id: invite.call_id().unwrap_or("").to_owned(),
        local_tag: invite.from_tag().unwrap_or("").to_owned(),
        remote_tag: resp.to_tag().unwrap_or("").to_owned(),
        local_uri: invite.known_header(Known::From).map(without_tag).unwrap_or_default(),
        remote_uri: resp.known_header(Known::To).map(without_tag).unwrap_or_default(),
        remote_target: target,
        route_set: {
            let mut r: Vec<String> = resp.known_values(Known::RecordRoute).map(str::to_owned).collect();
            r.reverse();
            r
        },
        local_cseq: invite.cseq().map(|c| c.seq).unwrap_or(1),
        remote_cseq: 0,
        flow: Some(flow.clone()),
    };
    let ack = compose::in_dialog(&leg, Method::Ack, leg.local_cseq, "");
    if let Err(e) = core.edges.send_ack(ack, flow.clone()).await {
        warn!(error = %e, "ACK of an unwanted 2xx not sent");
    }
    let mut bye = compose::in_dialog(&leg, Method::Bye, leg.local_cseq + 1, "");
    bye.push_header_as_spelled("Reason", crate::supplement::reason::COMPLETED_ELSEWHERE);
    match core.edges.send_request(bye, flow.clone()).await {
        Ok(tx) => tx.finish_in_background(),
        Err(e) => warn!(error = %e, "BYE of an unwanted 2xx not sent"),
    }
}

/// Every branch failed: the caller gets the best of their answers.
async fn all_failed(core: &Core, id: &str, caller_invite: &Message, outcome: &Outcome) {
    let Some(best) = outcome.best() else { return };
    let Ok(Some(mut s)) = end_setup(core, id).await else {
        return;
    };
    core.supplements.incoming_response(&mut s, Side::B, best).await;
    let (code, reason) = map_failure(best);
    let mut resp = s.a_response_to(caller_invite, code, &reason);
    if (300..400).contains(&code) {
        for c in best.known_fields(Known::Contact) {
            resp.push_header(Known::Contact, c);
        }
    }
    for name in ["Retry-After", "Warning"] {
        if let Some(v) = best.header(name) {
            resp.push_header_as_spelled(name, v);
        }
    }
    core.supplements.outgoing(&mut s, Side::A, &mut resp).await;
    core.respond(&s.a_tx, resp).await;
    info!(code, "call failed");
    core.finish(&s, "rejected").await;
}

/// The caller's answer for a callee's failure: relayed, except what only
/// makes sense on the callee's hop.
fn map_failure(resp: &Message) -> (u16, String) {
    let code = resp.status().unwrap_or(500);
    let reason = resp.reason().unwrap_or("").to_owned();
    match code {
        // Credentials the caller cannot give, and a callee's overload that
        // must not read as ours (RFC 3261 16.7 says the same of 503).
        401 | 407 | 503 => (480, "Temporarily Unavailable".to_owned()),
        408 => (480, "Temporarily Unavailable (no response)".to_owned()),
        _ => (
            code,
            if reason.is_empty() {
                "Call Failed".to_owned()
            } else {
                reason
            },
        ),
    }
}

/// The caller's INVITE transaction was answered behind our back (487 for a
/// CANCEL whose notice found no session yet): end the setup.
async fn caller_gone(core: &Core, id: &str) {
    if let Ok(Some(mut s)) = end_setup(core, id).await {
        core.cancel_branches(&mut s, None).await;
        core.finish(&s, "cancelled").await;
    }
}

/// The no-answer timer fired (on whichever replica claimed it). `false`
/// when the store could not be read: the timer must fire again.
pub(crate) async fn no_answer(core: &Core, id: &str) -> bool {
    let mut s = match end_setup(core, id).await {
        Ok(Some(s)) => s,
        Ok(None) => return ack_timeout(core, id).await,
        Err(_) => return false,
    };
    info!(session = id, "no answer: cancelling");
    core.cancel_branches(&mut s, None).await;
    core.respond_invite(&mut s, 480, "Temporarily Unavailable (no answer)")
        .await;
    core.finish(&s, "timeout").await;
    true
}

/// The caller never ACKed its 200 (the timer moved there at the answer):
/// the call is ended with a BYE on each leg (RFC 3261 13.3.1.4), the
/// callee's 2xx ACKed first. `false` when the store could not be read.
async fn ack_timeout(core: &Core, id: &str) -> bool {
    let ended = core
        .sessions
        .update(id, |s| {
            if s.phase != Phase::Confirmed || s.a_acked {
                return None;
            }
            s.phase = Phase::Ended;
            s.a.local_cseq += 1;
            s.b.local_cseq += 1;
            Some(())
        })
        .await;
    let s = match ended {
        Ok(Some((s, _, ()))) => s,
        Ok(None) => return true,
        Err(_) => return false,
    };
    info!(session = id, "no ACK from the caller: hanging up both legs");
    crate::dialog::ack_b(core, &s).await;
    for side in [Side::A, Side::B] {
        let leg = s.leg(side);
        let bye = compose::in_dialog(leg, Method::Bye, leg.local_cseq, "");
        let Some(flow) = leg.flow.clone() else { continue };
        match core.edges.send_request(bye, flow).await {
            Ok(tx) => tx.finish_in_background(),
            Err(e) => warn!(error = %e, "BYE not sent"),
        }
    }
    core.finish(&s, "timeout").await;
    true
}
