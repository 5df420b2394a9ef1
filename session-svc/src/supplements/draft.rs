//! A message about to leave, as supplements may edit it: header fields
//! added, replaced or removed, except those sipbus owns.

use sip_message::{Known, Message};
use tracing::warn;

/// Header fields sipbus owns: supplements may not edit them (the dialog
/// and the transaction depend on them). From is the exception: its display
/// name and URI may be replaced, never its tag (RFC 3323 anonymity needs a
/// new From).
pub(crate) const PROTECTED: [Known; 7] = [
    Known::Via,
    Known::CallId,
    Known::CSeq,
    Known::To,
    Known::ContentLength,
    Known::MaxForwards,
    Known::Route,
];

/// Longest header value a supplement may write.
const MAX_VALUE: usize = 4096;

/// An outgoing message open to a supplement's edits. A refused edit is
/// logged with the supplement's name and changes nothing.
pub struct Draft<'a> {
    message: &'a mut Message,
    supplement: &'a str,
}

/// Why an edit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    NotAName,
    BadValue,
    Owned,
    FromOnlyReplaced,
}

impl Refused {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refused::NotAName => "not a header name",
            Refused::BadValue => "value has a line break or is too long",
            Refused::Owned => "sipbus owns this header",
            Refused::FromOnlyReplaced => "From can only be replaced",
        }
    }
}

/// Checks an edit of header `name` with `value` (`None` for a removal).
pub(crate) fn check(name: &str, value: Option<&str>) -> Result<Option<Known>, Refused> {
    if !sip_message::text::is_token(name) {
        return Err(Refused::NotAName);
    }
    if value.is_some_and(|v| v.contains(['\r', '\n']) || v.len() > MAX_VALUE) {
        return Err(Refused::BadValue);
    }
    let known = Known::lookup(name);
    if known.is_some_and(|k| PROTECTED.contains(&k)) {
        return Err(Refused::Owned);
    }
    Ok(known)
}

impl<'a> Draft<'a> {
    pub(crate) fn new(message: &'a mut Message, supplement: &'a str) -> Self {
        Self { message, supplement }
    }

    /// The message as it is now.
    pub fn message(&self) -> &Message {
        self.message
    }

    fn refused(&self, name: &str, why: Refused) {
        warn!(
            supplement = self.supplement,
            header = name,
            why = why.reason(),
            "header edit refused"
        );
    }

    /// Appends a header field.
    pub fn add(&mut self, name: &str, value: &str) {
        match check(name, Some(value)) {
            Ok(Some(Known::From)) => self.refused(name, Refused::FromOnlyReplaced),
            Ok(_) => self.message.push_header_as_spelled(name, value),
            Err(why) => self.refused(name, why),
        }
    }

    /// Removes every field of this name, then appends one (idempotent:
    /// prefer it to `add`).
    pub fn replace(&mut self, name: &str, value: &str) {
        match check(name, Some(value)) {
            Ok(Some(Known::From)) => {
                let value = match self.message.from_tag() {
                    Some(t) => format!("{value};tag={t}"),
                    None => value.to_owned(),
                };
                self.message.set_header(Known::From, &value);
            }
            Ok(_) => {
                self.message.remove_header(name);
                self.message.push_header_as_spelled(name, value);
            }
            Err(why) => self.refused(name, why),
        }
    }

    /// Removes every field of this name.
    pub fn remove(&mut self, name: &str) {
        match check(name, None) {
            Ok(Some(Known::From)) => self.refused(name, Refused::FromOnlyReplaced),
            Ok(_) => {
                self.message.remove_header(name);
            }
            Err(why) => self.refused(name, why),
        }
    }
}
