//! The edge: binds the transports, runs the transaction layer, validates
//! what arrives, answers OPTIONS, 405 and 501 itself, and hands the rest to
//! the services through [`Dispatch`] with bounded concurrency.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use edge_api::EdgeId;
use sip_message::text::split_top_level;
use sip_message::{Known, Limits, Message, Method};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::EdgeConfig;
use crate::dispatch::{Dispatch, EdgeHandle, IncomingRequest};
use crate::flood::FloodGuard;
use crate::transaction::{ServerTx, ServerTxId, TransactionLayer, TransactionUser};
use crate::transport::tls::{TlsContext, TlsError};
use crate::transport::{Flow, Inbound, Transport, Transports, stream, udp};
use crate::validate::check_request;
use telemetry::metrics::{self, Dropped};

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

/// A running edge. Dropping it does not stop it; call [`RunningEdge::stop`].
pub struct RunningEdge {
    /// The bound addresses, in configuration order (port 0 resolved).
    pub local_addrs: Vec<(Transport, SocketAddr)>,
    handle: EdgeHandle,
    tasks: Vec<JoinHandle<()>>,
    tls: Arc<TlsContext>,
}

impl RunningEdge {
    pub fn handle(&self) -> EdgeHandle {
        self.handle.clone()
    }

    /// The first bound address of a transport.
    pub fn addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.local_addrs.iter().find(|(t, _)| *t == transport).map(|(_, a)| *a)
    }

    /// The TLS certificates and CAs, for a reload on request.
    pub fn tls(&self) -> Arc<TlsContext> {
        self.tls.clone()
    }

    /// Stops listening. Transactions in progress end with their timers.
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// What every receive path shares.
struct Core {
    id: EdgeId,
    layer: TransactionLayer,
    limits: Limits,
    supported: Vec<String>,
    dispatcher: Arc<dyn Dispatch>,
    inflight: Arc<Semaphore>,
    retry_after: String,
    /// `Allow` value: OPTIONS plus what the services handle.
    allow: String,
}

/// Starts an edge with `dispatcher` behind it.
pub async fn start(config: &EdgeConfig, dispatcher: Arc<dyn Dispatch>) -> Result<RunningEdge, StartError> {
    // Always: a sips: target may come up without any TLS listener.
    let serves_tls = config.listen.iter().any(|l| l.transport.is_secure());
    let tls = TlsContext::load(&config.tls, serves_tls)?;
    let flood = FloodGuard::new(config.flood.clone());
    let transports = Transports::new(
        config.advertise,
        config.tcp_settings(),
        config.ws_settings(),
        tls.clone(),
        flood.clone(),
    );
    let layer = TransactionLayer::new(
        config.timer_config(),
        transports.clone(),
        config.overload.transaction_memory_bytes(),
        config.overload.retry_after_s,
    );
    let mut allow: Vec<&str> = vec!["OPTIONS"];
    allow.extend(
        dispatcher
            .allow()
            .iter()
            .map(Method::as_str)
            .filter(|m| *m != "OPTIONS"),
    );
    let allow = allow.join(", ");
    let id = EdgeId::new(
        &config
            .instance
            .clone()
            .unwrap_or_else(|| format!("edge-{:08x}", fastrand::u32(..))),
    );
    let core = Arc::new(Core {
        id: id.clone(),
        layer: layer.clone(),
        limits: config.message_limits(),
        supported: config.supported.clone(),
        dispatcher,
        inflight: Arc::new(Semaphore::new(config.overload.max_inflight_requests)),
        retry_after: config.overload.retry_after_s.to_string(),
        allow,
    });
    layer.set_user(core.clone());
    transports.set_inbound(core.clone());

    let mut local_addrs = Vec::new();
    let mut tasks = Vec::new();
    for listen in &config.listen {
        let bind_err = |source| StartError::Bind {
            addr: listen.to_string(),
            source,
        };
        match listen.transport {
            Transport::Udp => {
                let socket = Arc::new(udp::bind(listen.addr, config.udp_buffer_bytes).map_err(bind_err)?);
                let local = socket.local_addr().map_err(bind_err)?;
                transports.add_udp(local, socket.clone());
                for _ in 0..config.udp_workers {
                    let inbound: Arc<dyn Inbound> = core.clone();
                    tasks.push(tokio::spawn(udp::serve(socket.clone(), local, inbound, flood.clone())));
                }
                info!(%local, "listening on UDP");
                local_addrs.push((Transport::Udp, local));
            }
            transport => {
                let listener = stream::bind(listen.addr).map_err(bind_err)?;
                let local = listener.local_addr().map_err(bind_err)?;
                transports.add_stream_listener(transport, local);
                tasks.push(tokio::spawn(stream::serve(
                    listener,
                    local,
                    transport,
                    transports.clone(),
                )));
                info!(%local, "listening on {transport}");
                local_addrs.push((transport, local));
            }
        }
    }
    tasks.push(tls.watch());
    tasks.push(tokio::spawn(sample_transactions(layer.clone())));
    Ok(RunningEdge {
        local_addrs,
        handle: EdgeHandle { layer, id },
        tasks,
        tls,
    })
}

/// The transactions gauge, once a second (cheaper than counting every
/// insert and removal).
async fn sample_transactions(layer: TransactionLayer) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        metrics::sip_transactions(layer.counts(), layer.state_bytes());
    }
}

impl Inbound for Core {
    fn on_message(&self, data: Bytes, source: Flow) {
        let mut msg = match Message::parse_structure(data, &self.limits) {
            Ok(m) => m,
            Err(e) => {
                // Nothing to answer with: RFC 3261 says to discard.
                debug!(remote = %source.remote, error = %e, "unparseable message dropped");
                metrics::sip_dropped(Dropped::Unparseable);
                return;
            }
        };
        if let Err(e) = msg.validate(&self.limits) {
            metrics::sip_dropped(Dropped::Invalid);
            if msg.is_request() && respondable(&msg) {
                debug!(remote = %source.remote, error = %e, "invalid request answered");
                self.layer
                    .respond_stateless(&msg, &source, e.status(), &e.reason_phrase(), &[]);
            } else {
                debug!(remote = %source.remote, error = %e, "invalid message dropped");
            }
            return;
        }
        if msg.is_request() {
            stamp_via(&mut msg, &source);
        }
        self.layer.receive(msg, source);
    }

    fn refuse(&self, data: Bytes, source: Flow, retry_after: std::time::Duration) {
        let Ok(msg) = Message::parse_structure(data, &self.limits) else {
            return;
        };
        if msg.is_request() && respondable(&msg) {
            let secs = retry_after.as_secs().max(1).to_string();
            self.layer
                .respond_stateless(&msg, &source, 503, "Service Unavailable", &[("Retry-After", &secs)]);
        }
    }
}

/// Enough of a request survived to address a response to it.
fn respondable(msg: &Message) -> bool {
    msg.method() != Some(&Method::Ack)
        && msg.top_via().is_ok()
        && [Known::From, Known::To, Known::CallId, Known::CSeq]
            .iter()
            .all(|k| msg.has(*k))
}

/// RFC 3261 18.2.1 and RFC 3581: record the source address in the top Via
/// (`received`, and `rport` filled in when the client asked for it).
pub fn stamp_via(msg: &mut Message, source: &Flow) {
    let Ok(via) = msg.top_via() else { return };
    let ip = source.remote.ip();
    let wants_rport = via.rport() == Some(None);
    if !wants_rport && via.host.ip() == Some(ip) {
        return;
    }
    let Some(top) = msg.known_values(Known::Via).next() else {
        return;
    };
    let (base, params) = match top.split_once(';') {
        Some((b, p)) => (b.trim_end(), p),
        None => (top, ""),
    };
    let mut value = String::with_capacity(top.len() + 40);
    value.push_str(base);
    for param in split_top_level(params, b';') {
        let param = param.trim();
        let name = param.split('=').next().unwrap_or("").trim();
        if param.is_empty() || name.eq_ignore_ascii_case("received") {
            continue;
        }
        value.push(';');
        if name.eq_ignore_ascii_case("rport") && wants_rport {
            value.push_str(&format!("rport={}", source.remote.port()));
        } else {
            value.push_str(param);
        }
    }
    value.push_str(&format!(";received={ip}"));
    msg.replace_top_value(Known::Via, &value);
}

impl TransactionUser for Core {
    fn on_request(&self, tx: ServerTx, request: Message, mut source: Flow) {
        let method = request.method().cloned().unwrap_or(Method::Options);
        metrics::sip_request_received(method.as_str(), source.transport.via_token());
        if let Err(rejection) = check_request(&request, &self.supported) {
            debug!(tx = %tx.id(), code = rejection.code, reason = %rejection.reason, "request rejected");
            let _ = tx.respond(rejection.response(&request, tx.to_tag()));
            return;
        }
        let in_dialog = request.to_header().ok().and_then(|t| t.tag().map(|_| ())).is_some();
        // Draining (telemetry::health, process-wide): a request outside a
        // dialog gets 503 with Retry-After, so a load balancer or the phone
        // tries another edge; dialogs, transactions and connections go on.
        // OPTIONS too: a SIP load balancer's probe sees the edge leave.
        if !in_dialog && telemetry::health::is_draining() {
            debug!(tx = %tx.id(), %method, "draining: 503");
            metrics::sip_dropped(Dropped::Draining);
            let mut resp = request.make_response(503, "Service Unavailable (draining)", Some(tx.to_tag()));
            resp.push_header(Known::RetryAfter, &self.retry_after);
            let _ = tx.respond(resp);
            return;
        }
        if method == Method::Options && !in_dialog {
            let _ = tx.respond(self.options_response(&request, tx.to_tag()));
            return;
        }
        if !self.dispatcher.allow().contains(&method) {
            let (code, reason) = if method.is_known() {
                (405, "Method Not Allowed")
            } else {
                (501, "Not Implemented")
            };
            let mut resp = request.make_response(code, reason, Some(tx.to_tag()));
            resp.push_header(Known::Allow, &self.allow);
            let _ = tx.respond(resp);
            return;
        }
        let Ok(permit) = self.inflight.clone().try_acquire_owned() else {
            warn!(tx = %tx.id(), %method, "too many requests in flight: 503");
            metrics::sip_dropped(Dropped::Overload);
            let mut resp = request.make_response(503, "Service Unavailable (overloaded)", Some(tx.to_tag()));
            resp.push_header(Known::RetryAfter, &self.retry_after);
            let _ = tx.respond(resp);
            return;
        };
        // The root of the request's trace (telemetry::trace).
        let span = info_span!(
            "sip.request",
            otel.kind = "server",
            tx = %tx.id(),
            sip.method = %method,
            sip.call_id = request.call_id().unwrap_or_default(),
            net.transport = source.transport.via_token(),
            net.peer = %source.remote,
        );
        source.edge = Some(self.id.clone());
        // Made inside the span, so what the dispatcher opens is its child.
        let fut = span.in_scope(|| {
            self.dispatcher.dispatch(
                IncomingRequest {
                    tx,
                    request,
                    flow: source,
                },
                EdgeHandle {
                    layer: self.layer.clone(),
                    id: self.id.clone(),
                },
            )
        });
        // Boxed: tokio allocates a task with 128-byte alignment, and
        // mimalloc serves aligned blocks over 1 KiB on a slow path (fresh,
        // zeroed pages); a boxed future keeps the task small.
        tokio::spawn(Box::pin(
            async move {
                fut.await;
                drop(permit);
            }
            .instrument(span),
        ));
    }

    fn on_ack(&self, ack: Message, mut source: Flow) {
        metrics::sip_request_received("ACK", source.transport.via_token());
        source.edge = Some(self.id.clone());
        self.dispatcher.ack(ack, source);
    }

    fn on_cancelled(&self, tx: ServerTxId, cancel: Message, mut flow: Flow) {
        flow.edge = Some(self.id.clone());
        self.dispatcher.cancelled(tx, cancel, flow);
    }
}

impl Core {
    fn options_response(&self, request: &Message, to_tag: &str) -> Message {
        let mut resp = request.make_response(200, "OK", Some(to_tag));
        resp.push_header(Known::Allow, &self.allow);
        resp.push_header(Known::Accept, "application/sdp");
        resp.push_header(Known::AcceptEncoding, "identity");
        resp.push_header(Known::AcceptLanguage, "en");
        resp.push_header(Known::Supported, &self.supported.join(", "));
        resp
    }
}
