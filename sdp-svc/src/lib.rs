//! sdp-svc: offer/answer for session-svc (a B2BUA without media relay) and
//! the SDP handler extension point.
//!
//! - [`api`]: the contract as Rust values ([`Negotiate`], [`SdpClient`] in
//!   process or over gRPC, [`SdpService`] serving it).
//! - [`handlers`]: the extension point, [`SdpHandler`], one Rust trait on
//!   SDP values; the built-ins (one file each, one line in the list) and
//!   the adapter for external handlers over `sipbus.sdp.v1.SdpHandler`.
//! - [`Negotiator`]: asks the handlers stream by stream.
//!
//! Stateless: session-svc keeps what the negotiator returns (forwarded
//! offer, handler names, last description sent) and passes it back.

#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod handlers;
mod negotiator;
mod origin;
mod section;

pub use api::{Answer, Ended, Negotiate, Offer, Offered, Origin, SdpClient, SdpError, SdpService};
pub use config::{ConfigError, EndpointPolicy, SdpConfig};
pub use handlers::rtp::{RTP_HANDLER, RtpHandler};
pub use handlers::{Claim, HandlerError, SdpHandler, Stream, StreamCx};
pub use negotiator::Negotiator;
