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
        let b = s.as_bytes();
        if b.first() == Some(&b'<') {
            return Err(UriError::Bracketed);
        }
        // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then ':'.
        let mut i = 0;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'+' | b'-' | b'.')) {
            i += 1;
        }
        if i == 0 || b.get(i) != Some(&b':') || !b[0].is_ascii_alphabetic() {
            return Err(if has_ctl(b) {
                UriError::Whitespace
            } else {
                UriError::NoScheme
            });
        }
        let scheme = &s[..i];
        let rest = &s[i + 1..];
        match scheme.len() {
            3 if scheme.eq_ignore_ascii_case("sip") => SipUri::parse_after_scheme(rest, false).map(Uri::Sip),
            4 if scheme.eq_ignore_ascii_case("sips") => SipUri::parse_after_scheme(rest, true).map(Uri::Sip),
            _ if has_ctl(rest.as_bytes()) => Err(UriError::Whitespace),
            3 if scheme.eq_ignore_ascii_case("tel") => {
                let (number, params) = split_at_byte(rest, b';');
                if number.is_empty() {
                    return Err(UriError::EmptyHost);
                }
                Ok(Uri::Tel(TelUri {
                    number,
                    params: Params::new(params),
                }))
            }
            _ => Ok(Uri::Absolute { scheme, rest }),
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

const C_PLAIN: u8 = 0;
const C_CTL: u8 = 1;
const C_AT: u8 = 2;
const C_END: u8 = 3;
const C_COLON: u8 = 4;
const C_OPEN: u8 = 5;
const C_CLOSE: u8 = 6;

/// Byte classes for the walk over a SIP URI.
static URI_CLASS: [u8; 256] = {
    let mut t = [C_PLAIN; 256];
    let mut i = 0;
    while i <= 32 {
        t[i] = C_CTL;
        i += 1;
    }
    t[0x7f] = C_CTL;
    t[b'@' as usize] = C_AT;
    t[b';' as usize] = C_END;
    t[b'?' as usize] = C_END;
    t[b':' as usize] = C_COLON;
    t[b'[' as usize] = C_OPEN;
    t[b']' as usize] = C_CLOSE;
    t
};

/// White space or a control byte anywhere.
fn has_ctl(b: &[u8]) -> bool {
    b.iter().any(|&c| c <= b' ' || c == 0x7f)
}

impl<'a> SipUri<'a> {
    /// Everything after `sip:` in one walk: the last '@' ends the userinfo
    /// (neither userinfo, parameters nor headers may hold a bare '@'), the
    /// first ';' or '?' after it ends hostport, the last ':' before that
    /// (outside an IPv6 reference) starts the port.
    fn parse_after_scheme(rest: &'a str, secure: bool) -> Result<SipUri<'a>, UriError> {
        let b = rest.as_bytes();
        let mut at = None;
        let mut host_end = None;
        let mut port_colon = None;
        let mut in_v6 = false;
        for (i, &c) in b.iter().enumerate() {
            match URI_CLASS[usize::from(c)] {
                C_PLAIN => {}
                C_CTL => return Err(UriError::Whitespace),
                C_AT => {
                    at = Some(i);
                    host_end = None;
                    port_colon = None;
                    in_v6 = false;
                }
                _ if host_end.is_some() => {}
                C_END if !in_v6 => host_end = Some(i),
                C_COLON if !in_v6 => port_colon = Some(i),
                C_OPEN => in_v6 = true,
                C_CLOSE => in_v6 = false,
                _ => {}
            }
        }
        let (user, password, host_start) = match at {
            Some(at) => {
                let userinfo = &rest[..at];
                // A ';' in the user part belongs to the user (RFC 4475
                // "semiuri"); a ':' starts the password.
                let (user, password) = match userinfo.bytes().position(|c| c == b':') {
                    Some(c) => (&userinfo[..c], Some(&userinfo[c + 1..])),
                    None => (userinfo, None),
                };
                if user.is_empty() {
                    return Err(UriError::BadChar);
                }
                (Some(user), password, at + 1)
            }
            None => (None, None, 0),
        };
        let end = host_end.unwrap_or(b.len());
        let (host_text, port) = match port_colon {
            Some(c) => (&rest[host_start..c], Some(parse_port(&rest[c + 1..end])?)),
            None => (&rest[host_start..end], None),
        };
        let host = match host_text.strip_prefix('[') {
            Some(v6) => {
                let inner = v6.strip_suffix(']').ok_or(UriError::BadHost)?;
                Host::V6(parse_v6(inner)?)
            }
            None => parse_host(host_text)?,
        };
        let after = &rest[end..];
        let (params, headers) = match after.as_bytes().first() {
            Some(b';') => {
                let p = &after[1..];
                match p.bytes().position(|c| c == b'?') {
                    Some(q) => (&p[..q], Some(&p[q + 1..])),
                    None => (p, None),
                }
            }
            // '?': headers without parameters.
            Some(_) => ("", Some(&after[1..])),
            None => ("", None),
        };
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
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.bytes().position(|c| c == b']').ok_or(UriError::BadHost)?;
        let addr = parse_v6(&rest[..end])?;
        let port = match &rest[end + 1..] {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':').ok_or(UriError::BadHost)?)?),
        };
        return Ok((Host::V6(addr), port));
    }
    let (host, port) = match s.bytes().rposition(|c| c == b':') {
        Some(i) => (&s[..i], Some(parse_port(&s[i + 1..])?)),
        None => (s, None),
    };
    Ok((parse_host(host)?, port))
}

/// An IPv6 reference's address. RFC 5118 4.10: the RFC 3261 grammar lets
/// `2001:db8:::192.0.2.1` through (hexpart `::` then `:` IPv4address), so
/// a third colon before an IPv4 tail is read as the two it stands for.
fn parse_v6(s: &str) -> Result<Ipv6Addr, UriError> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let Some((head, v4)) = s.split_once(":::") else {
        return Err(UriError::BadHost);
    };
    if !v4.contains('.') || v4.contains(':') {
        return Err(UriError::BadHost);
    }
    format!("{head}::{v4}").parse().map_err(|_| UriError::BadHost)
}

pub(crate) fn parse_port(p: &str) -> Result<u16, UriError> {
    if p.is_empty() || p.len() > 5 {
        return Err(UriError::BadPort);
    }
    let mut n: u32 = 0;
    for c in p.bytes() {
        if !c.is_ascii_digit() {
            return Err(UriError::BadPort);
        }
        n = n * 10 + u32::from(c - b'0');
    }
    u16::try_from(n).map_err(|_| UriError::BadPort)
}

fn parse_host(h: &str) -> Result<Host<'_>, UriError> {
    if h.is_empty() {
        return Err(UriError::EmptyHost);
    }
    // One pass decides between an IPv4 literal and a host name.
    let mut numeric = true;
    for c in h.bytes() {
        match c {
            b'0'..=b'9' | b'.' => {}
            b'a'..=b'z' | b'A'..=b'Z' | b'-' | b'_' => numeric = false,
            _ => return Err(UriError::BadHost),
        }
    }
    if numeric {
        h.parse().map(Host::V4).map_err(|_| UriError::BadHost)
    } else {
        Ok(Host::Name(h))
    }
}

/// `(before, after)` the first `sep`; `after` is empty when there is none.
#[inline]
fn split_at_byte(s: &str, sep: u8) -> (&str, &str) {
    match s.bytes().position(|c| c == sep) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
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
    fn three_colon_ipv6_reference_is_tolerated() {
        // RFC 5118 4.10: both forms name the same address.
        let want = Host::V6("2001:db8::192.0.2.1".parse().unwrap());
        assert_eq!(sip("sip:user@[2001:db8:::192.0.2.1]").host, want);
        assert_eq!(sip("sip:user@[2001:db8::192.0.2.1]").host, want);
        assert_eq!(
            parse_hostport("[2001:db8:::192.0.2.1]:5060").unwrap(),
            (want, Some(5060))
        );
        // Only before an IPv4 tail, and only once.
        assert!(Uri::parse("sip:user@[2001:db8:::1]").is_err());
        assert!(Uri::parse("sip:user@[2001:::db8:::192.0.2.1]").is_err());
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
