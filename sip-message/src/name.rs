//! Header names: the canonical form of every header sipbus knows, the
//! compact forms of the IANA SIP header registry, and case-insensitive
//! lookup. Unknown names stay as received.

use std::fmt;
use std::sync::OnceLock;

macro_rules! known_headers {
    ($( $variant:ident => $canonical:literal $(, $compact:literal)? ; )*) => {
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
    Via => "Via", 'v';
    From => "From", 'f';
    To => "To", 't';
    CallId => "Call-ID", 'i';
    CSeq => "CSeq";
    Contact => "Contact", 'm';
    MaxForwards => "Max-Forwards";
    ContentLength => "Content-Length", 'l';
    ContentType => "Content-Type", 'c';
    Route => "Route";
    RecordRoute => "Record-Route";
    Expires => "Expires";
    UserAgent => "User-Agent";
    Allow => "Allow";
    Supported => "Supported", 'k';
    Require => "Require";
    Authorization => "Authorization";
    WwwAuthenticate => "WWW-Authenticate";
    ProxyAuthorization => "Proxy-Authorization";
    ProxyAuthenticate => "Proxy-Authenticate";
    Event => "Event", 'o';
    SubscriptionState => "Subscription-State";
    AllowEvents => "Allow-Events", 'u';
    Accept => "Accept";
    AcceptEncoding => "Accept-Encoding";
    AcceptLanguage => "Accept-Language";
    AcceptContact => "Accept-Contact", 'a';
    RejectContact => "Reject-Contact", 'j';
    RequestDisposition => "Request-Disposition", 'd';
    ReferredBy => "Referred-By", 'b';
    ReferTo => "Refer-To", 'r';
    ContentEncoding => "Content-Encoding", 'e';
    ContentDisposition => "Content-Disposition";
    ContentLanguage => "Content-Language";
    Subject => "Subject", 's';
    SessionExpires => "Session-Expires", 'x';
    MinSe => "Min-SE";
    Identity => "Identity", 'y';
    IdentityInfo => "Identity-Info", 'n';
    MinExpires => "Min-Expires";
    SipEtag => "SIP-ETag";
    SipIfMatch => "SIP-If-Match";
    Unsupported => "Unsupported";
    ProxyRequire => "Proxy-Require";
    Reason => "Reason";
    PAssertedIdentity => "P-Asserted-Identity";
    PPreferredIdentity => "P-Preferred-Identity";
    RemotePartyId => "Remote-Party-ID";
    Privacy => "Privacy";
    Path => "Path";
    ServiceRoute => "Service-Route";
    Server => "Server";
    Warning => "Warning";
    RetryAfter => "Retry-After";
    Date => "Date";
    Timestamp => "Timestamp";
    Organization => "Organization";
    Priority => "Priority";
    MimeVersion => "MIME-Version";
    AlertInfo => "Alert-Info";
    CallInfo => "Call-Info";
    ErrorInfo => "Error-Info";
    InReplyTo => "In-Reply-To";
    ReplyTo => "Reply-To";
    AuthenticationInfo => "Authentication-Info";
    RSeq => "RSeq";
    RAck => "RAck";
    Replaces => "Replaces";
    Flow => "Flow-Timer";
}

/// Buckets by length and first letter: a lookup compares one or two names.
const BUCKETS: usize = 32 * 27;

fn bucket(name: &[u8]) -> Option<usize> {
    let first = name.first()?.to_ascii_lowercase();
    if name.len() >= 32 {
        return None;
    }
    let letter = if first.is_ascii_lowercase() {
        usize::from(first - b'a')
    } else {
        26
    };
    Some(name.len() * 27 + letter)
}

impl Known {
    fn from_long(name: &[u8]) -> Option<Known> {
        static TABLE: OnceLock<Vec<Vec<Known>>> = OnceLock::new();
        let table = TABLE.get_or_init(|| {
            let mut table = vec![Vec::new(); BUCKETS];
            for k in Known::ALL {
                if let Some(b) = bucket(k.as_str().as_bytes()) {
                    table[b].push(*k);
                }
            }
            table
        });
        table[bucket(name)?]
            .iter()
            .copied()
            .find(|k| k.as_str().as_bytes().eq_ignore_ascii_case(name))
    }
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
        assert_eq!(
            Known::lookup("www-authenticate"),
            Some(Known::WwwAuthenticate)
        );
        assert_eq!(Known::lookup("X-Custom"), None);
        assert!(HeaderName::new("x-custom").matches(None, "X-CUSTOM"));
    }
}
