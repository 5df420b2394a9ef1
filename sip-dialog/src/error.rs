//! Why a message could not create, join or advance a dialog, and the
//! response that answers it (one table, here).

use sip_message::Refusal;

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
    /// The answer a UAS gives the offending request: 500 for a CSeq out of
    /// order (RFC 3261 12.2.2), 400 for a malformed request.
    /// `NotDialogCreating` and `OtherFork` come from responses, which nobody
    /// answers; they map to 500, and a B2BUA relaying the failure upstream
    /// picks its own status (502).
    pub fn refusal(&self) -> Refusal {
        match self {
            DialogError::MissingTag(header) => Refusal::bad_request(&format!("{header} without tag")),
            DialogError::MissingContact => Refusal::bad_request("no Contact URI"),
            DialogError::BadHeader(header) => Refusal::bad_request(&format!("invalid {header}")),
            DialogError::NotDialogCreating(_) => Refusal::server_error("not a dialog-creating response"),
            DialogError::OtherFork => Refusal::server_error("response from another fork"),
            DialogError::OutOfOrder { .. } => Refusal::out_of_order(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_reasons() {
        let e = DialogError::OutOfOrder { got: 3, last: 5 };
        assert_eq!(e.refusal().code(), 500);
        assert_eq!(e.refusal().reason(), "Server Internal Error (CSeq out of order)");
        assert_eq!(DialogError::MissingTag("From").refusal().code(), 400);
        assert_eq!(
            DialogError::MissingTag("From").refusal().reason(),
            "Bad Request (From without tag)"
        );
        assert_eq!(
            DialogError::MissingContact.refusal().reason(),
            "Bad Request (no Contact URI)"
        );
        assert_eq!(
            DialogError::BadHeader("CSeq").refusal().reason(),
            "Bad Request (invalid CSeq)"
        );
        assert_eq!(DialogError::OtherFork.refusal().code(), 500);
        assert_eq!(e.to_string(), "CSeq 3 is lower than the last remote CSeq 5");
    }
}
