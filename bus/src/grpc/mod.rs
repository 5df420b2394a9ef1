//! The gRPC side of the contracts: a server adapter that serves a trait
//! implementation (checking what another process sent, as the edge checks
//! what the network sends) and a client adapter that implements the trait
//! over a channel, for each contract of the edge. Services keep the same
//! pair for their own contracts.

mod edge;
mod handler;
pub mod tls;

use std::time::Duration;

use tonic::Status;
use tonic::transport::{Channel, Endpoint};

pub use edge::{EdgeService, RemoteEdge};
pub use handler::{HandlerService, RemoteHandler};

/// `http://host:port` (or `https://`): the forms a replica address takes.
/// Whether the bus uses TLS is `[grpc.tls]`'s business, not the address's.
pub fn check_address(address: &str) -> Result<(), String> {
    let endpoint = Endpoint::from_shared(address.to_owned()).map_err(|e| e.to_string())?;
    let uri = endpoint.uri();
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) {
        return Err("expected http://host:port".to_owned());
    }
    Ok(())
}

/// A channel to another sipbus process at `address` that connects on first
/// use and reconnects by itself: a replica that is down at start is a
/// failure of calls, not of the process. TLS when `[grpc.tls]` is set.
pub fn channel(address: &str, connect_timeout: Duration) -> Result<Channel, String> {
    check_address(address)?;
    let endpoint = match tls::installed() {
        Some(tls) => secure(address, tls)?,
        // An https address without [grpc.tls]: the system roots.
        None => module_endpoint(address)?,
    };
    Ok(endpoint
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .connect_lazy())
}

/// A channel to an extension module: TLS when its address says `https://`
/// (with `[grpc.tls]`'s CA and certificate when set, the system roots
/// otherwise), plain for `http://`. Modules are not bus members.
pub fn module_channel(address: &str, connect_timeout: Duration) -> Result<Channel, String> {
    Ok(module_endpoint(address)?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .connect_lazy())
}

/// The endpoint for an extension module's address (see [`module_channel`]).
pub fn module_endpoint(address: &str) -> Result<Endpoint, String> {
    check_address(address)?;
    let endpoint = Endpoint::from_shared(address.to_owned()).map_err(|e| e.to_string())?;
    if endpoint.uri().scheme_str() != Some("https") {
        return Ok(endpoint);
    }
    let host = endpoint.uri().host().unwrap_or_default().to_owned();
    let config = match tls::installed() {
        Some(tls) => tls.client_for(&host),
        None => tonic::transport::ClientTlsConfig::new().with_native_roots(),
    };
    endpoint.tls_config(config).map_err(|e| e.to_string())
}

/// `address` with the https scheme and the bus's client TLS settings.
fn secure(address: &str, tls: &tls::GrpcTls) -> Result<Endpoint, String> {
    let rest = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
        .unwrap_or(address);
    let endpoint = Endpoint::from_shared(format!("https://{rest}")).map_err(|e| e.to_string())?;
    let host = endpoint.uri().host().unwrap_or_default().to_owned();
    endpoint.tls_config(tls.client_for(&host)).map_err(|e| e.to_string())
}

/// tonic reports a connection it could not open as Unavailable "tcp
/// connect error" with the transport error as source: only then did the
/// request certainly not reach the server. Any other failure, even
/// Unavailable from the service or a broken connection, may come after the
/// request was applied.
pub fn never_arrived(status: &Status) -> bool {
    status.code() == tonic::Code::Unavailable
        && ((status.message() == "tcp connect error" && std::error::Error::source(status).is_some())
            || status.message() == DRAINING
            || status.message() == STORE_DOWN)
}

/// What a draining replica answers instead of handling a request.
pub const DRAINING: &str = "sipbus replica draining";

/// What a replica that cannot reach its store answers instead of handling
/// a request: another replica may (a partition cuts one replica off, not
/// every one).
pub const STORE_DOWN: &str = "sipbus replica cannot reach its store";
