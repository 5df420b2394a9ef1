//! The o= line of what sipbus sends on a leg, and its version (RFC 3264 8):
//! unchanged description, same version; anything changed, version + 1.

use sdp::{Line, Media, Sdp};

use crate::api::{Origin, SdpError};
use crate::section::crlf;

/// `<username> <session id> <version> IN IP4|IP6 <address>`.
fn origin_value(o: &Origin) -> Result<String, SdpError> {
    // RFC 8866 5.2: "-" when there is no user name; no spaces inside.
    let username = if o.username.is_empty() {
        "-"
    } else {
        o.username.as_str()
    };
    if username.contains(char::is_whitespace) {
        return Err(SdpError::Invalid("origin username contains whitespace".into()));
    }
    let addr_type = if o.address.is_ipv4() { "IP4" } else { "IP6" };
    Ok(format!(
        "{username} {} {} IN {addr_type} {}",
        o.session_id, o.version, o.address
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
    origin: Option<&Origin>,
    previous: Option<&Sdp>,
) -> Result<Sdp, SdpError> {
    let media: Vec<Media> = media.into_iter().map(|m| Media { lines: crlf(m.lines) }).collect();
    let Some(previous) = previous else {
        let origin = origin.ok_or_else(|| SdpError::Invalid("origin: required when previous is empty".into()))?;
        return Ok(Sdp {
            session: with_origin(session, &origin_value(origin)?),
            media,
        });
    };
    let o = previous
        .origin()
        .ok_or_else(|| SdpError::Invalid("previous: no valid o= line".into()))?;
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
    if content(&same) == content(previous) {
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

    fn origin(addr: &str) -> Origin {
        Origin {
            username: String::new(),
            session_id: 7,
            version: 3,
            address: addr.parse().unwrap(),
        }
    }

    #[test]
    fn origin_lines() {
        assert_eq!(origin_value(&origin("192.0.2.1")).unwrap(), "- 7 3 IN IP4 192.0.2.1");
        assert_eq!(
            origin_value(&origin("2001:db8::1")).unwrap(),
            "- 7 3 IN IP6 2001:db8::1"
        );
        let mut spaced = origin("192.0.2.1");
        spaced.username = "a b".into();
        assert!(origin_value(&spaced).is_err());
    }

    #[test]
    fn missing_o_is_inserted_after_v() {
        let lines = with_origin(&[Line::new('v', "0"), Line::new('s', "-")], "x 1 1 IN IP4 192.0.2.1");
        let kinds: String = lines.iter().map(|l| l.kind).collect();
        assert_eq!(kinds, "vos");
    }
}
