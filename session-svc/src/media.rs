//! session-svc's side of offer/answer: which o= each leg gets, and what
//! sdp-svc's verdicts mean for the SIP answer.

use proto::sdp::v1 as spb;
use tonic::Code;

use crate::links::Negotiators;
use crate::state::{Session, Side};

/// What became of an offer.
pub enum Offered {
    /// Send this on the other leg.
    Forward { sdp: String, handlers: Vec<String> },
    /// Answer the offerer with this status and Warning.
    Reject { status: u16, warning: String },
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The SDP itself is bad: the offerer gets 488 (RFC 3261 21.4.26).
    #[error("{0}")]
    Invalid(String),
    /// sdp-svc or a handler failed: 500 / 503.
    #[error("sdp-svc: {0}")]
    Unavailable(String),
}

fn error_of(status: tonic::Status) -> MediaError {
    match status.code() {
        Code::InvalidArgument => MediaError::Invalid(status.message().to_owned()),
        _ => MediaError::Unavailable(status.message().to_owned()),
    }
}

/// The IP sipbus writes in o= on a leg: the edge address of its flow.
fn origin_address(s: &Session, side: Side) -> String {
    let local = |side: Side| s.leg(side).flow.as_ref().and_then(|f| f.local);
    match local(side).or_else(|| local(Side::A)) {
        Some(a) => a.ip().to_string(),
        None => "127.0.0.1".to_owned(),
    }
}

fn origin(s: &Session, side: Side) -> spb::Origin {
    spb::Origin {
        username: "sipbus".into(),
        session_id: match side {
            Side::A => s.media.origin_a,
            Side::B => s.media.origin_b,
        },
        version: 1,
        address: origin_address(s, side),
    }
}

fn last_to(s: &Session, side: Side) -> &str {
    match side {
        Side::A => &s.media.last_to_a,
        Side::B => &s.media.last_to_b,
    }
}

/// An offer from `from`, to be sent on the other leg.
pub async fn offer(
    sdp: &Negotiators,
    s: &Session,
    from: Side,
    body: &str,
    initial: bool,
) -> Result<Offered, MediaError> {
    let to = from.other();
    let req = spb::OfferRequest {
        session: s.id.clone(),
        sdp: bytes::Bytes::from(body.to_owned()),
        endpoint: match from {
            Side::A => s.endpoint.clone(),
            Side::B => String::new(),
        },
        origin: Some(origin(s, to)),
        handlers: if initial { Vec::new() } else { s.media.handlers.clone() },
        initial,
        previous: bytes::Bytes::from(last_to(s, to).to_owned()),
    };
    let reply = sdp.offer(req).await.map_err(error_of)?;
    match reply.result {
        Some(spb::offer_reply::Result::Forward(f)) => Ok(Offered::Forward {
            sdp: String::from_utf8(f.sdp.to_vec()).map_err(|_| MediaError::Unavailable("SDP not UTF-8".into()))?,
            handlers: f.handlers,
        }),
        Some(spb::offer_reply::Result::Reject(r)) => Ok(Offered::Reject {
            status: u16::try_from(r.status)
                .ok()
                .filter(|c| (300..700).contains(c))
                .unwrap_or(488),
            warning: r.warning,
        }),
        None => Err(MediaError::Unavailable("empty offer reply".into())),
    }
}

/// The answer for the offering leg `to`, from the other leg's `answer` to
/// what was forwarded.
pub async fn answer(sdp: &Negotiators, s: &Session, to: Side, answer: &str) -> Result<String, MediaError> {
    let req = spb::AnswerRequest {
        session: s.id.clone(),
        offer: bytes::Bytes::from(s.media.offer.clone()),
        forwarded: bytes::Bytes::from(s.media.forwarded.clone()),
        answer: bytes::Bytes::from(answer.to_owned()),
        handlers: s.media.handlers.clone(),
        origin: Some(origin(s, to)),
        previous: bytes::Bytes::from(last_to(s, to).to_owned()),
    };
    let reply = sdp.answer(req).await.map_err(error_of)?;
    String::from_utf8(reply.sdp.to_vec()).map_err(|_| MediaError::Unavailable("SDP not UTF-8".into()))
}

/// Tells the handlers the session's streams ended.
pub async fn end(sdp: &Negotiators, s: &Session) {
    if s.media.handlers.iter().all(String::is_empty) {
        return;
    }
    sdp.end(spb::EndRequest {
        session: s.id.clone(),
        offer: bytes::Bytes::from(s.media.forwarded.clone()),
        answer: bytes::Bytes::from(s.media.answer.clone()),
        handlers: s.media.handlers.clone(),
    })
    .await;
}
