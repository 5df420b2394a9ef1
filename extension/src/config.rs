//! A module as the configuration names it, for any extension point.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The four extension points, for keys, logs and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Point {
    SessionSupplement,
    SdpHandler,
    SubscriptionHandler,
    PublicationHandler,
}

impl Point {
    pub const ALL: [Point; 4] = [
        Point::SessionSupplement,
        Point::SdpHandler,
        Point::SubscriptionHandler,
        Point::PublicationHandler,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Point::SessionSupplement => "session-supplement",
            Point::SdpHandler => "sdp-handler",
            Point::SubscriptionHandler => "subscription-handler",
            Point::PublicationHandler => "publication-handler",
        }
    }

    /// The filter a module of this point may set (`methods`, `media`,
    /// `events`); the others must stay empty.
    pub fn filter(self) -> &'static str {
        match self {
            Point::SessionSupplement => "methods",
            Point::SdpHandler => "media",
            Point::SubscriptionHandler | Point::PublicationHandler => "events",
        }
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a failing or late external module means for the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Fail open: carry on as if the module were not there (a supplement
    /// is skipped, a stream goes to the next handler or is declined).
    #[default]
    #[serde(alias = "skip", alias = "decline")]
    Open,
    /// Fail closed: answer the triggering request with `reject_status`.
    #[serde(alias = "reject")]
    Closed,
}

/// One module of an extension point: `[[session.supplements]]`,
/// `[[sdp.handlers]]`, ...
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleConfig {
    /// A built-in's name, or any name for an external module; unique per
    /// point.
    pub name: String,
    /// `http://host:port` of an external module's gRPC server; empty for a
    /// built-in.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Session supplements: the methods it hears (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// SDP handlers: the media types it is asked about.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<String>,
    /// Subscription and publication handlers: their event packages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Subscription handlers: the body types they produce, preferred
    /// first; publication handlers: the body types they take.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Lower runs first; equal priorities keep configuration order.
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// External only: the deadline of each call.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// External only: what a failed or late call does.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// With `on_failure = "closed"`: the status the request gets.
    #[serde(default = "default_reject_status")]
    pub reject_status: u16,
    /// A built-in's own settings (its documentation names them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<toml::Table>,
}

fn default_priority() -> i32 {
    100
}
fn default_timeout_ms() -> u64 {
    500
}
fn default_reject_status() -> u16 {
    503
}

/// A configuration problem, with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigProblem {
    pub key: String,
    pub reason: String,
}

impl ModuleConfig {
    /// A built-in with its defaults.
    pub fn builtin(name: &str) -> ModuleConfig {
        ModuleConfig {
            name: name.to_owned(),
            url: String::new(),
            methods: Vec::new(),
            media: Vec::new(),
            events: Vec::new(),
            types: Vec::new(),
            priority: default_priority(),
            timeout_ms: default_timeout_ms(),
            on_failure: OnFailure::Open,
            reject_status: default_reject_status(),
            settings: None,
        }
    }

    /// The values of the point's filter: `methods`, `media` or `events`.
    pub fn filters(&self, point: Point) -> &[String] {
        match point {
            Point::SessionSupplement => &self.methods,
            Point::SdpHandler => &self.media,
            Point::SubscriptionHandler | Point::PublicationHandler => &self.events,
        }
    }

    pub fn filters_mut(&mut self, point: Point) -> &mut Vec<String> {
        match point {
            Point::SessionSupplement => &mut self.methods,
            Point::SdpHandler => &mut self.media,
            Point::SubscriptionHandler | Point::PublicationHandler => &mut self.events,
        }
    }

    pub fn is_external(&self) -> bool {
        !self.url.is_empty()
    }

    /// Checks what every point checks the same way; `key` is the entry's
    /// (`session.supplements[2]`). Point-specific checks (which methods,
    /// which built-ins) are the point's.
    pub fn check(&self, point: Point, key: &str) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut bad = |field: &str, reason: String| {
            problems.push(ConfigProblem {
                key: format!("{key}.{field}"),
                reason,
            })
        };
        // A token: names go into logs, listings and store keys.
        if !sip_message::text::is_token(&self.name) {
            bad(
                "name",
                format!(
                    "`{}` is not a token (letters, digits, -.!%*_+`'~)",
                    self.name.escape_debug()
                ),
            );
        }
        for (field, values) in [
            ("methods", &self.methods),
            ("media", &self.media),
            ("events", &self.events),
        ] {
            if field != point.filter() && !values.is_empty() {
                bad(
                    field,
                    format!("not a filter of {point}s (they filter by {})", point.filter()),
                );
            }
            if let Some(v) = values.iter().find(|v| !sip_message::text::is_token(v)) {
                bad(field, format!("`{}` is not a token", v.escape_debug()));
            }
        }
        if !self.types.is_empty() && point.filter() != "events" {
            bad("types", format!("not a setting of {point}s"));
        }
        if let Some(t) = self.types.iter().find(|t| !is_media_type(t)) {
            bad("types", format!("`{t}` is not a type/subtype"));
        }
        if self.is_external() {
            if let Err(reason) = bus::grpc::check_address(&self.url) {
                bad("url", format!("`{}`: {reason}", self.url));
            }
            if self.timeout_ms == 0 {
                bad("timeout_ms", "must be above 0".into());
            }
            if self.on_failure == OnFailure::Closed && !(400..700).contains(&self.reject_status) {
                bad(
                    "reject_status",
                    format!("{} is not a SIP error status (400 to 699)", self.reject_status),
                );
            }
            if self.settings.is_some() {
                bad("settings", "only built-in modules take settings".into());
            }
        }
        problems
    }
}

/// `type/subtype`, both tokens.
fn is_media_type(t: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    t.split_once('/').is_some_and(|(a, b)| token(a) && token(b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(text: &str) -> ModuleConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn old_words_for_the_policy_still_read() {
        let m = parse("name = \"x\"\nurl = \"http://127.0.0.1:7000\"\non_failure = \"reject\"\nreject_status = 403\n");
        assert_eq!((m.on_failure, m.reject_status), (OnFailure::Closed, 403));
        assert_eq!(parse("name = \"x\"\non_failure = \"skip\"").on_failure, OnFailure::Open);
        assert_eq!(
            parse("name = \"x\"\non_failure = \"decline\"").on_failure,
            OnFailure::Open
        );
        assert!(toml::from_str::<ModuleConfig>("name = \"x\"\nbogus = 1").is_err());
    }

    #[test]
    fn every_problem_names_its_key() {
        let m = parse(
            "name = \"bad name\"\nurl = \"ftp://x\"\nmedia = [\"audio\"]\ntimeout_ms = 0\non_failure = \"closed\"\nreject_status = 200\n",
        );
        let keys: Vec<String> = m
            .check(Point::SessionSupplement, "session.supplements[0]")
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(
            keys,
            [
                "session.supplements[0].name",
                "session.supplements[0].media",
                "session.supplements[0].url",
                "session.supplements[0].timeout_ms",
                "session.supplements[0].reject_status",
            ]
        );
        assert!(
            parse("name = \"rtp\"\nmedia = [\"audio\"]")
                .check(Point::SdpHandler, "k")
                .is_empty()
        );
    }
}
