//! The built-in handler for RTP audio and video. Media flows directly
//! between the phones (session-svc relays no media), so the offer passed on
//! is the offered section with the codecs the policy refuses taken out, and
//! the answer passed back is the other leg's, limited to what was offered.

use std::collections::BTreeMap;

use proto::sdp::v1 as pb;
use proto::sdp::v1::negotiate_reply::Result as Negotiated;
use proto::sdp::v1::sdp_handler_server::SdpHandler;
use sdp::negotiate::{RtpPolicy, declined};
use tonic::{Request, Response, Status};

use crate::section::{keep_formats, parse_section};

/// The built-in handler's name, as it appears in `Forward.handlers`.
pub const RTP_HANDLER: &str = "rtp";

/// Claims `audio` / `video` streams over an RTP profile carrying at least
/// one allowed codec.
#[derive(Debug, Clone)]
pub struct RtpHandler {
    default: RtpPolicy,
    /// By `OfferRequest.endpoint`; unknown names get `default`.
    endpoints: BTreeMap<String, RtpPolicy>,
}

impl RtpHandler {
    /// The media types it registers for.
    pub const MEDIA: [&'static str; 2] = ["audio", "video"];

    pub fn new(default: RtpPolicy) -> Self {
        Self {
            default,
            endpoints: BTreeMap::new(),
        }
    }

    /// A policy for offers from one endpoint profile.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>, policy: RtpPolicy) -> Self {
        self.endpoints.insert(endpoint.into(), policy);
        self
    }

    fn policy(&self, endpoint: &str) -> &RtpPolicy {
        self.endpoints.get(endpoint).unwrap_or(&self.default)
    }
}

fn decline(reason: impl Into<String>) -> Response<pb::NegotiateReply> {
    Response::new(pb::NegotiateReply {
        result: Some(Negotiated::Decline(pb::Decline { reason: reason.into() })),
    })
}

#[tonic::async_trait]
impl SdpHandler for RtpHandler {
    async fn negotiate(&self, request: Request<pb::NegotiateRequest>) -> Result<Response<pb::NegotiateReply>, Status> {
        let req = request.into_inner();
        let offered = req
            .offered
            .ok_or_else(|| Status::invalid_argument("offered: missing"))?;
        let media = parse_section(&offered.section, "offered")?;
        let Some(ml) = media.media_line() else {
            return Ok(decline("no m= line"));
        };
        if !ml.proto.contains("RTP") {
            return Ok(decline(format!("{} is not an RTP profile", ml.proto)));
        }
        if ml.port == 0 {
            return Ok(decline("stream disabled by the offerer (port 0)"));
        }
        let allowed: Vec<String> = self
            .policy(&req.endpoint)
            .allowed_formats(&media)
            .iter()
            .map(u8::to_string)
            .collect();
        let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
        match keep_formats(&media, &allowed) {
            Some(claim) => Ok(Response::new(pb::NegotiateReply {
                result: Some(Negotiated::Claim(claim.to_text())),
            })),
            None => Ok(decline(format!(
                "no offered format ({}) is an allowed codec",
                ml.formats.join(" ")
            ))),
        }
    }

    async fn apply(&self, request: Request<pb::ApplyRequest>) -> Result<Response<pb::ApplyReply>, Status> {
        let req = request.into_inner();
        let missing = |what: &str| Status::invalid_argument(format!("{what}: missing"));
        let offered = parse_section(&req.offered.ok_or_else(|| missing("offered"))?.section, "offered")?;
        let forwarded = parse_section(&req.forwarded.ok_or_else(|| missing("forwarded"))?.section, "forwarded")?;
        let answered = parse_section(&req.answered.ok_or_else(|| missing("answered"))?.section, "answered")?;
        let forwarded_formats = forwarded.media_line().map(|ml| ml.formats).unwrap_or_default();
        let section = match answered.media_line() {
            Some(ml) if ml.port != 0 => keep_formats(&answered, &forwarded_formats).unwrap_or_else(|| {
                // The answerer picked nothing we offered: a broken answer,
                // treated as a refusal of the stream.
                tracing::debug!("answer has no format that was offered; stream declined");
                declined(&offered)
            }),
            _ => declined(&offered),
        };
        Ok(Response::new(pb::ApplyReply {
            section: section.to_text(),
        }))
    }

    async fn ended(&self, request: Request<pb::EndedRequest>) -> Result<Response<pb::EndedReply>, Status> {
        // Nothing to release: no relay, no ports held.
        let req = request.get_ref();
        tracing::debug!(session = %req.session, index = req.stream.as_ref().map(|s| s.index), "rtp stream ended");
        Ok(Response::new(pb::EndedReply {}))
    }
}
