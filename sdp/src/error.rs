//! Why an SDP body was refused.

/// A refused SDP body; `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("SDP is not valid UTF-8")]
    NotUtf8,
    #[error("SDP is empty")]
    Empty,
    #[error("line {line}: expected `<letter>=<value>`")]
    BadLine { line: usize },
    #[error("the first line must be v=0")]
    NoVersion,
    #[error("line {line}: invalid m= line ({reason})")]
    BadMedia { line: usize, reason: &'static str },
    #[error("a media section must start with its m= line and hold only one")]
    NotOneSection,
    #[error("more than {limit} {what}")]
    Limit { what: &'static str, limit: usize },
}
