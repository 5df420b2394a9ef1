//! The set of live sockets and connections, and [`Transmit`] over them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::debug;

use super::stream::{self, TcpSettings};
use super::tls::TlsContext;
use super::ws::WsSettings;
use super::{ConnectionId, Flow, Inbound, Transmit, Transport, TransportError};
use crate::flood::FloodGuard;
use crate::lock;

/// A live stream connection's write side.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) transport: Transport,
    pub(crate) remote: SocketAddr,
    pub(crate) writer: mpsc::Sender<Bytes>,
}

#[derive(Default)]
struct Flows {
    by_id: HashMap<ConnectionId, Connection>,
    by_remote: HashMap<(Transport, SocketAddr), ConnectionId>,
}

/// A connection in its handshake, counted against the limit until dropped.
pub(crate) struct Handshake(Arc<AtomicUsize>);

impl Drop for Handshake {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every socket and connection of one edge instance.
pub struct Transports {
    udp: Mutex<Vec<(SocketAddr, Arc<UdpSocket>)>>,
    stream_listeners: Mutex<Vec<(Transport, SocketAddr)>>,
    flows: Mutex<Flows>,
    next_flow: AtomicU64,
    advertise: Option<IpAddr>,
    pub(crate) tcp: TcpSettings,
    pub(crate) ws: WsSettings,
    tls: Arc<TlsContext>,
    handshaking: Arc<AtomicUsize>,
    /// Per-source limits on messages and connections.
    pub(crate) flood: Arc<FloodGuard>,
    /// Where messages read from connections we open go.
    inbound: OnceLock<Arc<dyn Inbound>>,
    /// Bounds UDP sends waiting for the socket to become writable.
    udp_waits: Arc<tokio::sync::Semaphore>,
    me: std::sync::Weak<Transports>,
}

impl Transports {
    pub fn new(
        advertise: Option<IpAddr>,
        tcp: TcpSettings,
        ws: WsSettings,
        tls: Arc<TlsContext>,
        flood: Arc<FloodGuard>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            udp: Mutex::new(Vec::new()),
            stream_listeners: Mutex::new(Vec::new()),
            flows: Mutex::new(Flows::default()),
            next_flow: AtomicU64::new(1),
            advertise,
            tcp,
            ws,
            tls,
            handshaking: Arc::new(AtomicUsize::new(0)),
            flood,
            inbound: OnceLock::new(),
            udp_waits: Arc::new(tokio::sync::Semaphore::new(4096)),
        })
    }

    /// Connections hold only a weak reference, so they never keep a stopped
    /// edge alive.
    pub(crate) fn weak_self(&self) -> std::sync::Weak<Transports> {
        self.me.clone()
    }

    pub fn set_inbound(&self, inbound: Arc<dyn Inbound>) {
        let _ = self.inbound.set(inbound);
    }

    pub(crate) fn inbound(&self) -> Option<Arc<dyn Inbound>> {
        self.inbound.get().cloned()
    }

    pub fn add_udp(&self, local: SocketAddr, socket: Arc<UdpSocket>) {
        lock(&self.udp).push((local, socket));
    }

    pub fn add_stream_listener(&self, transport: Transport, local: SocketAddr) {
        lock(&self.stream_listeners).push((transport, local));
    }

    pub(crate) fn tls(&self) -> Arc<TlsContext> {
        self.tls.clone()
    }

    /// `None` without a server certificate (no tls: or wss: listener).
    pub(crate) fn tls_acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.tls.acceptor()
    }

    pub(crate) fn handshake_timeout(&self) -> std::time::Duration {
        self.tls.handshake_timeout()
    }

    /// Room for one more connection, open or in its handshake; `None` when
    /// the limit is reached.
    pub(crate) fn begin_handshake(&self) -> Option<Handshake> {
        let pending = self.handshaking.fetch_add(1, Ordering::Relaxed);
        let guard = Handshake(self.handshaking.clone());
        (pending + self.connection_count() < self.tcp.max_connections).then_some(guard)
    }

    /// Registers a new connection and returns what feeds its writer.
    pub(crate) fn open(&self, transport: Transport, remote: SocketAddr) -> (ConnectionId, mpsc::Receiver<Bytes>) {
        let id = self.next_flow_id();
        let queue = if transport.is_websocket() {
            self.ws.write_queue
        } else {
            self.tcp.write_queue
        };
        let (writer, rx) = mpsc::channel(queue);
        self.register(
            id,
            Connection {
                transport,
                remote,
                writer,
            },
        );
        (id, rx)
    }

    pub(crate) fn connection(&self, id: ConnectionId) -> Option<Connection> {
        lock(&self.flows).by_id.get(&id).cloned()
    }

    pub fn next_flow_id(&self) -> ConnectionId {
        ConnectionId(self.next_flow.fetch_add(1, Ordering::Relaxed))
    }

    /// Number of live stream connections.
    pub fn connection_count(&self) -> usize {
        lock(&self.flows).by_id.len()
    }

    pub(crate) fn register(&self, id: ConnectionId, conn: Connection) {
        let mut flows = lock(&self.flows);
        flows.by_remote.insert((conn.transport, conn.remote), id);
        telemetry::metrics::sip_connection(conn.transport.via_token(), 1);
        flows.by_id.insert(id, conn);
    }

    pub(crate) fn unregister(&self, id: ConnectionId) {
        let mut flows = lock(&self.flows);
        if let Some(conn) = flows.by_id.remove(&id) {
            telemetry::metrics::sip_connection(conn.transport.via_token(), -1);
            let key = (conn.transport, conn.remote);
            if flows.by_remote.get(&key) == Some(&id) {
                flows.by_remote.remove(&key);
            }
        }
    }

    fn connection_for(&self, target: &Flow) -> Option<Connection> {
        let flows = lock(&self.flows);
        target
            .connection
            .and_then(|id| flows.by_id.get(&id))
            .filter(|c| c.transport == target.transport)
            .or_else(|| {
                flows
                    .by_remote
                    .get(&(target.transport, target.remote))
                    .and_then(|id| flows.by_id.get(id))
            })
            .cloned()
    }

    /// The UDP socket to send from: the one bound to `local` when given
    /// (and still there), else the first of the remote's address family.
    fn udp_socket_for(&self, remote: &SocketAddr, local: Option<SocketAddr>) -> Option<Arc<UdpSocket>> {
        let sockets = lock(&self.udp);
        local
            .and_then(|l| sockets.iter().find(|(a, _)| *a == l))
            .or_else(|| sockets.iter().find(|(a, _)| a.is_ipv4() == remote.is_ipv4()))
            .map(|(_, s)| s.clone())
    }

    fn listen_port(&self, transport: Transport, v4: bool) -> Option<SocketAddr> {
        match transport {
            Transport::Udp => lock(&self.udp).iter().map(|(a, _)| *a).find(|a| a.is_ipv4() == v4),
            stream => lock(&self.stream_listeners)
                .iter()
                .find(|(t, a)| *t == stream && a.is_ipv4() == v4)
                .map(|(_, a)| *a),
        }
    }
}

impl Transmit for Transports {
    fn transmit(&self, target: &Flow, data: Bytes) -> Result<(), TransportError> {
        match target.transport {
            Transport::Udp => {
                let socket = self
                    .udp_socket_for(&target.remote, target.local)
                    .ok_or(TransportError::NoSocket {
                        transport: target.transport,
                        remote: target.remote,
                    })?;
                match socket.try_send_to(&data, target.remote) {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        // Not writable right now (a full buffer, or tokio has
                        // not seen the socket writable yet): wait for it off
                        // this task, with a bounded number of such waits;
                        // past that the packet is dropped, as UDP may, and
                        // the transaction layer retransmits.
                        let Ok(permit) = self.udp_waits.clone().try_acquire_owned() else {
                            debug!(remote = %target.remote, "UDP send backlog full: packet dropped");
                            telemetry::metrics::sip_dropped(telemetry::metrics::Dropped::SendBacklog);
                            return Err(TransportError::QueueFull { remote: target.remote });
                        };
                        let remote = target.remote;
                        tokio::spawn(async move {
                            if let Err(e) = socket.send_to(&data, remote).await {
                                debug!(%remote, error = %e, "UDP send failed");
                            }
                            drop(permit);
                        });
                        Ok(())
                    }
                    Err(e) => {
                        debug!(remote = %target.remote, error = %e, "UDP send failed");
                        Err(TransportError::Closed { remote: target.remote })
                    }
                }
            }
            stream => {
                let conn = match self.connection_for(target) {
                    Some(c) => c,
                    None => stream::connect(self, stream, target.remote)?,
                };
                conn.writer.try_send(data).map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => TransportError::QueueFull { remote: target.remote },
                    mpsc::error::TrySendError::Closed(_) => TransportError::Closed { remote: target.remote },
                })
            }
        }
    }

    fn flow_is_open(&self, target: &Flow) -> bool {
        let Some(id) = target.connection else { return true };
        lock(&self.flows)
            .by_id
            .get(&id)
            .is_some_and(|c| c.transport == target.transport)
    }

    fn sent_by(&self, target: &Flow) -> SocketAddr {
        let v4 = target.remote.is_ipv4();
        let listen = self
            .listen_port(target.transport, v4)
            .or_else(|| self.listen_port(target.transport, !v4));
        let port = listen.map_or(target.transport.default_port(), |a| a.port());
        let ip = self
            .advertise
            .or_else(|| listen.map(|a| a.ip()).filter(|ip| !ip.is_unspecified()))
            .or_else(|| route_source(target.remote))
            .unwrap_or(target.remote.ip());
        SocketAddr::new(ip, port)
    }
}

/// The local address the kernel would use to reach `remote` (no packet is
/// sent: connecting a UDP socket only picks a route).
fn route_source(remote: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if remote.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let s = StdUdpSocket::bind(any).ok()?;
    s.connect(remote).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}
