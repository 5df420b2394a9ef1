//! TCP: accepting and opening connections, framing with Content-Length,
//! RFC 5626 keep-alive pongs, and the timeouts that keep a slow or silent
//! peer from holding resources.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sip_message::Limits;
use sip_message::framing::{Frame, StreamFramer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{debug, info, warn};

use super::registry::Connection;
use super::{ConnectionId, Flow, Inbound, Transport, TransportError, Transports};

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

/// Accepts connections until the listener fails.
pub async fn serve(listener: TcpListener, local: SocketAddr, transports: Arc<Transports>) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(r) => r,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(%local, error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if transports.connection_count() >= transports.tcp.max_connections {
            warn!(%remote, "too many TCP connections: refused");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        start(stream, remote, local, transports.clone());
    }
}

/// Opens a connection to `remote` for a message that has none; the data
/// queues until the connection is up.
pub(crate) fn connect(transports: &Transports, remote: SocketAddr) -> Result<Connection, TransportError> {
    if transports.connection_count() >= transports.tcp.max_connections {
        return Err(TransportError::TooManyConnections);
    }
    let Some(inbound) = transports.inbound() else {
        return Err(TransportError::Closed { remote });
    };
    let id = transports.next_flow_id();
    let (writer, rx) = mpsc::channel(transports.tcp.write_queue);
    let conn = Connection { remote, writer };
    transports.register(id, conn.clone());
    let settings = transports.tcp.clone();
    let registry = transports.weak_self();
    tokio::spawn(async move {
        let stream = match timeout(settings.connect_timeout, TcpStream::connect(remote)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                debug!(%remote, error = %e, "TCP connect failed");
                if let Some(r) = registry.upgrade() {
                    r.unregister(id);
                }
                return;
            }
            Err(_) => {
                debug!(%remote, "TCP connect timed out");
                if let Some(r) = registry.upgrade() {
                    r.unregister(id);
                }
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(remote);
        run(stream, id, remote, local, rx, settings, inbound, registry).await;
    });
    Ok(conn)
}

fn start(stream: TcpStream, remote: SocketAddr, local: SocketAddr, transports: Arc<Transports>) {
    let Some(inbound) = transports.inbound() else {
        return;
    };
    let id = transports.next_flow_id();
    let (writer, rx) = mpsc::channel(transports.tcp.write_queue);
    transports.register(id, Connection { remote, writer });
    let settings = transports.tcp.clone();
    let registry = Arc::downgrade(&transports);
    tokio::spawn(run(stream, id, remote, local, rx, settings, inbound, registry));
}

#[allow(clippy::too_many_arguments)]
async fn run(
    stream: TcpStream,
    id: ConnectionId,
    remote: SocketAddr,
    local: SocketAddr,
    mut outgoing: mpsc::Receiver<Bytes>,
    settings: TcpSettings,
    inbound: Arc<dyn Inbound>,
    registry: std::sync::Weak<Transports>,
) {
    debug!(flow = %id, %remote, "TCP connection up");
    let (mut reader, mut writer) = stream.into_split();
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

    let source = Flow {
        transport: Transport::Tcp,
        remote,
        local: Some(local),
        connection: Some(id),
        edge: None,
    };
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
    info!(flow = %id, %remote, reason, "TCP connection closed");
    if let Some(r) = registry.upgrade() {
        r.unregister(id);
    }
    write_task.abort();
}
