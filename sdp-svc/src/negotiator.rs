//! Offer, answer and end of a session's descriptions, stream by stream,
//! through the handlers registered for each stream's media type.

use std::sync::Arc;

use async_trait::async_trait;
use sdp::negotiate::declined;
use sdp::{Media, Sdp};
use sip_message::Refusal;
use tracing::{Instrument, info_span};

use crate::api::{Answer, Ended, Negotiate, Offer, Offered, SdpError};
use crate::handlers::external::ExternalHandler;
use crate::handlers::{BUILTINS, Claim, HandlerError, RegisterError, Registry, SdpHandler, Stream, StreamCx};
use crate::origin::finish;
use crate::section::port;
use extension::{External, Host, Leased, ModuleConfig, Point, Refused, RegistryConfig, Row};

/// Offer/answer through the registered handlers; call it in process
/// through [`Negotiate`], or serve it with [`crate::SdpService`].
#[derive(Clone, Default)]
pub struct Negotiator {
    registry: Registry,
    /// The configured handlers as configured (priorities, listings).
    modules: Vec<(ModuleConfig, Option<External>)>,
    /// Handlers registered at run time.
    leased: Option<Arc<Leased<dyn SdpHandler>>>,
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

    /// Records how a configured handler was configured (its priority orders
    /// it among registered ones).
    pub(crate) fn configured(&mut self, module: ModuleConfig, external: Option<External>) {
        self.modules.push((module, external));
    }

    /// Handlers registered at run time join the chains of their media types
    /// (read from `store`, refreshed by [`Negotiator::follow_registry`]).
    pub fn with_registry(mut self, store: state_store::Store, config: &RegistryConfig) -> Self {
        let connect = |ext| Arc::new(ExternalHandler::new(ext)) as Arc<dyn SdpHandler>;
        self.leased = Some(Leased::new(Point::SdpHandler, store, config, connect));
        self
    }

    /// Keeps the registered handlers current (one task per replica).
    pub async fn follow_registry(self: Arc<Self>) {
        if let Some(l) = self.leased.clone() {
            l.follow().await;
        }
    }

    fn priority(&self, name: &str) -> i32 {
        self.modules
            .iter()
            .find(|(m, _)| m.name == name)
            .map_or(100, |(m, _)| m.priority)
    }

    /// The handlers a new stream of `media` asks: the configured ones in
    /// configuration order, each live registered one (by priority, then
    /// registration order) before the first configured one of a higher
    /// priority number.
    fn candidates(&self, media: &str) -> Vec<String> {
        let mut all: Vec<(i32, String)> = self
            .registry
            .chain(media)
            .iter()
            .map(|n| (self.priority(n), n.clone()))
            .collect();
        if let Some(l) = &self.leased {
            let now = state_store::now_ms();
            let mut registered: Vec<(i32, String)> = l
                .modules()
                .iter()
                .filter(|m| m.is_live(now) && m.module.media.iter().any(|x| x == media))
                .map(|m| (m.module.priority, m.module.name.clone()))
                .collect();
            registered.sort_by_key(|(p, _)| *p);
            for (priority, name) in registered {
                let at = all.iter().position(|(p, _)| *p > priority).unwrap_or(all.len());
                all.insert(at, (priority, name));
            }
        }
        all.into_iter().map(|(_, n)| n).collect()
    }

    /// A handler by name: configured, or registered (a lapsed one still
    /// answers running sessions, by its failure policy).
    fn handler(&self, name: &str) -> Option<Arc<dyn SdpHandler>> {
        self.registry
            .get(name)
            .cloned()
            .or_else(|| self.leased.as_ref()?.get(name).map(|m| m.handler.clone()))
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
            Some(name) if self.handler(name).is_some() => vec![name.clone()],
            Some(name) => {
                tracing::warn!(index, handler = %name, "stream's handler is no longer registered");
                self.candidates(ml.media)
            }
            None => self.candidates(ml.media),
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
            let Some(handler) = self.handler(&name) else {
                continue;
            };
            tried = true;
            let span = tracing::debug_span!(
                "extension.call",
                extension.point = "sdp-handler",
                extension.module = %name,
                extension.hook = "negotiate",
            );
            match tracing::Instrument::instrument(handler.negotiate(&cx, stream), span).await {
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
            let handler = name.and_then(|h| self.handler(h));
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
            let Some(handler) = self.handler(name) else {
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

/// The registry's view of this point.
#[async_trait]
impl Host for Negotiator {
    fn point(&self) -> Point {
        Point::SdpHandler
    }

    fn check(&self, module: &ModuleConfig) -> Vec<Refused> {
        let mut problems = Vec::new();
        if self.registry.get(&module.name).is_some() || BUILTINS.names().contains(&module.name.as_str()) {
            problems.push(Refused::Taken(format!(
                "name: `{}` already exists (a configured or built-in handler)",
                module.name
            )));
        }
        if module.media.is_empty() {
            problems.push(Refused::Invalid("filters: name at least one media type".into()));
        }
        problems
    }

    /// Per media type, the handlers a new stream asks, in order; then
    /// lapsed ones.
    fn rows(&self) -> Vec<Row> {
        let now = state_store::now_ms();
        let leased = self.leased.as_ref().map(|l| l.modules()).unwrap_or_default();
        let mut media: Vec<String> = self.registry.chains().map(|(m, _)| m.to_owned()).collect();
        for m in leased.iter() {
            media.extend(m.module.media.iter().cloned());
        }
        media.sort();
        media.dedup();
        let mut rows: Vec<Row> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for m in &media {
            for name in self.candidates(m) {
                if seen.contains(&name) {
                    continue;
                }
                seen.push(name.clone());
                if let Some((module, ext)) = self.modules.iter().find(|(c, _)| c.name == name) {
                    rows.push(Row::configured(module, ext.as_ref()));
                } else if let Some(l) = leased.iter().find(|l| l.module.name == name) {
                    rows.push(l.row(now));
                }
            }
        }
        rows.extend(leased.iter().filter(|l| !l.is_live(now)).map(|l| l.row(now)));
        rows
    }

    async fn refresh(&self) {
        if let Some(l) = &self.leased
            && let Err(e) = l.refresh().await
        {
            tracing::warn!(error = %e, "extension registry unreadable");
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
