//! Via (RFC 3261 20.42, RFC 3581 rport).

use crate::error::ParseError;
use crate::params::Params;
use crate::text::{is_token_byte, is_ws, parse_u64, strip_prefix_ci, trim_ws};
use crate::uri::{Host, parse_hostport};

/// One Via value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    /// `SIP/2.0`'s protocol name and version, as written.
    pub protocol: &'a str,
    pub version: &'a str,
    /// `UDP`, `TCP`, `TLS`, `WS`, `WSS`, `SCTP` or any token, as written.
    pub transport: &'a str,
    pub host: Host<'a>,
    pub port: Option<u16>,
    /// `host[:port]` as written.
    pub sent_by: &'a str,
    pub params: Params<'a>,
}

const fn bad(reason: &'static str) -> ParseError {
    ParseError::BadHeader {
        header: "Via",
        reason,
    }
}

impl<'a> Via<'a> {
    /// Parses one Via value (already split from its comma list). White space
    /// is allowed around the `/` of sent-protocol and around parameters.
    pub fn parse(s: &'a str) -> Result<Via<'a>, ParseError> {
        let s = trim_ws(s);
        let (protocol, rest) = token(s).ok_or(bad("missing protocol name"))?;
        let rest = slash(rest).ok_or(bad("missing '/' in sent-protocol"))?;
        let (version, rest) = token(rest).ok_or(bad("missing protocol version"))?;
        let rest = slash(rest).ok_or(bad("missing '/' in sent-protocol"))?;
        let (transport, rest) = token(rest).ok_or(bad("missing transport"))?;
        if !rest.starts_with([' ', '\t']) {
            return Err(bad("missing sent-by"));
        }
        let rest = rest.trim_start_matches([' ', '\t']);
        let (sent_by, params) = match rest.split_once(';') {
            Some((sb, p)) => (trim_ws(sb), p),
            None => (trim_ws(rest), ""),
        };
        // RFC 3261 allows LWS around the ':' of sent-by.
        let (host, port) = if sent_by.bytes().any(is_ws) {
            let compact: String = sent_by.chars().filter(|c| !c.is_whitespace()).collect();
            let (h, p) = parse_hostport(&compact).map_err(|_| bad("invalid sent-by"))?;
            // The host must borrow from the input: re-find it there.
            let host = match h {
                Host::Name(n) => {
                    let at = sent_by.find(n).ok_or(bad("invalid sent-by"))?;
                    Host::Name(&sent_by[at..at + n.len()])
                }
                Host::V4(a) => Host::V4(a),
                Host::V6(a) => Host::V6(a),
            };
            (host, p)
        } else {
            parse_hostport(sent_by).map_err(|_| bad("invalid sent-by"))?
        };
        let has_params = rest.contains(';');
        if has_params && crate::text::split_top_level(params, b';').any(|p| trim_ws(p).is_empty()) {
            return Err(bad("empty parameter"));
        }
        let params = Params::new(params);
        for (name, value) in params.iter() {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(bad("invalid parameter"));
            }
            if value == Some("") {
                return Err(bad("empty parameter value"));
            }
        }
        Ok(Via {
            protocol,
            version,
            transport,
            host,
            port,
            sent_by,
            params,
        })
    }

    pub fn branch(&self) -> Option<&'a str> {
        self.params.value("branch")
    }

    /// True when the branch carries the RFC 3261 magic cookie.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .and_then(|b| strip_prefix_ci(b, "z9hG4bK"))
            .is_some()
    }

    pub fn received(&self) -> Option<&'a str> {
        self.params.value("received")
    }

    /// `None`: no rport; `Some(None)`: rport asked for; `Some(Some(p))`: filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(parse_u64).and_then(|p| u16::try_from(p).ok()))
    }

    pub fn maddr(&self) -> Option<&'a str> {
        self.params.value("maddr")
    }
}

fn token(s: &str) -> Option<(&str, &str)> {
    let end = s.bytes().position(|b| !is_token_byte(b)).unwrap_or(s.len());
    (end > 0).then(|| (&s[..end], &s[end..]))
}

fn slash(s: &str) -> Option<&str> {
    let s = s.trim_start_matches([' ', '\t']);
    s.strip_prefix('/')
        .map(|r| r.trim_start_matches([' ', '\t']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tortuous_spacing() {
        let v = Via::parse("SIP  /   2.0 /UDP 192.0.2.2;rport;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::V4("192.0.2.2".parse().unwrap()));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.branch(), Some("390skdjuw"));
        let v =
            Via::parse("SIP/2.0/TCP [2001:db8::9]:5061 ; branch = z9hG4bKx ; received=192.0.2.9")
                .unwrap();
        assert_eq!(v.port, Some(5061));
        assert!(v.has_rfc3261_branch());
        assert_eq!(v.received(), Some("192.0.2.9"));
        let v = Via::parse("SIP/2.0/UDP host.example.com : 5070;rport=5071").unwrap();
        assert_eq!(v.host, Host::Name("host.example.com"));
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.rport(), Some(Some(5071)));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Via::parse("").is_err());
        assert!(Via::parse("SIP/2.0/UDP").is_err());
        assert!(Via::parse("SIP/2.0/UDP host:99999").is_err());
        assert!(Via::parse("SIP/2.0/UDP host;;branch=x").is_err());
        assert!(Via::parse("SIP/2.0/UDP host;branch=").is_err());
    }
}
