//! SIP methods: the ones sipbus knows by name, and any extension token.

use std::fmt;

use crate::text::is_token;

/// A request method. Methods are case-sensitive (RFC 3261 7.1), so `invite`
/// is an extension method, not INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Subscribe,
    Notify,
    Publish,
    Refer,
    Message,
    Info,
    Prack,
    Update,
    /// Any other `token`.
    Extension(Box<str>),
}

impl Method {
    /// Parses a method token; `None` when it is not a token.
    pub fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "PUBLISH" => Method::Publish,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "INFO" => Method::Info,
            "PRACK" => Method::Prack,
            "UPDATE" => Method::Update,
            other if is_token(other) => Method::Extension(other.into()),
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Extension(s) => s,
        }
    }

    /// True for the methods of RFC 3261 and its common extensions, which
    /// sipbus understands even where it does not allow them (405, not 501).
    pub fn is_known(&self) -> bool {
        !matches!(self, Method::Extension(_))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_case_sensitive_tokens() {
        assert_eq!(Method::parse("INVITE"), Some(Method::Invite));
        assert_eq!(Method::parse("invite"), Some(Method::Extension("invite".into())));
        assert_eq!(Method::parse("NEWMETHOD").map(|m| m.is_known()), Some(false));
        assert_eq!(Method::parse("BAD METHOD"), None);
        assert_eq!(Method::parse(""), None);
    }
}
