//! Why a message could not create, join or advance a dialog, and the
//! response that answers it (one table, here).

/// What was wrong with a message given to a [`Dialog`](crate::Dialog).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    /// The header (From or To) has no `tag` parameter, or an empty one.
    #[error("{0} has no tag")]
    MissingTag(&'static str),
    /// No Contact URI, or Contact `*`: the peer gave no remote target.
    #[error("no Contact URI to use as the remote target")]
    MissingContact,
    /// The header is missing or cannot be parsed.
    #[error("missing or invalid {0}")]
    BadHeader(&'static str),
    /// A response that cannot establish a dialog (only 101-299 can, 12.1);
    /// 0 when the message was not a response at all.
    #[error("a {0} response does not establish a dialog")]
    NotDialogCreating(u16),
    /// A tagged response whose To tag is not the remote tag of this
    /// (already established) dialog: another fork answered (12.1.2, 13.2.2.4).
    #[error("response from another fork (different To tag)")]
    OtherFork,
    /// A request whose CSeq is lower than the last one the peer sent (12.2.2).
    #[error("CSeq {got} is lower than the last remote CSeq {last}")]
    OutOfOrder { got: u32, last: u32 },
}

impl DialogError {
    /// The status a UAS answers the offending request with: 500 for a CSeq
    /// out of order (RFC 3261 12.2.2), 400 for a malformed request.
    /// `NotDialogCreating` and `OtherFork` come from responses, which nobody
    /// answers; they map to 500, and a B2BUA relaying the failure upstream
    /// picks its own status (502).
    pub fn status(&self) -> u16 {
        match self {
            DialogError::MissingTag(_) | DialogError::MissingContact | DialogError::BadHeader(_) => 400,
            DialogError::NotDialogCreating(_) | DialogError::OtherFork | DialogError::OutOfOrder { .. } => 500,
        }
    }

    /// The reason phrase for [`DialogError::status`], with a short
    /// explanation in parentheses: "Server Internal Error (CSeq out of order)".
    pub fn reason(&self) -> String {
        let phrase = match self.status() {
            400 => "Bad Request",
            _ => "Server Internal Error",
        };
        let why = match self {
            DialogError::MissingTag(header) => format!("{header} without tag"),
            DialogError::MissingContact => "no Contact URI".to_owned(),
            DialogError::BadHeader(header) => format!("invalid {header}"),
            DialogError::NotDialogCreating(_) => "not a dialog-creating response".to_owned(),
            DialogError::OtherFork => "response from another fork".to_owned(),
            DialogError::OutOfOrder { .. } => "CSeq out of order".to_owned(),
        };
        format!("{phrase} ({why})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_reasons() {
        let e = DialogError::OutOfOrder { got: 3, last: 5 };
        assert_eq!(e.status(), 500);
        assert_eq!(e.reason(), "Server Internal Error (CSeq out of order)");
        assert_eq!(DialogError::MissingTag("From").status(), 400);
        assert_eq!(
            DialogError::MissingTag("From").reason(),
            "Bad Request (From without tag)"
        );
        assert_eq!(DialogError::MissingContact.reason(), "Bad Request (no Contact URI)");
        assert_eq!(DialogError::BadHeader("CSeq").reason(), "Bad Request (invalid CSeq)");
        assert_eq!(DialogError::OtherFork.status(), 500);
        assert_eq!(e.to_string(), "CSeq 3 is lower than the last remote CSeq 5");
    }
}
