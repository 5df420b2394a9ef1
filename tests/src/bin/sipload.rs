//! A closed-loop REGISTER load client over UDP, TLS or WSS, for comparing
//! what each transport costs a server: `--conns` connections (sockets for
//! UDP), each keeping `--window` REGISTERs in flight for `--seconds`, then
//! the rate of 200 answers. Registrar authentication should be off
//! (`registrar.auth.enabled = false`): this measures transports.
//! bench/transports.sh adds the servers' CPU from /proc.
//!
//! `sipload --transport tls --target 127.0.0.1:5061 --ca ca.pem`
#![allow(clippy::disallowed_types)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use sipbus_tests::tls::{TlsSip, connector};
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

struct Args {
    transport: String,
    target: SocketAddr,
    ca: Option<String>,
    conns: usize,
    window: usize,
    seconds: u64,
}

fn args() -> Result<Args> {
    let mut a = Args {
        transport: "udp".into(),
        target: "127.0.0.1:5060".parse()?,
        ca: None,
        conns: 8,
        window: 4,
        seconds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--transport" => a.transport = v,
            "--target" => a.target = v.parse()?,
            "--ca" => a.ca = Some(v),
            "--conns" => a.conns = v.parse()?,
            "--window" => a.window = v.parse()?,
            "--seconds" => a.seconds = v.parse()?,
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok(a)
}

/// This run's mark in every Call-ID and branch: a later run's CSeqs
/// restart at 1, which the registrar would refuse as out of order for an
/// old Call-ID, and a branch seen in the last 32 s is a retransmission.
fn run_id() -> u32 {
    std::process::id()
}

fn register(transport: &str, target: SocketAddr, conn: usize, seq: u64) -> String {
    let run = run_id();
    // RFC 7118: WSS contacts say transport=ws.
    let param = if transport == "wss" { "ws" } else { transport };
    let via = match transport {
        "udp" => "UDP 127.0.0.1:9",
        "tls" => "TLS 127.0.0.1:9",
        _ => "WSS load.invalid",
    };
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/{via};branch=z9hG4bKl{run}x{conn}x{seq};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:load{conn}@example.com>;tag=l{conn}\r\nTo: <sip:load{conn}@example.com>\r\n\
         Call-ID: load-{conn}-{run}@{target}\r\nCSeq: {seq} REGISTER\r\n\
         Contact: <sip:load{conn}@127.0.0.1:9;transport={param}>;expires=600\r\nContent-Length: 0\r\n\r\n"
    )
}

async fn udp(a: Arc<Args>, conn: usize, ok: Arc<AtomicU64>, until: Instant) -> Result<()> {
    let s = UdpSocket::bind("127.0.0.1:0").await?;
    s.connect(a.target).await?;
    let mut seq = 1u64;
    let mut buf = vec![0u8; 4096];
    for _ in 0..a.window {
        s.send(register("udp", a.target, conn, seq).as_bytes()).await?;
        seq += 1;
    }
    while Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(500), s.recv(&mut buf)).await {
            Ok(Ok(n)) if buf[..n].starts_with(b"SIP/2.0 200") => {
                ok.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        s.send(register("udp", a.target, conn, seq).as_bytes()).await?;
        seq += 1;
    }
    Ok(())
}

async fn tls(a: Arc<Args>, conn: usize, ok: Arc<AtomicU64>, until: Instant) -> Result<()> {
    let ca = a.ca.as_deref().context("--ca needed for tls")?;
    let mut c = TlsSip::connect(a.target, &connector(std::path::Path::new(ca), None)?).await?;
    let mut seq = 1u64;
    for _ in 0..a.window {
        c.send(&register("tls", a.target, conn, seq)).await?;
        seq += 1;
    }
    while Instant::now() < until {
        let m = c
            .read_message(Duration::from_secs(5))
            .await
            .with_context(|| format!("connection {conn}: no answer to CSeq {}", seq - 1))?;
        if m.starts_with("SIP/2.0 200") {
            ok.fetch_add(1, Ordering::Relaxed);
        }
        c.send(&register("tls", a.target, conn, seq)).await?;
        seq += 1;
    }
    Ok(())
}

async fn wss(a: Arc<Args>, conn: usize, ok: Arc<AtomicU64>, until: Instant) -> Result<()> {
    let ca = a.ca.as_deref().context("--ca needed for wss")?;
    let tcp = TcpStream::connect(a.target).await?;
    let name = rustls::pki_types::ServerName::IpAddress(a.target.ip().into());
    let stream = connector(std::path::Path::new(ca), None)?.connect(name, tcp).await?;
    let mut req = format!("wss://{}/", a.target).into_client_request()?;
    req.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("sip"));
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await?;
    let mut seq = 1u64;
    for _ in 0..a.window {
        ws.send(Message::text(register("wss", a.target, conn, seq))).await?;
        seq += 1;
    }
    while Instant::now() < until {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.starts_with("SIP/2.0 200") => {
                ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(Ok(_))) => {}
            _ => bail!("connection lost"),
        }
        ws.send(Message::text(register("wss", a.target, conn, seq))).await?;
        seq += 1;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Arc::new(args()?);
    let ok = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs(a.seconds);
    let mut tasks = Vec::new();
    for conn in 0..a.conns {
        let (a, ok) = (a.clone(), ok.clone());
        tasks.push(tokio::spawn(async move {
            match a.transport.as_str() {
                "udp" => udp(a, conn, ok, until).await,
                "tls" => tls(a, conn, ok, until).await,
                "wss" => wss(a, conn, ok, until).await,
                t => bail!("unknown transport {t}"),
            }
        }));
    }
    // A connection that stalls or drops is counted and reported, not
    // fatal: the others' figures still say what the server did.
    let mut lost = 0;
    for t in tasks {
        if let Err(e) = t.await? {
            eprintln!("{e:#}");
            lost += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let n = ok.load(Ordering::Relaxed);
    println!(
        "transport={} conns={} window={} registers_ok={n} per_second={:.0} lost_connections={lost}",
        a.transport,
        a.conns,
        a.window,
        n as f64 / secs
    );
    Ok(())
}
