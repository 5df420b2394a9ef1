//! The parser, in two passes.
//!
//! The structural pass walks the lines once: it splits the start line and
//! the header fields, finds the blank line that ends the header section
//! (CRLF or, leniently, bare LF), and frames the body. It fails only when
//! nothing could be answered (no start line, not text, over a hard limit);
//! smaller problems are kept as a defect so the edge can still build an
//! error response from the headers.
//!
//! The validation pass applies RFC 3261's strict rules to what every element
//! must understand: the start line, the mandatory headers, Content-Length,
//! CSeq, Max-Forwards and every Via. It remembers where the branch, the
//! tags, Call-ID and CSeq are, so reading them later costs nothing.

use bytes::Bytes;
use memchr::{memchr, memchr_iter};

use crate::error::{LimitKind, ParseError, UriError};
use crate::limits::Limits;
use crate::message::{Entry, Essentials, Loc, Message, Start, Text};
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
        #[cfg(feature = "parse-counter")]
        crate::counter::count();
        if data.is_empty() {
            return Err(ParseError::Empty);
        }
        if data.len() > limits.max_message_bytes {
            return Err(ParseError::Limit {
                what: LimitKind::MessageSize,
                limit: limits.max_message_bytes,
            });
        }
        let bytes: &[u8] = &data;
        let mut newlines = memchr_iter(b'\n', bytes);
        let first_nl = newlines.next().ok_or(ParseError::Incomplete)?;
        let start_end = trim_cr(bytes, first_nl);
        let mut p = Structure {
            bytes,
            limits,
            defect: None,
            entries: Vec::with_capacity(16),
            content_length: None,
        };
        let mut pending: Option<Pending> = None;
        let mut pos = first_nl + 1;
        let mut last_end = start_end;
        let mut line_no = 1;
        let (head_end, body_start) = loop {
            let nl = newlines.next().ok_or(ParseError::Incomplete)?;
            let end = trim_cr(bytes, nl);
            if end == pos {
                break (last_end, nl + 1);
            }
            line_no += 1;
            // A CR only ends a line (RFC 3261 7.3.1): one inside it would
            // not survive serialisation as it came.
            if memchr(b'\r', &bytes[pos..end]).is_some() {
                p.defect.get_or_insert(ParseError::BareCr { line: line_no });
            }
            if is_ws(bytes[pos]) {
                match pending.as_mut() {
                    Some(f) => {
                        f.end = end;
                        f.folded = true;
                    }
                    None => {
                        p.defect
                            .get_or_insert(ParseError::StartLine("folded line before the first header"));
                    }
                }
            } else {
                if let Some(f) = pending.take() {
                    p.finish(f)?;
                }
                pending = p.begin(pos, end, line_no);
            }
            last_end = end;
            pos = nl + 1;
        };
        if let Some(f) = pending.take() {
            p.finish(f)?;
        }
        let Structure {
            defect,
            entries,
            content_length,
            ..
        } = p;
        let mut defect = defect;
        let head: Box<str> = match std::str::from_utf8(&bytes[..head_end]) {
            Ok(s) => s.into(),
            Err(e) => {
                return Err(ParseError::NotUtf8 {
                    offset: e.valid_up_to(),
                });
            }
        };
        let start = start_line(&head[..start_end])?;

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
        Ok(Message {
            head,
            start,
            start_raw: Some((0, start_end as u32)),
            entries,
            body,
            defect,
            essentials: Default::default(),
        })
    }

    /// The validation pass: everything RFC 3261 requires of every message
    /// before an element may act on it.
    pub fn validate(&self, limits: &Limits) -> Result<(), ParseError> {
        if let Some(defect) = &self.defect {
            return Err(defect.clone());
        }
        let fields = self.mandatory_fields()?;
        let cseq_value = self.field(fields.cseq);
        let cseq = CSeq::parse(cseq_value)?;
        match &self.start {
            Start::Request { method, uri, version } => {
                check_version(version.get(&self.head))?;
                check_request_uri(uri.get(&self.head), limits)?;
                if cseq.method != *method {
                    return Err(ParseError::CSeqMismatch {
                        cseq: cseq.method.as_str().into(),
                        method: method.as_str().into(),
                    });
                }
            }
            Start::Response { version, .. } => check_version(version.get(&self.head))?,
        }
        if let Some(mf) = fields.max_forwards {
            parse_max_forwards(self.field(mf))?;
        }
        let call_id = self.field(fields.call_id);
        if call_id.is_empty() || call_id.bytes().any(|b| b <= b' ') {
            return Err(ParseError::BadHeader {
                header: "Call-ID",
                reason: "empty or contains white space",
            });
        }
        let branch = self.check_vias(limits)?;
        let mut tags = [None, None];
        for (slot, (known, index)) in [(Known::From, fields.from), (Known::To, fields.to)]
            .into_iter()
            .enumerate()
        {
            let value = self.field(index);
            let addr = NameAddr::parse(value).map_err(|e| e.in_header(known))?;
            if addr.uri_text.len() > limits.max_uri_len {
                return Err(ParseError::Limit {
                    what: LimitKind::UriLength,
                    limit: limits.max_uri_len,
                });
            }
            tags[slot] = addr.tag().map(|t| Loc::of(index, value, t));
        }
        let method_text = trim_ws(cseq_value).rsplit([' ', '\t']).next().unwrap_or_default();
        let _ = self.essentials.set(Essentials {
            branch,
            from_tag: tags[0],
            to_tag: tags[1],
            call_id: Loc::of(fields.call_id, call_id, call_id),
            cseq: cseq.seq,
            cseq_method: Loc::of(fields.cseq, cseq_value, method_text),
        });
        Ok(())
    }

    fn field(&self, index: usize) -> &str {
        self.entries
            .get(index)
            .map(|e| e.value.get(&self.head))
            .unwrap_or_default()
    }

    /// One walk over the fields: each single-valued mandatory header must be
    /// there exactly once (RFC 4475 3.3.8), Via at least once.
    fn mandatory_fields(&self) -> Result<Mandatory, ParseError> {
        let mut seen: [Option<usize>; 5] = [None; 5];
        let mut max_forwards = None;
        let mut via = false;
        for (i, e) in self.entries.iter().enumerate() {
            let slot = match e.known {
                Some(Known::From) => 0,
                Some(Known::To) => 1,
                Some(Known::CallId) => 2,
                Some(Known::CSeq) => 3,
                Some(Known::MaxForwards) => 4,
                Some(Known::Via) => {
                    via = true;
                    continue;
                }
                _ => continue,
            };
            if seen[slot].replace(i).is_some() {
                return Err(ParseError::Conflicting(MANDATORY[slot].as_str()));
            }
            if slot == 4 {
                max_forwards = Some(i);
            }
        }
        if !via {
            return Err(ParseError::MissingHeader("Via"));
        }
        let get = |slot: usize| seen[slot].ok_or(ParseError::MissingHeader(MANDATORY[slot].as_str()));
        Ok(Mandatory {
            from: get(0)?,
            to: get(1)?,
            call_id: get(2)?,
            cseq: get(3)?,
            max_forwards,
        })
    }

    /// Parses every Via value; returns where the top one's branch is.
    fn check_vias(&self, limits: &Limits) -> Result<Option<Loc>, ParseError> {
        let mut count = 0;
        let mut branch = None;
        for (i, e) in self.entries.iter().enumerate() {
            if e.known != Some(Known::Via) {
                continue;
            }
            let field = e.value.get(&self.head);
            for value in split_top_level(field, b',') {
                count += 1;
                if count > limits.max_vias {
                    return Err(ParseError::Limit {
                        what: LimitKind::ViaCount,
                        limit: limits.max_vias,
                    });
                }
                let via = Via::parse(value)?;
                if count == 1 {
                    branch = via.branch().map(|b| Loc::of(i, field, b));
                }
            }
        }
        Ok(branch)
    }
}

const MANDATORY: [Known; 5] = [Known::From, Known::To, Known::CallId, Known::CSeq, Known::MaxForwards];

struct Mandatory {
    from: usize,
    to: usize,
    call_id: usize,
    cseq: usize,
    max_forwards: Option<usize>,
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
        return Err(ParseError::StartLine("extra white space between request-line elements"));
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

/// `end` moved back over a `\r` that precedes it.
#[inline]
fn trim_cr(bytes: &[u8], end: usize) -> usize {
    if end > 0 && bytes[end - 1] == b'\r' {
        end - 1
    } else {
        end
    }
}

fn start_line(line: &str) -> Result<Start, ParseError> {
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
        let method = Method::parse(&line[..sp1]).ok_or(ParseError::StartLine("method is not a token"))?;
        Ok(Start::Request {
            method,
            uri: Text::Span(sp1 as u32 + 1, sp2 as u32),
            version: Text::Span(sp2 as u32 + 1, line.len() as u32),
        })
    }
}

struct Structure<'b> {
    bytes: &'b [u8],
    limits: &'b Limits,
    defect: Option<ParseError>,
    entries: Vec<Entry>,
    content_length: Option<usize>,
}

/// A header field whose continuation lines may still follow.
struct Pending {
    name_end: usize,
    known: Option<Known>,
    colon: usize,
    start: usize,
    end: usize,
    folded: bool,
}

impl Structure<'_> {
    /// Starts a field: the name is a token, then optional white space, then
    /// the colon — checked in one walk.
    fn begin(&mut self, start: usize, end: usize, line: usize) -> Option<Pending> {
        let b = &self.bytes[start..end];
        let mut i = 0;
        while i < b.len() && is_token_byte(b[i]) {
            i += 1;
        }
        let name_end = i;
        while i < b.len() && is_ws(b[i]) {
            i += 1;
        }
        if i == b.len() || b[i] != b':' || name_end == 0 {
            let defect = if memchr(b':', b).is_none() {
                ParseError::MissingColon { line }
            } else {
                ParseError::BadHeaderName { line }
            };
            self.defect.get_or_insert(defect);
            return None;
        }
        Some(Pending {
            name_end: start + name_end,
            known: Known::lookup_bytes(&b[..name_end]),
            colon: start + i,
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
        let value = if p.folded {
            let raw = std::str::from_utf8(&self.bytes[p.colon + 1..p.end]).map_err(|e| ParseError::NotUtf8 {
                offset: p.colon + 1 + e.valid_up_to(),
            })?;
            Text::Owned(unfold(raw).into())
        } else {
            let (mut a, mut z) = (p.colon + 1, p.end);
            while a < z && is_ws(self.bytes[a]) {
                a += 1;
            }
            while z > a && is_ws(self.bytes[z - 1]) {
                z -= 1;
            }
            Text::Span(a as u32, z as u32)
        };
        if p.known == Some(Known::ContentLength) {
            let text = match &value {
                Text::Span(a, z) => std::str::from_utf8(&self.bytes[*a as usize..*z as usize]).unwrap_or("x"),
                Text::Owned(s) => s,
            };
            self.content_length(text);
        }
        self.entries.push(Entry {
            known: p.known,
            name: Text::Span(p.start as u32, p.name_end as u32),
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
                self.defect.get_or_insert(ParseError::Conflicting("Content-Length"));
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
        assert_eq!(unfold(" SIP/2.0 \r\n  /UDP\r\n\t192.0.2.1"), "SIP/2.0 /UDP 192.0.2.1");
    }
}
