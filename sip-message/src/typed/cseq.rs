//! CSeq (RFC 3261 20.16).

use crate::error::ParseError;
use crate::method::Method;
use crate::text::{parse_u64, trim_ws};

/// Sequence number and method. The number is at most 2^31 - 1 (RFC 3261 8.1.1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

pub const MAX_CSEQ: u32 = (1 << 31) - 1;

impl CSeq {
    pub fn parse(s: &str) -> Result<CSeq, ParseError> {
        let s = trim_ws(s);
        let (num, method) = s.split_once([' ', '\t']).ok_or(ParseError::BadHeader {
            header: "CSeq",
            reason: "expected a number and a method",
        })?;
        let seq = match parse_u64(num) {
            Some(n) if n <= u64::from(MAX_CSEQ) => n as u32,
            _ => {
                return Err(ParseError::BadHeader {
                    header: "CSeq",
                    reason: "sequence number is not from 0 to 2^31-1",
                });
            }
        };
        let method = Method::parse(trim_ws(method)).ok_or(ParseError::BadHeader {
            header: "CSeq",
            reason: "method is not a token",
        })?;
        Ok(CSeq { seq, method })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(CSeq::parse("2147483647 INVITE").map(|c| c.seq), Ok(MAX_CSEQ));
        assert!(CSeq::parse("2147483648 INVITE").is_err());
        assert!(CSeq::parse("-1 INVITE").is_err());
        assert!(CSeq::parse("1").is_err());
        assert_eq!(
            CSeq::parse(" 8   NEWMETHOD ").map(|c| c.method.to_string()),
            Ok("NEWMETHOD".into())
        );
    }
}
