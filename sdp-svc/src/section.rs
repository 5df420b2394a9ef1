//! m= sections between text and values, and the per-format filtering both
//! RTP directions need.

use sdp::{Limits, Line, Media, ParseError, Sdp};

/// Bounds for everything parsed here: offers, answers, handler replies.
pub(crate) fn limits() -> Limits {
    Limits::default()
}

/// Parses a description another process sent.
pub(crate) fn parse_sdp(bytes: &[u8]) -> Result<Sdp, ParseError> {
    Sdp::parse_with(bytes, &limits())
}

/// Parses a section another process sent.
pub(crate) fn parse_section(text: &str) -> Result<Media, ParseError> {
    Media::parse(text, &limits())
}

/// Lines joined by CRLF, no final line ending (as `Media::to_text`).
pub(crate) fn lines_text(lines: &[Line]) -> String {
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        out.push(l.kind);
        out.push('=');
        out.push_str(&l.value);
    }
    out
}

/// The same lines, each ending in CRLF: what we send is uniform whatever
/// mix of endings the peers used (and the last line gets its ending).
pub(crate) fn crlf(lines: impl IntoIterator<Item = Line>) -> Vec<Line> {
    lines.into_iter().map(|l| Line::new(l.kind, l.value)).collect()
}

pub(crate) fn port(media: &Media) -> u16 {
    media.media_line().map_or(0, |ml| ml.port)
}

/// `section` with only the formats in `keep`: the m= format list, and the
/// rtpmap / fmtp / rtcp-fb lines of the others dropped. Every other line
/// stays, in order. `None` when no format is left.
pub(crate) fn keep_formats(section: &Media, keep: &[&str]) -> Option<Media> {
    let mut ml = section.media_line()?;
    ml.formats.retain(|f| keep.contains(f));
    if ml.formats.is_empty() {
        return None;
    }
    let mut lines = vec![Line::new('m', ml.to_string())];
    for line in section.lines.iter().skip(1) {
        let dropped = match line.attribute() {
            Some(("rtpmap" | "fmtp" | "rtcp-fb", Some(v))) => {
                let pt = v.split(' ').next().unwrap_or_default();
                pt != "*" && !ml.formats.contains(&pt)
            }
            _ => false,
        };
        if !dropped {
            lines.push(line.clone());
        }
    }
    Some(Media { lines })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn keep_formats_drops_the_others_attributes_only() {
        let m = Media::parse(
            "m=audio 4000 RTP/AVP 0 18 101\r\nc=IN IP4 192.0.2.1\r\na=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\na=rtcp-fb:* nack\r\na=rtcp-fb:18 nack\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20",
            &limits(),
        )
        .unwrap();
        let kept = keep_formats(&m, &["0", "101"]).unwrap();
        assert_eq!(
            kept.to_text(),
            "m=audio 4000 RTP/AVP 0 101\r\nc=IN IP4 192.0.2.1\r\na=rtcp-fb:* nack\r\n\
a=rtpmap:101 telephone-event/8000\r\na=ptime:20"
        );
        assert!(keep_formats(&m, &["8"]).is_none());
    }
}
