//! The SIP message layer of sipbus: a lossless message model, a parser that
//! is strict where RFC 3261 is strict and lenient where it is lenient, typed
//! header access that borrows from the message, builders for the messages
//! the core generates, and framing for stream and datagram transports.
//!
//! It knows nothing of sockets, transactions or dialogs.
//!
//! ```
//! use bytes::Bytes;
//! use sip_message::Message;
//!
//! let raw = "OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n\
//! Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKhjhs8ass877\r\n\
//! Max-Forwards: 70\r\n\
//! To: <sip:carol@chicago.example.com>\r\n\
//! From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
//! Call-ID: a84b4c76e66710\r\n\
//! CSeq: 63104 OPTIONS\r\n\
//! Content-Length: 0\r\n\r\n";
//! let msg = Message::parse(Bytes::from_static(raw.as_bytes())).unwrap();
//! assert_eq!(msg.top_via().unwrap().branch(), Some("z9hG4bKhjhs8ass877"));
//! assert_eq!(msg.from_header().unwrap().tag(), Some("1928301774"));
//! assert_eq!(msg.to_bytes(), raw.as_bytes());
//! ```

#![forbid(unsafe_code)]

mod builder;
#[cfg(feature = "parse-counter")]
mod counter;
mod error;
pub mod framing;
mod limits;
mod message;
mod method;
mod name;
mod params;
mod parse;
mod refusal;
pub mod text;
pub mod typed;
pub mod uri;

pub use builder::{ResponseHead, ResponseTail};
#[cfg(feature = "parse-counter")]
pub use counter::parse_count;
pub use error::{LimitKind, ParseError, UriError};
pub use limits::Limits;
pub use message::{HeaderRef, Message};
pub use method::Method;
pub use name::{HeaderName, Known};
pub use params::{ParamIter, Params};
pub use refusal::{RETRY_AFTER_S, Refusal};
pub use uri::{Host, SipUri, TelUri, Uri};
