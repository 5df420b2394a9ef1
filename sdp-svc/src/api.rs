//! The contract of sdp-svc as Rust values: offer/answer for a B2BUA,
//! stream by stream. [`SdpClient`] reaches a [`Negotiate`] in process (a
//! direct call with parsed descriptions) or over gRPC
//! (`sipbus.sdp.v1.SdpNegotiator`); [`SdpService`] serves one to other
//! processes and checks what they send. sdp-svc keeps no state: the caller
//! stores what it gets back and passes it in again.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bus::{CallError, NeverArrived, Replicas};
use proto::sdp::v1 as pb;
use proto::sdp::v1::offer_reply::Result as PbOffered;
use proto::sdp::v1::sdp_negotiator_client::SdpNegotiatorClient;
use sdp::Sdp;
use sip_message::{Known, Refusal};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::section::parse_sdp;

/// The o= values sipbus writes on the descriptions it sends on one leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: u64,
    /// Incremented whenever the description sent on the leg changes (RFC
    /// 3264 8).
    pub version: u64,
    pub address: IpAddr,
}

/// An offer received on one leg, to be offered on the other.
#[derive(Debug, Clone)]
pub struct Offer {
    /// The session id, for logs and handlers.
    pub session: String,
    pub sdp: Sdp,
    /// The policy profile of the offering endpoint; empty for the default.
    pub endpoint: String,
    /// The o= for the offer sent on; used only without `previous`.
    pub origin: Option<Origin>,
    /// For an offer inside a session: the handler each stream had, by m=
    /// index (`None`: declined); a stream keeps its handler.
    pub handlers: Vec<Option<String>>,
    /// The first offer of a session: when no stream is accepted the result
    /// is a refusal (488), not an offer with every port 0.
    pub initial: bool,
    /// The last description sent on the other leg: its o= is kept, version
    /// + 1 when anything else changed (RFC 3264 8).
    pub previous: Option<Sdp>,
}

/// What became of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offered {
    /// Send this on the other leg: as many m= sections as offered, in
    /// order, with the handler that took each.
    Forward { sdp: Sdp, handlers: Vec<Option<String>> },
    /// Answer the offerer with this.
    Reject(Refusal),
}

/// The other leg's answer to a forwarded offer, to be turned into the
/// answer for the offering leg.
#[derive(Debug, Clone)]
pub struct Answer {
    pub session: String,
    /// As received on the offering leg.
    pub offer: Sdp,
    /// As sent on the other leg.
    pub forwarded: Sdp,
    /// The other leg's answer to `forwarded`.
    pub answer: Sdp,
    pub handlers: Vec<Option<String>>,
    pub origin: Option<Origin>,
    pub previous: Option<Sdp>,
}

/// A session's streams ended.
#[derive(Debug, Clone)]
pub struct Ended {
    pub session: String,
    /// The last offer of the session, as forwarded.
    pub offer: Sdp,
    pub handlers: Vec<Option<String>>,
}

/// Why negotiation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// A description is unusable: the offerer gets 488 (RFC 3261 21.4.26).
    #[error("{0}")]
    Invalid(String),
    /// sdp-svc or a handler failed: the request gets 500 / 503.
    #[error("{0}")]
    Failed(String),
    /// No sdp-svc replica could be reached.
    #[error("sdp-svc unreachable: {0}")]
    Unreachable(String),
}

impl NeverArrived for SdpError {
    fn never_arrived(&self) -> bool {
        matches!(self, SdpError::Unreachable(_))
    }
}

/// Offer/answer, stream by stream.
#[async_trait]
pub trait Negotiate: Send + Sync + 'static {
    async fn offer(&self, offer: &Offer) -> Result<Offered, SdpError>;
    /// The answer for the offering leg: one m= section per offered one, in
    /// order, declined ones with port 0 (RFC 3264 6).
    async fn answer(&self, answer: &Answer) -> Result<Sdp, SdpError>;
    /// Tells the handlers their streams ended; failures are logged.
    async fn end(&self, ended: &Ended);
}

/// Deadline of one call to sdp-svc.
pub const CALL_DEADLINE: Duration = Duration::from_secs(2);

/// sdp-svc as session-svc calls it.
#[derive(Clone)]
pub struct SdpClient {
    replicas: Arc<Replicas<Arc<dyn Negotiate>>>,
}

fn flatten<T>(r: Result<T, CallError<SdpError>>) -> Result<T, SdpError> {
    r.map_err(|e| match e {
        CallError::Failed { error, .. } => error,
        CallError::Unreachable { last, .. } => last,
        // A late answer may still have been worked on.
        e @ CallError::Timeout { .. } => SdpError::Failed(e.to_string()),
        e @ CallError::Empty => SdpError::Unreachable(e.to_string()),
    })
}

impl SdpClient {
    /// The negotiator of this process.
    pub fn new(negotiator: Arc<dyn Negotiate>) -> Self {
        Self {
            replicas: Arc::new(Replicas::local(negotiator, CALL_DEADLINE).named("sdp")),
        }
    }

    /// sdp-svc replicas another part keeps up to date (DNS discovery):
    /// each made by [`remote`].
    pub fn following(replicas: Arc<Replicas<Arc<dyn Negotiate>>>) -> Self {
        Self { replicas }
    }

    pub async fn offer(&self, offer: &Offer) -> Result<Offered, SdpError> {
        flatten(self.replicas.call(|n| async move { n.offer(offer).await }).await)
    }

    pub async fn answer(&self, answer: &Answer) -> Result<Sdp, SdpError> {
        flatten(self.replicas.call(|n| async move { n.answer(answer).await }).await)
    }

    pub async fn end(&self, ended: &Ended) {
        let r = self
            .replicas
            .call(|n| async move {
                n.end(ended).await;
                Ok::<(), SdpError>(())
            })
            .await;
        if let Err(e) = r {
            tracing::debug!(error = %e, "sdp-svc End not delivered");
        }
    }
}

fn origin_to_proto(o: &Origin) -> pb::Origin {
    pb::Origin {
        username: o.username.clone(),
        session_id: o.session_id,
        version: o.version,
        address: o.address.to_string(),
    }
}

fn origin_from_proto(o: &pb::Origin) -> Result<Origin, SdpError> {
    let address = o
        .address
        .parse()
        .map_err(|_| SdpError::Invalid(format!("origin address `{}` is not an IP address", o.address)))?;
    if o.username.contains(char::is_whitespace) {
        return Err(SdpError::Invalid("origin username contains whitespace".into()));
    }
    Ok(Origin {
        username: o.username.clone(),
        session_id: o.session_id,
        version: o.version,
        address,
    })
}

fn handlers_to_proto(h: &[Option<String>]) -> Vec<String> {
    h.iter().map(|n| n.clone().unwrap_or_default()).collect()
}

fn handlers_from_proto(h: Vec<String>) -> Vec<Option<String>> {
    h.into_iter().map(|n| (!n.is_empty()).then_some(n)).collect()
}

fn text(sdp: &Sdp) -> bytes::Bytes {
    sdp.to_text().into()
}

fn previous_text(sdp: &Option<Sdp>) -> bytes::Bytes {
    sdp.as_ref().map(text).unwrap_or_default()
}

/// Parses a description from the other process; the error names the field.
fn field(bytes: &[u8], name: &str) -> Result<Sdp, SdpError> {
    parse_sdp(bytes).map_err(|e| SdpError::Invalid(format!("{name}: {e}")))
}

/// Parses a description sdp-svc sent back: one that does not parse is
/// sdp-svc's failure, not the offerer's.
fn from_sdp_svc(bytes: &[u8], name: &str) -> Result<Sdp, SdpError> {
    parse_sdp(bytes).map_err(|e| SdpError::Failed(format!("sdp-svc sent an unusable {name}: {e}")))
}

fn optional(bytes: &[u8], name: &str) -> Result<Option<Sdp>, SdpError> {
    if bytes.is_empty() {
        Ok(None)
    } else {
        field(bytes, name).map(Some)
    }
}

/// Header fields a refusal may carry from sdp-svc: bounded, each a token
/// name and a one-line value (they go on the wire as they are).
const MAX_REJECT_HEADERS: usize = 16;

fn usable_header(name: &str, value: &str) -> bool {
    sip_message::text::is_token(name) && !value.contains(['\r', '\n']) && value.len() <= 1024
}

fn refusal_from_proto(r: pb::Reject) -> Refusal {
    let status = u16::try_from(r.status).unwrap_or(500);
    let mut refusal = match (status, r.reason.is_empty()) {
        (488, true) => Refusal::not_acceptable_here("", None),
        (_, true) => Refusal::new(status, "Media Negotiation Failed"),
        (_, false) => Refusal::new(status, r.reason),
    };
    let warning = Some(r.warning).filter(|w| !w.is_empty() && usable_header("Warning", w));
    for (name, value) in warning
        .map(|w| ("Warning".to_owned(), w))
        .into_iter()
        .chain(r.headers.into_iter().map(|h| (h.name, h.value)))
        .filter(|(n, v)| usable_header(n, v))
        .take(MAX_REJECT_HEADERS)
    {
        refusal = refusal.with_header(name.as_str(), value);
    }
    refusal
}

fn refusal_to_proto(r: &Refusal) -> pb::Reject {
    let is_warning = |n: &sip_message::HeaderName| n.as_str().eq_ignore_ascii_case(Known::Warning.as_str());
    let warning = r
        .headers()
        .find(|(n, _)| is_warning(n))
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default();
    pb::Reject {
        status: u32::from(r.code()),
        warning,
        reason: r.reason().to_owned(),
        headers: r
            .headers()
            .filter(|(n, _)| !is_warning(n))
            .map(|(n, v)| proto::edge::v1::Header {
                name: n.as_str().to_owned(),
                value: v.to_owned(),
            })
            .collect(),
    }
}

/// The negotiator of an sdp-svc in another process.
pub fn remote(channel: Channel) -> Arc<dyn Negotiate> {
    Arc::new(RemoteNegotiator {
        client: SdpNegotiatorClient::new(channel),
    })
}

/// sdp-svc in another process.
struct RemoteNegotiator {
    client: SdpNegotiatorClient<Channel>,
}

fn request<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.set_timeout(CALL_DEADLINE);
    proto::trace::inject_current(r.metadata_mut());
    r
}

fn call_error(s: Status) -> SdpError {
    if bus::grpc::never_arrived(&s) {
        SdpError::Unreachable(s.to_string())
    } else if s.code() == tonic::Code::InvalidArgument {
        SdpError::Invalid(s.message().to_owned())
    } else {
        SdpError::Failed(format!("sdp-svc: {}", s.message()))
    }
}

#[async_trait]
impl Negotiate for RemoteNegotiator {
    async fn offer(&self, o: &Offer) -> Result<Offered, SdpError> {
        let msg = pb::OfferRequest {
            session: o.session.clone(),
            sdp: text(&o.sdp),
            endpoint: o.endpoint.clone(),
            origin: o.origin.as_ref().map(origin_to_proto),
            handlers: handlers_to_proto(&o.handlers),
            initial: o.initial,
            previous: previous_text(&o.previous),
        };
        let reply = self.client.clone().offer(request(msg)).await.map_err(call_error)?;
        match reply.into_inner().result {
            Some(PbOffered::Forward(f)) => Ok(Offered::Forward {
                sdp: from_sdp_svc(&f.sdp, "forwarded")?,
                handlers: handlers_from_proto(f.handlers),
            }),
            Some(PbOffered::Reject(r)) => Ok(Offered::Reject(refusal_from_proto(r))),
            None => Err(SdpError::Failed("sdp-svc: empty offer reply".into())),
        }
    }

    async fn answer(&self, a: &Answer) -> Result<Sdp, SdpError> {
        let msg = pb::AnswerRequest {
            session: a.session.clone(),
            offer: text(&a.offer),
            forwarded: text(&a.forwarded),
            answer: text(&a.answer),
            handlers: handlers_to_proto(&a.handlers),
            origin: a.origin.as_ref().map(origin_to_proto),
            previous: previous_text(&a.previous),
        };
        let answered = self.client.clone().answer(request(msg)).await.map_err(call_error)?;
        from_sdp_svc(&answered.into_inner().sdp, "answer")
    }

    async fn end(&self, e: &Ended) {
        let msg = pb::EndRequest {
            session: e.session.clone(),
            offer: text(&e.offer),
            answer: Default::default(),
            handlers: handlers_to_proto(&e.handlers),
        };
        if let Err(s) = self.client.clone().end(request(msg)).await {
            tracing::debug!(status = %s, "sdp-svc End failed");
        }
    }
}

/// Serves a [`Negotiate`] over gRPC, checking every description it is sent.
#[derive(Clone)]
pub struct SdpService {
    inner: Arc<dyn Negotiate>,
}

impl SdpService {
    pub fn new(inner: Arc<dyn Negotiate>) -> Self {
        Self { inner }
    }

    pub fn into_server(self) -> pb::sdp_negotiator_server::SdpNegotiatorServer<Self> {
        pb::sdp_negotiator_server::SdpNegotiatorServer::new(self)
    }
}

fn status_of(e: SdpError) -> Status {
    match e {
        SdpError::Invalid(m) => Status::invalid_argument(m),
        SdpError::Failed(m) | SdpError::Unreachable(m) => Status::unavailable(m),
    }
}

fn origin_of(o: Option<pb::Origin>) -> Result<Option<Origin>, SdpError> {
    o.as_ref().map(origin_from_proto).transpose()
}

#[tonic::async_trait]
impl pb::sdp_negotiator_server::SdpNegotiator for SdpService {
    async fn offer(&self, request: Request<pb::OfferRequest>) -> Result<Response<pb::OfferReply>, Status> {
        let r = request.into_inner();
        let offer = Offer {
            session: r.session,
            sdp: field(&r.sdp, "sdp").map_err(status_of)?,
            endpoint: r.endpoint,
            origin: origin_of(r.origin).map_err(status_of)?,
            handlers: handlers_from_proto(r.handlers),
            initial: r.initial,
            previous: optional(&r.previous, "previous").map_err(status_of)?,
        };
        let result = match self.inner.offer(&offer).await.map_err(status_of)? {
            Offered::Forward { sdp, handlers } => PbOffered::Forward(pb::Forward {
                sdp: text(&sdp),
                handlers: handlers_to_proto(&handlers),
            }),
            Offered::Reject(r) => PbOffered::Reject(refusal_to_proto(&r)),
        };
        Ok(Response::new(pb::OfferReply { result: Some(result) }))
    }

    async fn answer(&self, request: Request<pb::AnswerRequest>) -> Result<Response<pb::AnswerReply>, Status> {
        let r = request.into_inner();
        let answer = Answer {
            session: r.session,
            offer: field(&r.offer, "offer").map_err(status_of)?,
            forwarded: field(&r.forwarded, "forwarded").map_err(status_of)?,
            answer: field(&r.answer, "answer").map_err(status_of)?,
            handlers: handlers_from_proto(r.handlers),
            origin: origin_of(r.origin).map_err(status_of)?,
            previous: optional(&r.previous, "previous").map_err(status_of)?,
        };
        let sdp = self.inner.answer(&answer).await.map_err(status_of)?;
        Ok(Response::new(pb::AnswerReply { sdp: text(&sdp) }))
    }

    async fn end(&self, request: Request<pb::EndRequest>) -> Result<Response<pb::EndReply>, Status> {
        let r = request.into_inner();
        let ended = Ended {
            session: r.session,
            offer: field(&r.offer, "offer").map_err(status_of)?,
            handlers: handlers_from_proto(r.handlers),
        };
        self.inner.end(&ended).await;
        Ok(Response::new(pb::EndReply {}))
    }
}
