//! An SDP handler in another process: the `sipbus.sdp.v1.SdpHandler` gRPC
//! service turned into [`SdpHandler`]. Deadline, counters and failure
//! policy come from [`extension::External`]; what the handler sends back
//! is checked before use (a claim must be one well-formed section).

use async_trait::async_trait;
use extension::{External, Failure};
use proto::sdp::v1 as pb;
use proto::sdp::v1::negotiate_reply::Result as Negotiated;
use proto::sdp::v1::sdp_handler_client::SdpHandlerClient;
use sdp::Media;
use sdp::negotiate::declined;
use sip_message::Known;

use super::{Claim, HandlerError, SdpHandler, Stream, StreamCx};
use crate::section::{lines_text, parse_section};

pub struct ExternalHandler {
    module: External,
    client: SdpHandlerClient<tonic::transport::Channel>,
}

impl ExternalHandler {
    pub fn new(module: External) -> Self {
        let client = SdpHandlerClient::new(module.channel());
        Self { module, client }
    }

    /// Fail open (`None`: the caller declines) or closed: the offer is
    /// refused, with a Warning saying which handler failed.
    fn on_failure(&self) -> Option<HandlerError> {
        let warning = format!("399 sipbus \"sdp handler {} failed\"", self.module.name());
        self.module
            .refusal()
            .map(|r| HandlerError::Refused(r.with_header(Known::Warning, warning)))
    }
}

fn stream(cx: &StreamCx<'_>, s: Stream<'_>) -> pb::Stream {
    pb::Stream {
        index: u32::try_from(cx.index).unwrap_or(u32::MAX),
        media: s.media.media_line().map(|ml| ml.media.to_owned()).unwrap_or_default(),
        section: s.media.to_text(),
        session_lines: lines_text(s.session),
    }
}

fn section(text: &str, what: &str) -> Result<Media, Failure> {
    parse_section(text).map_err(|e| Failure::Invalid(format!("{what}: {e}")))
}

#[async_trait]
impl SdpHandler for ExternalHandler {
    async fn negotiate(&self, cx: &StreamCx<'_>, offered: Stream<'_>) -> Result<Claim, HandlerError> {
        let request = self.module.request(
            pb::NegotiateRequest {
                session: cx.session.to_owned(),
                offered: Some(stream(cx, offered)),
                endpoint: cx.endpoint.to_owned(),
            },
            None,
        );
        let reply = self
            .module
            .call("negotiate", self.client.clone().negotiate(request))
            .await;
        let claim = reply.and_then(|r| match r.result {
            Some(Negotiated::Claim(text)) => section(&text, "claim").map(Claim::Take),
            Some(Negotiated::Decline(d)) => Ok(Claim::Decline(d.reason)),
            None => Err(Failure::Invalid("neither claim nor decline".into())),
        });
        match claim {
            Ok(c) => Ok(c),
            Err(failure) => {
                if matches!(failure, Failure::Invalid(_)) {
                    self.module.failed("negotiate", &failure);
                }
                match self.on_failure() {
                    Some(e) => Err(e),
                    None => Ok(Claim::Decline(format!("handler failed: {failure}"))),
                }
            }
        }
    }

    async fn apply(
        &self,
        cx: &StreamCx<'_>,
        offered: Stream<'_>,
        forwarded: Stream<'_>,
        answered: Stream<'_>,
    ) -> Result<Media, HandlerError> {
        let request = self.module.request(
            pb::ApplyRequest {
                session: cx.session.to_owned(),
                offered: Some(stream(cx, offered)),
                forwarded: Some(stream(cx, forwarded)),
                answered: Some(stream(cx, answered)),
            },
            None,
        );
        let reply = self.module.call("apply", self.client.clone().apply(request)).await;
        match reply.and_then(|r| section(&r.section, "section")) {
            Ok(m) => Ok(m),
            Err(failure) => {
                if matches!(failure, Failure::Invalid(_)) {
                    self.module.failed("apply", &failure);
                }
                match self.on_failure() {
                    Some(HandlerError::Refused(r)) => Err(HandlerError::Failed(format!(
                        "sdp handler {} failed ({r}): {failure}",
                        self.module.name()
                    ))),
                    Some(e) => Err(e),
                    None => Ok(declined(offered.media)),
                }
            }
        }
    }

    async fn ended(&self, cx: &StreamCx<'_>, s: Stream<'_>) {
        // Nothing to decide on failure: it is logged, the session is over.
        let request = self.module.request(
            pb::EndedRequest {
                session: cx.session.to_owned(),
                stream: Some(stream(cx, s)),
            },
            None,
        );
        let _ = self.module.call("ended", self.client.clone().ended(request)).await;
    }
}
