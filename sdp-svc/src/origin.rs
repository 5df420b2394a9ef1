//! The o= line of what sipbus sends on a leg, and its version (RFC 3264 8):
//! unchanged description, same version; anything changed, version + 1.

use std::net::IpAddr;

use proto::sdp::v1 as pb;
use sdp::{Line, Media, Sdp};
use tonic::Status;

use crate::section::{crlf, parse_sdp};

/// `<username> <session id> <version> IN IP4|IP6 <address>`.
fn origin_value(o: &pb::Origin) -> Result<String, Status> {
    let address: IpAddr = o
        .address
        .parse()
        .map_err(|_| Status::invalid_argument(format!("origin address `{}` is not an IP address", o.address)))?;
    // RFC 8866 5.2: "-" when there is no user name; no spaces inside.
    let username = if o.username.is_empty() {
        "-"
    } else {
        o.username.as_str()
    };
    if username.contains(char::is_whitespace) {
        return Err(Status::invalid_argument("origin username contains whitespace"));
    }
    let addr_type = if address.is_ipv4() { "IP4" } else { "IP6" };
    Ok(format!(
        "{username} {} {} IN {addr_type} {address}",
        o.session_id, o.version
    ))
}

/// The session-level lines with the o= line set to `value` (inserted after
/// v= when the peer sent none; extra o= lines dropped).
fn with_origin(session: &[Line], value: &str) -> Vec<Line> {
    let mut out = Vec::with_capacity(session.len() + 1);
    let mut placed = false;
    for line in session {
        if line.kind == 'o' {
            if !placed {
                out.push(Line::new('o', value));
                placed = true;
            }
        } else {
            out.push(Line::new(line.kind, line.value.clone()));
        }
    }
    if !placed {
        out.insert(out.len().min(1), Line::new('o', value));
    }
    out
}

/// Every line but the session-level o=, for "did anything change".
fn content(sdp: &Sdp) -> Vec<(char, &str)> {
    sdp.session
        .iter()
        .filter(|l| l.kind != 'o')
        .chain(sdp.media.iter().flat_map(|m| &m.lines))
        .map(|l| (l.kind, l.value.as_str()))
        .collect()
}

/// Assembles what is sent on a leg: `session` (o= replaced) and `media`,
/// every line CRLF-terminated. With a `previous` description its o= is
/// kept, version + 1 when anything else differs; without, `origin`.
pub(crate) fn finish(
    session: &[Line],
    media: Vec<Media>,
    origin: Option<&pb::Origin>,
    previous: &[u8],
) -> Result<Sdp, Status> {
    let media: Vec<Media> = media.into_iter().map(|m| Media { lines: crlf(m.lines) }).collect();
    if previous.is_empty() {
        let origin = origin.ok_or_else(|| Status::invalid_argument("origin: required when previous is empty"))?;
        return Ok(Sdp {
            session: with_origin(session, &origin_value(origin)?),
            media,
        });
    }
    let previous = parse_sdp(previous, "previous")?;
    let o = previous
        .origin()
        .ok_or_else(|| Status::invalid_argument("previous: no valid o= line"))?;
    let same = Sdp {
        session: with_origin(
            session,
            &format!(
                "{} {} {} {} {} {}",
                o.username, o.session_id, o.version, o.net_type, o.addr_type, o.address
            ),
        ),
        media,
    };
    if content(&same) == content(&previous) {
        return Ok(same);
    }
    // Wrapping: a peer compares versions for equality, and 2^64 changes
    // will not happen in one session anyway.
    let value = format!(
        "{} {} {} {} {} {}",
        o.username,
        o.session_id,
        o.version.wrapping_add(1),
        o.net_type,
        o.addr_type,
        o.address
    );
    Ok(Sdp {
        session: with_origin(&same.session, &value),
        media: same.media,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn origin(addr: &str) -> pb::Origin {
        pb::Origin {
            username: String::new(),
            session_id: 7,
            version: 3,
            address: addr.into(),
        }
    }

    #[test]
    fn origin_lines() {
        assert_eq!(origin_value(&origin("192.0.2.1")).unwrap(), "- 7 3 IN IP4 192.0.2.1");
        assert_eq!(
            origin_value(&origin("2001:db8::1")).unwrap(),
            "- 7 3 IN IP6 2001:db8::1"
        );
        assert!(origin_value(&origin("example.com")).is_err());
    }

    #[test]
    fn missing_o_is_inserted_after_v() {
        let lines = with_origin(&[Line::new('v', "0"), Line::new('s', "-")], "x 1 1 IN IP4 192.0.2.1");
        let kinds: String = lines.iter().map(|l| l.kind).collect();
        assert_eq!(kinds, "vos");
    }
}
