//! The session's side of offer/answer: the calls to sdp-svc that turn one
//! leg's offer or answer into the other's, and what becomes of a
//! description that cannot be used.

use std::net::IpAddr;

use sdp::Sdp;
use sdp_svc::{Answer, Ended, Offer, Offered, Origin, SdpClient, SdpError};
use sip_message::{Known, Message, Refusal};

use crate::session::{SdpText, Session, Side};

/// Why a description could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The SDP itself is bad: the offerer gets 488 (RFC 3261 21.4.26).
    #[error("{0}")]
    Invalid(String),
    /// sdp-svc or a handler failed: 500 / 503.
    #[error("sdp-svc: {0}")]
    Unavailable(String),
}

impl MediaError {
    /// The answer a request gets when its description cannot be used.
    pub fn refusal(&self) -> Refusal {
        match self {
            MediaError::Invalid(why) => Refusal::not_acceptable_here(why, None),
            MediaError::Unavailable(_) => {
                tracing::warn!(error = %self, "offer not negotiated");
                Refusal::service_unavailable("media negotiation")
            }
        }
    }
}

impl From<SdpError> for MediaError {
    fn from(e: SdpError) -> Self {
        match e {
            SdpError::Invalid(m) => MediaError::Invalid(m),
            other => MediaError::Unavailable(other.to_string()),
        }
    }
}

/// The body of a message when it is SDP: `Ok(None)` without one, an error
/// when it does not parse (this is where the bytes are first read).
pub fn sdp_of(m: &Message) -> Result<Option<Sdp>, MediaError> {
    if m.body().is_empty() {
        return Ok(None);
    }
    let sdp = m
        .content_type()
        .ok()
        .flatten()
        .is_some_and(|t| t.is("application", "sdp"));
    if !sdp {
        return Ok(None);
    }
    Sdp::parse(m.body())
        .map(Some)
        .map_err(|e| MediaError::Invalid(format!("SDP: {e}")))
}

/// A body as `application/sdp`.
pub fn set_sdp(m: &mut Message, sdp: &Sdp) {
    m.set_header(Known::ContentType, "application/sdp");
    m.set_body(bytes::Bytes::from(sdp.to_text()));
}

/// [`set_sdp`] with a description from the record.
pub fn set_stored_sdp(m: &mut Message, sdp: &SdpText) {
    m.set_header(Known::ContentType, "application/sdp");
    m.set_body(bytes::Bytes::from(sdp.as_str().to_owned()));
}

/// A description from the record, parsed for a negotiation.
fn stored(sdp: Option<&SdpText>) -> Result<Option<Sdp>, MediaError> {
    sdp.map(SdpText::parse)
        .transpose()
        .map_err(|e| MediaError::Invalid(format!("stored description unreadable: {e}")))
}

/// The IP sipbus writes in o= on a leg: the edge address of its flow.
fn origin_address(s: &Session, side: Side) -> IpAddr {
    let local = |side: Side| s.legs[side].flow.as_ref().and_then(|f| f.local);
    local(side)
        .or_else(|| local(Side::A))
        .map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip())
}

fn origin(s: &Session, side: Side) -> Origin {
    Origin {
        username: "sipbus".into(),
        session_id: s.media.origin_ids[side],
        version: 1,
        address: origin_address(s, side),
    }
}

/// An offer from `from`, to be sent on the other leg.
pub async fn offer(sdp: &SdpClient, s: &Session, from: Side, body: &Sdp, initial: bool) -> Result<Offered, MediaError> {
    let to = from.other();
    let req = Offer {
        session: s.id.clone(),
        sdp: body.clone(),
        endpoint: match from {
            Side::A => s.endpoint.clone(),
            Side::B => String::new(),
        },
        origin: Some(origin(s, to)),
        handlers: if initial { Vec::new() } else { s.media.handlers.clone() },
        initial,
        previous: stored(s.media.last_sent[to].as_ref())?,
    };
    Ok(sdp.offer(&req).await?)
}

/// The answer for the offering leg `to`, from the other leg's `answer` to
/// what was forwarded.
pub async fn answer(sdp: &SdpClient, s: &Session, to: Side, answer: &Sdp) -> Result<Sdp, MediaError> {
    let (Some(offer), Some(forwarded)) = (stored(s.media.offer.as_ref())?, stored(s.media.forwarded.as_ref())?) else {
        return Err(MediaError::Invalid("an answer without an offer".into()));
    };
    let req = Answer {
        session: s.id.clone(),
        offer,
        forwarded,
        answer: answer.clone(),
        handlers: s.media.handlers.clone(),
        origin: Some(origin(s, to)),
        previous: stored(s.media.last_sent[to].as_ref())?,
    };
    Ok(sdp.answer(&req).await?)
}

/// Tells the handlers the session's streams ended.
pub async fn end(sdp: &SdpClient, s: &Session) {
    if s.media.handlers.iter().all(Option::is_none) {
        return;
    }
    let Ok(Some(forwarded)) = stored(s.media.forwarded.as_ref()) else {
        return;
    };
    sdp.end(&Ended {
        session: s.id.clone(),
        offer: forwarded,
        handlers: s.media.handlers.clone(),
    })
    .await;
}
