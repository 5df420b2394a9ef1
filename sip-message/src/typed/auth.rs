//! Authorization / Proxy-Authorization credentials and WWW-Authenticate /
//! Proxy-Authenticate challenges (RFC 3261 22, RFC 7616, RFC 8760).

use std::borrow::Cow;

use crate::error::ParseError;
use crate::text::{is_token, split_top_level, trim_ws, unquote};

/// `scheme param=value, param="value", ...` as used by both directions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParams<'a> {
    pub scheme: &'a str,
    raw: &'a str,
}

/// Credentials from Authorization / Proxy-Authorization.
pub type Credentials<'a> = AuthParams<'a>;
/// A challenge from WWW-Authenticate / Proxy-Authenticate.
pub type Challenge<'a> = AuthParams<'a>;

impl<'a> AuthParams<'a> {
    pub fn parse(s: &'a str) -> Result<AuthParams<'a>, ParseError> {
        let s = trim_ws(s);
        let (scheme, raw) = match s.split_once([' ', '\t']) {
            Some((scheme, raw)) => (scheme, trim_ws(raw)),
            None => (s, ""),
        };
        if !is_token(scheme) {
            return Err(ParseError::BadHeader {
                header: "Authorization",
                reason: "scheme is not a token",
            });
        }
        let parsed = AuthParams { scheme, raw };
        for (name, _) in parsed.iter() {
            if !is_token(name) {
                return Err(ParseError::BadHeader {
                    header: "Authorization",
                    reason: "invalid auth parameter",
                });
            }
        }
        Ok(parsed)
    }

    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }

    /// Every `(name, raw value)`; values keep their quotes.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let raw = self.raw;
        split_top_level(raw, b',').filter_map(|p| {
            let p = trim_ws(p);
            if p.is_empty() {
                return None;
            }
            Some(match p.split_once('=') {
                Some((n, v)) => (trim_ws(n), trim_ws(v)),
                None => (p, ""),
            })
        })
    }

    /// A parameter's value with quotes and escapes removed.
    pub fn get(&self, name: &str) -> Option<Cow<'a, str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| unquote(v))
    }
}

impl std::fmt::Display for AuthParams<'_> {
    /// Never prints parameter values: credentials must not reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [", self.scheme)?;
        for (i, (n, _)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(n)?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_credentials() {
        let c = AuthParams::parse(
            r#"Digest username="bob", realm="example.com", nonce="ab,c", uri="sip:example.com", response="0123", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="x""#,
        )
        .unwrap();
        assert!(c.is_digest());
        assert_eq!(c.get("USERNAME").as_deref(), Some("bob"));
        assert_eq!(c.get("nonce").as_deref(), Some("ab,c"));
        assert_eq!(c.get("algorithm").as_deref(), Some("SHA-256"));
        assert_eq!(c.get("nc").as_deref(), Some("00000001"));
        assert!(!c.to_string().contains("0123"));
    }
}
