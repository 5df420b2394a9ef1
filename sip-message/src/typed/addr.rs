//! name-addr / addr-spec values: From, To, Contact, Route, Record-Route,
//! Path, P-Asserted-Identity, Refer-To and the like (RFC 3261 20.10, 25.1).

use std::borrow::Cow;

use crate::error::{ParseError, UriError};
use crate::name::Known;
use crate::params::{Params, scan_strict};
use crate::text::{is_token_byte, is_ws, parse_u64, trim_ws, unquote};
use crate::uri::Uri;

/// Why a name-addr was refused; becomes a [`ParseError`] naming the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrError {
    UnterminatedQuote,
    UnterminatedAngle,
    BadDisplayName,
    Uri(UriError),
    BadParam,
    Empty,
}

impl AddrError {
    pub fn reason(self) -> &'static str {
        match self {
            AddrError::UnterminatedQuote => "unterminated quoted string",
            AddrError::UnterminatedAngle => "'<' without '>'",
            AddrError::BadDisplayName => "display name must be a quoted string or tokens",
            AddrError::Uri(_) => "invalid URI",
            AddrError::BadParam => "invalid parameter",
            AddrError::Empty => "empty value",
        }
    }

    pub fn in_header(self, known: Known) -> ParseError {
        match self {
            AddrError::Uri(e) => ParseError::Uri(e),
            other => ParseError::BadHeader {
                header: known.as_str(),
                reason: other.reason(),
            },
        }
    }
}

/// `[display-name] <uri> *(;param)` or `addr-spec *(;param)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as written (quoted strings keep their quotes).
    pub display: Option<&'a str>,
    pub uri: Uri<'a>,
    /// The URI text.
    pub uri_text: &'a str,
    /// Header parameters (after `>` or after an addr-spec).
    pub params: Params<'a>,
    /// The `tag` parameter, found while the parameters were checked.
    pub tag: Option<&'a str>,
}

impl<'a> NameAddr<'a> {
    pub fn parse(s: &'a str) -> Result<NameAddr<'a>, AddrError> {
        let s = trim_ws(s);
        let b = s.as_bytes();
        if b.is_empty() {
            return Err(AddrError::Empty);
        }
        // Find where the URI is: after a quoted display name, after a token
        // display name, or (addr-spec) the whole value up to its parameters.
        let (display, lt) = if b[0] == b'"' {
            let end = closing_quote(s).ok_or(AddrError::UnterminatedQuote)?;
            let mut i = end + 1;
            while i < b.len() && is_ws(b[i]) {
                i += 1;
            }
            if b.get(i) != Some(&b'<') {
                return Err(AddrError::BadDisplayName);
            }
            (Some(&s[..=end]), Some(i))
        } else {
            let mut i = 0;
            while i < b.len() && (is_token_byte(b[i]) || is_ws(b[i])) {
                i += 1;
            }
            match b.get(i) {
                Some(b'<') => {
                    let name = trim_ws(&s[..i]);
                    ((!name.is_empty()).then_some(name), Some(i))
                }
                // Not a display name after all: an addr-spec (a URI has
                // ':' right after its scheme token), or garbage before '<'.
                _ if s[i..].contains('<') && !s[..i].is_empty() && b.get(i) != Some(&b':') => {
                    return Err(AddrError::BadDisplayName);
                }
                _ => (None, None),
            }
        };
        let (uri_text, rest) = match lt {
            Some(lt) => {
                let gt = b[lt..]
                    .iter()
                    .position(|&c| c == b'>')
                    .ok_or(AddrError::UnterminatedAngle)?
                    + lt;
                let mut i = gt + 1;
                while i < b.len() && is_ws(b[i]) {
                    i += 1;
                }
                let rest = match b.get(i) {
                    None => "",
                    Some(b';') => &s[i + 1..],
                    Some(_) => return Err(AddrError::BadParam),
                };
                (&s[lt + 1..gt], rest)
            }
            None => {
                // addr-spec: the URI runs to the first ';' (header
                // parameters follow) and may not contain '?' or ','.
                let semi = b.iter().position(|&c| c == b';');
                let uri_text = trim_ws(&s[..semi.unwrap_or(b.len())]);
                if uri_text.bytes().any(|c| c == b'?' || c == b',') {
                    return Err(AddrError::Uri(UriError::HeadersNotAllowed));
                }
                (uri_text, semi.map_or("", |i| &s[i + 1..]))
            }
        };
        let uri = Uri::parse(uri_text).map_err(AddrError::Uri)?;
        // Empty elements (a trailing ';') are tolerated: real phones send them.
        let tag = if rest.is_empty() {
            None
        } else {
            scan_strict(rest, "tag", true).map_err(|_| AddrError::BadParam)?
        };
        Ok(NameAddr {
            display,
            uri,
            uri_text,
            params: Params::new(rest),
            tag,
        })
    }

    /// The display name without quotes and escapes.
    pub fn display_name(&self) -> Option<Cow<'a, str>> {
        self.display.map(unquote)
    }

    pub fn tag(&self) -> Option<&'a str> {
        self.tag
    }
}

/// Index of the quote closing the quoted string that starts at 0.
fn closing_quote(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The Contact header: `*` or a list of addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts<'a> {
    Star,
    List(Vec<NameAddr<'a>>),
}

/// Contact-specific parameters.
pub trait ContactParams<'a> {
    fn expires(&self) -> Option<u32>;
    /// q-value in thousandths (`q=0.5` is 500); `None` when absent or invalid.
    fn q(&self) -> Option<u16>;
    fn sip_instance(&self) -> Option<&'a str>;
    fn reg_id(&self) -> Option<u32>;
}

impl<'a> ContactParams<'a> for NameAddr<'a> {
    fn expires(&self) -> Option<u32> {
        self.params
            .value("expires")
            .and_then(parse_u64)
            .map(|n| n.min(u32::MAX as u64) as u32)
    }

    fn q(&self) -> Option<u16> {
        parse_qvalue(self.params.value("q")?)
    }

    fn sip_instance(&self) -> Option<&'a str> {
        self.params.value("+sip.instance")
    }

    fn reg_id(&self) -> Option<u32> {
        self.params
            .value("reg-id")
            .and_then(parse_u64)
            .and_then(|n| u32::try_from(n).ok())
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` in thousandths.
pub fn parse_qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::Host;

    #[test]
    fn display_name_forms() {
        let a = NameAddr::parse(r#""Bob \"B\" Smith" <sip:bob@example.com>;tag=a48s"#).unwrap();
        assert_eq!(a.display_name().as_deref(), Some(r#"Bob "B" Smith"#));
        assert_eq!(a.tag(), Some("a48s"));
        let a = NameAddr::parse("Bob Smith<sip:bob@example.com>").unwrap();
        assert_eq!(a.display, Some("Bob Smith"));
        let a = NameAddr::parse("sip:bob@example.com;tag=1928301774").unwrap();
        assert_eq!(a.tag(), Some("1928301774"));
        assert_eq!(a.uri.as_sip().map(|u| u.host), Some(Host::Name("example.com")));
        let a = NameAddr::parse("<sip:bob@example.com;transport=tcp>;expires=60;q=0.7").unwrap();
        assert_eq!(a.uri.as_sip().and_then(|u| u.transport()), Some("tcp"));
        assert_eq!(a.expires(), Some(60));
        assert_eq!(a.q(), Some(700));
    }

    #[test]
    fn rejects_rfc4475_invalid_forms() {
        assert_eq!(
            NameAddr::parse(r#""Mr J. User <sip:j.user@example.com>"#),
            Err(AddrError::UnterminatedQuote)
        );
        assert_eq!(
            NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>"),
            Err(AddrError::BadDisplayName)
        );
        assert!(matches!(
            NameAddr::parse("<sip:  user@example.com>"),
            Err(AddrError::Uri(_))
        ));
        assert!(matches!(
            NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E"),
            Err(AddrError::Uri(UriError::HeadersNotAllowed))
        ));
        assert_eq!(NameAddr::parse("<sip:a@b"), Err(AddrError::UnterminatedAngle));
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue("1"), Some(1000));
        assert_eq!(parse_qvalue("0.001"), Some(1));
        assert_eq!(parse_qvalue("1.5"), None);
        assert_eq!(parse_qvalue("0.1234"), None);
    }
}
