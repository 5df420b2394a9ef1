//! The SDP handler extension point: [`SdpHandler`], one Rust trait on SDP
//! values, implemented by the built-ins in this folder (one file each, one
//! line in [`BUILTINS`]) and by [`external::ExternalHandler`] over the
//! `sipbus.sdp.v1.SdpHandler` gRPC service. The negotiator cannot tell
//! them apart.

pub mod external;
pub mod rtp;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use extension::{Builtin, Builtins};
use sdp::{Line, Media};
use sip_message::Refusal;

use crate::config::SdpConfig;

/// What a handler is told about the stream it is asked about.
#[derive(Debug, Clone, Copy)]
pub struct StreamCx<'a> {
    /// The session id, for logs.
    pub session: &'a str,
    /// The policy profile of the offering endpoint; empty for the default.
    pub endpoint: &'a str,
    /// The stream's m= index.
    pub index: usize,
}

/// One m= section with the session-level lines of its description (for a
/// handler that needs the session-level c= or attributes).
#[derive(Debug, Clone, Copy)]
pub struct Stream<'a> {
    pub media: &'a Media,
    pub session: &'a [Line],
}

/// A handler's verdict on an offered stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The handler takes the stream: this section is offered on the other
    /// leg.
    Take(Media),
    /// Not this handler's stream (why, for logs): the next one is asked.
    Decline(String),
}

/// A handler could not do its part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Fail closed: the offer is refused with this answer.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The handler broke: the call fails (500 / 503).
    #[error("{0}")]
    Failed(String),
}

/// An SDP handler. Every method has a default, so a handler implements only
/// what it needs.
#[async_trait]
pub trait SdpHandler: Send + Sync + 'static {
    /// Offered a stream: take it (with the section to offer onwards) or
    /// decline it.
    async fn negotiate(&self, _cx: &StreamCx<'_>, _offered: Stream<'_>) -> Result<Claim, HandlerError> {
        Ok(Claim::Decline("this handler does not negotiate".into()))
    }

    /// The other leg answered a stream this handler took: the answer for
    /// the offerer. By default, the other leg's answer as it is.
    async fn apply(
        &self,
        _cx: &StreamCx<'_>,
        _offered: Stream<'_>,
        _forwarded: Stream<'_>,
        answered: Stream<'_>,
    ) -> Result<Media, HandlerError> {
        Ok(answered.media.clone())
    }

    /// A stream this handler took ended (the session ended, or a later
    /// offer removed it).
    async fn ended(&self, _cx: &StreamCx<'_>, _stream: Stream<'_>) {}
}

/// The built-in handlers, by the name a configuration uses. A new built-in
/// is a file in this folder and one line here.
pub static BUILTINS: Builtins<dyn SdpHandler, SdpConfig> = Builtins(&[Builtin {
    name: rtp::RTP_HANDLER,
    build: rtp::build,
}]);

/// Which handlers exist, by name, and in what order each media type asks
/// them.
#[derive(Clone, Default)]
pub struct Registry {
    by_name: BTreeMap<String, Arc<dyn SdpHandler>>,
    /// Media type token → handler names, asked in this order.
    chains: BTreeMap<String, Vec<String>>,
}

/// Why a handler cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("sdp handler name `{0}` is empty or contains whitespace")]
    BadName(String),
    #[error("sdp handler `{0}` registered twice")]
    Duplicate(String),
    #[error("sdp handler `{0}` has no media type")]
    NoMedia(String),
    #[error("sdp handler `{name}`: `{media}` is not a media type token")]
    BadMedia { name: String, media: String },
}

impl Registry {
    /// Adds a handler for `media` types, asked after those already
    /// registered for them. Names are unique.
    pub fn register(
        &mut self,
        name: &str,
        media: &[String],
        handler: Arc<dyn SdpHandler>,
    ) -> Result<(), RegisterError> {
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(RegisterError::BadName(name.to_owned()));
        }
        if self.by_name.contains_key(name) {
            return Err(RegisterError::Duplicate(name.to_owned()));
        }
        if media.is_empty() {
            return Err(RegisterError::NoMedia(name.to_owned()));
        }
        if let Some(bad) = media.iter().find(|m| m.is_empty() || m.contains(char::is_whitespace)) {
            return Err(RegisterError::BadMedia {
                name: name.to_owned(),
                media: bad.clone(),
            });
        }
        self.by_name.insert(name.to_owned(), handler);
        for m in media {
            let chain = self.chains.entry(m.clone()).or_default();
            if !chain.iter().any(|n| n == name) {
                chain.push(name.to_owned());
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn SdpHandler>> {
        self.by_name.get(name)
    }

    pub fn chain(&self, media: &str) -> &[String] {
        self.chains.get(media).map_or(&[], Vec::as_slice)
    }

    pub fn chains(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.chains.iter().map(|(m, c)| (m.as_str(), c.as_slice()))
    }
}
