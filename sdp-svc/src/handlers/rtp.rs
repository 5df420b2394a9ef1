//! Built-in: RTP audio and video. Media flows directly between the phones
//! (session-svc relays no media), so the offer passed on is the offered
//! section with the codecs the policy refuses taken out, and the answer
//! passed back is the other leg's, limited to what was offered.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use extension::{ConfigProblem, Settings};
use sdp::Media;
use sdp::negotiate::{Codec, RtpPolicy, declined};

use super::{Claim, HandlerError, SdpHandler, Stream, StreamCx};
use crate::config::SdpConfig;
use crate::section::keep_formats;

/// The built-in handler's name, as it appears in a session's handler list.
pub const RTP_HANDLER: &str = "rtp";

/// Claims `audio` / `video` streams over an RTP profile carrying at least
/// one allowed codec.
#[derive(Debug, Clone)]
pub struct RtpHandler {
    default: RtpPolicy,
    /// By endpoint profile; unknown names get `default`.
    endpoints: BTreeMap<String, RtpPolicy>,
}

impl RtpHandler {
    /// The media types it registers for when the configuration names none.
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

/// The codec policy from `sdp.codecs` (or an endpoint's), each bad codec
/// named by its key.
pub fn rtp_policy(codecs: &[String], telephone_event: bool, key: &str) -> Result<RtpPolicy, ConfigProblem> {
    let codecs = codecs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Codec::parse(c)
                // telephone-event is not a codec: it follows the codecs kept.
                .filter(|codec| !codec.name.eq_ignore_ascii_case("telephone-event"))
                .ok_or_else(|| ConfigProblem {
                    key: format!("{key}[{i}]"),
                    reason: format!("`{c}` is not a codec (`name/rate[/channels]`)"),
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(RtpPolicy {
        codecs,
        telephone_event,
    })
}

/// The handler from `[sdp]`: its codecs, telephone-event, endpoint
/// profiles. It takes no settings of its own.
pub fn build(settings: &Settings<'_>, config: &SdpConfig) -> Result<Arc<dyn SdpHandler>, ConfigProblem> {
    settings.parse::<NoSettings>()?;
    let mut rtp = RtpHandler::new(rtp_policy(&config.codecs, config.telephone_event, "sdp.codecs")?);
    for (name, ep) in &config.endpoints {
        let codecs = ep.codecs.as_deref().unwrap_or(&config.codecs);
        let te = ep.telephone_event.unwrap_or(config.telephone_event);
        rtp = rtp.with_endpoint(name, rtp_policy(codecs, te, &format!("sdp.endpoints.{name}.codecs"))?);
    }
    Ok(Arc::new(rtp))
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

#[async_trait]
impl SdpHandler for RtpHandler {
    async fn negotiate(&self, cx: &StreamCx<'_>, offered: Stream<'_>) -> Result<Claim, HandlerError> {
        let media = offered.media;
        let Some(ml) = media.media_line() else {
            return Ok(Claim::Decline("no m= line".into()));
        };
        if !ml.proto.contains("RTP") {
            return Ok(Claim::Decline(format!("{} is not an RTP profile", ml.proto)));
        }
        if ml.port == 0 {
            return Ok(Claim::Decline("stream disabled by the offerer (port 0)".into()));
        }
        let allowed: Vec<String> = self
            .policy(cx.endpoint)
            .allowed_formats(media)
            .iter()
            .map(u8::to_string)
            .collect();
        let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
        Ok(match keep_formats(media, &allowed) {
            Some(claim) => Claim::Take(claim),
            None => Claim::Decline(format!(
                "no offered format ({}) is an allowed codec",
                ml.formats.join(" ")
            )),
        })
    }

    async fn apply(
        &self,
        _cx: &StreamCx<'_>,
        offered: Stream<'_>,
        forwarded: Stream<'_>,
        answered: Stream<'_>,
    ) -> Result<Media, HandlerError> {
        let forwarded_formats = forwarded.media.media_line().map(|ml| ml.formats).unwrap_or_default();
        Ok(match answered.media.media_line() {
            Some(ml) if ml.port != 0 => keep_formats(answered.media, &forwarded_formats).unwrap_or_else(|| {
                // The answerer picked nothing we offered: a broken answer,
                // treated as a refusal of the stream.
                tracing::debug!("answer has no format that was offered; stream declined");
                declined(offered.media)
            }),
            _ => declined(offered.media),
        })
    }

    async fn ended(&self, cx: &StreamCx<'_>, _stream: Stream<'_>) {
        // Nothing to release: no relay, no ports held.
        tracing::debug!(session = cx.session, index = cx.index, "rtp stream ended");
    }
}
