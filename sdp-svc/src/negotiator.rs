//! Offer, answer and end of a session's descriptions, stream by stream,
//! through the handlers registered for each stream's media type.

use std::sync::Arc;

use async_trait::async_trait;
use sdp::negotiate::declined;
use sdp::{Media, Sdp};
use sip_message::Refusal;
use tracing::{Instrument, info_span};

use crate::api::{Answer, Ended, Negotiate, Offer, Offered, SdpError};
use crate::handlers::{Claim, HandlerError, RegisterError, Registry, SdpHandler, Stream, StreamCx};
use crate::origin::finish;
use crate::section::port;

/// Offer/answer through the registered handlers; call it in process
/// through [`Negotiate`], or serve it with [`crate::SdpService`].
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
    /// A handler failed closed: the whole offer is refused.
    Refused(Refusal),
}

impl Negotiator {
    /// No handlers: every stream is declined. See also `from_config`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a handler for `media` types, asked after those already
    /// registered for them. Names are unique.
    pub fn register(
        &mut self,
        name: &str,
        media: &[String],
        handler: Arc<dyn SdpHandler>,
    ) -> Result<(), RegisterError> {
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

    async fn negotiate_stream(&self, req: &Offer, index: usize, offered: &Media) -> Result<Outcome, SdpError> {
        let Some(ml) = offered.media_line() else {
            return Ok(Outcome::Declined { tried: false });
        };
        // RFC 3264 8.2: port 0 in an offer removes the stream.
        if ml.port == 0 {
            return Ok(Outcome::Declined { tried: false });
        }
        // A stream keeps its handler across re-offers; one that is no
        // longer registered (configuration changed) is chosen afresh.
        let kept = req.handlers.get(index).and_then(Option::as_ref);
        let candidates: Vec<String> = match kept {
            Some(name) if self.registry.get(name).is_some() => vec![name.clone()],
            Some(name) => {
                tracing::warn!(index, handler = %name, "stream's handler is no longer registered");
                self.registry.chain(ml.media).to_vec()
            }
            None => self.registry.chain(ml.media).to_vec(),
        };
        let cx = StreamCx {
            session: &req.session,
            endpoint: &req.endpoint,
            index,
        };
        let stream = Stream {
            media: offered,
            session: &req.sdp.session,
        };
        let mut tried = false;
        for name in candidates {
            let Some(handler) = self.registry.get(&name) else {
                continue;
            };
            tried = true;
            match handler.negotiate(&cx, stream).await {
                Ok(Claim::Take(section)) => {
                    tracing::debug!(index, handler = %name, "stream claimed");
                    return Ok(Outcome::Claimed { handler: name, section });
                }
                Ok(Claim::Decline(reason)) => tracing::debug!(index, handler = %name, %reason, "stream declined"),
                Err(HandlerError::Refused(r)) => return Ok(Outcome::Refused(r)),
                Err(HandlerError::Failed(why)) => {
                    return Err(SdpError::Failed(format!("sdp handler {name} failed: {why}")));
                }
            }
        }
        Ok(Outcome::Declined { tried })
    }

    async fn offer_inner(&self, req: &Offer) -> Result<Offered, SdpError> {
        let n = req.sdp.media.len();
        let mut media = Vec::with_capacity(n);
        let mut handlers = Vec::with_capacity(n);
        let mut tried = false;
        for (i, offered) in req.sdp.media.iter().enumerate() {
            match self.negotiate_stream(req, i, offered).await? {
                Outcome::Claimed { handler, section } => {
                    media.push(section);
                    handlers.push(Some(handler));
                }
                Outcome::Declined { tried: t } => {
                    tried |= t;
                    media.push(declined(offered));
                    handlers.push(None);
                }
                Outcome::Refused(r) => {
                    tracing::warn!(refusal = %r, "offer rejected by a failing handler");
                    return Ok(Offered::Reject(r));
                }
            }
        }
        if req.initial && handlers.iter().all(Option::is_none) {
            // RFC 3261 20.43: 305 when a handler looked at a stream and
            // refused its formats, 304 when no stream had a taker at all.
            let warning = if tried {
                "305 sipbus \"incompatible media format\""
            } else {
                "304 sipbus \"no acceptable media stream\""
            };
            tracing::info!(warning, "initial offer rejected");
            return Ok(Offered::Reject(Refusal::not_acceptable_here("", Some(warning))));
        }
        let sdp = finish(&req.sdp.session, media, req.origin.as_ref(), req.previous.as_ref())?;
        Ok(Offered::Forward { sdp, handlers })
    }

    async fn answer_inner(&self, req: &Answer) -> Result<Sdp, SdpError> {
        let n = req.offer.media.len();
        if req.forwarded.media.len() != n {
            return Err(SdpError::Invalid(format!(
                "forwarded: {} m= sections for {n} offered",
                req.forwarded.media.len()
            )));
        }
        if req.answer.media.len() != n {
            return Err(SdpError::Invalid(format!(
                "answer: {} m= sections for {n} forwarded",
                req.answer.media.len()
            )));
        }
        let mut media = Vec::with_capacity(n);
        let streams = req.offer.media.iter().zip(&req.forwarded.media).zip(&req.answer.media);
        for (i, ((offered, sent), answered)) in streams.enumerate() {
            let name = req.handlers.get(i).and_then(Option::as_ref);
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
            let cx = StreamCx {
                session: &req.session,
                endpoint: "",
                index: i,
            };
            let applied = handler
                .apply(
                    &cx,
                    Stream {
                        media: offered,
                        session: &req.offer.session,
                    },
                    Stream {
                        media: sent,
                        session: &req.forwarded.session,
                    },
                    Stream {
                        media: answered,
                        session: &req.answer.session,
                    },
                )
                .await;
            match applied {
                Ok(section) => media.push(section),
                Err(e) => {
                    tracing::warn!(index = i, handler = %name, error = %e, "apply failed");
                    return Err(SdpError::Failed(format!("sdp handler {name} failed: {e}")));
                }
            }
        }
        finish(&req.answer.session, media, req.origin.as_ref(), req.previous.as_ref())
    }

    async fn end_inner(&self, req: &Ended) {
        for (i, offered) in req.offer.media.iter().enumerate() {
            let Some(name) = req.handlers.get(i).and_then(Option::as_ref) else {
                continue;
            };
            let Some(handler) = self.registry.get(name) else {
                tracing::warn!(index = i, handler = %name, "ended stream's handler is no longer registered");
                continue;
            };
            let cx = StreamCx {
                session: &req.session,
                endpoint: "",
                index: i,
            };
            // The session is over whatever the handler says.
            handler
                .ended(
                    &cx,
                    Stream {
                        media: offered,
                        session: &req.offer.session,
                    },
                )
                .await;
        }
    }
}

#[async_trait]
impl Negotiate for Negotiator {
    async fn offer(&self, offer: &Offer) -> Result<Offered, SdpError> {
        let span = info_span!(
            "sdp.offer",
            session = %offer.session,
            endpoint = %offer.endpoint,
            initial = offer.initial,
        );
        self.offer_inner(offer).instrument(span).await
    }

    async fn answer(&self, answer: &Answer) -> Result<Sdp, SdpError> {
        let span = info_span!("sdp.answer", session = %answer.session);
        self.answer_inner(answer).instrument(span).await
    }

    async fn end(&self, ended: &Ended) {
        let span = info_span!("sdp.end", session = %ended.session);
        self.end_inner(ended).instrument(span).await
    }
}
