//! One publication (RFC 3903 4.1): the state one publisher keeps for a
//! resource under an entity tag.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// The entity tag it holds now; a new one after every success.
    pub etag: String,
    pub content_type: String,
    /// Event state bodies are text (XML or RFC 3842); a body that is not
    /// UTF-8 is refused before it gets here.
    pub body: String,
    /// `sip:user@domain` of the authenticated publisher; empty when
    /// PUBLISH is not authenticated or for state set through the API.
    pub publisher: String,
    /// When it runs out; `None` for state set through the API, which stays
    /// until replaced or removed.
    pub expires_at_ms: Option<u64>,
    /// Order of creation within the resource: composition and "newest
    /// wins" go by it.
    pub seq: u64,
}

impl Publication {
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|e| e > now_ms)
    }
}
