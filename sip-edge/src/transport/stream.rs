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
        let Some(handshake) = transports.begin_handshake() else {
            warn!(%remote, "too many {transport} connections: refused");
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(accept(stream, remote, local, transport, transports.clone(), handshake));
    }
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
    handshake: Handshake,
) {
    let Some(inbound) = transports.inbound() else { return };
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
            (Transport::Tcp, _) => Ok(Up::Framed(stream)),
            (Transport::Tls, Some(tls)) => tls
                .accept(stream)
                .await
                .map(|s| Up::Tls(Box::new(s)))
                .map_err(|e| format!("TLS handshake failed: {e}")),
            (Transport::Ws, _) => ws::accept(stream, &transports.ws)
                .await
                .map(|s| Up::WebSocket(ws::Accepted::Plain(Box::new(s))))
                .map_err(|e| format!("WebSocket handshake failed: {e}")),
            (Transport::Wss, Some(tls)) => {
                let s = tls
                    .accept(stream)
                    .await
                    .map_err(|e| format!("TLS handshake failed: {e}"))?;
                ws::accept(s, &transports.ws)
                    .await
                    .map(|s| Up::WebSocket(ws::Accepted::Secure(Box::new(s))))
                    .map_err(|e| format!("WebSocket handshake failed: {e}"))
            }
            _ => Err("no TLS configuration".to_owned()),
        }
    };
    let up = match timeout(limit, up).await {
        Ok(r) => r,
        Err(_) => Err(format!("{transport} handshake timed out")),
    };
    drop(handshake);
    let up = match up {
        Ok(up) => up,
        Err(reason) => return info!(%remote, %transport, reason, "connection refused"),
    };
    let (id, outgoing) = transports.open(transport, remote);
    let conn = Opened {
        transport,
        id,
        remote,
        local,
        outgoing,
        settings: transports.tcp.clone(),
        registry: transports.weak_self(),
    };
    match up {
        Up::Framed(s) => run(s, conn, inbound).await,
        Up::Tls(s) => run(*s, conn, inbound).await,
        Up::WebSocket(s) => ws::run(s, conn, &transports, inbound).await,
    }
}

/// A registered connection: who it is and what feeds its writer.
pub(crate) struct Opened {
    pub(crate) transport: Transport,
    pub(crate) id: ConnectionId,
    pub(crate) remote: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) outgoing: mpsc::Receiver<Bytes>,
    pub(crate) settings: TcpSettings,
    pub(crate) registry: std::sync::Weak<Transports>,
}

impl Opened {
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
        Transport::Tls => Some(transports.tls().ok_or(TransportError::NoSocket { transport, remote })?),
        _ => None,
    };
    let (id, outgoing) = transports.open(transport, remote);
    let conn = transports.connection(id).ok_or(TransportError::Closed { remote })?;
    let settings = transports.tcp.clone();
    let limit = transports.handshake_timeout();
    let registry = transports.weak_self();
    tokio::spawn(async move {
        let gone = |why: &str, e: &dyn std::fmt::Display| {
            debug!(%remote, %transport, error = %e, "{why}");
            if let Some(r) = registry.upgrade() {
                r.unregister(id);
            }
        };
        let stream = match timeout(settings.connect_timeout, TcpStream::connect(remote)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return gone("connect failed", &e),
            Err(_) => return gone("connect timed out", &"timeout"),
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(remote);
        let opened = |registry| Opened {
            transport,
            id,
            remote,
            local,
            outgoing,
            settings: settings.clone(),
            registry,
        };
        match tls {
            None => {
                drop(handshake);
                run(stream, opened(registry.clone()), inbound).await
            }
            Some(tls) => match timeout(limit, tls.connect(stream, remote)).await {
                Ok(Ok(s)) => {
                    drop(handshake);
                    run(s, opened(registry.clone()), inbound).await
                }
                Ok(Err(e)) => gone("TLS handshake failed", &e),
                Err(_) => gone("TLS handshake timed out", &"timeout"),
            },
        }
    });
    Ok(conn)
}

/// One framed connection (TCP or TLS) until it closes.
async fn run<S: AsyncRead + AsyncWrite + Send + 'static>(stream: S, conn: Opened, inbound: Arc<dyn Inbound>) {
    let source = conn.source();
    let Opened {
        transport,
        id,
        remote,
        mut outgoing,
        settings,
        registry,
        ..
    } = conn;
    debug!(flow = %id, %remote, %transport, "connection up");
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (pong_tx, mut pong_rx) = mpsc::channel::<()>(4);
    let write_task = tokio::spawn(async move {
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
    });

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
                Ok(0) => break "closed by peer",
                Ok(n) => n,
                Err(_) => break "read error",
            },
            _ = sleep_until(deadline) => {
                break if partial_since.is_some_and(|t| t + settings.incomplete_message_timeout <= Instant::now()) {
                    "incomplete message timed out"
                } else {
                    "idle"
                };
            }
        };
        last_activity = Instant::now();
        framer.extend(&buf[..n]);
        let failure = loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(data))) => inbound.on_message(data, source.clone()),
                Ok(Some(Frame::Ping)) => {
                    let _ = pong_tx.try_send(());
                }
                Ok(Some(Frame::Pong)) => {}
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        if let Some(e) = failure {
            warn!(flow = %id, %remote, error = %e, "framing lost: closing connection");
            break "framing error";
        }
        partial_since = match (framer.pending(), partial_since) {
            (0, _) => None,
            (_, Some(t)) => Some(t),
            (_, None) => Some(last_activity),
        };
    };
    info!(flow = %id, %remote, %transport, reason, "connection closed");
    if let Some(r) = registry.upgrade() {
        r.unregister(id);
    }
    write_task.abort();
}
