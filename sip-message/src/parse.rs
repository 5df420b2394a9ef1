//! The parser, in two passes.
//!
//! The structural pass splits the start line and the header fields and
//! frames the body. It fails only when nothing could be answered (no start
//! line, not text, over a hard limit); smaller problems are kept as a defect
//! so the edge can still build an error response from the headers.
//!
//! The validation pass applies RFC 3261's strict rules to what every element
//! must understand: the start line, the mandatory headers, Content-Length,
//! CSeq, Max-Forwards and every Via.

use bytes::Bytes;
use memchr::{memchr, memmem};

use crate::error::{LimitKind, ParseError, UriError};
use crate::limits::Limits;
use crate::message::{Entry, Message, Start, Text};
use crate::method::Method;
use crate::name::Known;
use crate::text::{is_token_byte, is_ws, parse_u64, split_top_level, trim_ws};
use crate::typed::{CSeq, NameAddr, Via};
use crate::uri::Uri;

impl Message {
    /// Parses and validates one message with the default limits. `data` is
    /// exactly one message, as one UDP datagram or one frame from the
    /// stream framer: a body longer than Content-Length is cut to it (RFC
    /// 3261 18.3), a shorter one is an error.
    pub fn parse(data: Bytes) -> Result<Message, ParseError> {
        Self::parse_with(data, &Limits::default())
    }

    /// [`Message::parse`] with explicit limits.
    pub fn parse_with(data: Bytes, limits: &Limits) -> Result<Message, ParseError> {
        let msg = Self::parse_structure(data, limits)?;
        msg.validate(limits)?;
        Ok(msg)
    }

    /// The structural pass alone. A message it returns may still be invalid:
    /// call [`Message::validate`] before trusting it.
    pub fn parse_structure(data: Bytes, limits: &Limits) -> Result<Message, ParseError> {
        if data.is_empty() {
            return Err(ParseError::Empty);
        }
        if data.len() > limits.max_message_bytes {
            return Err(ParseError::Limit {
                what: LimitKind::MessageSize,
                limit: limits.max_message_bytes,
            });
        }
        let (head_end, body_start) = find_head_end(&data).ok_or(ParseError::Incomplete)?;
        let head: Box<str> = match std::str::from_utf8(&data[..head_end]) {
            Ok(s) => s.into(),
            Err(e) => {
                return Err(ParseError::NotUtf8 {
                    offset: e.valid_up_to(),
                });
            }
        };
        let mut p = Structure {
            head: &head,
            limits,
            defect: None,
            entries: Vec::with_capacity(16),
            content_length: None,
        };
        let first_end = line_end(head.as_bytes(), 0);
        let start = p.start_line(first_end)?;
        p.header_fields(first_end)?;
        let Structure {
            defect,
            entries,
            content_length,
            ..
        } = p;
        let mut defect = defect;

        let mut body = data.slice(body_start..);
        if let Some(declared) = content_length {
            if body.len() > declared {
                body.truncate(declared);
            } else if body.len() < declared {
                defect.get_or_insert(ParseError::BodyTooShort {
                    declared,
                    actual: body.len(),
                });
            }
        }
        if body.len() > limits.max_body_bytes {
            defect.get_or_insert(ParseError::Limit {
                what: LimitKind::BodySize,
                limit: limits.max_body_bytes,
            });
        }
        let start_raw = Some((0, trim_cr(head.as_bytes(), first_end) as u32));
        Ok(Message {
            head,
            start,
            start_raw,
            entries,
            body,
            defect,
        })
    }

    /// The validation pass: everything RFC 3261 requires of every message
    /// before an element may act on it.
    pub fn validate(&self, limits: &Limits) -> Result<(), ParseError> {
        if let Some(defect) = &self.defect {
            return Err(defect.clone());
        }
        match &self.start {
            Start::Request {
                method,
                uri,
                version,
            } => {
                check_version(version.get(&self.head))?;
                check_request_uri(uri.get(&self.head), limits)?;
                self.check_mandatory()?;
                let cseq = CSeq::parse(self.single(Known::CSeq)?)?;
                if cseq.method != *method {
                    return Err(ParseError::CSeqMismatch {
                        cseq: cseq.method.as_str().into(),
                        method: method.as_str().into(),
                    });
                }
            }
            Start::Response { version, .. } => {
                check_version(version.get(&self.head))?;
                self.check_mandatory()?;
                CSeq::parse(self.single(Known::CSeq)?)?;
            }
        }
        self.check_max_forwards()?;
        self.check_vias(limits)?;
        for known in [Known::From, Known::To] {
            let addr = NameAddr::parse(self.single(known)?).map_err(|e| e.in_header(known))?;
            if addr.uri_text.len() > limits.max_uri_len {
                return Err(ParseError::Limit {
                    what: LimitKind::UriLength,
                    limit: limits.max_uri_len,
                });
            }
        }
        Ok(())
    }

    fn check_mandatory(&self) -> Result<(), ParseError> {
        if !self.has(Known::Via) {
            return Err(ParseError::MissingHeader("Via"));
        }
        for known in [Known::From, Known::To, Known::CallId, Known::CSeq] {
            self.single(known)?;
        }
        let call_id = self.single(Known::CallId)?;
        if call_id.is_empty() || call_id.bytes().any(|b| b <= b' ') {
            return Err(ParseError::BadHeader {
                header: "Call-ID",
                reason: "empty or contains white space",
            });
        }
        Ok(())
    }

    /// The one field of a single-valued header; two fields are refused (RFC
    /// 4475 3.3.8), so are none.
    fn single(&self, known: Known) -> Result<&str, ParseError> {
        let mut fields = self.known_fields(known);
        let first = fields
            .next()
            .ok_or(ParseError::MissingHeader(known.as_str()))?;
        if fields.next().is_some() {
            return Err(ParseError::Conflicting(known.as_str()));
        }
        Ok(first)
    }

    fn check_max_forwards(&self) -> Result<(), ParseError> {
        let mut fields = self.known_fields(Known::MaxForwards);
        if let Some(v) = fields.next() {
            if fields.next().is_some() {
                return Err(ParseError::Conflicting("Max-Forwards"));
            }
            parse_max_forwards(v)?;
        }
        Ok(())
    }

    fn check_vias(&self, limits: &Limits) -> Result<(), ParseError> {
        let mut count = 0;
        for field in self.known_fields(Known::Via) {
            for value in split_top_level(field, b',') {
                count += 1;
                if count > limits.max_vias {
                    return Err(ParseError::Limit {
                        what: LimitKind::ViaCount,
                        limit: limits.max_vias,
                    });
                }
                Via::parse(trim_ws(value))?;
            }
        }
        Ok(())
    }
}

pub(crate) fn parse_max_forwards(v: &str) -> Result<u8, ParseError> {
    match parse_u64(v) {
        Some(n) if n <= 255 => Ok(n as u8),
        _ => Err(ParseError::BadHeader {
            header: "Max-Forwards",
            reason: "not a number from 0 to 255",
        }),
    }
}

fn check_version(v: &str) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        return Ok(());
    }
    // Any other well-formed SIP version is a version we do not speak (505);
    // anything else is a garbled start line (400).
    let well_formed = crate::text::strip_prefix_ci(v, "SIP/")
        .and_then(|r| r.split_once('.'))
        .is_some_and(|(a, b)| parse_u64(a).is_some() && parse_u64(b).is_some());
    if well_formed {
        Err(ParseError::Version)
    } else {
        Err(ParseError::StartLine("bad SIP version"))
    }
}

fn check_request_uri(uri: &str, limits: &Limits) -> Result<(), ParseError> {
    if uri.starts_with([' ', '\t']) || uri.ends_with([' ', '\t']) {
        return Err(ParseError::StartLine(
            "extra white space between request-line elements",
        ));
    }
    if uri.len() > limits.max_uri_len {
        return Err(ParseError::Limit {
            what: LimitKind::UriLength,
            limit: limits.max_uri_len,
        });
    }
    match Uri::parse(uri)? {
        // RFC 3261 19.1.1: headers are not allowed in a Request-URI.
        Uri::Sip(u) if u.headers.is_some() => Err(UriError::HeadersNotAllowed.into()),
        _ => Ok(()),
    }
}

/// End of the header section and start of the body.
fn find_head_end(data: &[u8]) -> Option<(usize, usize)> {
    if let Some(i) = memmem::find(data, b"\r\n\r\n") {
        return Some((i, i + 4));
    }
    // Lenient: bare LF line endings.
    memmem::find(data, b"\n\n").map(|i| {
        (
            if i > 0 && data[i - 1] == b'\r' {
                i - 1
            } else {
                i
            },
            i + 2,
        )
    })
}

/// Index of the `\n` ending the line that starts at `from` (or the end).
#[inline]
fn line_end(bytes: &[u8], from: usize) -> usize {
    memchr(b'\n', &bytes[from..]).map_or(bytes.len(), |i| from + i)
}

/// `end` moved back over a `\r` that precedes it.
#[inline]
fn trim_cr(bytes: &[u8], end: usize) -> usize {
    if end > 0 && bytes[end - 1] == b'\r' {
        end - 1
    } else {
        end
    }
}

struct Structure<'h> {
    head: &'h str,
    limits: &'h Limits,
    defect: Option<ParseError>,
    entries: Vec<Entry>,
    content_length: Option<usize>,
}

struct Pending {
    name: (u32, u32),
    known: Option<Known>,
    colon: usize,
    start: usize,
    end: usize,
    folded: bool,
}

impl Structure<'_> {
    fn start_line(&mut self, end: usize) -> Result<Start, ParseError> {
        let bytes = self.head.as_bytes();
        let line_end = trim_cr(bytes, end);
        let line = &self.head[..line_end];
        if line.is_empty() {
            return Err(ParseError::StartLine("empty start line"));
        }
        if line.len() >= 4 && line.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
            let sp = line
                .find(' ')
                .ok_or(ParseError::StartLine("status line has no status code"))?;
            let after = sp + 1;
            let code_end = line[after..].find(' ').map_or(line.len(), |i| after + i);
            let code_text = &line[after..code_end];
            let code = match parse_u64(code_text) {
                Some(c) if code_text.len() == 3 && (100..=699).contains(&c) => c as u16,
                _ => return Err(ParseError::StatusCode),
            };
            let reason_start = (code_end + 1).min(line.len());
            Ok(Start::Response {
                version: Text::Span(0, sp as u32),
                code,
                reason: Text::Span(reason_start as u32, line.len() as u32),
            })
        } else {
            let sp1 = line
                .find(' ')
                .ok_or(ParseError::StartLine("request line has no spaces"))?;
            let sp2 = line.rfind(' ').unwrap_or(sp1);
            if sp2 == sp1 {
                return Err(ParseError::StartLine(
                    "request line needs a method, a Request-URI and a version",
                ));
            }
            let method = Method::parse(&line[..sp1])
                .ok_or(ParseError::StartLine("method is not a token"))?;
            Ok(Start::Request {
                method,
                uri: Text::Span(sp1 as u32 + 1, sp2 as u32),
                version: Text::Span(sp2 as u32 + 1, line.len() as u32),
            })
        }
    }

    fn header_fields(&mut self, first_end: usize) -> Result<(), ParseError> {
        let bytes = self.head.as_bytes();
        let mut pos = first_end + 1;
        let mut line_no = 1;
        let mut pending: Option<Pending> = None;
        while pos < bytes.len() {
            let end = line_end(bytes, pos);
            let content_end = trim_cr(bytes, end);
            line_no += 1;
            if is_ws(bytes[pos]) {
                match pending.as_mut() {
                    Some(p) => {
                        p.end = content_end;
                        p.folded = true;
                    }
                    None => {
                        self.defect.get_or_insert(ParseError::StartLine(
                            "folded line before the first header",
                        ));
                    }
                }
            } else {
                if let Some(p) = pending.take() {
                    self.finish(p)?;
                }
                pending = self.begin(pos, content_end, line_no);
            }
            pos = end + 1;
        }
        if let Some(p) = pending.take() {
            self.finish(p)?;
        }
        Ok(())
    }

    fn begin(&mut self, start: usize, end: usize, line: usize) -> Option<Pending> {
        let bytes = self.head.as_bytes();
        let Some(colon) = memchr(b':', &bytes[start..end]).map(|i| start + i) else {
            self.defect.get_or_insert(ParseError::MissingColon { line });
            return None;
        };
        let mut name_end = colon;
        while name_end > start && is_ws(bytes[name_end - 1]) {
            name_end -= 1;
        }
        let name = &self.head[start..name_end];
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            self.defect
                .get_or_insert(ParseError::BadHeaderName { line });
            return None;
        }
        Some(Pending {
            name: (start as u32, name_end as u32),
            known: Known::lookup(name),
            colon,
            start,
            end,
            folded: false,
        })
    }

    fn finish(&mut self, p: Pending) -> Result<(), ParseError> {
        if self.entries.len() >= self.limits.max_headers {
            return Err(ParseError::Limit {
                what: LimitKind::HeaderCount,
                limit: self.limits.max_headers,
            });
        }
        if p.end - p.start > self.limits.max_header_line {
            return Err(ParseError::Limit {
                what: LimitKind::HeaderLine,
                limit: self.limits.max_header_line,
            });
        }
        let raw_value = &self.head[p.colon + 1..p.end];
        let value = if p.folded {
            Text::Owned(unfold(raw_value).into())
        } else {
            let trimmed = trim_ws(raw_value);
            let offset = trimmed.as_ptr() as usize - self.head.as_ptr() as usize;
            Text::Span(offset as u32, (offset + trimmed.len()) as u32)
        };
        if p.known == Some(Known::ContentLength) {
            self.content_length(value.get(self.head));
        }
        self.entries.push(Entry {
            known: p.known,
            name: Text::Span(p.name.0, p.name.1),
            value,
            raw: Some((p.start as u32, p.end as u32)),
        });
        Ok(())
    }

    fn content_length(&mut self, v: &str) {
        let Some(n) = parse_u64(v).and_then(|n| usize::try_from(n).ok()) else {
            self.defect.get_or_insert(ParseError::BadHeader {
                header: "Content-Length",
                reason: "not a non-negative decimal number",
            });
            return;
        };
        match self.content_length {
            Some(prev) if prev != n => {
                self.defect
                    .get_or_insert(ParseError::Conflicting("Content-Length"));
            }
            _ => self.content_length = Some(n),
        }
    }
}

/// Replaces each line fold (optional white space, line break, white space)
/// by a single space and trims the ends (RFC 3261 7.3.1).
fn unfold(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut lines = raw.split('\n');
    if let Some(first) = lines.next() {
        out.push_str(trim_ws(first.strip_suffix('\r').unwrap_or(first)));
    }
    for line in lines {
        let line = trim_ws(line.strip_suffix('\r').unwrap_or(line));
        if line.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfold_joins_with_single_space() {
        assert_eq!(
            unfold(" SIP/2.0 \r\n  /UDP\r\n\t192.0.2.1"),
            "SIP/2.0 /UDP 192.0.2.1"
        );
    }
}
