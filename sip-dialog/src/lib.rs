//! The dialog layer of sipbus (RFC 3261 section 12): what one side of a
//! dialog remembers (Call-ID, tags, URIs, sequence numbers, remote target,
//! route set, state), how a dialog is created on either side (12.1), how
//! the requests inside it are built and routed (12.2.1.1) and how the
//! requests received in it are checked (12.2.2).
//!
//! It sits between the application (session-svc) and the transaction layer
//! (sip-edge) and knows nothing of either: it reads and builds
//! [`sip_message::Message`]s and leaves Via, Contact, bodies and sending to
//! its caller. A [`Dialog`] is plain data (serde), so any replica can load
//! one from the store, change it and write it back.
//!
//! ```
//! use sip_dialog::{Dialog, DialogState};
//! use sip_message::{Known, Message, Method};
//!
//! let mut invite = Message::request(Method::Invite, "sip:bob@example.com");
//! invite.push_header(Known::From, "Alice <sip:alice@example.com>;tag=a1");
//! invite.push_header(Known::To, "Bob <sip:bob@example.com>");
//! invite.push_header(Known::CallId, "c1@example.com");
//! invite.push_header(Known::CSeq, "1 INVITE");
//! invite.push_header(Known::Contact, "<sip:alice@192.0.2.1>");
//!
//! let mut dialog = Dialog::uas(&invite, "b1").unwrap();
//! dialog.confirm();
//! assert_eq!(dialog.state(), DialogState::Confirmed);
//! let bye = dialog.request(Method::Bye);
//! assert_eq!(bye.request_uri(), Some("sip:alice@192.0.2.1"));
//! assert_eq!(bye.known_header(Known::To), Some("Alice <sip:alice@example.com>;tag=a1"));
//! ```

#![forbid(unsafe_code)]

mod dialog;
mod error;
mod header;
mod id;
mod receive;
mod request;
mod state;
mod uac;
mod uas;

pub use dialog::Dialog;
pub use error::DialogError;
pub use header::{first_contact, without_tag};
pub use id::DialogId;
pub use state::DialogState;

#[cfg(test)]
mod fixtures;
