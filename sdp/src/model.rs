//! Lines, media sections, and the description that holds them.

use crate::attr::{Direction, Fmtp, Rtpmap};
use crate::error::ParseError;

/// Bounds on what a peer may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_lines: usize,
    pub max_media: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 32 * 1024,
            max_lines: 1024,
            max_media: 64,
        }
    }
}

/// One `<type>=<value>` line, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The type letter (`v`, `o`, `a`, ...), any letter accepted.
    pub kind: char,
    /// Everything after `=`, untouched.
    pub value: String,
    /// Whether it ended in CRLF (`true`) or a bare LF; the last line may
    /// end with neither (`None`).
    pub(crate) ending: Option<bool>,
}

impl Line {
    pub fn new(kind: char, value: impl Into<String>) -> Self {
        Self {
            kind,
            value: value.into(),
            ending: Some(true),
        }
    }

    /// For `a=` lines: the attribute name and its value (after `:`).
    pub fn attribute(&self) -> Option<(&str, Option<&str>)> {
        if self.kind != 'a' {
            return None;
        }
        Some(match self.value.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (self.value.as_str(), None),
        })
    }
}

/// The fields of an `m=` line: `<media> <port>[/<n>] <proto> <fmt> ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLine<'a> {
    pub media: &'a str,
    pub port: u16,
    pub port_count: Option<u16>,
    pub proto: &'a str,
    pub formats: Vec<&'a str>,
}

impl std::fmt::Display for MediaLine<'_> {
    /// The `m=` value, for rewriting a port or the format list.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.media, self.port)?;
        if let Some(n) = self.port_count {
            write!(f, "/{n}")?;
        }
        write!(f, " {}", self.proto)?;
        for fmt in &self.formats {
            write!(f, " {fmt}")?;
        }
        Ok(())
    }
}

/// One media section: its `m=` line and the lines after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub lines: Vec<Line>,
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin<'a> {
    pub username: &'a str,
    pub session_id: &'a str,
    pub version: u64,
    pub net_type: &'a str,
    pub addr_type: &'a str,
    pub address: &'a str,
}

/// `c=<nettype> <addrtype> <address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection<'a> {
    pub net_type: &'a str,
    pub addr_type: &'a str,
    pub address: &'a str,
}

/// A session description: the session-level lines, then each media section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    pub session: Vec<Line>,
    pub media: Vec<Media>,
}

impl Sdp {
    pub fn parse(input: &[u8]) -> Result<Sdp, ParseError> {
        Self::parse_with(input, &Limits::default())
    }

    /// Parses with explicit limits. Accepts CRLF and bare-LF line endings
    /// (and keeps which was used), any type letter, and lines in any order
    /// within a section; requires `v=` first and well-formed `m=` lines.
    pub fn parse_with(input: &[u8], limits: &Limits) -> Result<Sdp, ParseError> {
        if input.len() > limits.max_bytes {
            return Err(ParseError::Limit {
                what: "bytes",
                limit: limits.max_bytes,
            });
        }
        let text = std::str::from_utf8(input).map_err(|_| ParseError::NotUtf8)?;
        if text.is_empty() {
            return Err(ParseError::Empty);
        }
        let mut session = Vec::new();
        let mut media: Vec<Media> = Vec::new();
        for item in lines(text, limits) {
            let (number, line) = item?;
            if number == 1 && (line.kind != 'v' || line.value.trim() != "0") {
                return Err(ParseError::NoVersion);
            }
            if line.kind == 'm' {
                parse_media_line(&line.value).map_err(|reason| ParseError::BadMedia { line: number, reason })?;
                if media.len() >= limits.max_media {
                    return Err(ParseError::Limit {
                        what: "media sections",
                        limit: limits.max_media,
                    });
                }
                media.push(Media { lines: vec![line] });
            } else if let Some(m) = media.last_mut() {
                m.lines.push(line);
            } else {
                session.push(line);
            }
        }
        Ok(Sdp { session, media })
    }

    /// The description as text; untouched input comes back byte for byte.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for line in self.session.iter().chain(self.media.iter().flat_map(|m| &m.lines)) {
            out.push(line.kind);
            out.push('=');
            out.push_str(&line.value);
            match line.ending {
                Some(true) => out.push_str("\r\n"),
                Some(false) => out.push('\n'),
                None => {}
            }
        }
        out
    }

    pub fn origin(&self) -> Option<Origin<'_>> {
        let v = &self.session.iter().find(|l| l.kind == 'o')?.value;
        let f: Vec<&str> = v.split(' ').collect();
        let [username, session_id, version, net_type, addr_type, address] = f.as_slice() else {
            return None;
        };
        Some(Origin {
            username,
            session_id,
            version: version.parse().ok()?,
            net_type,
            addr_type,
            address,
        })
    }

    /// Session-level `c=`.
    pub fn connection(&self) -> Option<Connection<'_>> {
        connection_in(&self.session)
    }

    /// Session-level direction (`a=sendrecv` ...), when present.
    pub fn direction(&self) -> Option<Direction> {
        direction_in(&self.session)
    }
}

impl Media {
    /// Parses one media section on its own (`m=` first, no session-level
    /// lines), as SDP handlers exchange them. A trailing line ending is
    /// optional.
    pub fn parse(input: &str, limits: &Limits) -> Result<Media, ParseError> {
        if input.len() > limits.max_bytes {
            return Err(ParseError::Limit {
                what: "bytes",
                limit: limits.max_bytes,
            });
        }
        if input.is_empty() {
            return Err(ParseError::Empty);
        }
        let mut out: Vec<Line> = Vec::new();
        for item in lines(input, limits) {
            let (number, line) = item?;
            match (number, line.kind) {
                (1, 'm') => {
                    parse_media_line(&line.value).map_err(|reason| ParseError::BadMedia { line: number, reason })?;
                }
                (1, _) | (_, 'm') => return Err(ParseError::NotOneSection),
                _ => {}
            }
            out.push(line);
        }
        Ok(Media { lines: out })
    }

    /// The section's lines joined by CRLF, without a final line ending
    /// (the form SDP handlers exchange).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                out.push_str("\r\n");
            }
            out.push(line.kind);
            out.push('=');
            out.push_str(&line.value);
        }
        out
    }

    /// The `m=` line's fields (validated when parsed).
    pub fn media_line(&self) -> Option<MediaLine<'_>> {
        parse_media_line(&self.lines.first()?.value).ok()
    }

    /// Media-level `c=`, falling back to none (callers apply session-level).
    pub fn connection(&self) -> Option<Connection<'_>> {
        connection_in(&self.lines)
    }

    pub fn direction(&self) -> Option<Direction> {
        direction_in(&self.lines)
    }

    /// Every `a=<name>[:<value>]` of this section, in order.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.lines.iter().filter_map(Line::attribute)
    }

    pub fn rtpmaps(&self) -> impl Iterator<Item = Rtpmap<'_>> {
        self.attributes()
            .filter(|(n, _)| *n == "rtpmap")
            .filter_map(|(_, v)| Rtpmap::parse(v?))
    }

    pub fn fmtps(&self) -> impl Iterator<Item = Fmtp<'_>> {
        self.attributes()
            .filter(|(n, _)| *n == "fmtp")
            .filter_map(|(_, v)| Fmtp::parse(v?))
    }

    /// `a=ptime` in milliseconds.
    pub fn ptime(&self) -> Option<u32> {
        self.attributes()
            .find(|(n, _)| *n == "ptime")
            .and_then(|(_, v)| v?.trim().parse().ok())
    }
}

fn connection_in(lines: &[Line]) -> Option<Connection<'_>> {
    let v = &lines.iter().find(|l| l.kind == 'c')?.value;
    let mut f = v.split(' ');
    Some(Connection {
        net_type: f.next()?,
        addr_type: f.next()?,
        address: f.next()?,
    })
}

fn direction_in(lines: &[Line]) -> Option<Direction> {
    lines
        .iter()
        .filter_map(Line::attribute)
        .find_map(|(n, v)| if v.is_none() { Direction::from_name(n) } else { None })
}

/// Splits `text` into numbered lines (from 1), enforcing `max_lines` and
/// the `<letter>=<value>` shape; shared by whole descriptions and single
/// sections so both refuse the same inputs.
fn lines<'a>(text: &'a str, limits: &'a Limits) -> impl Iterator<Item = Result<(usize, Line), ParseError>> + 'a {
    let mut rest = text;
    let mut number = 0;
    let mut failed = false;
    std::iter::from_fn(move || {
        if rest.is_empty() || failed {
            return None;
        }
        number += 1;
        if number > limits.max_lines {
            failed = true;
            return Some(Err(ParseError::Limit {
                what: "lines",
                limit: limits.max_lines,
            }));
        }
        let (raw, ending, next) = match rest.find('\n') {
            Some(i) => {
                let crlf = i > 0 && rest.as_bytes()[i - 1] == b'\r';
                (&rest[..if crlf { i - 1 } else { i }], Some(crlf), &rest[i + 1..])
            }
            None => (rest, None, ""),
        };
        rest = next;
        let mut chars = raw.chars();
        let (Some(kind), Some('=')) = (chars.next(), chars.next()) else {
            failed = true;
            return Some(Err(ParseError::BadLine { line: number }));
        };
        if !kind.is_ascii_alphabetic() {
            failed = true;
            return Some(Err(ParseError::BadLine { line: number }));
        }
        Some(Ok((
            number,
            Line {
                kind,
                value: raw[2..].to_owned(),
                ending,
            },
        )))
    })
}

/// `<media> <port>[/<count>] <proto> <fmt>...`.
fn parse_media_line(v: &str) -> Result<MediaLine<'_>, &'static str> {
    let mut f = v.split(' ');
    let media = f.next().filter(|s| !s.is_empty()).ok_or("no media type")?;
    let port_field = f.next().ok_or("no port")?;
    let (port, port_count) = match port_field.split_once('/') {
        Some((p, n)) => (p, Some(n.parse::<u16>().map_err(|_| "bad port count")?)),
        None => (port_field, None),
    };
    let port = port.parse::<u16>().map_err(|_| "port is not 0 to 65535")?;
    let proto = f.next().filter(|s| !s.is_empty()).ok_or("no protocol")?;
    let formats: Vec<&str> = f.filter(|s| !s.is_empty()).collect();
    if formats.is_empty() {
        return Err("no formats");
    }
    Ok(MediaLine {
        media,
        port,
        port_count,
        proto,
        formats,
    })
}
