//! `[sdp]`: the codec policy of the built-in RTP handler (default and per
//! endpoint profile) and the handler list, and building a [`Negotiator`]
//! from it. Every check that can fail at start runs in
//! [`SdpConfig::check`] too, naming its key.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use extension::{ConfigProblem, External, ModuleConfig, Point};
use serde::{Deserialize, Serialize};

use crate::handlers::external::ExternalHandler;
use crate::handlers::rtp::{RTP_HANDLER, RtpHandler};
use crate::handlers::{BUILTINS, SdpHandler};
use crate::negotiator::Negotiator;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SdpConfig {
    /// Codecs the built-in RTP handler lets through, `name/rate[/channels]`,
    /// in preference order.
    pub codecs: Vec<String>,
    /// Keep RFC 4733 telephone-event at the rate of a kept codec.
    pub telephone_event: bool,
    /// Overrides by endpoint profile.
    pub endpoints: BTreeMap<String, EndpointPolicy>,
    /// Handlers, asked in this order for their media types: external ones
    /// (`url`) and built-ins by name. The built-in `rtp` (audio, video)
    /// comes after them unless the list names it.
    pub handlers: Vec<ModuleConfig>,
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

/// Why a negotiator cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// Every problem found, each naming its key.
    Invalid(Vec<ConfigProblem>),
    /// External handlers connect through a runtime.
    NoRuntime,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Invalid(problems) => {
                for (i, p) in problems.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
            ConfigError::NoRuntime => {
                f.write_str("external sdp handlers need a Tokio runtime: build the negotiator inside one")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl SdpConfig {
    /// The handler entries in the order they are asked: the list, then
    /// `rtp` unless the list names it.
    fn modules(&self) -> Vec<(String, ModuleConfig)> {
        let mut out: Vec<(String, ModuleConfig)> = self
            .handlers
            .iter()
            .enumerate()
            .map(|(i, h)| (format!("sdp.handlers[{i}]"), h.clone()))
            .collect();
        if !self.handlers.iter().any(|h| h.name == RTP_HANDLER && !h.is_external()) {
            out.push(("sdp.handlers (built-in rtp)".into(), ModuleConfig::builtin(RTP_HANDLER)));
        }
        out
    }

    /// Every problem that would stop [`Negotiator::from_config`], without
    /// connecting anywhere.
    pub fn check(&self) -> Vec<ConfigProblem> {
        match self.build(false) {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }

    /// Builds the negotiator; with `connect`, external handlers get their
    /// (lazy) channels, otherwise they are only checked.
    fn build(&self, connect: bool) -> Result<Negotiator, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mut negotiator = Negotiator::new();
        for (key, module) in self.modules() {
            let found = module.check(Point::SdpHandler, &key);
            if !found.is_empty() {
                problems.extend(found);
                continue;
            }
            let media = if module.media.is_empty() && module.name == RTP_HANDLER && !module.is_external() {
                RtpHandler::MEDIA.map(String::from).to_vec()
            } else {
                module.media.clone()
            };
            let mut external = None;
            let handler: Option<Arc<dyn SdpHandler>> = if module.is_external() {
                if connect {
                    match External::connect(Point::SdpHandler, &module, &key) {
                        Ok(ext) => {
                            external = Some(ext.clone());
                            Some(Arc::new(ExternalHandler::new(ext)))
                        }
                        Err(p) => {
                            problems.push(p);
                            continue;
                        }
                    }
                } else {
                    None
                }
            } else {
                match BUILTINS.build(&module, &key, self) {
                    Ok(h) => Some(h),
                    Err(p) => {
                        problems.push(p);
                        continue;
                    }
                }
            };
            // Checked even when not connecting: names and media are the
            // registry's to refuse.
            let handler = handler.unwrap_or_else(|| Arc::new(Unconnected));
            if let Err(e) = negotiator.register(&module.name, &media, handler) {
                problems.push(ConfigProblem {
                    key: key.clone(),
                    reason: e.to_string(),
                });
            }
            negotiator.configured(
                ModuleConfig {
                    media,
                    ..module.clone()
                },
                external,
            );
        }
        if problems.is_empty() {
            Ok(negotiator)
        } else {
            Err(problems)
        }
    }
}

/// Stands in for an external handler while a configuration is only
/// checked.
struct Unconnected;

impl SdpHandler for Unconnected {}

impl Negotiator {
    /// The configured handlers. External clients connect on first use,
    /// which needs a Tokio runtime when any is configured.
    pub fn from_config(config: &SdpConfig) -> Result<Negotiator, ConfigError> {
        if config.handlers.iter().any(ModuleConfig::is_external) && tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::NoRuntime);
        }
        config.build(true).map_err(ConfigError::Invalid)
    }
}
