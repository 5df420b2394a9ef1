//! `[sdp]`: the codec policy of the built-in RTP handler (default and per
//! endpoint profile) and the external handlers, and building a
//! [`Negotiator`] from it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proto::sdp::v1::sdp_handler_client::SdpHandlerClient;
use sdp::negotiate::{Codec, RtpPolicy};
use serde::{Deserialize, Serialize};
use tonic::transport::Endpoint;

use crate::external::{ExternalHandler, FailurePolicy};
use crate::negotiator::Negotiator;
use crate::rtp::{RTP_HANDLER, RtpHandler};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SdpConfig {
    /// Codecs the built-in RTP handler lets through, `name/rate[/channels]`,
    /// in preference order.
    pub codecs: Vec<String>,
    /// Keep RFC 4733 telephone-event at the rate of a kept codec.
    pub telephone_event: bool,
    /// Overrides by endpoint profile (`OfferRequest.endpoint`).
    pub endpoints: BTreeMap<String, EndpointPolicy>,
    /// External handlers, asked before the built-in one for their media
    /// types, in this order.
    pub handlers: Vec<ExternalHandlerConfig>,
}

impl Default for SdpConfig {
    fn default() -> Self {
        Self {
            codecs: ["PCMU/8000", "PCMA/8000", "G722/8000", "opus/48000/2"]
                .map(String::from)
                .to_vec(),
            telephone_event: true,
            endpoints: BTreeMap::new(),
            handlers: Vec::new(),
        }
    }
}

/// `[sdp.endpoints.<name>]`: what is unset comes from `[sdp]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointPolicy {
    pub codecs: Option<Vec<String>>,
    pub telephone_event: Option<bool>,
}

/// `[[sdp.handlers]]`: an external handler implementing `SdpHandler`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExternalHandlerConfig {
    /// Written into `Forward.handlers`; unique.
    pub name: String,
    /// `http://host:port`.
    pub url: String,
    /// Media type tokens it is asked about (`text`, `application`, ...).
    pub media: Vec<String>,
    /// Per call; past it the call counts as failed.
    pub timeout_ms: u64,
    pub on_failure: OnFailure,
    /// SIP status of the rejection when `on_failure = "reject"`.
    pub reject_status: u32,
}

impl Default for ExternalHandlerConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            media: Vec::new(),
            timeout_ms: 500,
            on_failure: OnFailure::Decline,
            reject_status: 503,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Fail open: the stream goes to the next handler or is declined.
    #[default]
    Decline,
    /// Fail closed: the offer is rejected with `reject_status`.
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{key}: `{value}` is not a codec (`name/rate[/channels]`)")]
    BadCodec { key: String, value: String },
    #[error("{key}: `{url}` is not usable: {reason}")]
    BadUrl { key: String, url: String, reason: String },
    #[error("{key}: {reason}")]
    BadValue { key: String, reason: String },
    #[error("sdp handler name `{name}` is empty or contains whitespace")]
    BadName { name: String },
    #[error("sdp handler `{name}` registered twice")]
    DuplicateHandler { name: String },
    #[error("sdp handler `{name}` has no media type")]
    NoMedia { name: String },
    #[error("sdp handler `{name}`: `{media}` is not a media type token")]
    BadMedia { name: String, media: String },
    #[error("external sdp handlers need a Tokio runtime: build the negotiator inside one")]
    NoRuntime,
}

fn rtp_policy(codecs: &[String], telephone_event: bool, key: &str) -> Result<RtpPolicy, ConfigError> {
    let codecs = codecs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Codec::parse(c)
                // telephone-event is not a codec: it follows the codecs kept.
                .filter(|codec| !codec.name.eq_ignore_ascii_case("telephone-event"))
                .ok_or_else(|| ConfigError::BadCodec {
                    key: format!("{key}[{i}]"),
                    value: c.clone(),
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(RtpPolicy {
        codecs,
        telephone_event,
    })
}

fn external(i: usize, h: &ExternalHandlerConfig) -> Result<ExternalHandler, ConfigError> {
    let key = |field: &str| format!("sdp.handlers[{i}].{field}");
    if h.timeout_ms == 0 {
        return Err(ConfigError::BadValue {
            key: key("timeout_ms"),
            reason: "must be above 0".into(),
        });
    }
    let on_failure = match h.on_failure {
        OnFailure::Decline => FailurePolicy::Decline,
        OnFailure::Reject if (400..=699).contains(&h.reject_status) => FailurePolicy::Reject {
            status: h.reject_status,
        },
        OnFailure::Reject => {
            return Err(ConfigError::BadValue {
                key: key("reject_status"),
                reason: format!("{} is not a SIP error status (400 to 699)", h.reject_status),
            });
        }
    };
    let bad_url = |reason: String| ConfigError::BadUrl {
        key: key("url"),
        url: h.url.clone(),
        reason,
    };
    let timeout = Duration::from_millis(h.timeout_ms);
    let endpoint = Endpoint::from_shared(h.url.clone()).map_err(|e| bad_url(e.to_string()))?;
    // Without a scheme and host the lazy channel would only fail at the
    // first call; this build has no TLS, so http only.
    if endpoint.uri().scheme_str() != Some("http") || endpoint.uri().host().is_none() {
        return Err(bad_url("expected http://host:port".into()));
    }
    let channel = endpoint.connect_timeout(timeout).tcp_nodelay(true).connect_lazy();
    Ok(ExternalHandler::new(
        h.name.clone(),
        SdpHandlerClient::new(channel),
        timeout,
        on_failure,
    ))
}

impl Negotiator {
    /// External handlers first (config order), then the built-in RTP
    /// handler for audio and video. External clients connect on first use,
    /// which needs a Tokio runtime when any is configured.
    pub fn from_config(config: &SdpConfig) -> Result<Negotiator, ConfigError> {
        let mut rtp = RtpHandler::new(rtp_policy(&config.codecs, config.telephone_event, "sdp.codecs")?);
        for (name, ep) in &config.endpoints {
            let codecs = ep.codecs.as_deref().unwrap_or(&config.codecs);
            let te = ep.telephone_event.unwrap_or(config.telephone_event);
            rtp = rtp.with_endpoint(name, rtp_policy(codecs, te, &format!("sdp.endpoints.{name}.codecs"))?);
        }
        if !config.handlers.is_empty() && tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::NoRuntime);
        }
        let mut negotiator = Negotiator::new();
        for (i, h) in config.handlers.iter().enumerate() {
            negotiator.register(&h.name, &h.media, Arc::new(external(i, h)?))?;
        }
        negotiator.register(RTP_HANDLER, &RtpHandler::MEDIA.map(String::from), Arc::new(rtp))?;
        Ok(negotiator)
    }
}
