//! A bare SIP-over-WebSocket client (RFC 7118) for tests that need what
//! JsSIP in Node cannot do without WebRTC: send an INVITE with a plain RTP
//! offer and finish the call by hand.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sip_message::Message as Sip;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

pub struct WsSip {
    socket: WebSocketStream<TcpStream>,
}

impl WsSip {
    /// Connects to `ws://addr` offering the `sip` subprotocol.
    pub async fn connect(addr: std::net::SocketAddr) -> Result<WsSip> {
        let mut req = format!("ws://{addr}/").into_client_request()?;
        req.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static("sip"));
        let tcp = TcpStream::connect(addr).await?;
        let (socket, resp) = tokio_tungstenite::client_async(req, tcp).await?;
        let proto = resp.headers().get("sec-websocket-protocol");
        if proto.map(|p| p.as_bytes()) != Some(b"sip") {
            bail!("server did not agree to the sip subprotocol: {proto:?}");
        }
        Ok(WsSip { socket })
    }

    pub async fn send(&mut self, message: &str) -> Result<()> {
        self.socket.send(Message::text(message)).await?;
        Ok(())
    }

    /// The next SIP message within `limit`.
    pub async fn next(&mut self, limit: Duration) -> Result<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let m = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .context("no message in time")?
                .context("connection closed")??;
            match m {
                Message::Text(t) => return Ok(t.to_string()),
                Message::Binary(b) => return Ok(String::from_utf8_lossy(&b).into_owned()),
                Message::Close(_) => bail!("closed by the server"),
                _ => continue,
            }
        }
    }

    /// Reads until a final response to `method`.
    pub async fn final_response(&mut self, method: &str, limit: Duration) -> Result<String> {
        loop {
            let text = self.next(limit).await?;
            let m = Sip::parse(Bytes::from(text.clone()))?;
            let answers = m.cseq().is_ok_and(|c| c.method.as_str() == method);
            if answers && m.status().is_some_and(|s| s >= 200) {
                return Ok(text);
            }
        }
    }
}

/// A header's value in a message, first occurrence.
pub fn header(message: &str, name: &str) -> Option<String> {
    let m = Sip::parse(Bytes::from(message.to_owned())).ok()?;
    m.header(name).map(str::to_owned)
}
