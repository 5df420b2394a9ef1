//! The smaller typed headers: media types (Content-Type, Accept), Event,
//! Subscription-State and Reason.

use std::borrow::Cow;

use crate::error::ParseError;
use crate::params::Params;
use crate::text::{is_token, parse_u64, trim_ws, unquote};

/// `type/subtype;params` (Content-Type, one element of Accept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType<'a> {
    pub kind: &'a str,
    pub subtype: &'a str,
    pub params: Params<'a>,
}

impl<'a> MediaType<'a> {
    pub fn parse(s: &'a str) -> Result<MediaType<'a>, ParseError> {
        let bad = ParseError::BadHeader {
            header: "Content-Type",
            reason: "expected type/subtype",
        };
        let (mt, params) = match s.split_once(';') {
            Some((m, p)) => (m, p),
            None => (s, ""),
        };
        let (kind, subtype) = mt.split_once('/').ok_or(bad.clone())?;
        let (kind, subtype) = (trim_ws(kind), trim_ws(subtype));
        if !is_token(kind) || !is_token(subtype) {
            return Err(bad);
        }
        Ok(MediaType {
            kind,
            subtype,
            params: Params::new(params),
        })
    }

    /// Case-insensitive `type/subtype` comparison.
    pub fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind) && self.subtype.eq_ignore_ascii_case(subtype)
    }
}

/// Event (RFC 6665 8.2.1): package, optional template(s), id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// `presence`, `message-summary`, `dialog`, `presence.winfo` ...
    pub package: &'a str,
    pub params: Params<'a>,
}

impl<'a> Event<'a> {
    pub fn parse(s: &'a str) -> Result<Event<'a>, ParseError> {
        let (package, params) = match s.split_once(';') {
            Some((p, rest)) => (trim_ws(p), rest),
            None => (trim_ws(s), ""),
        };
        if !is_token(package) {
            return Err(ParseError::BadHeader {
                header: "Event",
                reason: "event type is not a token",
            });
        }
        Ok(Event {
            package,
            params: Params::new(params),
        })
    }

    pub fn id(&self) -> Option<&'a str> {
        self.params.value("id")
    }
}

/// The state of a Subscription-State header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubState<'a> {
    Active,
    Pending,
    Terminated,
    Other(&'a str),
}

/// Subscription-State (RFC 6665 8.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState<'a> {
    pub state: SubState<'a>,
    pub params: Params<'a>,
}

impl<'a> SubscriptionState<'a> {
    pub fn parse(s: &'a str) -> Result<SubscriptionState<'a>, ParseError> {
        let (state, params) = match s.split_once(';') {
            Some((st, p)) => (trim_ws(st), p),
            None => (trim_ws(s), ""),
        };
        if !is_token(state) {
            return Err(ParseError::BadHeader {
                header: "Subscription-State",
                reason: "state is not a token",
            });
        }
        let state = if state.eq_ignore_ascii_case("active") {
            SubState::Active
        } else if state.eq_ignore_ascii_case("pending") {
            SubState::Pending
        } else if state.eq_ignore_ascii_case("terminated") {
            SubState::Terminated
        } else {
            SubState::Other(state)
        };
        Ok(SubscriptionState {
            state,
            params: Params::new(params),
        })
    }

    pub fn expires(&self) -> Option<u32> {
        self.params
            .value("expires")
            .and_then(parse_u64)
            .map(|n| n.min(u64::from(u32::MAX)) as u32)
    }

    pub fn reason(&self) -> Option<&'a str> {
        self.params.value("reason")
    }

    pub fn retry_after(&self) -> Option<u32> {
        self.params
            .value("retry-after")
            .and_then(parse_u64)
            .map(|n| n.min(u64::from(u32::MAX)) as u32)
    }
}

/// One Reason value (RFC 3326): `SIP;cause=200;text="..."` or `Q.850;cause=16`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason<'a> {
    pub protocol: &'a str,
    pub params: Params<'a>,
}

impl<'a> Reason<'a> {
    pub fn parse(s: &'a str) -> Result<Reason<'a>, ParseError> {
        let (protocol, params) = match s.split_once(';') {
            Some((p, rest)) => (trim_ws(p), rest),
            None => (trim_ws(s), ""),
        };
        if !is_token(protocol) {
            return Err(ParseError::BadHeader {
                header: "Reason",
                reason: "protocol is not a token",
            });
        }
        Ok(Reason {
            protocol,
            params: Params::new(params),
        })
    }

    pub fn cause(&self) -> Option<u16> {
        self.params
            .value("cause")
            .and_then(parse_u64)
            .and_then(|n| u16::try_from(n).ok())
    }

    pub fn text(&self) -> Option<Cow<'a, str>> {
        self.params.value("text").map(unquote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_headers() {
        let ct = MediaType::parse("application/SDP ; charset=utf-8").unwrap();
        assert!(ct.is("application", "sdp"));
        assert_eq!(ct.params.value("charset"), Some("utf-8"));
        assert!(MediaType::parse("nonsense").is_err());

        let ev = Event::parse("presence;id=7").unwrap();
        assert_eq!((ev.package, ev.id()), ("presence", Some("7")));

        let ss = SubscriptionState::parse("terminated;reason=timeout;retry-after=30").unwrap();
        assert_eq!(ss.state, SubState::Terminated);
        assert_eq!((ss.reason(), ss.retry_after()), (Some("timeout"), Some(30)));
        assert_eq!(
            SubscriptionState::parse("active;expires=600").unwrap().expires(),
            Some(600)
        );

        let r = Reason::parse(r#"SIP ;cause=200 ;text="Call completed elsewhere""#).unwrap();
        assert_eq!(r.protocol, "SIP");
        assert_eq!(r.cause(), Some(200));
        assert_eq!(r.text().as_deref(), Some("Call completed elsewhere"));
    }
}
