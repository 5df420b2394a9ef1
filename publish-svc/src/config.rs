//! `[publish]`: who may publish what, Expires bounds, the handler list.

use extension::{ConfigProblem, ModuleConfig, Packages, Point};
use serde::{Deserialize, Serialize};

use crate::handlers::{BUILTINS, DEFAULTS, PublicationHandler};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConfig {
    /// Digest authentication with the registrar's users and nonce key
    /// (`[registrar.auth]`, a 407 challenge).
    pub authenticate: bool,
    /// Users (`alice` or `sip:alice@example.com`) who may publish for any
    /// resource, e.g. a presence gateway or a voicemail system; everyone
    /// else publishes only their own (403).
    pub publish_for_others: Vec<String>,
    /// Expires when a PUBLISH has none, the least accepted (423 below),
    /// the most granted (longer requests are shortened).
    pub default_expires_s: u32,
    pub min_expires_s: u32,
    pub max_expires_s: u32,
    /// Live publications per resource (devices of one user), beyond which
    /// a new one is refused (403).
    pub max_publications: usize,
    /// Publication handlers: `[[publish.handlers]]`, one per event package.
    /// The built-ins `presence` and `message-summary` run unless listed.
    pub handlers: Vec<ModuleConfig>,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            authenticate: true,
            publish_for_others: Vec::new(),
            default_expires_s: 3600,
            min_expires_s: 60,
            max_expires_s: 86_400,
            max_publications: 16,
            handlers: Vec::new(),
        }
    }
}

impl PublishConfig {
    /// Every problem that would stop a start, without connecting anywhere.
    pub fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = match self.packages(None) {
            Ok(_) => Vec::new(),
            Err(p) => p,
        };
        if self.min_expires_s == 0 || self.min_expires_s > self.max_expires_s {
            problems.push(ConfigProblem {
                key: "publish.min_expires_s".into(),
                reason: format!("must be above 0 and at most max_expires_s ({})", self.max_expires_s),
            });
        }
        if !(self.min_expires_s..=self.max_expires_s).contains(&self.default_expires_s) {
            problems.push(ConfigProblem {
                key: "publish.default_expires_s".into(),
                reason: "must lie between min_expires_s and max_expires_s".into(),
            });
        }
        if self.max_publications == 0 {
            problems.push(ConfigProblem {
                key: "publish.max_publications".into(),
                reason: "must be above 0".into(),
            });
        }
        problems
    }

    /// The handlers by package; external ones connect (lazily) with
    /// `connect`.
    pub fn packages(
        &self,
        connect: extension::Connect<'_, dyn PublicationHandler>,
    ) -> Result<Packages<dyn PublicationHandler>, Vec<ConfigProblem>> {
        Packages::build(
            Point::PublicationHandler,
            "publish.handlers",
            &self.handlers,
            DEFAULTS,
            &BUILTINS,
            self,
            connect,
        )
    }
}
