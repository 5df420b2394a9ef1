//! Bounds on everything a peer controls. Every size and count read from the
//! network is checked against one of these before it is trusted.

/// Size and count limits applied by the parser and the framer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize), serde(default))]
pub struct Limits {
    /// Whole message (start line + headers + body), in bytes.
    pub max_message_bytes: usize,
    /// Number of header fields (after unfolding, before comma splitting).
    pub max_headers: usize,
    /// One header field, including folded continuation lines, in bytes.
    pub max_header_line: usize,
    /// Number of Via values across all Via header fields.
    pub max_vias: usize,
    /// Length of any URI the parser validates (Request-URI, From, To, Contact...).
    pub max_uri_len: usize,
    /// Body size in bytes.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // Largest UDP payload over IPv4; streams use the same bound so a
            // message that works on TCP is never refused on UDP for size alone.
            max_message_bytes: 65_507,
            max_headers: 128,
            max_header_line: 8_192,
            // A request crosses at most Max-Forwards (70) hops.
            max_vias: 70,
            max_uri_len: 2_048,
            max_body_bytes: 60_000,
        }
    }
}
