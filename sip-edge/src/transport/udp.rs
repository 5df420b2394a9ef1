//! UDP: bind with the socket options a SIP server wants, and the receive
//! loops.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use sip_message::framing::{Datagram, classify_datagram};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use super::{Flow, Inbound, Transport};
use crate::flood::{Admit, FloodGuard};

/// Binds a UDP socket: IPv6 sockets are v6-only so `0.0.0.0` and `[::]` can
/// both be bound; buffers of `buffer_bytes` each way to ride out bursts.
pub fn bind(addr: SocketAddr, buffer_bytes: usize) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    // The kernel caps both at net.core.rmem_max / wmem_max; it reports
    // twice what it grants (its bookkeeping), hence the halving.
    let _ = socket.set_recv_buffer_size(buffer_bytes);
    let _ = socket.set_send_buffer_size(buffer_bytes);
    let granted = socket.recv_buffer_size().map(|b| b / 2).unwrap_or(0);
    if granted < buffer_bytes {
        warn!(
            %addr,
            asked = buffer_bytes,
            granted,
            "UDP receive buffer smaller than edge.udp_buffer_bytes: raise net.core.rmem_max (sysctl) to absorb bursts"
        );
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Receives datagrams until the socket fails; each SIP datagram goes to
/// `inbound` on this task (parsing is cheap and keeps order per socket).
/// A banned source's datagrams are dropped unread.
pub async fn serve(socket: Arc<UdpSocket>, local: SocketAddr, inbound: Arc<dyn Inbound>, flood: Arc<FloodGuard>) {
    // 64 KiB: the largest datagram; anything longer was truncated by the
    // kernel and will fail Content-Length checks.
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, remote) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => continue,
            Err(e) => {
                warn!(%local, error = %e, "UDP receive failed");
                continue;
            }
        };
        if let Admit::Banned(_) = flood.message(remote.ip()) {
            continue;
        }
        let data = &buf[..n];
        match classify_datagram(data) {
            Datagram::Sip => {
                let source = Flow {
                    transport: Transport::Udp,
                    remote,
                    local: Some(local),
                    connection: None,
                    edge: None,
                };
                inbound.on_message(Bytes::copy_from_slice(data), source);
            }
            Datagram::KeepAlive => {}
            Datagram::NotSip => debug!(%remote, len = n, "non-SIP datagram ignored"),
        }
    }
}
