//! The dialog identifier (RFC 3261 12).

use serde::{Deserialize, Serialize};

/// RFC 3261 12: Call-ID plus both tags, from this side's point of view.
///
/// The same dialog has mirrored ids at its two ends: our local tag is the
/// peer's remote tag. For a request received in the dialog the local tag
/// is its To tag and the remote tag its From tag (12.2.2); for a response
/// to one of our requests, the other way round (12.1.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}
