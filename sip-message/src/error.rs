//! Parse errors. Each one names what was wrong and where, never carries a
//! copy of the input, and knows which SIP response it calls for.

/// Why a message, a header value or a URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("the message header section is not valid UTF-8 (byte {offset})")]
    NotUtf8 { offset: usize },
    #[error("no blank line ends the header section")]
    Incomplete,
    #[error("empty message")]
    Empty,
    #[error("malformed start line: {0}")]
    StartLine(&'static str),
    #[error("unsupported SIP version (only SIP/2.0 is)")]
    Version,
    #[error("status code is not three digits between 100 and 699")]
    StatusCode,
    #[error("header line {line} has no colon")]
    MissingColon { line: usize },
    #[error("header line {line} has an invalid header name")]
    BadHeaderName { line: usize },
    #[error("line {line} holds a CR that does not end it")]
    BareCr { line: usize },
    #[error("invalid {header} header: {reason}")]
    BadHeader { header: &'static str, reason: &'static str },
    #[error("missing mandatory header {0}")]
    MissingHeader(&'static str),
    #[error("more than one {0} header with different values")]
    Conflicting(&'static str),
    #[error("Content-Length {declared} is larger than the {actual} body bytes received")]
    BodyTooShort { declared: usize, actual: usize },
    #[error("Content-Length is required on stream transports")]
    MissingContentLength,
    #[error("CSeq method {cseq} does not match request method {method}")]
    CSeqMismatch { cseq: Box<str>, method: Box<str> },
    #[error("invalid URI: {0}")]
    Uri(#[from] UriError),
    #[error("{what} exceeds the limit of {limit}")]
    Limit { what: LimitKind, limit: usize },
}

/// Which configured limit a message exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    MessageSize,
    HeaderCount,
    HeaderLine,
    ViaCount,
    UriLength,
    BodySize,
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitKind::MessageSize => "message size",
            LimitKind::HeaderCount => "header count",
            LimitKind::HeaderLine => "header line length",
            LimitKind::ViaCount => "Via count",
            LimitKind::UriLength => "URI length",
            LimitKind::BodySize => "body size",
        })
    }
}

/// Why a URI was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    #[error("no scheme")]
    NoScheme,
    #[error("empty host")]
    EmptyHost,
    #[error("invalid host")]
    BadHost,
    #[error("port is not a number from 0 to 65535")]
    BadPort,
    #[error("white space or control character inside the URI")]
    Whitespace,
    #[error("URI enclosed in angle brackets where a bare URI is required")]
    Bracketed,
    #[error("header components are not allowed here")]
    HeadersNotAllowed,
    #[error("invalid character")]
    BadChar,
}

impl ParseError {
    /// The response status a UAS sends for a request that fails this way
    /// (RFC 3261 8.2 and 21): 505 for the version, 513 for size, 416 is
    /// decided later from the scheme, everything else is 400.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::Version => 505,
            ParseError::Limit { .. } => 513,
            _ => 400,
        }
    }

    /// A reason phrase a person can act on, short enough for a status line.
    pub fn reason_phrase(&self) -> String {
        match self {
            ParseError::Version => "SIP Version Not Supported".to_owned(),
            ParseError::Limit { .. } => format!("Message Too Large ({self})"),
            other => format!("Bad Request ({other})"),
        }
    }
}
