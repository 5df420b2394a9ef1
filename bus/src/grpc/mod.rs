//! The gRPC side of the contracts: a server adapter that serves a trait
//! implementation (checking what another process sent, as the edge checks
//! what the network sends) and a client adapter that implements the trait
//! over a channel, for each contract of the edge. Services keep the same
//! pair for their own contracts.

mod edge;
mod handler;

use std::time::Duration;

use tonic::Status;
use tonic::transport::{Channel, Endpoint};

pub use edge::{EdgeService, RemoteEdge};
pub use handler::{HandlerService, RemoteHandler};

/// `http://host:port`: the only form a replica address takes.
pub fn check_address(address: &str) -> Result<(), String> {
    let endpoint = Endpoint::from_shared(address.to_owned()).map_err(|e| e.to_string())?;
    let uri = endpoint.uri();
    // This build speaks gRPC without TLS: an https address would fail at
    // every call.
    if uri.scheme_str() != Some("http") || uri.host().is_none_or(str::is_empty) {
        return Err("expected http://host:port or dns://name:port".to_owned());
    }
    Ok(())
}

/// A channel to `address` that connects on first use and reconnects by
/// itself: a replica that is down at start is a failure of calls, not of
/// the process.
pub fn channel(address: &str, connect_timeout: Duration) -> Result<Channel, String> {
    check_address(address)?;
    let endpoint = Endpoint::from_shared(address.to_owned()).map_err(|e| e.to_string())?;
    Ok(endpoint
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .connect_lazy())
}

/// tonic reports a connection it could not open as Unavailable "tcp
/// connect error" with the transport error as source: only then did the
/// request certainly not reach the server. Any other failure, even
/// Unavailable from the service or a broken connection, may come after the
/// request was applied.
pub fn never_arrived(status: &Status) -> bool {
    status.code() == tonic::Code::Unavailable
        && status.message() == "tcp connect error"
        && std::error::Error::source(status).is_some()
}
