//! Framing: where one message ends on a stream (Content-Length, RFC 3261
//! 18.3), keep-alives (RFC 5626 3.5.1) and datagram classification.

use bytes::{Buf, Bytes, BytesMut};

use crate::limits::Limits;
use crate::text::parse_u64;

/// What a stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One complete message, exactly its bytes.
    Message(Bytes),
    /// A double-CRLF keep-alive ping: answer with a single CRLF.
    Ping,
    /// A single CRLF (a pong, or stray CRLF before a start line): ignore.
    Pong,
}

/// Why a stream cannot be framed any further. All are fatal for the
/// connection: once framing is lost there is no telling where the next
/// message starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("Content-Length is required on stream transports")]
    MissingContentLength,
    #[error("Content-Length is not a valid number")]
    BadContentLength,
    #[error("message larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
}

/// Reassembles messages from the bytes of a stream connection: pipelined
/// messages in one read, one message over many reads.
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    limits: Limits,
    /// Where to resume looking for the end of the header section.
    scanned: usize,
}

impl StreamFramer {
    pub fn new(limits: Limits) -> Self {
        Self {
            buf: BytesMut::with_capacity(4096),
            limits,
            scanned: 0,
        }
    }

    /// Appends received bytes.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The buffer to read into directly (then call nothing else: the bytes
    /// read are already in place).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes received but not yet part of a complete frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.starts_with(b"\r\n") {
            if self.buf.len() < 4 {
                return Ok(None);
            }
            if self.buf[2..].starts_with(b"\r\n") {
                self.buf.advance(4);
                self.scanned = 0;
                return Ok(Some(Frame::Ping));
            }
            self.buf.advance(2);
            self.scanned = 0;
            return Ok(Some(Frame::Pong));
        }
        let from = self.scanned.saturating_sub(3);
        let Some((end, body_start)) = blank_line(&self.buf, from) else {
            if self.buf.len() > self.limits.max_message_bytes {
                return Err(FrameError::TooLarge {
                    limit: self.limits.max_message_bytes,
                });
            }
            self.scanned = self.buf.len();
            return Ok(None);
        };
        let body_len = content_length(&self.buf[..end])?.ok_or(FrameError::MissingContentLength)?;
        if body_len > self.limits.max_body_bytes {
            return Err(FrameError::TooLarge {
                limit: self.limits.max_body_bytes,
            });
        }
        let total = body_start + body_len;
        if total > self.limits.max_message_bytes {
            return Err(FrameError::TooLarge {
                limit: self.limits.max_message_bytes,
            });
        }
        if self.buf.len() < total {
            self.scanned = end;
            return Ok(None);
        }
        self.scanned = 0;
        Ok(Some(Frame::Message(self.buf.split_to(total).freeze())))
    }
}

/// The first empty line at or after `from`, where the parser also ends the
/// header section: CRLF CRLF, or leniently a bare LF. Returns the end of the
/// header section and the start of the body.
fn blank_line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    for nl in memchr::memchr_iter(b'\n', &buf[from..]).map(|i| from + i) {
        let line_end = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
        match buf.get(nl + 1) {
            Some(b'\n') => return Some((line_end, nl + 2)),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some((line_end, nl + 3)),
            _ => {}
        }
    }
    None
}

/// Finds Content-Length (or its compact form `l`) in a header section.
fn content_length(head: &[u8]) -> Result<Option<usize>, FrameError> {
    // A line starting with white space continues the field before it (RFC
    // 3261 7.3.1): it is never a header of its own, but it may hold the
    // value of a folded Content-Length.
    let folded = |l: &&[u8]| l.first().is_some_and(|b| *b == b' ' || *b == b'\t');
    let mut found = None;
    let mut lines = head.split(|b| *b == b'\n').skip(1).peekable();
    while let Some(line) = lines.next() {
        if folded(&line) {
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let mut value = trim(&line[colon + 1..]);
            while let Some(more) = lines.next_if(folded) {
                let more = trim(more);
                if value.is_empty() {
                    value = more;
                } else if !more.is_empty() {
                    return Err(FrameError::BadContentLength);
                }
            }
            let value = std::str::from_utf8(value).map_err(|_| FrameError::BadContentLength)?;
            let n = parse_u64(value)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or(FrameError::BadContentLength)?;
            if found.is_some_and(|f| f != n) {
                return Err(FrameError::BadContentLength);
            }
            found = Some(n);
        }
    }
    Ok(found)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest
        } else {
            break;
        }
    }
    s
}

/// What one UDP datagram holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram {
    /// A candidate SIP message: parse it.
    Sip,
    /// CRLF keep-alives (or nothing): ignore.
    KeepAlive,
    /// Not SIP at all (STUN keep-alives start with 0x00 or 0x01): ignore.
    NotSip,
}

/// Classifies a datagram without parsing it.
pub fn classify_datagram(data: &[u8]) -> Datagram {
    if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
        Datagram::KeepAlive
    } else if data[0] < 0x20 {
        Datagram::NotSip
    } else {
        Datagram::Sip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 5\r\n\r\nhello";

    #[test]
    fn pipelined_and_split() {
        let mut f = StreamFramer::new(Limits::default());
        let mut two = MSG.to_vec();
        two.extend_from_slice(b"\r\n\r\n");
        two.extend_from_slice(MSG);
        f.extend(&two);
        assert_eq!(f.next_frame(), Ok(Some(Frame::Message(Bytes::from_static(MSG)))));
        assert_eq!(f.next_frame(), Ok(Some(Frame::Ping)));
        assert_eq!(f.next_frame(), Ok(Some(Frame::Message(Bytes::from_static(MSG)))));
        assert_eq!(f.next_frame(), Ok(None));
        for b in MSG {
            f.extend(&[*b]);
            if f.pending() < MSG.len() {
                assert_eq!(f.next_frame(), Ok(None));
            }
        }
        assert_eq!(f.next_frame(), Ok(Some(Frame::Message(Bytes::from_static(MSG)))));
    }

    #[test]
    fn errors() {
        let mut f = StreamFramer::new(Limits::default());
        f.extend(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FrameError::MissingContentLength));
        let mut f = StreamFramer::new(Limits::default());
        f.extend(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -3\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FrameError::BadContentLength));
        let limits = Limits {
            max_message_bytes: 64,
            ..Limits::default()
        };
        let mut f = StreamFramer::new(limits);
        f.extend(&[b'A'; 65]);
        assert_eq!(f.next_frame(), Err(FrameError::TooLarge { limit: 64 }));
    }

    #[test]
    fn datagrams() {
        assert_eq!(classify_datagram(b"\r\n\r\n"), Datagram::KeepAlive);
        assert_eq!(classify_datagram(&[0, 1, 0, 0]), Datagram::NotSip);
        assert_eq!(classify_datagram(MSG), Datagram::Sip);
    }
}

#[cfg(test)]
mod bare_lf_tests {
    use super::*;

    #[test]
    fn the_framer_ends_headers_where_the_parser_does() {
        // A bare-LF blank line ends the header section for both.
        let msg = b"OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\nl: 2\n\nhi";
        let mut f = StreamFramer::new(Limits::default());
        f.extend(msg);
        f.extend(b"OPTIONS");
        assert_eq!(f.next_frame(), Ok(Some(Frame::Message(Bytes::from_static(msg)))));
        assert_eq!(f.next_frame(), Ok(None));
        // CRLF inside a line, LF alone for the blank one.
        let mixed = b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\n";
        let mut f = StreamFramer::new(Limits::default());
        f.extend(mixed);
        assert_eq!(f.next_frame(), Ok(Some(Frame::Message(Bytes::from_static(mixed)))));
    }
}
