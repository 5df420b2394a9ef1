//! The message model: a start line, ordered header fields and a body.
//!
//! Header fields keep the name as received, its canonical form and the raw
//! value; untouched fields serialise to exactly the bytes they came from. The
//! header section is held once as text and fields point into it, so reading a
//! value borrows and never allocates.

use std::sync::OnceLock;

use bytes::Bytes;

use crate::method::Method;
use crate::name::{HeaderName, Known};
use crate::text::split_top_level;
use crate::text::trim_ws;

/// Text that is either a span of the received header section or owned
/// (set by code after parsing).
#[derive(Debug, Clone)]
pub(crate) enum Text {
    Span(u32, u32),
    Owned(Box<str>),
}

impl Text {
    #[inline]
    pub(crate) fn get<'a>(&'a self, head: &'a str) -> &'a str {
        match self {
            Text::Span(a, b) => head.get(*a as usize..*b as usize).unwrap_or(""),
            Text::Owned(s) => s,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) known: Option<Known>,
    pub(crate) name: Text,
    pub(crate) value: Text,
    /// The whole field as received (name to end of last folded line,
    /// without the final line break); `None` once the field was changed.
    pub(crate) raw: Option<(u32, u32)>,
}

#[derive(Debug, Clone)]
pub(crate) enum Start {
    Request { method: Method, uri: Text, version: Text },
    Response { version: Text, code: u16, reason: Text },
}

/// A SIP request or response.
#[derive(Debug, Clone)]
pub struct Message {
    pub(crate) head: Box<str>,
    pub(crate) start: Start,
    /// The start line as received; `None` when built or changed.
    pub(crate) start_raw: Option<(u32, u32)>,
    pub(crate) entries: Vec<Entry>,
    pub(crate) body: Bytes,
    /// The first problem the structural pass found but could step over;
    /// reported by [`Message::validate`].
    pub(crate) defect: Option<crate::ParseError>,
    /// Where validation found the fields every layer reads (branch, tags,
    /// Call-ID, CSeq), so reading them again costs no parsing. Cleared by
    /// any change that could move them.
    pub(crate) essentials: OnceLock<Essentials>,
}

/// A piece of a header value: which field, and the byte range in its value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Loc {
    pub(crate) entry: u16,
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Loc {
    /// Where `part` (a slice of `value`) sits in field `entry`.
    pub(crate) fn of(entry: usize, value: &str, part: &str) -> Loc {
        let start = (part.as_ptr() as usize).saturating_sub(value.as_ptr() as usize);
        Loc {
            entry: entry as u16,
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Essentials {
    pub(crate) branch: Option<Loc>,
    pub(crate) from_tag: Option<Loc>,
    pub(crate) to_tag: Option<Loc>,
    pub(crate) call_id: Loc,
    pub(crate) cseq: u32,
    pub(crate) cseq_method: Loc,
}

/// One header field, borrowed from its message.
#[derive(Debug, Clone, Copy)]
pub struct HeaderRef<'a> {
    /// The canonical name, for known headers.
    pub known: Option<Known>,
    /// The name exactly as received (`v`, `VIA`, `X-Foo`...).
    pub name: &'a str,
    /// The value with folding replaced by single spaces and outer white
    /// space trimmed.
    pub value: &'a str,
}

impl HeaderRef<'_> {
    /// Canonical name for known headers, the received one otherwise.
    pub fn canonical_name(&self) -> &str {
        match self.known {
            Some(k) => k.as_str(),
            None => self.name,
        }
    }
}

impl Message {
    /// A new request with no headers.
    pub fn request(method: Method, uri: &str) -> Message {
        Message {
            head: Box::from(""),
            start: Start::Request {
                method,
                uri: Text::Owned(uri.into()),
                version: Text::Owned("SIP/2.0".into()),
            },
            start_raw: None,
            entries: Vec::new(),
            body: Bytes::new(),
            defect: None,
            essentials: OnceLock::new(),
        }
    }

    /// A new response with no headers.
    pub fn response(code: u16, reason: &str) -> Message {
        Message {
            head: Box::from(""),
            start: Start::Response {
                version: Text::Owned("SIP/2.0".into()),
                code,
                reason: Text::Owned(reason.into()),
            },
            start_raw: None,
            entries: Vec::new(),
            body: Bytes::new(),
            defect: None,
            essentials: OnceLock::new(),
        }
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, Start::Request { .. })
    }

    /// The request method, or `None` for a response.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            Start::Request { method, .. } => Some(method),
            Start::Response { .. } => None,
        }
    }

    /// The Request-URI text, or `None` for a response.
    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            Start::Request { uri, .. } => Some(uri.get(&self.head)),
            Start::Response { .. } => None,
        }
    }

    /// The status code, or `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            Start::Response { code, .. } => Some(*code),
            Start::Request { .. } => None,
        }
    }

    /// The reason phrase exactly as received, or `None` for a request.
    pub fn reason(&self) -> Option<&str> {
        match &self.start {
            Start::Response { reason, .. } => Some(reason.get(&self.head)),
            Start::Request { .. } => None,
        }
    }

    /// The SIP-Version text of the start line.
    pub fn version(&self) -> &str {
        match &self.start {
            Start::Request { version, .. } | Start::Response { version, .. } => version.get(&self.head),
        }
    }

    /// Replaces the Request-URI (requests only; ignored on responses).
    pub fn set_request_uri(&mut self, new: &str) {
        self.essentials = OnceLock::new();
        if let Start::Request { uri, .. } = &mut self.start {
            *uri = Text::Owned(new.into());
            self.start_raw = None;
        }
    }

    /// Every header field in order.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = HeaderRef<'_>> + '_ {
        self.entries.iter().map(|e| HeaderRef {
            known: e.known,
            name: e.name.get(&self.head),
            value: e.value.get(&self.head),
        })
    }

    /// Values of every field with this name, in order (one per field, not
    /// split at commas).
    pub fn header_fields<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |e| name.matches(e.known, e.name.get(&self.head)))
            .map(move |e| e.value.get(&self.head))
    }

    /// Values of every field of a known header, in order.
    pub fn known_fields(&self, known: Known) -> impl Iterator<Item = &str> + '_ {
        self.entries
            .iter()
            .filter(move |e| e.known == Some(known))
            .map(move |e| e.value.get(&self.head))
    }

    /// The first field of a known header.
    pub fn known_header(&self, known: Known) -> Option<&str> {
        self.known_fields(known).next()
    }

    /// The first field with this name (known or not), by any spelling.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = HeaderName::new(name);
        self.entries
            .iter()
            .find(|e| name.matches(e.known, e.name.get(&self.head)))
            .map(|e| e.value.get(&self.head))
    }

    /// Every value of a known list header: fields in order, each split at
    /// top-level commas, trimmed, empty elements skipped.
    pub fn known_values(&self, known: Known) -> impl Iterator<Item = &str> + '_ {
        self.known_fields(known)
            .flat_map(|v| split_top_level(v, b','))
            .map(trim_ws)
            .filter(|v| !v.is_empty())
    }

    /// Whether a list header (Supported, Require, Allow ...) names
    /// `token`, compared without case.
    pub fn lists(&self, known: Known, token: &str) -> bool {
        self.known_values(known).any(|v| v.eq_ignore_ascii_case(token))
    }

    pub fn has(&self, known: Known) -> bool {
        self.entries.iter().any(|e| e.known == Some(known))
    }

    /// Appends a header field.
    pub fn push_header(&mut self, name: impl Into<HeaderName>, value: &str) {
        self.essentials = OnceLock::new();
        let entry = owned_entry(name.into(), value);
        self.entries.push(entry);
    }

    /// Appends a header field spelled exactly as given (`v`, `VIA`,
    /// `X-Foo`), recognising known names in any spelling.
    pub fn push_header_as_spelled(&mut self, name: &str, value: &str) {
        self.essentials = OnceLock::new();
        self.entries.push(Entry {
            known: Known::lookup(name),
            name: Text::Owned(name.into()),
            value: Text::Owned(value.into()),
            raw: None,
        });
    }

    /// Inserts a header field before every other one (a new top Via).
    pub fn prepend_header(&mut self, name: impl Into<HeaderName>, value: &str) {
        self.essentials = OnceLock::new();
        let entry = owned_entry(name.into(), value);
        self.entries.insert(0, entry);
    }

    /// Removes every field with this name; returns how many there were.
    pub fn remove_header(&mut self, name: impl Into<HeaderName>) -> usize {
        self.essentials = OnceLock::new();
        let name = name.into();
        let before = self.entries.len();
        let head = &self.head;
        self.entries.retain(|e| !name.matches(e.known, e.name.get(head)));
        before - self.entries.len()
    }

    /// Replaces every field with this name by one field holding `value`,
    /// placed where the first one was (or appended).
    pub fn set_header(&mut self, name: impl Into<HeaderName>, value: &str) {
        self.essentials = OnceLock::new();
        let name = name.into();
        let head = &self.head;
        let pos = self
            .entries
            .iter()
            .position(|e| name.matches(e.known, e.name.get(head)));
        match pos {
            Some(i) => {
                // Keep the spelling the peer used (compact or long).
                let spelled = self.entries[i].name.get(&self.head).to_owned();
                self.entries[i] = Entry {
                    known: self.entries[i].known,
                    name: Text::Owned(spelled.into()),
                    value: Text::Owned(value.into()),
                    raw: None,
                };
                let mut idx = 0;
                let head = &self.head;
                self.entries.retain(|e| {
                    let keep = idx <= i || !name.matches(e.known, e.name.get(head));
                    idx += 1;
                    keep
                });
            }
            None => self.push_header(name, value),
        }
    }

    /// Replaces the first value of the first field of a known list header
    /// (the top Via), keeping the rest of a comma-combined field as it was.
    pub fn replace_top_value(&mut self, known: Known, value: &str) -> bool {
        self.essentials = OnceLock::new();
        let Some(i) = self.entries.iter().position(|e| e.known == Some(known)) else {
            return false;
        };
        let current = self.entries[i].value.get(&self.head);
        let rest = crate::text::find_top_level(current, b',').map(|c| trim_ws(&current[c + 1..]).to_owned());
        let name = self.entries[i].name.get(&self.head).to_owned();
        self.entries[i] = Entry {
            known: Some(known),
            name: Text::Owned(name.as_str().into()),
            value: Text::Owned(value.into()),
            raw: None,
        };
        if let Some(rest) = rest.filter(|r| !r.is_empty()) {
            self.entries.insert(
                i + 1,
                Entry {
                    known: Some(known),
                    name: Text::Owned(name.into()),
                    value: Text::Owned(rest.into()),
                    raw: None,
                },
            );
        }
        true
    }

    /// Removes the first value of a known list header (the top Via of a
    /// response on its way back).
    pub fn remove_top_value(&mut self, known: Known) -> bool {
        self.essentials = OnceLock::new();
        let Some(i) = self.entries.iter().position(|e| e.known == Some(known)) else {
            return false;
        };
        let current = self.entries[i].value.get(&self.head);
        match crate::text::find_top_level(current, b',') {
            Some(c) => {
                let rest = trim_ws(&current[c + 1..]).to_owned();
                let name = self.entries[i].name.get(&self.head).to_owned();
                self.entries[i] = Entry {
                    known: Some(known),
                    name: Text::Owned(name.into()),
                    value: Text::Owned(rest.into()),
                    raw: None,
                };
            }
            None => {
                self.entries.remove(i);
            }
        }
        true
    }

    /// The text of a cached location.
    pub(crate) fn loc(&self, l: Loc) -> &str {
        self.entries
            .get(usize::from(l.entry))
            .and_then(|e| e.value.get(&self.head).get(l.start as usize..l.end as usize))
            .unwrap_or_default()
    }

    /// The body bytes, untouched.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Replaces the body and recomputes Content-Length (kept in the
    /// spelling the message already used).
    pub fn set_body(&mut self, body: Bytes) {
        let len = body.len().to_string();
        self.body = body;
        self.set_header(Known::ContentLength, &len);
    }

    /// Serialises the message. Untouched fields and an untouched start line
    /// come out byte for byte as received; the one normalisation is that
    /// every line ends in CRLF.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.head.len() + self.body.len() + 64 + 32 * self.entries.len());
        match self.start_raw {
            Some((a, b)) => out.extend_from_slice(self.head[a as usize..b as usize].as_bytes()),
            None => match &self.start {
                Start::Request { method, uri, version } => {
                    out.extend_from_slice(method.as_str().as_bytes());
                    out.push(b' ');
                    out.extend_from_slice(uri.get(&self.head).as_bytes());
                    out.push(b' ');
                    out.extend_from_slice(version.get(&self.head).as_bytes());
                }
                Start::Response { version, code, reason } => {
                    out.extend_from_slice(version.get(&self.head).as_bytes());
                    out.push(b' ');
                    out.extend_from_slice(code.to_string().as_bytes());
                    out.push(b' ');
                    out.extend_from_slice(reason.get(&self.head).as_bytes());
                }
            },
        }
        out.extend_from_slice(b"\r\n");
        self.write_fields(&self.entries, out);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }

    /// Writes header fields of this message, each ending in CRLF.
    pub(crate) fn write_fields(&self, entries: &[Entry], out: &mut Vec<u8>) {
        for e in entries {
            match e.raw {
                Some((a, b)) => write_raw_field(out, &self.head[a as usize..b as usize]),
                None => {
                    out.extend_from_slice(e.name.get(&self.head).as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(e.value.get(&self.head).as_bytes());
                }
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The heap bytes this message holds (its text, field index and body),
    /// for callers that bound memory by bytes.
    pub fn held_bytes(&self) -> usize {
        self.head.len() + self.entries.len() * std::mem::size_of::<Entry>() + self.body.len()
    }

    /// Serialises into a new buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::new();
        self.write_to(&mut out);
        Bytes::from(out)
    }
}

/// Writes a received field; folded lines keep their folding, with bare LF
/// line breaks written as CRLF.
fn write_raw_field(out: &mut Vec<u8>, raw: &str) {
    let mut lines = raw.split('\n');
    if let Some(first) = lines.next() {
        out.extend_from_slice(first.strip_suffix('\r').unwrap_or(first).as_bytes());
    }
    for line in lines {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(line.strip_suffix('\r').unwrap_or(line).as_bytes());
    }
}

fn owned_entry(name: HeaderName, value: &str) -> Entry {
    let known = match &name {
        HeaderName::Known(k) => Some(*k),
        HeaderName::Other(s) => Known::lookup(s),
    };
    Entry {
        known,
        name: Text::Owned(name.as_str().into()),
        value: Text::Owned(value.into()),
        raw: None,
    }
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}
