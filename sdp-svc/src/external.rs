//! An SDP handler in another process, behind the same trait as the built-in
//! ones: each call goes over gRPC with a deadline, and a failure (error,
//! timeout, unusable reply) applies the handler's policy.

use std::sync::Arc;
use std::time::Duration;

use proto::sdp::v1 as pb;
use proto::sdp::v1::negotiate_reply::Result as Negotiated;
use proto::sdp::v1::sdp_handler_client::SdpHandlerClient;
use proto::sdp::v1::sdp_handler_server::SdpHandler;
use proto::trace::Trace;
use sdp::negotiate::declined;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::section::parse_section;

/// What a failing external handler does to the offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Fail open: as if it had declined (the next handler is asked; in an
    /// answer the stream is declined).
    Decline,
    /// Fail closed: the offer is rejected with this SIP status (an answer
    /// fails with UNAVAILABLE).
    Reject { status: u32 },
}

/// A handler failed under [`FailurePolicy::Reject`]. It travels as the
/// source of the `Status` the handler returns, so the negotiator (same
/// process) recovers it with [`HandlerFailed::from_status`]; over the wire
/// only an UNAVAILABLE status remains, which fails the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sdp handler {handler} failed: {cause}")]
pub struct HandlerFailed {
    pub handler: String,
    /// The SIP status to reject the offer with.
    pub status: u32,
    pub cause: String,
}

impl HandlerFailed {
    pub fn into_status(self) -> Status {
        let mut status = Status::unavailable(self.to_string());
        status.set_source(Arc::new(self));
        status
    }

    pub fn from_status(status: &Status) -> Option<&HandlerFailed> {
        std::error::Error::source(status)?.downcast_ref()
    }
}

/// Why a call to the handler counts as failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("{}: {}", .0.code(), .0.message())]
    Rpc(Status),
    #[error("unusable reply: {0}")]
    Invalid(String),
}

/// An external SDP handler reached over gRPC.
#[derive(Debug, Clone)]
pub struct ExternalHandler {
    name: String,
    client: SdpHandlerClient<Channel>,
    timeout: Duration,
    on_failure: FailurePolicy,
}

impl ExternalHandler {
    /// `client` may be lazily connected: an unreachable handler is a
    /// failure of the call, not of the construction.
    pub fn new(
        name: impl Into<String>,
        client: SdpHandlerClient<Channel>,
        timeout: Duration,
        on_failure: FailurePolicy,
    ) -> Self {
        Self {
            name: name.into(),
            client,
            timeout,
            on_failure,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The request with a deadline for the handler (grpc-timeout) and our
    /// trace context.
    fn outgoing<T>(&self, trace: Option<Trace>, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        if let Some(t) = trace {
            proto::trace::inject(&t, request.metadata_mut());
        }
        request
    }

    /// Bounds the call by `timeout` even when the handler ignores its
    /// deadline or the connection hangs.
    async fn call<T>(&self, call: impl Future<Output = Result<Response<T>, Status>>) -> Result<T, Failure> {
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(Failure::Timeout(self.timeout)),
            Ok(Err(status)) => Err(Failure::Rpc(status)),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    fn failed(&self, failure: &Failure) -> Option<Status> {
        tracing::warn!(handler = %self.name, error = %failure, policy = ?self.on_failure, "sdp handler failed");
        match self.on_failure {
            FailurePolicy::Decline => None,
            FailurePolicy::Reject { status } => Some(
                HandlerFailed {
                    handler: self.name.clone(),
                    status,
                    cause: failure.to_string(),
                }
                .into_status(),
            ),
        }
    }
}

/// A claim must be one well-formed section; anything else is a failure
/// (never forwarded to a phone).
fn check(reply: pb::NegotiateReply) -> Result<pb::NegotiateReply, Failure> {
    match &reply.result {
        Some(Negotiated::Claim(section)) => match parse_section(section, "claim") {
            Ok(_) => Ok(reply),
            Err(e) => Err(Failure::Invalid(e.message().to_owned())),
        },
        Some(Negotiated::Decline(_)) => Ok(reply),
        None => Err(Failure::Invalid("neither claim nor decline".into())),
    }
}

#[tonic::async_trait]
impl SdpHandler for ExternalHandler {
    async fn negotiate(&self, request: Request<pb::NegotiateRequest>) -> Result<Response<pb::NegotiateReply>, Status> {
        let trace = proto::trace::extract(request.metadata());
        let request = self.outgoing(trace, request.into_inner());
        let result = self.call(self.client.clone().negotiate(request)).await.and_then(check);
        match result {
            Ok(reply) => Ok(Response::new(reply)),
            Err(failure) => match self.failed(&failure) {
                Some(status) => Err(status),
                None => Ok(Response::new(pb::NegotiateReply {
                    result: Some(Negotiated::Decline(pb::Decline {
                        reason: format!("handler failed: {failure}"),
                    })),
                })),
            },
        }
    }

    async fn apply(&self, request: Request<pb::ApplyRequest>) -> Result<Response<pb::ApplyReply>, Status> {
        let trace = proto::trace::extract(request.metadata());
        let message = request.into_inner();
        // Kept for the declined form should the handler fail.
        let offered = message.offered.as_ref().map(|s| s.section.clone()).unwrap_or_default();
        let request = self.outgoing(trace, message);
        let result = self.call(self.client.clone().apply(request)).await.and_then(|r| {
            parse_section(&r.section, "section")
                .map(|_| r)
                .map_err(|e| Failure::Invalid(e.message().to_owned()))
        });
        match result {
            Ok(reply) => Ok(Response::new(reply)),
            Err(failure) => match self.failed(&failure) {
                Some(status) => Err(status),
                None => Ok(Response::new(pb::ApplyReply {
                    section: declined(&parse_section(&offered, "offered")?).to_text(),
                })),
            },
        }
    }

    async fn ended(&self, request: Request<pb::EndedRequest>) -> Result<Response<pb::EndedReply>, Status> {
        // Nothing to decide on failure: the caller logs it and moves on.
        let trace = proto::trace::extract(request.metadata());
        let request = self.outgoing(trace, request.into_inner());
        self.call(self.client.clone().ended(request))
            .await
            .map(Response::new)
            .map_err(|f| Status::unavailable(format!("sdp handler {} failed: {f}", self.name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_failed_survives_as_status_source() {
        let failed = HandlerFailed {
            handler: "t140".into(),
            status: 503,
            cause: "no reply within 300ms".into(),
        };
        let status = failed.clone().into_status();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(HandlerFailed::from_status(&status), Some(&failed));
        assert_eq!(HandlerFailed::from_status(&Status::unavailable("other")), None);
    }
}
