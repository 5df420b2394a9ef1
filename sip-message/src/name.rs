//! Header names: the canonical form of every header sipbus knows, the
//! compact forms of the IANA SIP header registry, and case-insensitive
//! lookup. Unknown names stay as received.

use std::fmt;

macro_rules! known_headers {
    ($( $variant:ident => $canonical:literal, $lower:literal $(, $compact:literal)? ; )*) => {
        /// A header name sipbus recognises. Anything else is [`HeaderName::Other`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Known { $( $variant, )* }

        impl Known {
            /// Every known header.
            pub const ALL: &'static [Known] = &[ $( Known::$variant, )* ];

            /// The canonical spelling, as RFC 3261 and the IANA registry write it.
            pub const fn as_str(self) -> &'static str {
                match self { $( Known::$variant => $canonical, )* }
            }

            /// The compact form, if the IANA registry assigns one.
            pub const fn compact(self) -> Option<char> {
                match self { $( Known::$variant => known_headers!(@compact $($compact)?), )* }
            }

            /// Looks a name up in its long or compact form, ignoring case.
            pub fn lookup(name: &str) -> Option<Known> {
                Self::lookup_bytes(name.as_bytes())
            }

            /// [`Known::lookup`] on raw bytes.
            pub fn lookup_bytes(bytes: &[u8]) -> Option<Known> {
                if bytes.len() == 1 {
                    return Self::from_compact(bytes[0].to_ascii_lowercase());
                }
                Self::from_long(bytes)
            }

            /// Lower-cases into a stack buffer and lets the compiler's
            /// `match` on byte strings (length first, then contents) find it.
            fn from_long(name: &[u8]) -> Option<Known> {
                let mut buf = [0u8; 24];
                let lower = buf.get_mut(..name.len())?;
                for (d, s) in lower.iter_mut().zip(name) {
                    *d = s.to_ascii_lowercase();
                }
                match &*lower {
                    $( $lower => Some(Known::$variant), )*
                    _ => None,
                }
            }

            fn from_compact(c: u8) -> Option<Known> {
                $( $( if c == ($compact as u32) as u8 { return Some(Known::$variant); } )? )*
                None
            }

        }
    };
    (@compact $c:literal) => { Some($c) };
    (@compact) => { None };
}

// Ordered by how often they occur, because lookup tries them in order.
known_headers! {
    Via => "Via", b"via", 'v';
    From => "From", b"from", 'f';
    To => "To", b"to", 't';
    CallId => "Call-ID", b"call-id", 'i';
    CSeq => "CSeq", b"cseq";
    Contact => "Contact", b"contact", 'm';
    MaxForwards => "Max-Forwards", b"max-forwards";
    ContentLength => "Content-Length", b"content-length", 'l';
    ContentType => "Content-Type", b"content-type", 'c';
    Route => "Route", b"route";
    RecordRoute => "Record-Route", b"record-route";
    Expires => "Expires", b"expires";
    UserAgent => "User-Agent", b"user-agent";
    Allow => "Allow", b"allow";
    Supported => "Supported", b"supported", 'k';
    Require => "Require", b"require";
    Authorization => "Authorization", b"authorization";
    WwwAuthenticate => "WWW-Authenticate", b"www-authenticate";
    ProxyAuthorization => "Proxy-Authorization", b"proxy-authorization";
    ProxyAuthenticate => "Proxy-Authenticate", b"proxy-authenticate";
    Event => "Event", b"event", 'o';
    SubscriptionState => "Subscription-State", b"subscription-state";
    AllowEvents => "Allow-Events", b"allow-events", 'u';
    Accept => "Accept", b"accept";
    AcceptEncoding => "Accept-Encoding", b"accept-encoding";
    AcceptLanguage => "Accept-Language", b"accept-language";
    AcceptContact => "Accept-Contact", b"accept-contact", 'a';
    RejectContact => "Reject-Contact", b"reject-contact", 'j';
    RequestDisposition => "Request-Disposition", b"request-disposition", 'd';
    ReferredBy => "Referred-By", b"referred-by", 'b';
    ReferTo => "Refer-To", b"refer-to", 'r';
    ContentEncoding => "Content-Encoding", b"content-encoding", 'e';
    ContentDisposition => "Content-Disposition", b"content-disposition";
    ContentLanguage => "Content-Language", b"content-language";
    Subject => "Subject", b"subject", 's';
    SessionExpires => "Session-Expires", b"session-expires", 'x';
    MinSe => "Min-SE", b"min-se";
    Identity => "Identity", b"identity", 'y';
    IdentityInfo => "Identity-Info", b"identity-info", 'n';
    MinExpires => "Min-Expires", b"min-expires";
    SipEtag => "SIP-ETag", b"sip-etag";
    SipIfMatch => "SIP-If-Match", b"sip-if-match";
    Unsupported => "Unsupported", b"unsupported";
    ProxyRequire => "Proxy-Require", b"proxy-require";
    Reason => "Reason", b"reason";
    PAssertedIdentity => "P-Asserted-Identity", b"p-asserted-identity";
    PPreferredIdentity => "P-Preferred-Identity", b"p-preferred-identity";
    RemotePartyId => "Remote-Party-ID", b"remote-party-id";
    Privacy => "Privacy", b"privacy";
    Path => "Path", b"path";
    ServiceRoute => "Service-Route", b"service-route";
    Server => "Server", b"server";
    Warning => "Warning", b"warning";
    RetryAfter => "Retry-After", b"retry-after";
    Date => "Date", b"date";
    Timestamp => "Timestamp", b"timestamp";
    Organization => "Organization", b"organization";
    Priority => "Priority", b"priority";
    MimeVersion => "MIME-Version", b"mime-version";
    AlertInfo => "Alert-Info", b"alert-info";
    CallInfo => "Call-Info", b"call-info";
    ErrorInfo => "Error-Info", b"error-info";
    InReplyTo => "In-Reply-To", b"in-reply-to";
    ReplyTo => "Reply-To", b"reply-to";
    AuthenticationInfo => "Authentication-Info", b"authentication-info";
    RSeq => "RSeq", b"rseq";
    RAck => "RAck", b"rack";
    Replaces => "Replaces", b"replaces";
    Flow => "Flow-Timer", b"flow-timer";
}

impl fmt::Display for Known {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A header name as callers name it: a known header, or any other token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeaderName {
    Known(Known),
    Other(String),
}

impl HeaderName {
    /// Parses a name: known names (long or compact, any case) become
    /// [`HeaderName::Known`].
    pub fn new(name: &str) -> HeaderName {
        match Known::lookup(name) {
            Some(k) => HeaderName::Known(k),
            None => HeaderName::Other(name.to_owned()),
        }
    }

    /// The canonical spelling for known names, the given one otherwise.
    pub fn as_str(&self) -> &str {
        match self {
            HeaderName::Known(k) => k.as_str(),
            HeaderName::Other(s) => s,
        }
    }

    /// Case-insensitive match against a name as received.
    pub fn matches(&self, known: Option<Known>, raw: &str) -> bool {
        match self {
            HeaderName::Known(k) => known == Some(*k),
            HeaderName::Other(s) => known.is_none() && s.eq_ignore_ascii_case(raw),
        }
    }
}

impl From<Known> for HeaderName {
    fn from(k: Known) -> Self {
        HeaderName::Known(k)
    }
}

impl From<&str> for HeaderName {
    fn from(s: &str) -> Self {
        HeaderName::new(s)
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_iana_compact_form_resolves() {
        let expected = [
            ('a', Known::AcceptContact),
            ('b', Known::ReferredBy),
            ('c', Known::ContentType),
            ('d', Known::RequestDisposition),
            ('e', Known::ContentEncoding),
            ('f', Known::From),
            ('i', Known::CallId),
            ('j', Known::RejectContact),
            ('k', Known::Supported),
            ('l', Known::ContentLength),
            ('m', Known::Contact),
            ('n', Known::IdentityInfo),
            ('o', Known::Event),
            ('r', Known::ReferTo),
            ('s', Known::Subject),
            ('t', Known::To),
            ('u', Known::AllowEvents),
            ('v', Known::Via),
            ('x', Known::SessionExpires),
            ('y', Known::Identity),
        ];
        for (c, k) in expected {
            assert_eq!(Known::lookup(&c.to_string()), Some(k), "compact {c}");
            assert_eq!(Known::lookup(&c.to_ascii_uppercase().to_string()), Some(k));
            assert_eq!(k.compact(), Some(c));
        }
        assert_eq!(Known::lookup("g"), None);
    }

    #[test]
    fn long_names_ignore_case() {
        assert_eq!(Known::lookup("cALL-iD"), Some(Known::CallId));
        assert_eq!(Known::lookup("www-authenticate"), Some(Known::WwwAuthenticate));
        assert_eq!(Known::lookup("X-Custom"), None);
        assert!(HeaderName::new("x-custom").matches(None, "X-CUSTOM"));
    }
}
