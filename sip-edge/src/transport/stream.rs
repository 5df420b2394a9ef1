//! Stream transports: accepting and opening connections for TCP, TLS and
//! WebSocket, the handshakes (bounded by a timeout and a count), Content-
//! Length framing on TCP and TLS, RFC 5626 keep-alive pongs, and the
//! timeouts that keep a slow or silent peer from holding resources.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sip_message::Limits;
use sip_message::framing::{Frame, StreamFramer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{debug, info, warn};

use super::registry::{Connection, Handshake};
use super::{ConnectionId, Flow, Inbound, Transport, TransportError, Transports, ws};
use crate::flood::{self, Admit, FloodGuard};

/// Stream settings.
#[derive(Debug, Clone)]
pub struct TcpSettings {
    /// A connection with no traffic at all for this long is closed.
    pub idle_timeout: Duration,
    /// A message whose first byte arrived this long ago and is still
    /// incomplete closes the connection.
    pub incomplete_message_timeout: Duration,
    pub connect_timeout: Duration,
    /// Messages waiting to be written per connection.
    pub write_queue: usize,
    /// Connections, open and in their handshake, all stream transports.
    pub max_connections: usize,
    pub limits: Limits,
}

impl Default for TcpSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(7200),
            incomplete_message_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            write_queue: 256,
            max_connections: 10_000,
            limits: Limits::default(),
        }
    }
}

pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Accepts connections for `transport` (anything but UDP) until the
/// listener fails.
pub async fn serve(listener: TcpListener, local: SocketAddr, transport: Transport, transports: Arc<Transports>) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(r) => r,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(%local, error = %e, "{transport} accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Before the global limit: one source must not use it all up.
        let slot = match transports.flood.connection(remote.ip()) {
            Ok(slot) => slot,
            Err(e) => {
                debug!(%remote, reason = %e, "{transport} connection refused");
                continue;
            }
        };
        let Some(handshake) = transports.begin_handshake() else {
            warn!(%remote, "too many {transport} connections: refused");
            telemetry::metrics::sip_dropped(telemetry::metrics::Dropped::ConnectionLimit);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(accept(
            stream,
            remote,
            local,
            transport,
            transports.clone(),
            (handshake, slot),
        ));
    }
}

/// Why a connection ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    ByPeer,
    ReadError,
    Idle,
    IncompleteMessage,
    FramingLost,
    MessageTooLarge,
    /// Its source is banned for flooding.
    Flooding,
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Closed::ByPeer => "closed by peer",
            Closed::ReadError => "read error",
            Closed::Idle => "idle",
            Closed::IncompleteMessage => "incomplete message timed out",
            Closed::FramingLost => "framing error",
            Closed::MessageTooLarge => "message too large",
            Closed::Flooding => "source banned for flooding",
        })
    }
}

/// Why an accepted connection never came up.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error("WebSocket handshake failed: {0}")]
    WebSocket(tokio_tungstenite::tungstenite::Error),
    #[error("{0} handshake timed out")]
    TimedOut(Transport),
    #[error("{0}")]
    Flood(flood::Refused),
}

/// An accepted connection once its handshakes are done.
enum Up {
    Framed(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    WebSocket(ws::Accepted),
}

/// Brings an accepted connection up: the TLS and WebSocket handshakes
/// within the handshake timeout, then the connection's loop.
async fn accept(
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    transport: Transport,
    transports: Arc<Transports>,
    (handshake, slot): (Handshake, flood::Slot),
) {
    let Some(inbound) = transports.inbound() else { return };
    // A TLS handshake costs the server more than the client: few at once
    // per source.
    let tls_slot = match transport.is_secure() {
        true => match transports.flood.handshake(remote.ip()) {
            Ok(s) => Some(s),
            Err(e) => {
                let e = Refused::Flood(e);
                return debug!(%remote, %transport, reason = %e, "connection refused");
            }
        },
        false => None,
    };
    let limit = transports.handshake_timeout();
    let acceptor = match transport {
        Transport::Tls | Transport::Wss => match transports.tls_acceptor() {
            Some(a) => Some(a),
            None => return,
        },
        _ => None,
    };
    let up = async {
        match (transport, acceptor) {
            (Transport::Tls, Some(tls)) => tls
                .accept(stream)
                .await
                .map(|s| Up::Tls(Box::new(s)))
                .map_err(Refused::Tls),
            (Transport::Ws, _) => ws::accept(stream, &transports.ws)
                .await
                .map(|s| Up::WebSocket(ws::Accepted::Plain(Box::new(s))))
                .map_err(Refused::WebSocket),
            (Transport::Wss, Some(tls)) => {
                let s = tls.accept(stream).await.map_err(Refused::Tls)?;
                ws::accept(s, &transports.ws)
                    .await
                    .map(|s| Up::WebSocket(ws::Accepted::Secure(Box::new(s))))
                    .map_err(Refused::WebSocket)
            }
            // TCP, and (checked above) nothing else is left.
            _ => Ok(Up::Framed(stream)),
        }
    };
    let up = match timeout(limit, up).await {
        Ok(Ok(up)) => up,
        Ok(Err(e)) => {
            telemetry::metrics::sip_dropped(telemetry::metrics::Dropped::Handshake);
            return info!(%remote, %transport, reason = %e, "connection refused");
        }
        Err(_) => {
            telemetry::metrics::sip_dropped(telemetry::metrics::Dropped::Handshake);
            let e = Refused::TimedOut(transport);
            return info!(%remote, %transport, reason = %e, "connection refused");
        }
    };
    drop(tls_slot);
    // Registered before the handshake slot is given back, so the limit
    // counts it all along.
    let mut conn = Opened::register(&transports, transport, remote, local);
    conn.slot = Some(slot);
    drop(handshake);
    let ws_settings = transports.ws.clone();
    // Connections hold the edge only weakly: a stopped edge is not kept
    // alive by its peers.
    drop(transports);
    match up {
        Up::Framed(s) => run(s, conn, inbound).await,
        Up::Tls(s) => run(*s, conn, inbound).await,
        Up::WebSocket(s) => ws::run(s, conn, ws_settings, inbound).await,
    }
}

/// A registered connection: who it is and what feeds its writer. Dropping
/// it (however the connection's task ends, a panic included) takes the
/// connection out of the registry.
pub(crate) struct Opened {
    pub(crate) transport: Transport,
    pub(crate) id: ConnectionId,
    pub(crate) remote: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) outgoing: mpsc::Receiver<Bytes>,
    pub(crate) settings: TcpSettings,
    pub(crate) flood: Arc<FloodGuard>,
    /// Counts an accepted connection against its source while it is open.
    slot: Option<flood::Slot>,
    registry: std::sync::Weak<Transports>,
}

impl Drop for Opened {
    fn drop(&mut self) {
        if let Some(r) = self.registry.upgrade() {
            r.unregister(self.id);
        }
    }
}

/// A task that ends with its owner: a connection's writer.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Opened {
    fn register(transports: &Transports, transport: Transport, remote: SocketAddr, local: SocketAddr) -> Opened {
        let (id, outgoing) = transports.open(transport, remote);
        Opened {
            transport,
            id,
            remote,
            local,
            outgoing,
            settings: transports.tcp.clone(),
            flood: transports.flood.clone(),
            slot: None,
            registry: transports.weak_self(),
        }
    }

    /// The writer's queue, taken for the writer task.
    pub(crate) fn take_outgoing(&mut self) -> mpsc::Receiver<Bytes> {
        std::mem::replace(&mut self.outgoing, mpsc::channel(1).1)
    }

    pub(crate) fn source(&self) -> Flow {
        Flow {
            transport: self.transport,
            remote: self.remote,
            local: Some(self.local),
            connection: Some(self.id),
            edge: None,
        }
    }
}

/// Opens a connection to `remote` for a message that has none; the data
/// queues until the connection is up. WebSocket peers connect to us, never
/// the other way round.
pub(crate) fn connect(
    transports: &Transports,
    transport: Transport,
    remote: SocketAddr,
) -> Result<Connection, TransportError> {
    if transport.is_websocket() || transport == Transport::Udp {
        return Err(TransportError::Closed { remote });
    }
    let Some(handshake) = transports.begin_handshake() else {
        return Err(TransportError::TooManyConnections);
    };
    let Some(inbound) = transports.inbound() else {
        return Err(TransportError::Closed { remote });
    };
    let tls = match transport {
        Transport::Tls => Some(transports.tls()),
        _ => None,
    };
    // The connection counts against the limit from here on; the
    // handshake slot was only for the check.
    drop(handshake);
    let (id, outgoing) = transports.open(transport, remote);
    let conn = transports.connection(id).ok_or(TransportError::Closed { remote })?;
    let mut opened = Opened {
        transport,
        id,
        remote,
        // Known once connected.
        local: remote,
        outgoing,
        settings: transports.tcp.clone(),
        flood: transports.flood.clone(),
        slot: None,
        registry: transports.weak_self(),
    };
    let limit = transports.handshake_timeout();
    tokio::spawn(async move {
        // Any return below drops `opened`, which unregisters.
        let connect_timeout = opened.settings.connect_timeout;
        let stream = match timeout(connect_timeout, TcpStream::connect(remote)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return debug!(%remote, %transport, error = %e, "connect failed"),
            Err(_) => return debug!(%remote, %transport, "connect timed out"),
        };
        let _ = stream.set_nodelay(true);
        opened.local = stream.local_addr().unwrap_or(remote);
        match tls {
            None => run(stream, opened, inbound).await,
            Some(tls) => match timeout(limit, tls.connect(stream, remote)).await {
                Ok(Ok(s)) => run(s, opened, inbound).await,
                Ok(Err(e)) => debug!(%remote, %transport, error = %e, "TLS handshake failed"),
                Err(_) => debug!(%remote, %transport, "TLS handshake timed out"),
            },
        }
    });
    Ok(conn)
}

/// One framed connection (TCP or TLS) until it closes.
async fn run<S: AsyncRead + AsyncWrite + Send + 'static>(stream: S, mut conn: Opened, inbound: Arc<dyn Inbound>) {
    let source = conn.source();
    let (transport, id, remote) = (conn.transport, conn.id, conn.remote);
    let settings = conn.settings.clone();
    let flood = conn.flood.clone();
    let mut outgoing = conn.take_outgoing();
    debug!(flow = %id, %remote, %transport, "connection up");
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (pong_tx, mut pong_rx) = mpsc::channel::<()>(4);
    let mut writer_task = AbortOnDrop(tokio::spawn(async move {
        loop {
            tokio::select! {
                data = outgoing.recv() => match data {
                    Some(data) => if writer.write_all(&data).await.is_err() { break },
                    None => break,
                },
                Some(()) = pong_rx.recv() => if writer.write_all(b"\r\n").await.is_err() { break },
            }
        }
        let _ = writer.shutdown().await;
    }));

    let mut framer = StreamFramer::new(settings.limits.clone());
    let mut buf = vec![0u8; 16 * 1024];
    let mut last_activity = Instant::now();
    let mut partial_since: Option<Instant> = None;
    let reason = loop {
        let idle_deadline = last_activity + settings.idle_timeout;
        let deadline = match partial_since {
            Some(t) => idle_deadline.min(t + settings.incomplete_message_timeout),
            None => idle_deadline,
        };
        let n = tokio::select! {
            r = reader.read(&mut buf) => match r {
                Ok(0) => break Closed::ByPeer,
                Ok(n) => n,
                Err(_) => break Closed::ReadError,
            },
            _ = sleep_until(deadline) => {
                break if partial_since.is_some_and(|t| t + settings.incomplete_message_timeout <= Instant::now()) {
                    Closed::IncompleteMessage
                } else {
                    Closed::Idle
                };
            }
        };
        last_activity = Instant::now();
        framer.extend(&buf[..n]);
        let failure = loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(data))) => match flood.message(remote.ip()) {
                    Admit::Yes => inbound.on_message(data, source.clone()),
                    Admit::Banned(left) => {
                        inbound.refuse(data, source.clone(), left);
                        break Some(Stop::Flooding);
                    }
                },
                Ok(Some(Frame::Ping)) => {
                    let _ = pong_tx.try_send(());
                }
                Ok(Some(Frame::Pong)) => {}
                Ok(None) => break None,
                Err(e) => break Some(Stop::Framing(e)),
            }
        };
        match failure {
            Some(Stop::Framing(e)) => {
                warn!(flow = %id, %remote, error = %e, "framing lost: closing connection");
                break Closed::FramingLost;
            }
            Some(Stop::Flooding) => break Closed::Flooding,
            None => {}
        }
        partial_since = match (framer.pending(), partial_since) {
            (0, _) => None,
            (_, Some(t)) => Some(t),
            (_, None) => Some(last_activity),
        };
    };
    info!(flow = %id, %remote, %transport, %reason, "connection closed");
    if reason == Closed::Flooding {
        // Unregistered, the writer drains what is queued (the 503) and
        // ends; it gets a moment to.
        drop(conn);
        let _ = timeout(Duration::from_secs(1), &mut writer_task.0).await;
    }
    // Dropping `conn` and the writer unregisters and stops writing.
}

/// Why a connection's read loop stops reading.
enum Stop {
    Framing(sip_message::framing::FrameError),
    Flooding,
}
