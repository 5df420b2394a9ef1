//! sdp-svc: offer/answer for session-svc (a B2BUA without media relay) and
//! the SDP handler extension point (`proto/sipbus/sdp/v1/sdp.proto`).
//!
//! One trait, built in or external: every handler implements the generated
//! [`SdpHandler`] trait. The built-in [`RtpHandler`] does so directly; an
//! external handler is reached through [`ExternalHandler`], which
//! implements the same trait by calling the handler over gRPC with a
//! timeout and a failure policy. [`Negotiator`] asks them stream by stream
//! and implements [`SdpNegotiator`], called in process or served over gRPC.
//!
//! Stateless: session-svc keeps what [`Negotiator`] returns (forwarded
//! offer, handler names, last description sent) and passes it back.
//!
//! [`SdpHandler`]: proto::sdp::v1::sdp_handler_server::SdpHandler
//! [`SdpNegotiator`]: proto::sdp::v1::sdp_negotiator_server::SdpNegotiator

#![forbid(unsafe_code)]

pub mod config;
mod external;
mod negotiator;
mod origin;
mod registry;
mod rtp;
mod section;

pub use config::{ConfigError, EndpointPolicy, ExternalHandlerConfig, OnFailure, SdpConfig};
pub use external::{ExternalHandler, FailurePolicy, HandlerFailed};
pub use negotiator::Negotiator;
pub use rtp::{RTP_HANDLER, RtpHandler};
