//! URIs: `sip:` and `sips:` parsed into their parts, `tel:` with its
//! parameters, and any other scheme kept as an opaque absolute URI.
//! Everything borrows from the text it was parsed from.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::UriError;
use crate::params::Params;
use crate::text::percent_decode;

/// A parsed URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri<'a> {
    Sip(SipUri<'a>),
    Tel(TelUri<'a>),
    /// Any other scheme, kept whole (RFC 4475 3.1.1.x "unknown scheme").
    Absolute {
        scheme: &'a str,
        rest: &'a str,
    },
}

/// Where a `sip:` / `sips:` URI points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri<'a> {
    pub secure: bool,
    /// The user part as written (may contain escapes and `;` parameters).
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    pub host: Host<'a>,
    pub port: Option<u16>,
    pub params: Params<'a>,
    /// The text after `?`, raw.
    pub headers: Option<&'a str>,
}

/// A `tel:` URI (RFC 3966).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelUri<'a> {
    pub number: &'a str,
    pub params: Params<'a>,
}

/// A host as it stands in a URI or a Via sent-by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    Name(&'a str),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Host<'_> {
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Name(_) => None,
            Host::V4(a) => Some(IpAddr::V4(*a)),
            Host::V6(a) => Some(IpAddr::V6(*a)),
        }
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

impl<'a> Uri<'a> {
    /// Parses a URI. White space and control characters are refused (RFC
    /// 4475 3.1.2.8 "lwsruri", 3.1.2.15 "badaspec").
    pub fn parse(s: &'a str) -> Result<Uri<'a>, UriError> {
        if s.starts_with('<') {
            return Err(UriError::Bracketed);
        }
        if s.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(UriError::Whitespace);
        }
        let (scheme, rest) = s.split_once(':').ok_or(UriError::NoScheme)?;
        if !valid_scheme(scheme) {
            return Err(UriError::NoScheme);
        }
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse_after_scheme(rest, false).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_after_scheme(rest, true).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            let (number, params) = match rest.split_once(';') {
                Some((n, p)) => (n, p),
                None => (rest, ""),
            };
            if number.is_empty() {
                return Err(UriError::EmptyHost);
            }
            Ok(Uri::Tel(TelUri {
                number,
                params: Params::new(params),
            }))
        } else {
            Ok(Uri::Absolute { scheme, rest })
        }
    }

    pub fn scheme(&self) -> &'a str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel(_) => "tel",
            Uri::Absolute { scheme, .. } => scheme,
        }
    }

    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }
}

fn valid_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

impl<'a> SipUri<'a> {
    fn parse_after_scheme(rest: &'a str, secure: bool) -> Result<SipUri<'a>, UriError> {
        // userinfo cannot hold an unescaped '@' and neither can parameters or
        // headers, so the last '@' ends the userinfo.
        let (userinfo, hostpart) = match rest.rfind('@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            // A ';' in the user part belongs to the user (RFC 4475 "semiuri").
            Some(ui) => match ui.split_once(':') {
                Some((u, p)) => (Some(u), Some(p)),
                None => (Some(ui), None),
            },
            None => (None, None),
        };
        if user.is_some_and(str::is_empty) {
            return Err(UriError::BadChar);
        }
        let (hostport, headers) = match hostpart.split_once('?') {
            Some((hp, h)) => (hp, Some(h)),
            None => (hostpart, None),
        };
        let (hostport, params) = match hostport.split_once(';') {
            Some((hp, p)) => (hp, p),
            None => (hostport, ""),
        };
        let (host, port) = parse_hostport(hostport)?;
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params: Params::new(params),
            headers,
        })
    }

    /// The user part with `%XX` escapes decoded.
    pub fn user_decoded(&self) -> Option<Cow<'a, str>> {
        self.user.map(percent_decode)
    }

    /// `transport` URI parameter, if any.
    pub fn transport(&self) -> Option<&'a str> {
        self.params.value("transport")
    }
}

/// Parses `host[:port]` with IPv6 references in brackets.
pub fn parse_hostport(s: &str) -> Result<(Host<'_>, Option<u16>), UriError> {
    if s.is_empty() {
        return Err(UriError::EmptyHost);
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or(UriError::BadHost)?;
        let addr: Ipv6Addr = rest[..end].parse().map_err(|_| UriError::BadHost)?;
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UriError::BadHost)?),
        };
        (Host::V6(addr), port)
    } else {
        let (h, p) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        (parse_host(h)?, p)
    };
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p)?),
    };
    Ok((host, port))
}

fn parse_port(p: &str) -> Result<u16, UriError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UriError::BadPort);
    }
    p.parse().map_err(|_| UriError::BadPort)
}

fn parse_host(h: &str) -> Result<Host<'_>, UriError> {
    if h.is_empty() {
        return Err(UriError::EmptyHost);
    }
    let bytes = h.as_bytes();
    if bytes.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
        return h.parse().map(Host::V4).map_err(|_| UriError::BadHost);
    }
    if bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        Ok(Host::Name(h))
    } else {
        Err(UriError::BadHost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri<'_> {
        match Uri::parse(s) {
            Ok(Uri::Sip(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn full_sip_uri() {
        let u = sip("sips:alice:secret@[2001:db8::10]:5061;transport=tcp;lr?subject=x");
        assert!(u.secure);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("secret"));
        assert_eq!(u.host, Host::V6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport(), Some("tcp"));
        assert!(u.params.contains("lr"));
        assert_eq!(u.headers, Some("subject=x"));
    }

    #[test]
    fn semicolon_in_userinfo_belongs_to_user() {
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some("user;par=u%40example.net"));
        assert_eq!(u.user_decoded().as_deref(), Some("user;par=u@example.net"));
        assert_eq!(u.host, Host::Name("example.com"));
    }

    #[test]
    fn other_schemes_are_opaque_and_tel_is_parsed() {
        assert_eq!(
            Uri::parse("urn:service:sos"),
            Ok(Uri::Absolute {
                scheme: "urn",
                rest: "service:sos"
            })
        );
        match Uri::parse("tel:+1-201-555-0123;phone-context=example.com") {
            Ok(Uri::Tel(t)) => {
                assert_eq!(t.number, "+1-201-555-0123");
                assert_eq!(t.params.value("phone-context"), Some("example.com"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_bad_uris() {
        assert_eq!(Uri::parse("<sip:a@b>"), Err(UriError::Bracketed));
        assert_eq!(Uri::parse("sip:a@b c"), Err(UriError::Whitespace));
        assert_eq!(Uri::parse("sip:a@host:65536"), Err(UriError::BadPort));
        assert_eq!(Uri::parse("sip:a@host:-1"), Err(UriError::BadPort));
        assert_eq!(Uri::parse("sip:a@256.1.1.1"), Err(UriError::BadHost));
        assert_eq!(Uri::parse("sip:a@[::1"), Err(UriError::BadHost));
        assert_eq!(Uri::parse("nocolon"), Err(UriError::NoScheme));
        assert_eq!(Uri::parse("sip:@host"), Err(UriError::BadChar));
    }
}
