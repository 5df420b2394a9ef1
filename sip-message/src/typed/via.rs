//! Via (RFC 3261 20.42, RFC 3581 rport).

use crate::error::ParseError;
use crate::params::{Params, scan_strict};
use crate::text::{is_token_byte, is_ws, parse_u64, strip_prefix_ci, trim_ws};
use crate::uri::{Host, parse_hostport, parse_port};

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
    /// The `branch` parameter, found while the parameters were checked.
    pub branch: Option<&'a str>,
}

const fn bad(reason: &'static str) -> ParseError {
    ParseError::BadHeader { header: "Via", reason }
}

impl<'a> Via<'a> {
    /// Parses one Via value (already split from its comma list). White space
    /// is allowed around the `/` of sent-protocol, around the `:` of sent-by
    /// and around parameters.
    pub fn parse(s: &'a str) -> Result<Via<'a>, ParseError> {
        let b = s.as_bytes();
        let mut i = skip_ws(b, 0);
        let (protocol, next) = token_at(s, i).ok_or(bad("missing protocol name"))?;
        i = slash_at(b, next).ok_or(bad("missing '/' in sent-protocol"))?;
        let (version, next) = token_at(s, i).ok_or(bad("missing protocol version"))?;
        i = slash_at(b, next).ok_or(bad("missing '/' in sent-protocol"))?;
        let (transport, next) = token_at(s, i).ok_or(bad("missing transport"))?;
        if next >= b.len() || !is_ws(b[next]) {
            return Err(bad("missing sent-by"));
        }
        i = skip_ws(b, next);
        // sent-by runs to the first ';' (none can appear inside it).
        let semi = b[i..].iter().position(|&c| c == b';').map_or(b.len(), |p| i + p);
        let sent_by = trim_ws(&s[i..semi]);
        let (host, port) = if sent_by.bytes().any(is_ws) {
            parse_spaced_sent_by(sent_by)?
        } else {
            parse_hostport(sent_by).map_err(|_| bad("invalid sent-by"))?
        };
        let params = if semi < b.len() { &s[semi + 1..] } else { "" };
        // No empty elements here (RFC 4475 "badinv01": `;;,;`).
        let branch = if semi < b.len() {
            scan_strict(params, "branch", false).map_err(|e| bad(e.reason()))?
        } else {
            None
        };
        Ok(Via {
            protocol,
            version,
            transport,
            host,
            port,
            sent_by,
            params: Params::new(params),
            branch,
        })
    }

    pub fn branch(&self) -> Option<&'a str> {
        self.branch
    }

    /// True when the branch carries the RFC 3261 magic cookie.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().and_then(|b| strip_prefix_ci(b, "z9hG4bK")).is_some()
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

/// The token starting at `i` (after white space) and where it ends.
fn token_at(s: &str, i: usize) -> Option<(&str, usize)> {
    let b = s.as_bytes();
    let start = skip_ws(b, i);
    let mut end = start;
    while end < b.len() && is_token_byte(b[end]) {
        end += 1;
    }
    (end > start).then(|| (&s[start..end], end))
}

/// Position after a `/` (with white space around it) at `i`.
fn slash_at(b: &[u8], i: usize) -> Option<usize> {
    let i = skip_ws(b, i);
    (b.get(i) == Some(&b'/')).then(|| skip_ws(b, i + 1))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// `host : port` with white space around the colon (rare, but legal).
fn parse_spaced_sent_by(sent_by: &str) -> Result<(Host<'_>, Option<u16>), ParseError> {
    let (host, port) = match sent_by.rsplit_once(':') {
        Some((h, p)) if !sent_by.starts_with('[') || h.ends_with(']') => (trim_ws(h), Some(trim_ws(p))),
        _ => (sent_by, None),
    };
    if host.bytes().any(is_ws) || port.is_some_and(|p| p.bytes().any(is_ws)) {
        return Err(bad("invalid sent-by"));
    }
    let (host, _) = parse_hostport(host).map_err(|_| bad("invalid sent-by"))?;
    let port = match port {
        Some(p) => Some(parse_port(p).map_err(|_| bad("invalid sent-by"))?),
        None => None,
    };
    Ok((host, port))
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
        let v = Via::parse("SIP/2.0/TCP [2001:db8::9]:5061 ; branch = z9hG4bKx ; received=192.0.2.9").unwrap();
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
