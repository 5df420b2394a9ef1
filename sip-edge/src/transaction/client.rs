//! Client transactions: INVITE (RFC 3261 17.1.1 with the RFC 6026 Accepted
//! state) and non-INVITE (17.1.2).

use bytes::Bytes;
use sip_message::{Message, Method};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tracing::debug;

use edge_api::{ClientEvent, ClientTxId, Origin};

use super::key::ClientKey;
use super::server::timer;
use std::sync::atomic::Ordering;

use super::{TransactionLayer, lock};
use crate::transport::Flow;

pub(super) enum ClientInput {
    Response(Box<Message>),
    /// Extra header fields for the CANCEL (Reason, RFC 3326).
    Cancel(Vec<(String, String)>),
}

/// The caller's side of a client transaction: its responses arrive in
/// order, the final one last. Cancelling goes by id
/// ([`TransactionLayer::cancel`]).
pub struct ClientTx {
    id: ClientTxId,
    events: mpsc::Receiver<ClientEvent>,
}

impl ClientTx {
    pub(super) fn new(id: ClientTxId, events: mpsc::Receiver<ClientEvent>) -> Self {
        Self { id, events }
    }

    pub fn id(&self) -> ClientTxId {
        self.id
    }

    /// The responses, for a caller that keeps only them and the id (the
    /// edge API).
    pub fn into_responses(self) -> mpsc::Receiver<ClientEvent> {
        self.events
    }

    /// The next response; `None` once the transaction has ended.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }
}

/// Cancels one INVITE client transaction: the CANCEL goes out once a
/// provisional response has arrived (RFC 3261 9.1), and not at all after a
/// final one.
#[derive(Clone)]
pub struct Canceller(mpsc::Sender<ClientInput>);

impl Canceller {
    pub(super) fn new(control: mpsc::Sender<ClientInput>) -> Self {
        Canceller(control)
    }

    /// Cancels, adding `headers` (such as Reason) to the CANCEL.
    pub fn cancel(&self, headers: Vec<(String, String)>) {
        let _ = self.0.try_send(ClientInput::Cancel(headers));
    }
}

pub(super) struct ClientTask {
    pub(super) layer: TransactionLayer,
    pub(super) id: ClientTxId,
    pub(super) key: ClientKey,
    pub(super) request: Message,
    pub(super) target: Flow,
    pub(super) rx: mpsc::Receiver<ClientInput>,
    pub(super) events: mpsc::Sender<ClientEvent>,
    /// Bytes charged to the layer's limit until the task ends.
    pub(super) cost: usize,
}

enum Outcome {
    Accepted,
    Completed(Box<Message>),
    Ended,
}

impl ClientTask {
    pub(super) async fn run(mut self, invite: bool) {
        let data = self.request.to_bytes();
        if self.layer.transmit(&self.target, data.clone()).is_err() {
            self.deliver_local(503, "Service Unavailable (transport error)", Origin::TransportError);
        } else if invite {
            self.run_invite(data).await;
        } else {
            self.run_non_invite(data).await;
        }
        lock(&self.layer.inner.client).remove(&self.key);
        self.layer.inner.client_bytes.fetch_sub(self.cost, Ordering::Relaxed);
        lock(&self.layer.inner.cancellable).remove(&self.id);
    }

    fn reliable(&self) -> bool {
        self.target.transport.is_reliable()
    }

    fn deliver(&self, response: impl Into<Box<Message>>, origin: Origin) {
        let response = *response.into();
        if self.events.try_send(ClientEvent { response, origin }).is_err() {
            debug!(branch = %self.key.branch, "transaction user not reading: response dropped");
        }
    }

    fn deliver_local(&self, code: u16, reason: &str, origin: Origin) {
        self.deliver(self.request.make_response(code, reason, None), origin);
    }

    fn resend(&self, data: &Bytes) {
        if let Err(e) = self.layer.transmit(&self.target, data.clone()) {
            debug!(error = %e, "retransmission not sent");
        }
    }

    async fn run_invite(&mut self, data: Bytes) {
        let timers = *self.layer.timers();
        let mut interval = timers.t1;
        // Timer A: INVITE retransmissions double without the T2 cap.
        let mut timer_a = (!self.reliable()).then(|| Instant::now() + interval);
        let mut deadline = Instant::now() + timers.t1x64(); // timer B
        let mut proceeding = false;
        let mut cancel_wanted = false;
        let mut cancel_sent = false;
        let mut cancel_headers = Vec::new();
        let outcome = loop {
            tokio::select! {
                ev = self.rx.recv() => match ev {
                    None => break Outcome::Ended,
                    Some(ClientInput::Cancel(headers)) => {
                        cancel_wanted = true;
                        cancel_headers = headers;
                        if proceeding && !cancel_sent {
                            cancel_sent = self.send_cancel(&cancel_headers);
                        }
                    }
                    Some(ClientInput::Response(resp)) => match resp.status().unwrap_or(0) {
                        100..=199 => {
                            proceeding = true;
                            timer_a = None;
                            deadline = Instant::now() + timers.invite_guard;
                            if cancel_wanted && !cancel_sent {
                                cancel_sent = self.send_cancel(&cancel_headers);
                            }
                            self.deliver(resp, Origin::Peer);
                        }
                        200..=299 => {
                            self.deliver(resp, Origin::Peer);
                            break Outcome::Accepted;
                        }
                        _ => {
                            self.send_ack(&resp);
                            self.deliver(resp.clone(), Origin::Peer);
                            break Outcome::Completed(resp);
                        }
                    },
                },
                _ = timer(timer_a) => {
                    telemetry::metrics::sip_retransmission_sent("INVITE");
                    self.resend(&data);
                    interval *= 2;
                    timer_a = Some(Instant::now() + interval);
                }
                _ = sleep_until(deadline) => {
                    if proceeding && !cancel_sent {
                        self.send_cancel(&cancel_headers);
                    }
                    self.deliver_local(408, "Request Timeout", Origin::Timeout);
                    break Outcome::Ended;
                }
            }
        };
        match outcome {
            Outcome::Accepted => {
                // Timer M: later 2xx (other forks, retransmissions) go up so
                // the transaction user can ACK each.
                let until = Instant::now() + timers.t1x64();
                loop {
                    tokio::select! {
                        ev = self.rx.recv() => match ev {
                            None => break,
                            Some(ClientInput::Response(r)) if r.status().is_some_and(|c| (200..300).contains(&c)) => {
                                self.deliver(r, Origin::Peer);
                            }
                            Some(_) => {}
                        },
                        _ = sleep_until(until) => break,
                    }
                }
            }
            Outcome::Completed(resp) => {
                // Timer D: answer retransmitted finals with the same ACK.
                let until = Instant::now() + timers.timer_d(self.reliable());
                loop {
                    tokio::select! {
                        ev = self.rx.recv() => match ev {
                            None => break,
                            Some(ClientInput::Response(r)) if r.status().is_some_and(|c| c >= 300) => self.send_ack(&resp),
                            Some(_) => {}
                        },
                        _ = sleep_until(until) => break,
                    }
                }
            }
            Outcome::Ended => {}
        }
    }

    fn send_ack(&self, response: &Message) {
        let ack = self.request.make_ack(response);
        self.resend(&ack.to_bytes());
    }

    /// Starts the CANCEL's own non-INVITE transaction; its responses are
    /// not surfaced (the INVITE's 487 is what matters).
    fn send_cancel(&self, headers: &[(String, String)]) -> bool {
        let mut cancel = self.request.make_cancel();
        for (name, value) in headers {
            cancel.push_header_as_spelled(name, value);
        }
        match self
            .layer
            .start_client(cancel, self.target.clone(), self.key.branch.to_string(), Method::Cancel)
        {
            Ok(_) => true,
            Err(e) => {
                debug!(error = %e, "CANCEL not sent");
                false
            }
        }
    }

    async fn run_non_invite(&mut self, data: Bytes) {
        let timers = *self.layer.timers();
        let mut interval = timers.t1;
        let mut timer_e = (!self.reliable()).then(|| Instant::now() + interval);
        let timer_f = Instant::now() + timers.t1x64();
        let mut proceeding = false;
        loop {
            tokio::select! {
                ev = self.rx.recv() => match ev {
                    None => return,
                    Some(ClientInput::Cancel(_)) => {}
                    Some(ClientInput::Response(resp)) => {
                        let code = resp.status().unwrap_or(0);
                        self.deliver(resp, Origin::Peer);
                        if code < 200 {
                            proceeding = true;
                        } else {
                            break;
                        }
                    }
                },
                _ = timer(timer_e) => {
                    telemetry::metrics::sip_retransmission_sent(self.key.method.as_str());
                    self.resend(&data);
                    interval = if proceeding { timers.t2 } else { (interval * 2).min(timers.t2) };
                    timer_e = Some(Instant::now() + interval);
                }
                _ = sleep_until(timer_f) => {
                    self.deliver_local(408, "Request Timeout", Origin::Timeout);
                    return;
                }
            }
        }
        // Timer K: absorb retransmitted finals.
        let until = Instant::now() + timers.t4_unless_reliable(self.reliable());
        loop {
            tokio::select! {
                ev = self.rx.recv() => if ev.is_none() { return },
                _ = sleep_until(until) => return,
            }
        }
    }
}
