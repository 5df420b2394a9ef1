//! The INVITE server transaction (RFC 3261 17.2.1 with the RFC 6026
//! Accepted state), one task each. Non-INVITE server transactions need no
//! task; they live in the table (see `table.rs`).

use std::future::pending;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use sip_message::Message;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, warn};

use super::key::AckKey;
use super::{Inner, ServerInput, ServerTxId, lock};
use crate::transport::Flow;

pub(super) struct InviteTask {
    pub(super) inner: Arc<Inner>,
    pub(super) id: ServerTxId,
    pub(super) request: Message,
    pub(super) target: Flow,
    /// Network events (bounded; may drop).
    pub(super) rx: mpsc::Receiver<ServerInput>,
    /// The transaction user's responses and CANCELs (never dropped).
    pub(super) tu_rx: mpsc::UnboundedReceiver<ServerInput>,
    pub(super) final_class: Arc<AtomicU8>,
    pub(super) to_tag: Arc<str>,
}

/// Sleeps until `at`, or forever when there is no such timer.
pub(super) async fn timer(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => pending().await,
    }
}

enum Final {
    Success(Bytes),
    Failure(Bytes),
}

impl InviteTask {
    pub(super) async fn run(mut self) {
        self.run_invite().await;
        lock(&self.inner.server).remove(self.id);
    }

    /// The next input, the transaction user's first.
    async fn next_input(&mut self) -> Option<ServerInput> {
        tokio::select! {
            biased;
            Some(ev) = self.tu_rx.recv() => Some(ev),
            ev = self.rx.recv() => ev,
        }
    }

    fn reliable(&self) -> bool {
        self.target.transport.is_reliable()
    }

    fn send(&self, data: Bytes) {
        if let Err(e) = self.inner.transmit.transmit(&self.target, data) {
            debug!(tx = %self.id, error = %e, "response not sent");
        }
    }

    fn local_response(&self, code: u16, reason: &str) -> Bytes {
        self.request.make_response(code, reason, Some(&self.to_tag)).to_bytes()
    }

    async fn run_invite(&mut self) {
        let timers = self.inner.timers;
        // 17.2.1: 100 Trying at once, so the client stops retransmitting
        // however long the application takes.
        let mut last = self.local_response(100, "Trying");
        self.send(last.clone());
        let guard = Instant::now() + timers.invite_guard;
        let fin = loop {
            tokio::select! {
                            ev = self.next_input() => match ev {
                                None => return,
                                Some(ServerInput::Retransmission) => self.send(last.clone()),
                                Some(ServerInput::Respond(resp)) => {
                                    let code = resp.status().unwrap_or(500);
                                    let bytes = resp.to_bytes();
                                    if code >= 200 {
                                        let class = if code < 300 { 2 } else { 3 };
                                        self.final_class.store(class, Ordering::Release);
                                    }
                                    if (200..300).contains(&code) {
                                        // Indexed before it leaves, so an ACK that races
                                        // the send still finds this transaction.
                                        if let Some(k) = AckKey::of(&self.request) {
                                            lock(&self.inner.server).accepted.insert(k, self.id);
                                        }
                                    }
                                    self.send(bytes.clone());
                                    match code {
                                        100..=199 => last = bytes,
                                        200..=299 => break Final::Success(bytes),
                                        _ => break Final::Failure(bytes),
                                    }
                                }
                                Some(ServerInput::Cancel(cancel)) => {
                                    self.final_class.store(3, Ordering::Release);
                                    let bytes = self.local_response(487, "Request Terminated");
                                    self.send(bytes.clone());
                                    if let Some(tu) = self.inner.tu.get() {
                                        tu.on_cancelled(self.id, *cancel, self.target.clone());
                                    }
                                    break Final::Failure(bytes);
                                }
                                Some(ServerInput::Ack) => {}
                            },
                            _ = sleep_until(guard) => {
                                warn!(tx = %self.id, "no final response from the application in time: 500");
            self.final_class.store(3, Ordering::Release);
                                                    let bytes = self.local_response(500, "Server Internal Error (no final response in time)");
                                self.send(bytes.clone());
                                break Final::Failure(bytes);
                            }
                        }
        };
        match fin {
            Final::Success(bytes) => self.accepted(bytes).await,
            Final::Failure(bytes) => self.completed_invite(bytes).await,
        }
    }

    /// RFC 6026 Accepted: the 2xx is retransmitted (T1 doubling to T2, UDP
    /// only) until its ACK arrives; timer L ends the transaction.
    async fn accepted(&mut self, mut response: Bytes) {
        let timers = self.inner.timers;
        // Indexed in `run_invite`, before the 2xx was sent.
        let ack_key = AckKey::of(&self.request);
        let timer_l = Instant::now() + timers.t1x64();
        let mut interval = timers.t1;
        let mut resend_at = (!self.reliable()).then(|| Instant::now() + interval);
        loop {
            tokio::select! {
                ev = self.next_input() => match ev {
                    None => break,
                    Some(ServerInput::Retransmission) => self.send(response.clone()),
                    Some(ServerInput::Respond(resp)) => {
                        if resp.status().is_some_and(|c| (200..300).contains(&c)) {
                            response = resp.to_bytes();
                            self.send(response.clone());
                        }
                    }
                    Some(ServerInput::Ack) => resend_at = None,
                    Some(ServerInput::Cancel(_)) => {}
                },
                _ = timer(resend_at) => {
                    telemetry::metrics::sip_retransmission_sent("INVITE");
                    self.send(response.clone());
                    interval = (interval * 2).min(timers.t2);
                    resend_at = Some(Instant::now() + interval);
                }
                _ = sleep_until(timer_l) => break,
            }
        }
        if let Some(k) = ack_key {
            let mut table = lock(&self.inner.server);
            if table.accepted.get(&k) == Some(&self.id) {
                table.accepted.remove(&k);
            }
        }
    }

    /// Completed: the non-2xx final is retransmitted by timer G (UDP only)
    /// until the ACK; timer H gives up; Confirmed absorbs ACKs for T4.
    async fn completed_invite(&mut self, response: Bytes) {
        self.release_request();
        let timers = self.inner.timers;
        let timer_h = Instant::now() + timers.t1x64();
        let mut interval = timers.t1;
        let mut timer_g = (!self.reliable()).then(|| Instant::now() + interval);
        loop {
            tokio::select! {
                ev = self.next_input() => match ev {
                    None => return,
                    Some(ServerInput::Retransmission) => self.send(response.clone()),
                    Some(ServerInput::Ack) => break,
                    Some(ServerInput::Respond(_)) => debug!(tx = %self.id, "response after the final one: ignored"),
                    Some(ServerInput::Cancel(_)) => {}
                },
                _ = timer(timer_g) => {
                    telemetry::metrics::sip_retransmission_sent("INVITE");
                    self.send(response.clone());
                    interval = (interval * 2).min(timers.t2);
                    timer_g = Some(Instant::now() + interval);
                }
                _ = sleep_until(timer_h) => {
                    debug!(tx = %self.id, "no ACK for the final response (timer H)");
                    return;
                }
            }
        }
        // Confirmed: timer I absorbs ACK retransmissions.
        self.absorb(timers.t4_unless_reliable(self.reliable())).await;
    }

    /// The Completed states only replay the final response; over UDP they
    /// last 32 s, so the request (about 1 KiB) is freed now rather than then.
    fn release_request(&mut self) {
        self.request = Message::response(500, "");
    }

    /// Confirmed (timer I): swallows further ACKs and retransmissions for
    /// `duration`.
    async fn absorb(&mut self, duration: Duration) {
        if duration.is_zero() {
            return;
        }
        let until = Instant::now() + duration;
        loop {
            tokio::select! {
                ev = self.next_input() => if ev.is_none() { return },
                _ = sleep_until(until) => return,
            }
        }
    }
}
