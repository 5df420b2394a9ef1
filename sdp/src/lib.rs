//! sipbus's own SDP model (RFC 8866, formerly RFC 4566).
//!
//! - **Lossless.** Every line is kept in order with its text as received:
//!   unknown lines and attributes, every `m=` section, the line endings.
//!   Serialising an untouched description gives back the input.
//! - **Typed on demand.** `o=`, `c=`, `m=`, `a=rtpmap`, `a=fmtp`, the
//!   direction attributes and `a=ptime` are read when asked for.
//! - **Bounded, never panics.** Sizes and counts are limited
//!   ([`Limits`]); any input gives a value or a [`ParseError`] naming the
//!   line.
//!
//! Why not sdp-rs: see `DESIGN.md` ("Decisions already taken").

#![forbid(unsafe_code)]

mod attr;
mod error;
mod model;
pub mod negotiate;

pub use attr::{Direction, Fmtp, Rtpmap};
pub use error::ParseError;
pub use model::{Connection, Limits, Line, Media, MediaLine, Origin, Sdp};
