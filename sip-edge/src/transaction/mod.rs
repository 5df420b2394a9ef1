//! The RFC 3261 section 17 transaction layer, with the RFC 6026 Accepted
//! states.
//!
//! Each transaction is one task that owns its state machine and its timers
//! (`tokio::time`, so tests drive them with paused time). The layer keeps
//! the tables that route retransmissions, ACKs, CANCELs and responses to
//! those tasks, detects merged requests (482) and refuses new transactions
//! beyond a bound (503). It knows nothing of dialogs or services: what it
//! cannot absorb goes to the [`TransactionUser`].

mod client;
mod completed;
pub mod key;
mod server;
mod table;
mod tails;
pub mod timers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use sip_message::{Known, Message, Method};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

pub use client::{Canceller, ClientTx};
pub use edge_api::{ClientEvent, ClientTxId, Origin, ServerTxId};
use key::{AckKey, ClientKey, MergeKey, TxKey};
use table::{Entry, InviteInputs, Kind, NonInvite, ServerTable};
pub use timers::TimerConfig;

use crate::lock;
use crate::transport::{Flow, Transmit, Transport, TransportError};

/// A client transaction's task: its future, two channels, the request it
/// sends and retransmits.
const CLIENT_TASK_BYTES: usize = 3 * 1024;

/// Keys come from the network: a seeded hash, but faster than SipHash.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Why the transaction layer refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("server transaction {0} does not exist (finished or never created)")]
    NoTransaction(ServerTxId),
    #[error("transaction {0} is busy; try again")]
    Busy(ServerTxId),
    #[error("transaction {0} already sent its final response")]
    AlreadyAnswered(ServerTxId),
    #[error("not a response")]
    NotAResponse,
    #[error("not a request, or a method that needs no transaction (ACK)")]
    NotARequest,
    #[error("transaction state is at its memory limit")]
    Overloaded,
    #[error("request refused before sending: {0}")]
    InvalidRequest(sip_message::ParseError),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// What the layer hands upward.
pub trait TransactionUser: Send + Sync + 'static {
    /// A new request, with its server transaction (100 Trying already sent
    /// for INVITE).
    fn on_request(&self, tx: ServerTx, request: Message, source: Flow);
    /// An ACK no transaction absorbed: the ACK of a 2xx, or a stray one.
    fn on_ack(&self, ack: Message, source: Flow);
    /// An INVITE was cancelled by `cancel`; the layer already answered 487.
    /// `flow` is the INVITE's (where its responses go).
    fn on_cancelled(&self, tx: ServerTxId, cancel: Message, flow: Flow);
    /// A response no client transaction matches (a 2xx retransmission after
    /// the transaction ended, or noise).
    fn on_stray_response(&self, _response: Message, _source: Flow) {}
}

/// Events into a server transaction task.
enum ServerInput {
    Retransmission,
    Respond(Box<Message>),
    Ack,
    Cancel(Box<Message>),
}

pub(crate) struct Inner {
    timers: TimerConfig,
    transmit: Arc<dyn Transmit>,
    tu: OnceLock<Arc<dyn TransactionUser>>,
    /// Bytes of transaction state (server and client) before new requests
    /// get 503 and sending fails.
    max_bytes: usize,
    /// Bytes the client transactions hold, estimated.
    client_bytes: AtomicUsize,
    /// Retry-After on the 503 sent when the table is full.
    retry_after: String,
    server: Mutex<ServerTable>,
    client: Mutex<Map<ClientKey, mpsc::Sender<client::ClientInput>>>,
    /// INVITE client transactions by id, for cancelling from elsewhere.
    cancellable: Mutex<Map<ClientTxId, Canceller>>,
    next_id: AtomicU64,
    next_client_id: AtomicU64,
}

/// The transaction layer. Cheap to clone.
#[derive(Clone)]
pub struct TransactionLayer {
    inner: Arc<Inner>,
}

/// A server transaction handle given to the transaction user.
#[derive(Clone)]
pub struct ServerTx {
    id: ServerTxId,
    to_tag: Arc<str>,
    layer: TransactionLayer,
}

impl ServerTx {
    pub fn id(&self) -> ServerTxId {
        self.id
    }

    /// A To tag generated for this transaction, for responses that need one.
    pub fn to_tag(&self) -> &str {
        &self.to_tag
    }

    /// Sends a response on this transaction.
    pub fn respond(&self, response: Message) -> Result<(), TxError> {
        self.layer.respond(self.id, response)
    }
}

impl std::fmt::Debug for ServerTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTx").field("id", &self.id).finish()
    }
}

/// A random token for branches and tags.
pub fn random_token(prefix: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + 16);
    s.push_str(prefix);
    s.push_str(&format!("{:016x}", fastrand::u64(..)));
    s
}

impl TransactionLayer {
    /// Creates the layer, its transactions bounded to `max_bytes` of state.
    /// Must be called inside a Tokio runtime: it starts the task that
    /// expires non-INVITE transactions.
    pub fn new(timers: TimerConfig, transmit: Arc<dyn Transmit>, max_bytes: usize, retry_after_s: u32) -> Self {
        let layer = Self {
            inner: Arc::new(Inner {
                timers,
                transmit,
                tu: OnceLock::new(),
                max_bytes,
                client_bytes: AtomicUsize::new(0),
                retry_after: retry_after_s.to_string(),
                server: Mutex::new(ServerTable::new()),
                client: Mutex::new(Map::default()),
                cancellable: Mutex::new(Map::default()),
                next_id: AtomicU64::new(1),
                // Services keep client transaction ids in their records: a
                // restarted edge must not hand out the ids of the old one.
                next_client_id: AtomicU64::new(fastrand::u64(1..u64::MAX / 2)),
            }),
        };
        tokio::spawn(sweep(Arc::downgrade(&layer.inner)));
        layer
    }

    /// Sets the transaction user; the first call wins.
    pub fn set_user(&self, tu: Arc<dyn TransactionUser>) {
        let _ = self.inner.tu.set(tu);
    }

    pub fn timers(&self) -> &TimerConfig {
        &self.inner.timers
    }

    /// Transactions in progress: (server, client).
    pub fn counts(&self) -> (usize, usize) {
        (lock(&self.inner.server).len(), lock(&self.inner.client).len())
    }

    /// Bytes of transaction state held (server, client), as the memory
    /// limit counts them.
    pub fn state_bytes(&self) -> (usize, usize) {
        (
            lock(&self.inner.server).bytes(),
            self.inner.client_bytes.load(Ordering::Relaxed),
        )
    }

    fn full(&self, server_bytes: usize) -> bool {
        server_bytes + self.inner.client_bytes.load(Ordering::Relaxed) >= self.inner.max_bytes
    }

    /// Hands a received, validated message to the layer.
    pub fn receive(&self, msg: Message, source: Flow) {
        if msg.is_request() {
            self.receive_request(msg, source);
        } else {
            self.receive_response(msg, source);
        }
    }

    fn tu(&self) -> Option<&Arc<dyn TransactionUser>> {
        self.inner.tu.get()
    }

    fn receive_response(&self, msg: Message, source: Flow) {
        let Ok(key) = ClientKey::of_response(&msg) else {
            debug!("response without a usable Via branch or CSeq: dropped");
            return;
        };
        let sender = lock(&self.inner.client).get(&key).cloned();
        match sender {
            Some(events) => {
                telemetry::metrics::sip_response_received(key.method.as_str(), msg.status().unwrap_or(0));
                if events.try_send(client::ClientInput::Response(Box::new(msg))).is_err() {
                    debug!(branch = %key.branch, "client transaction busy: response dropped (will be retransmitted)");
                }
            }
            None => {
                if let Some(tu) = self.tu() {
                    tu.on_stray_response(msg, source);
                }
            }
        }
    }

    fn receive_request(&self, msg: Message, source: Flow) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        let key = match TxKey::server(&msg) {
            Ok(k) => k,
            Err(e) => {
                debug!(error = %e, "request without a transaction key: dropped");
                return;
            }
        };
        if method == Method::Ack {
            self.receive_ack(msg, source, &key);
            return;
        }
        let mut table = lock(&self.inner.server);
        if let Some((id, _)) = table.get_by_key(&key) {
            // A retransmission: the transaction answers it.
            telemetry::metrics::sip_retransmission_received(method.as_str());
            self.retransmission(table, id);
            return;
        }
        if table.completed.len() > 0 {
            if let Some((target, data)) = table.completed.replay(&key, &msg) {
                drop(table);
                telemetry::metrics::sip_retransmission_received(method.as_str());
                let _ = self.transmit(&target, data);
                return;
            }
        }
        if method == Method::Cancel {
            let invite = table
                .get_by_key(&TxKey::cancelled_invite(&key))
                .and_then(|(_, e)| e.invite_inputs());
            let cancel_tx = self.create_server(&mut table, key, None, &msg, &source);
            drop(table);
            let Ok(cancel_tx) = cancel_tx else {
                self.overloaded(&msg, &source);
                return;
            };
            let (code, reason) = match invite {
                Some(_) => (200, "OK"),
                None => (481, "Call/Transaction Does Not Exist"),
            };
            let _ = cancel_tx.respond(msg.make_response(code, reason, Some(cancel_tx.to_tag())));
            if let Some(invite) = invite {
                let _ = invite.tu.send(ServerInput::Cancel(Box::new(msg)));
            }
            return;
        }
        let merge = MergeKey::of(&msg);
        let merged = merge
            .as_ref()
            .is_some_and(|m| table.merged.contains_key(m) || table.completed.has_merge(m));
        let created = self.create_server(&mut table, key, merge.filter(|_| !merged), &msg, &source);
        drop(table);
        let tx = match created {
            Ok(tx) => tx,
            Err(_) => {
                warn!(%method, "transaction table full: 503");
                self.overloaded(&msg, &source);
                return;
            }
        };
        if merged {
            let _ = tx.respond(msg.make_response(482, "Loop Detected (merged request)", Some(tx.to_tag())));
            return;
        }
        match self.tu() {
            Some(tu) => tu.on_request(tx, msg, source),
            None => {
                let _ = tx.respond(msg.make_response(503, "Service Unavailable (starting)", Some(tx.to_tag())));
            }
        }
    }

    /// Answers a retransmitted request: INVITE transactions do it in their
    /// task; non-INVITE ones replay their last response from the table.
    fn retransmission(&self, table: MutexGuard<'_, ServerTable>, id: ServerTxId) {
        let Some(entry) = table.txs.get(&id) else {
            return;
        };
        match &entry.kind {
            Kind::Invite(inputs) => {
                let _ = inputs.net.try_send(ServerInput::Retransmission);
            }
            Kind::NonInvite { target, state, .. } => {
                let replay = match state {
                    NonInvite::Trying => None,
                    NonInvite::Proceeding(b) => Some(b.clone()),
                };
                let target = target.clone();
                drop(table);
                if let Some(data) = replay {
                    let _ = self.transmit(&target, data);
                }
            }
        }
    }

    fn receive_ack(&self, msg: Message, source: Flow, key: &TxKey) {
        let table = lock(&self.inner.server);
        if let Some((
            _,
            Entry {
                kind: Kind::Invite(inputs),
                ..
            },
        )) = table.get_by_key(key)
        {
            // ACK of a non-2xx final: absorbed by its INVITE transaction.
            let _ = inputs.net.try_send(ServerInput::Ack);
            return;
        }
        let accepted = AckKey::of(&msg)
            .and_then(|k| table.accepted.get(&k))
            .and_then(|id| table.txs.get(id))
            .and_then(|e| e.invite_inputs());
        drop(table);
        if let Some(inputs) = accepted {
            // ACK of our 2xx: stops 2xx retransmission, and goes up too.
            let _ = inputs.net.try_send(ServerInput::Ack);
        }
        if let Some(tu) = self.tu() {
            tu.on_ack(msg, source);
        }
    }

    fn create_server(
        &self,
        table: &mut ServerTable,
        key: TxKey,
        merge: Option<MergeKey>,
        request: &Message,
        source: &Flow,
    ) -> Result<ServerTx, TxError> {
        if self.full(table.bytes()) {
            return Err(TxError::Overloaded);
        }
        let id = ServerTxId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let to_tag: Arc<str> = random_token("").into();
        let target = reply_target(request, source);
        let kind = if request.method() == Some(&Method::Invite) {
            let (net, rx) = mpsc::channel(16);
            let (tu, tu_rx) = mpsc::unbounded_channel();
            let final_class = Arc::new(AtomicU8::new(0));
            let task = server::InviteTask {
                inner: self.inner.clone(),
                id,
                target,
                request: request.clone(),
                rx,
                tu_rx,
                final_class: final_class.clone(),
                to_tag: to_tag.clone(),
            };
            // Boxed: see `Core::on_request` in edge.rs.
            tokio::spawn(Box::pin(task.run()));
            Kind::Invite(InviteInputs { net, tu, final_class })
        } else {
            Kind::NonInvite {
                target,
                state: NonInvite::Trying,
                guard: Instant::now() + self.inner.timers.t1x64(),
            }
        };
        table.insert(id, Entry::new(key, merge, kind, request.held_bytes()));
        Ok(ServerTx {
            id,
            to_tag,
            layer: self.clone(),
        })
    }

    /// Sends a response on a server transaction.
    pub fn respond(&self, id: ServerTxId, response: Message) -> Result<(), TxError> {
        if response.is_request() {
            return Err(TxError::NotAResponse);
        }
        let mut table = lock(&self.inner.server);
        let table = &mut *table;
        let entry = table.txs.get_mut(&id).ok_or(TxError::NoTransaction(id))?;
        // The transaction knows its method: no CSeq to parse per response.
        telemetry::metrics::sip_response_sent(entry.key.method().as_str(), response.status().unwrap_or(0));
        let (target, state) = match &mut entry.kind {
            Kind::Invite(inputs) => {
                let code = response.status().unwrap_or(0);
                match inputs.final_class.load(Ordering::Acquire) {
                    // After a 2xx only 2xx retransmissions from the user
                    // are still sent (RFC 6026 Accepted).
                    2 if (200..300).contains(&code) => {}
                    0 => {}
                    _ => return Err(TxError::AlreadyAnswered(id)),
                }
                return inputs
                    .tu
                    .send(ServerInput::Respond(Box::new(response)))
                    .map_err(|_| TxError::NoTransaction(id));
            }
            Kind::NonInvite { target, state, .. } => (target.clone(), state),
        };
        let data = response.to_bytes();
        let is_final = response.status().is_none_or(|c| c >= 200);
        if !is_final {
            *state = NonInvite::Proceeding(data.clone());
            table.charge(id, data.len());
        } else if let Some(entry) = table.remove(id)
            && !target.transport.is_reliable()
        {
            // Completed until timer J (zero on reliable transports, where
            // the transaction ends now).
            let deadline = Instant::now() + self.inner.timers.t1x64();
            table
                .completed
                .insert(&entry.key, entry.merge.as_ref(), &target, &response, deadline);
        }
        Ok(self.transmit(&target, data)?)
    }

    /// 503 with Retry-After, without a transaction: there is no room for one.
    fn overloaded(&self, req: &Message, source: &Flow) {
        telemetry::metrics::sip_dropped(telemetry::metrics::Dropped::Overload);
        self.respond_stateless(
            req,
            source,
            503,
            "Service Unavailable (overloaded)",
            &[("Retry-After", &self.inner.retry_after)],
        );
    }

    /// Answers without a transaction (requests that failed validation, or
    /// when no transaction can be created).
    pub fn respond_stateless(&self, req: &Message, source: &Flow, code: u16, reason: &str, extra: &[(&str, &str)]) {
        if req.method() == Some(&Method::Ack) {
            return;
        }
        let mut resp = req.make_response(code, reason, Some(&random_token("")));
        telemetry::metrics::sip_response_sent(req.method().map_or("", Method::as_str), code);
        for (name, value) in extra {
            resp.push_header(*name, value);
        }
        let target = reply_target(req, source);
        if let Err(e) = self.inner.transmit.transmit(&target, resp.to_bytes()) {
            debug!(error = %e, "stateless response not sent");
        }
    }

    /// Sends a request through a new client transaction. The layer adds its
    /// own top Via (with a fresh branch and `rport`), Max-Forwards when
    /// missing, and Content-Length.
    pub fn send_request(&self, mut request: Message, target: Flow) -> Result<ClientTx, TxError> {
        let method = request.method().cloned().ok_or(TxError::NotARequest)?;
        if method == Method::Ack {
            return Err(TxError::NotARequest);
        }
        // A request for a TLS or WebSocket flow whose connection is gone
        // fails now (RFC 5626 5.3), instead of waiting out Timer B or F: a
        // browser cannot be connected to, and a TLS client has no server
        // certificate for its ephemeral port. TCP still connects anew to
        // the flow's address, where phones that listen on their source
        // port (SIPp does) answer.
        let reopenable = matches!(target.transport, Transport::Udp | Transport::Tcp);
        if !reopenable && !self.inner.transmit.flow_is_open(&target) {
            return Err(TxError::Transport(TransportError::FlowFailed {
                transport: target.transport,
                remote: target.remote,
            }));
        }
        let branch = self.stamp_request(&mut request, &target);
        // What we send must pass the checks we apply to what we receive.
        request
            .validate(&sip_message::Limits::default())
            .map_err(TxError::InvalidRequest)?;
        self.start_client(request, target, branch, method)
    }

    fn stamp_request(&self, request: &mut Message, target: &Flow) -> String {
        let branch = random_token("z9hG4bK");
        let sent_by = self.inner.transmit.sent_by(target);
        request.prepend_header(
            Known::Via,
            &format!(
                "SIP/2.0/{} {};branch={branch};rport",
                target.transport.via_token(),
                sent_by
            ),
        );
        if !request.has(Known::MaxForwards) {
            request.push_header(Known::MaxForwards, "70");
        }
        // A service that did not know this address left a placeholder.
        let placeholder = format!("@{}", edge_api::EDGE_HOST);
        if let Some(contact) = request.known_header(Known::Contact)
            && contact.contains(&placeholder)
        {
            let filled = contact.replacen(&placeholder, &format!("@{sent_by}"), 1);
            request.set_header(Known::Contact, &filled);
        }
        let body = request.body().clone();
        request.set_body(body);
        branch
    }

    pub(crate) fn start_client(
        &self,
        request: Message,
        target: Flow,
        branch: String,
        method: Method,
    ) -> Result<ClientTx, TxError> {
        telemetry::metrics::sip_request_sent(method.as_str());
        let key = ClientKey {
            branch: branch.into(),
            method: method.clone(),
        };
        let (input_tx, input_rx) = mpsc::channel(32);
        let (events_tx, events_rx) = mpsc::channel(32);
        let cost = CLIENT_TASK_BYTES + 2 * request.held_bytes();
        let server_bytes = lock(&self.inner.server).bytes();
        {
            let mut table = lock(&self.inner.client);
            if self.full(server_bytes) {
                return Err(TxError::Overloaded);
            }
            table.insert(key.clone(), input_tx.clone());
            self.inner.client_bytes.fetch_add(cost, Ordering::Relaxed);
        }
        let id = ClientTxId(self.inner.next_client_id.fetch_add(1, Ordering::Relaxed));
        let invite = method == Method::Invite;
        if invite {
            lock(&self.inner.cancellable).insert(id, Canceller::new(input_tx.clone()));
        }
        let task = client::ClientTask {
            layer: self.clone(),
            id,
            key,
            request,
            target,
            rx: input_rx,
            events: events_tx,
            cost,
        };
        tokio::spawn(Box::pin(task.run(invite)));
        Ok(ClientTx::new(id, events_rx))
    }

    /// Cancels INVITE client transaction `id` (see [`ClientTx::cancel`]);
    /// one that already ended has nothing left to cancel.
    pub fn cancel(&self, id: ClientTxId, headers: Vec<(String, String)>) {
        let canceller = lock(&self.inner.cancellable).get(&id).cloned();
        if let Some(c) = canceller {
            c.cancel(headers);
        }
    }

    /// Sends an ACK for a 2xx (its own transaction-less request, RFC 3261
    /// 13.2.2.4): a fresh Via branch, sent once.
    pub fn send_ack(&self, mut ack: Message, target: Flow) -> Result<(), TxError> {
        if ack.method() != Some(&Method::Ack) {
            return Err(TxError::NotARequest);
        }
        self.stamp_request(&mut ack, &target);
        // What we send must pass the checks we apply to what we receive.
        ack.validate(&sip_message::Limits::default())
            .map_err(TxError::InvalidRequest)?;
        Ok(self.inner.transmit.transmit(&target, ack.to_bytes())?)
    }

    fn transmit(&self, target: &Flow, data: Bytes) -> Result<(), TransportError> {
        self.inner.transmit.transmit(target, data)
    }
}

/// Where responses to a request go (RFC 3261 18.2.2 with RFC 3581): back
/// over the connection for streams; for UDP to the source address when
/// `rport` was asked for, otherwise to the source IP (the `received`
/// address) and the sent-by port.
pub fn reply_target(req: &Message, source: &Flow) -> Flow {
    let via_port = req.top_via().ok().map(|v| (v.port, v.rport().is_some()));
    if source.transport.is_reliable() {
        // Over the connection it came on; if that is gone, a new one to the
        // source IP and the sent-by port (RFC 3261 18.2.2).
        let mut remote = source.remote;
        remote.set_port(via_port.and_then(|(p, _)| p).unwrap_or(source.transport.default_port()));
        return Flow {
            remote,
            edge: None,
            ..source.clone()
        };
    }
    let mut remote = source.remote;
    if let Some((port, false)) = via_port {
        remote.set_port(port.unwrap_or(5060));
    }
    Flow {
        transport: Transport::Udp,
        remote,
        local: source.local,
        connection: None,
        edge: None,
    }
}

/// Expires non-INVITE server transactions (their guard and timer J) until
/// the layer is dropped.
async fn sweep(inner: std::sync::Weak<Inner>) {
    // Timer J is 32 s by default; a tenth of T1 is precise enough and cheap:
    // each tick only looks at the fronts of two queues.
    let tick = match inner.upgrade() {
        Some(i) => (i.timers.t1 / 10).max(Duration::from_millis(10)),
        None => return,
    };
    loop {
        tokio::time::sleep(tick).await;
        let Some(inner) = inner.upgrade() else { return };
        let unanswered = lock(&inner.server).expire(Instant::now());
        if unanswered > 0 {
            warn!(
                unanswered,
                "non-INVITE transactions ended without a final response from the application"
            );
        }
    }
}
