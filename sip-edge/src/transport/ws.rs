//! SIP over WebSocket (RFC 7118): the handshake (the `sip` subprotocol is
//! required; the `Origin` must be on the allow-list when one is set), one
//! SIP message per WebSocket message, text or binary, bounded in size, and
//! pings that find dead browsers. Browsers connect to us; we never connect
//! to them, so a request to one goes over the connection it registered on.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tracing::{debug, info};

use super::Inbound;
use super::stream::{AbortOnDrop, Closed, Opened};
use crate::flood::Admit;

/// The WebSocket subprotocol for SIP (RFC 7118 4.1).
pub const SUBPROTOCOL: &str = "sip";

/// `[edge.websocket]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct WsConfig {
    /// Origins allowed to connect (`https://app.example.com`); empty: any.
    /// Browsers send Origin; a list keeps other sites' pages from using a
    /// visitor's browser as a SIP client.
    pub allowed_origins: Vec<String>,
    /// A ping every this many seconds finds dead peers; 0: no pings.
    pub ping_interval_s: u64,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            ping_interval_s: 30,
        }
    }
}

/// What the WebSocket transports need at run time.
#[derive(Debug, Clone)]
pub struct WsSettings {
    pub allowed_origins: Vec<String>,
    pub ping_interval: Option<Duration>,
    pub idle_timeout: Duration,
    pub max_message_bytes: usize,
    pub write_queue: usize,
}

impl Default for WsSettings {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            ping_interval: Some(Duration::from_secs(30)),
            idle_timeout: Duration::from_secs(7200),
            max_message_bytes: 65_535,
            write_queue: 256,
        }
    }
}

/// A connection after its handshake, plain or over TLS.
pub enum Accepted {
    Plain(Box<WebSocketStream<TcpStream>>),
    Secure(Box<WebSocketStream<TlsStream<TcpStream>>>),
}

/// Why an upgrade is refused: the HTTP status and a line of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    NoSipSubprotocol,
    OriginNotAllowed,
}

impl Refused {
    pub fn status(self) -> StatusCode {
        match self {
            Refused::NoSipSubprotocol => StatusCode::BAD_REQUEST,
            Refused::OriginNotAllowed => StatusCode::FORBIDDEN,
        }
    }

    pub fn why(self) -> &'static str {
        match self {
            Refused::NoSipSubprotocol => "the sip WebSocket subprotocol is required (RFC 7118)",
            Refused::OriginNotAllowed => "origin not allowed",
        }
    }
}

/// The handshake's checks, apart so they can be tested without sockets.
pub fn check_upgrade(req: &Request, settings: &WsSettings) -> Result<(), Refused> {
    let offers_sip = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    if !offers_sip {
        return Err(Refused::NoSipSubprotocol);
    }
    if !settings.allowed_origins.is_empty() {
        let origin = req.headers().get("origin").and_then(|v| v.to_str().ok());
        let allowed = origin.is_some_and(|o| settings.allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(o)));
        if !allowed {
            return Err(Refused::OriginNotAllowed);
        }
    }
    Ok(())
}

/// The answer to an upgrade request; the library fixes the error type.
#[allow(clippy::result_large_err)]
fn answer(req: &Request, mut resp: Response, settings: &WsSettings) -> Result<Response, ErrorResponse> {
    if let Err(refused) = check_upgrade(req, settings) {
        debug!(why = refused.why(), "WebSocket upgrade refused");
        let mut err = ErrorResponse::new(Some(refused.why().to_owned()));
        *err.status_mut() = refused.status();
        return Err(err);
    }
    resp.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static(SUBPROTOCOL));
    Ok(resp)
}

/// The server side of the handshake over `stream`.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    settings: &WsSettings,
) -> Result<WebSocketStream<S>, WsError> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(settings.max_message_bytes))
        .max_frame_size(Some(settings.max_message_bytes));
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| answer(req, resp, settings);
    tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await
}

/// One WebSocket connection until it closes; dropping `conn` at the end
/// takes it out of the registry.
pub(crate) async fn run(socket: Accepted, conn: Opened, settings: WsSettings, inbound: Arc<dyn Inbound>) {
    match socket {
        Accepted::Plain(s) => pump(*s, conn, &settings, &inbound).await,
        Accepted::Secure(s) => pump(*s, conn, &settings, &inbound).await,
    }
}

async fn pump<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    socket: WebSocketStream<S>,
    mut conn: Opened,
    settings: &WsSettings,
    inbound: &Arc<dyn Inbound>,
) {
    let source = conn.source();
    let mut outgoing = conn.take_outgoing();
    let flood = conn.flood.clone();
    debug!(flow = %source, "WebSocket connection up");
    let (mut sink, mut stream) = socket.split();
    let ping_every = settings.ping_interval;
    let mut writer = AbortOnDrop(tokio::spawn(async move {
        // The first ping one interval after the upgrade, not at once.
        let mut ping = ping_every.map(|p| {
            let mut every = tokio::time::interval_at(Instant::now() + p, p);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every
        });
        loop {
            let tick = async {
                match ping.as_mut() {
                    Some(p) => {
                        p.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let message = tokio::select! {
                data = outgoing.recv() => match data {
                    // SIP is text but bodies may not be: binary then.
                    // Checked in place, no copy.
                    Some(data) => match Utf8Bytes::try_from(data.clone()) {
                        Ok(text) => Message::Text(text),
                        Err(_) => Message::Binary(data),
                    },
                    None => break,
                },
                () = tick => Message::Ping(Bytes::new()),
            };
            if sink.send(message).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    }));
    // No traffic at all (a pong counts) for two ping intervals: dead.
    let quiet = match settings.ping_interval {
        Some(p) => settings.idle_timeout.min(p.saturating_mul(2)),
        None => settings.idle_timeout,
    };
    let mut last_activity = Instant::now();
    // The writer stops when this returns (it is dropped with `writer`).
    let reason = loop {
        let next = tokio::select! {
            m = stream.next() => m,
            _ = sleep_until(last_activity + quiet) => break Closed::Idle,
        };
        last_activity = Instant::now();
        let data = match next {
            None => break Closed::ByPeer,
            Some(Err(WsError::Capacity(e))) => {
                debug!(flow = %source, error = %e, "WebSocket message too large");
                break Closed::MessageTooLarge;
            }
            Some(Err(_)) => break Closed::ReadError,
            Some(Ok(Message::Text(t))) => Bytes::from(t),
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Close(_))) => break Closed::ByPeer,
            // Pings are answered by the library; pongs only prove life.
            Some(Ok(_)) => continue,
        };
        // Keep-alive CRLFs some clients send are not messages.
        if data.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match flood.message(source.remote.ip()) {
            Admit::Yes => inbound.on_message(data, source.clone()),
            Admit::Banned(left) => {
                inbound.refuse(data, source.clone(), left);
                break Closed::Flooding;
            }
        }
    };
    info!(flow = %conn.id, remote = %conn.remote, transport = %conn.transport, %reason, "connection closed");
    if reason == Closed::Flooding {
        // Unregistered, the writer sends what is queued (the 503), closes,
        // and ends; it gets a moment to.
        drop(conn);
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer.0).await;
    }
}
