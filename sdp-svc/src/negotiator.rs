//! Offer, answer and end of a session's descriptions, stream by stream,
//! through the handlers registered for each stream's media type.

use std::sync::Arc;

use proto::sdp::v1 as pb;
use proto::sdp::v1::negotiate_reply::Result as Negotiated;
use proto::sdp::v1::offer_reply::Result as Offered;
use proto::sdp::v1::sdp_handler_server::SdpHandler;
use proto::sdp::v1::sdp_negotiator_server::SdpNegotiator;
use proto::trace::Trace;
use sdp::negotiate::declined;
use sdp::{Media, Sdp};
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use crate::config::ConfigError;
use crate::external::HandlerFailed;
use crate::origin::finish;
use crate::registry::Registry;
use crate::section::{parse_sdp, parse_section, port, stream};

/// Implements `SdpNegotiator`; call it in process through the trait, or
/// serve it with `SdpNegotiatorServer::new`.
#[derive(Clone, Default)]
pub struct Negotiator {
    registry: Registry,
}

/// What became of one offered stream.
enum Outcome {
    Claimed {
        handler: String,
        section: Media,
    },
    /// `tried`: some handler of its type looked at it and said no.
    Declined {
        tried: bool,
    },
    /// A handler failed under a reject policy: the whole offer is refused.
    Failed(HandlerFailed),
}

fn reject(status: u32, warning: String) -> pb::OfferReply {
    pb::OfferReply {
        result: Some(Offered::Reject(pb::Reject { status, warning })),
    }
}

/// A request to a handler, carrying the caller's trace context.
fn to_handler<T>(trace: Option<&Trace>, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(t) = trace {
        proto::trace::inject(t, request.metadata_mut());
    }
    request
}

impl Negotiator {
    /// No handlers: every stream is declined. See also `from_config`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a handler for `media` types, asked after those already
    /// registered for them. Names are unique.
    pub fn register(&mut self, name: &str, media: &[String], handler: Arc<dyn SdpHandler>) -> Result<(), ConfigError> {
        self.registry.register(name, media, handler)
    }

    /// The handler names asked for `media`, in order.
    pub fn chain(&self, media: &str) -> &[String] {
        self.registry.chain(media)
    }

    /// Every media type with its chain, for listing.
    pub fn chains(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.registry.chains()
    }

    async fn negotiate_stream(
        &self,
        req: &pb::OfferRequest,
        trace: Option<&Trace>,
        offer: &Sdp,
        index: usize,
        offered: &Media,
    ) -> Result<Outcome, Status> {
        let Some(ml) = offered.media_line() else {
            return Ok(Outcome::Declined { tried: false });
        };
        // RFC 3264 8.2: port 0 in an offer removes the stream.
        if ml.port == 0 {
            return Ok(Outcome::Declined { tried: false });
        }
        // A stream keeps its handler across re-offers; one that is no
        // longer registered (configuration changed) is chosen afresh.
        let kept = req.handlers.get(index).filter(|h| !h.is_empty());
        let candidates: Vec<String> = match kept {
            Some(name) if self.registry.get(name).is_some() => vec![name.clone()],
            Some(name) => {
                tracing::warn!(index, handler = %name, "stream's handler is no longer registered");
                self.registry.chain(ml.media).to_vec()
            }
            None => self.registry.chain(ml.media).to_vec(),
        };
        let mut tried = false;
        for name in candidates {
            let Some(handler) = self.registry.get(&name) else {
                continue;
            };
            let request = to_handler(
                trace,
                pb::NegotiateRequest {
                    session: req.session.clone(),
                    offered: Some(stream(index, offered, &offer.session)),
                    endpoint: req.endpoint.clone(),
                },
            );
            tried = true;
            match handler.negotiate(request).await.map(Response::into_inner) {
                Ok(pb::NegotiateReply {
                    result: Some(Negotiated::Claim(text)),
                }) => {
                    let section = parse_section(&text, "claim")
                        .map_err(|e| Status::internal(format!("sdp handler {name}: {}", e.message())))?;
                    tracing::debug!(index, handler = %name, "stream claimed");
                    return Ok(Outcome::Claimed { handler: name, section });
                }
                Ok(pb::NegotiateReply {
                    result: Some(Negotiated::Decline(d)),
                }) => tracing::debug!(index, handler = %name, reason = %d.reason, "stream declined"),
                Ok(pb::NegotiateReply { result: None }) => {
                    tracing::warn!(index, handler = %name, "handler neither claimed nor declined");
                }
                Err(status) => {
                    return match HandlerFailed::from_status(&status) {
                        Some(f) => Ok(Outcome::Failed(f.clone())),
                        // No policy to apply (an in-process handler's own
                        // error): the call fails, as the contract says.
                        None => Err(Status::unavailable(format!(
                            "sdp handler {name} failed: {}",
                            status.message()
                        ))),
                    };
                }
            }
        }
        Ok(Outcome::Declined { tried })
    }

    async fn offer_inner(&self, req: pb::OfferRequest, trace: Option<Trace>) -> Result<pb::OfferReply, Status> {
        let offer = parse_sdp(&req.sdp, "sdp")?;
        let mut media = Vec::with_capacity(offer.media.len());
        let mut handlers = Vec::with_capacity(offer.media.len());
        let mut tried = false;
        for (i, offered) in offer.media.iter().enumerate() {
            match self.negotiate_stream(&req, trace.as_ref(), &offer, i, offered).await? {
                Outcome::Claimed { handler, section } => {
                    media.push(section);
                    handlers.push(handler);
                }
                Outcome::Declined { tried: t } => {
                    tried |= t;
                    media.push(declined(offered));
                    handlers.push(String::new());
                }
                Outcome::Failed(f) => {
                    tracing::warn!(handler = %f.handler, status = f.status, cause = %f.cause, "offer rejected");
                    return Ok(reject(
                        f.status,
                        format!("399 sipbus \"sdp handler {} failed\"", f.handler),
                    ));
                }
            }
        }
        if req.initial && handlers.iter().all(String::is_empty) {
            // RFC 3261 20.43: 305 when a handler looked at a stream and
            // refused its formats, 304 when no stream had a taker at all.
            let warning = if tried {
                "305 sipbus \"incompatible media format\""
            } else {
                "304 sipbus \"no acceptable media stream\""
            };
            tracing::info!(warning, "initial offer rejected");
            return Ok(reject(488, warning.to_owned()));
        }
        let forwarded = finish(&offer.session, media, req.origin.as_ref(), &req.previous)?;
        Ok(pb::OfferReply {
            result: Some(Offered::Forward(pb::Forward {
                sdp: forwarded.to_text().into(),
                handlers,
            })),
        })
    }

    async fn answer_inner(&self, req: pb::AnswerRequest, trace: Option<Trace>) -> Result<pb::AnswerReply, Status> {
        let offer = parse_sdp(&req.offer, "offer")?;
        let forwarded = parse_sdp(&req.forwarded, "forwarded")?;
        let answer = parse_sdp(&req.answer, "answer")?;
        let n = offer.media.len();
        if forwarded.media.len() != n {
            return Err(Status::invalid_argument(format!(
                "forwarded: {} m= sections for {n} offered",
                forwarded.media.len()
            )));
        }
        if answer.media.len() != n {
            return Err(Status::invalid_argument(format!(
                "answer: {} m= sections for {n} forwarded",
                answer.media.len()
            )));
        }
        let mut media = Vec::with_capacity(n);
        for (i, ((offered, sent), answered)) in offer.media.iter().zip(&forwarded.media).zip(&answer.media).enumerate()
        {
            let name = req.handlers.get(i).filter(|h| !h.is_empty());
            let handler = name.and_then(|h| self.registry.get(h));
            let (Some(name), Some(handler)) = (name, handler) else {
                if let Some(name) = name {
                    tracing::warn!(index = i, handler = %name, "stream's handler is no longer registered; declined");
                }
                media.push(declined(offered));
                continue;
            };
            if port(answered) == 0 {
                media.push(declined(offered));
                continue;
            }
            let request = to_handler(
                trace.as_ref(),
                pb::ApplyRequest {
                    session: req.session.clone(),
                    offered: Some(stream(i, offered, &offer.session)),
                    forwarded: Some(stream(i, sent, &forwarded.session)),
                    answered: Some(stream(i, answered, &answer.session)),
                },
            );
            let reply = handler.apply(request).await.map_err(|status| {
                tracing::warn!(index = i, handler = %name, error = %status.message(), "apply failed");
                Status::unavailable(format!("sdp handler {name} failed: {}", status.message()))
            })?;
            let section = parse_section(&reply.into_inner().section, "applied section")
                .map_err(|e| Status::internal(format!("sdp handler {name}: {}", e.message())))?;
            media.push(section);
        }
        let sdp = finish(&answer.session, media, req.origin.as_ref(), &req.previous)?;
        Ok(pb::AnswerReply {
            sdp: sdp.to_text().into(),
        })
    }

    async fn end_inner(&self, req: pb::EndRequest, trace: Option<Trace>) -> Result<pb::EndReply, Status> {
        let offer = parse_sdp(&req.offer, "offer")?;
        for (i, offered) in offer.media.iter().enumerate() {
            let Some(name) = req.handlers.get(i).filter(|h| !h.is_empty()) else {
                continue;
            };
            let Some(handler) = self.registry.get(name) else {
                tracing::warn!(index = i, handler = %name, "ended stream's handler is no longer registered");
                continue;
            };
            let request = to_handler(
                trace.as_ref(),
                pb::EndedRequest {
                    session: req.session.clone(),
                    stream: Some(stream(i, offered, &offer.session)),
                },
            );
            // The session is over whatever the handler says.
            if let Err(status) = handler.ended(request).await {
                tracing::warn!(index = i, handler = %name, error = %status.message(), "ended failed");
            }
        }
        Ok(pb::EndReply {})
    }
}

#[tonic::async_trait]
impl SdpNegotiator for Negotiator {
    async fn offer(&self, request: Request<pb::OfferRequest>) -> Result<Response<pb::OfferReply>, Status> {
        let trace = proto::trace::extract(request.metadata());
        let req = request.into_inner();
        let span = info_span!(
            "sdp.offer",
            trace_id = trace.as_ref().map(Trace::trace_id),
            session = %req.session,
            endpoint = %req.endpoint,
            initial = req.initial,
        );
        self.offer_inner(req, trace).instrument(span).await.map(Response::new)
    }

    async fn answer(&self, request: Request<pb::AnswerRequest>) -> Result<Response<pb::AnswerReply>, Status> {
        let trace = proto::trace::extract(request.metadata());
        let req = request.into_inner();
        let span = info_span!("sdp.answer", trace_id = trace.as_ref().map(Trace::trace_id), session = %req.session);
        self.answer_inner(req, trace).instrument(span).await.map(Response::new)
    }

    async fn end(&self, request: Request<pb::EndRequest>) -> Result<Response<pb::EndReply>, Status> {
        let trace = proto::trace::extract(request.metadata());
        let req = request.into_inner();
        let span = info_span!("sdp.end", trace_id = trace.as_ref().map(Trace::trace_id), session = %req.session);
        self.end_inner(req, trace).instrument(span).await.map(Response::new)
    }
}
