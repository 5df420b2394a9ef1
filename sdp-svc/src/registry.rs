//! Which handlers exist, by name, and in what order each media type asks
//! them.

use std::collections::BTreeMap;
use std::sync::Arc;

use proto::sdp::v1::sdp_handler_server::SdpHandler;

use crate::config::ConfigError;

#[derive(Clone, Default)]
pub(crate) struct Registry {
    by_name: BTreeMap<String, Arc<dyn SdpHandler>>,
    /// Media type token → handler names, asked in this order.
    chains: BTreeMap<String, Vec<String>>,
}

impl Registry {
    pub(crate) fn register(
        &mut self,
        name: &str,
        media: &[String],
        handler: Arc<dyn SdpHandler>,
    ) -> Result<(), ConfigError> {
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(ConfigError::BadName { name: name.to_owned() });
        }
        if self.by_name.contains_key(name) {
            return Err(ConfigError::DuplicateHandler { name: name.to_owned() });
        }
        if media.is_empty() {
            return Err(ConfigError::NoMedia { name: name.to_owned() });
        }
        if let Some(bad) = media.iter().find(|m| m.is_empty() || m.contains(char::is_whitespace)) {
            return Err(ConfigError::BadMedia {
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

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<dyn SdpHandler>> {
        self.by_name.get(name)
    }

    pub(crate) fn chain(&self, media: &str) -> &[String] {
        self.chains.get(media).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn chains(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.chains.iter().map(|(m, c)| (m.as_str(), c.as_slice()))
    }
}
