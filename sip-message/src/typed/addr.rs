//! name-addr / addr-spec values: From, To, Contact, Route, Record-Route,
//! Path, P-Asserted-Identity, Refer-To and the like (RFC 3261 20.10, 25.1).

use std::borrow::Cow;

use crate::error::{ParseError, UriError};
use crate::name::Known;
use crate::params::Params;
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
}

impl<'a> NameAddr<'a> {
    pub fn parse(s: &'a str) -> Result<NameAddr<'a>, AddrError> {
        let s = trim_ws(s);
        if s.is_empty() {
            return Err(AddrError::Empty);
        }
        let bytes = s.as_bytes();
        let (display, rest) = if bytes[0] == b'"' {
            let end = closing_quote(s).ok_or(AddrError::UnterminatedQuote)?;
            let rest = s[end + 1..].trim_start_matches([' ', '\t']);
            if !rest.starts_with('<') {
                return Err(AddrError::BadDisplayName);
            }
            (Some(&s[..=end]), rest)
        } else if let Some(lt) = s.find('<') {
            let name = trim_ws(&s[..lt]);
            if !name.bytes().all(|b| is_token_byte(b) || is_ws(b)) {
                return Err(AddrError::BadDisplayName);
            }
            ((!name.is_empty()).then_some(name), &s[lt..])
        } else {
            // addr-spec: the URI runs to the first ';' (header parameters
            // follow) and may not contain '?' or ','.
            let (uri_text, params) = match s.split_once(';') {
                Some((u, p)) => (trim_ws(u), p),
                None => (s, ""),
            };
            if uri_text.contains(['?', ',']) {
                return Err(AddrError::Uri(UriError::HeadersNotAllowed));
            }
            let uri = Uri::parse(uri_text).map_err(AddrError::Uri)?;
            let params = check_params(params)?;
            return Ok(NameAddr {
                display: None,
                uri,
                uri_text,
                params,
            });
        };
        let inner = rest.strip_prefix('<').ok_or(AddrError::BadDisplayName)?;
        let gt = inner.find('>').ok_or(AddrError::UnterminatedAngle)?;
        let uri_text = &inner[..gt];
        let uri = Uri::parse(uri_text).map_err(AddrError::Uri)?;
        let after = trim_ws(&inner[gt + 1..]);
        let params = match after {
            "" => "",
            p => p.strip_prefix(';').ok_or(AddrError::BadParam)?,
        };
        let params = check_params(params)?;
        Ok(NameAddr {
            display,
            uri,
            uri_text,
            params,
        })
    }

    /// The display name without quotes and escapes.
    pub fn display_name(&self) -> Option<Cow<'a, str>> {
        self.display.map(unquote)
    }

    pub fn tag(&self) -> Option<&'a str> {
        self.params.value("tag")
    }
}

fn check_params(raw: &str) -> Result<Params<'_>, AddrError> {
    let params = Params::new(raw);
    for (name, _) in params.iter() {
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(AddrError::BadParam);
        }
    }
    Ok(params)
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
        assert_eq!(
            a.uri.as_sip().map(|u| u.host),
            Some(Host::Name("example.com"))
        );
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
        assert_eq!(
            NameAddr::parse("<sip:a@b"),
            Err(AddrError::UnterminatedAngle)
        );
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue("1"), Some(1000));
        assert_eq!(parse_qvalue("0.001"), Some(1));
        assert_eq!(parse_qvalue("1.5"), None);
        assert_eq!(parse_qvalue("0.1234"), None);
    }
}
