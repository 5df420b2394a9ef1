//! Unit tests of calls in process: session-svc with the real store
//! (embedded), the real negotiator, and an edge and a location service
//! that record what is sent and let the test answer, so races that are
//! hard to time end to end (a CANCEL crossing a 2xx, a forked 2xx after
//! the winner, a BYE crossing the answer) are driven step by step.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chain;
mod in_dialog;
mod races;
mod timers;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bus::Edges;
use edge_api::{
    ClientEvent, ClientTx, ClientTxId, ClientTxRef, Edge, EdgeError, EdgeId, Flow, Origin, ServerTxId, ServerTxRef,
    Transport,
};
use registrar_svc::binding::Binding;
use registrar_svc::{Location, LocationClient, LocationError};
use sdp_svc::{Negotiator, SdpClient, SdpConfig};
use sip_message::{Known, Message, Method};
use tokio::sync::mpsc;

use crate::config::SessionConfig;
use crate::core::{Core, Directory};
use crate::supplements::Supplements;

/// What session-svc asked the edge to do.
#[derive(Debug)]
pub(crate) enum Sent {
    Response {
        tx: ServerTxId,
        message: Message,
    },
    Request {
        id: ClientTxId,
        message: Message,
    },
    Ack {
        message: Message,
    },
    Cancel {
        id: ClientTxId,
        headers: Vec<(String, String)>,
    },
}

/// An edge in the test's hands.
pub(crate) struct FakeEdge {
    id: EdgeId,
    events: mpsc::UnboundedSender<Sent>,
    /// Responses to requests sent, by client transaction.
    clients: Mutex<Vec<(ClientTxId, mpsc::Sender<ClientEvent>)>>,
    /// Server transactions already answered finally (a CANCEL's 487, or
    /// a final response): further responses are refused, as the edge
    /// refuses them.
    answered: Mutex<HashSet<ServerTxId>>,
    next: Mutex<u64>,
}

#[async_trait]
impl Edge for FakeEdge {
    async fn respond(&self, tx: ServerTxId, response: Message) -> Result<(), EdgeError> {
        let mut answered = self.answered.lock().unwrap();
        if answered.contains(&tx) {
            return Err(EdgeError::AlreadyAnswered(tx));
        }
        if response.status().unwrap_or(0) >= 200 {
            answered.insert(tx);
        }
        let _ = self.events.send(Sent::Response { tx, message: response });
        Ok(())
    }

    async fn send_request(&self, request: Message, _flow: Flow) -> Result<ClientTx, EdgeError> {
        let id = {
            let mut n = self.next.lock().unwrap();
            *n += 1;
            ClientTxId(*n)
        };
        let (tx, rx) = mpsc::channel(16);
        self.clients.lock().unwrap().push((id, tx));
        let _ = self.events.send(Sent::Request { id, message: request });
        Ok(ClientTx::new(
            ClientTxRef {
                edge: self.id.clone(),
                id,
            },
            rx,
        ))
    }

    async fn send_ack(&self, ack: Message, _flow: Flow) -> Result<(), EdgeError> {
        let _ = self.events.send(Sent::Ack { message: ack });
        Ok(())
    }

    async fn cancel(&self, tx: ClientTxId, headers: Vec<(String, String)>) -> Result<(), EdgeError> {
        let _ = self.events.send(Sent::Cancel { id: tx, headers });
        Ok(())
    }
}

/// Every user has the bindings the test gave it.
struct FakeLocation {
    bindings: Vec<(String, Vec<Binding>)>,
}

#[async_trait]
impl Location for FakeLocation {
    async fn lookup(&self, aor: &str) -> Result<Vec<Binding>, LocationError> {
        Ok(self
            .bindings
            .iter()
            .find(|(a, _)| a == aor)
            .map(|(_, b)| b.clone())
            .unwrap_or_default())
    }
}

fn binding(uri: &str) -> Binding {
    Binding {
        contact: format!("<{uri}>"),
        uri: uri.to_owned(),
        expires_at_ms: u64::MAX / 2,
        q: 1000,
        call_id: "reg".into(),
        cseq: 1,
        instance: None,
        reg_id: None,
        path: Vec::new(),
        flow: Flow {
            local: Some("192.0.2.9:5060".parse().unwrap()),
            edge: Some(EdgeId::new("edge")),
            ..Flow::to(Transport::Udp, "192.0.2.2:5060".parse().unwrap())
        },
    }
}

pub(crate) const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
pub(crate) const ANSWER: &str = "v=0\r\no=bob 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n\
m=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// session-svc with its fake neighbours, and the test's end of them.
pub(crate) struct Harness {
    pub core: Arc<Core>,
    pub edge: Arc<FakeEdge>,
    events: mpsc::UnboundedReceiver<Sent>,
    next_tx: u64,
}

impl Harness {
    /// `bob` is registered at `bob_contacts` (one branch each).
    pub async fn new(bob_contacts: &[&str]) -> Harness {
        Harness::with(
            bob_contacts,
            SessionConfig {
                authenticate: false,
                ..SessionConfig::default()
            },
        )
        .await
    }

    pub async fn with(bob_contacts: &[&str], config: SessionConfig) -> Harness {
        let (events_tx, events) = mpsc::unbounded_channel();
        let edge = Arc::new(FakeEdge {
            id: EdgeId::new("edge"),
            events: events_tx,
            clients: Mutex::default(),
            answered: Mutex::default(),
            next: Mutex::new(100),
        });
        let location = FakeLocation {
            bindings: vec![(
                "sip:bob@example.com".into(),
                bob_contacts.iter().map(|c| binding(c)).collect(),
            )],
        };
        let users = ["alice", "bob"]
            .into_iter()
            .map(|u| {
                (
                    (u.to_owned(), "example.com".to_owned()),
                    sip_auth::Secret::Password("x".into()),
                )
            })
            .collect();
        let core = Arc::new(Core::new(
            config.clone(),
            state_store::Store::memory(),
            Edges::local(EdgeId::new("edge"), edge.clone()),
            LocationClient::new(Arc::new(location)),
            SdpClient::new(Arc::new(Negotiator::from_config(&SdpConfig::default()).unwrap())),
            Supplements::from_config(&config).unwrap(),
            Directory {
                domains: vec!["example.com".into()],
                users,
                auth: None,
            },
        ));
        Harness {
            core,
            edge,
            events,
            next_tx: 0,
        }
    }

    pub(crate) fn flow() -> Flow {
        Flow {
            local: Some("192.0.2.9:5060".parse().unwrap()),
            edge: Some(EdgeId::new("edge")),
            ..Flow::to(Transport::Udp, "192.0.2.1:5060".parse().unwrap())
        }
    }

    /// A server transaction for a request the caller sends.
    pub fn tx(&mut self) -> ServerTxRef {
        self.next_tx += 1;
        ServerTxRef {
            edge: EdgeId::new("edge"),
            id: ServerTxId(self.next_tx),
        }
    }

    /// The caller (alice) calls bob; returns the INVITE's transaction.
    pub fn call(&mut self, call_id: &str) -> (ServerTxRef, Message) {
        let tx = self.tx();
        let invite = parse(&format!(
            "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{call_id}\n\
From: <sip:alice@example.com>;tag=alice-tag\nTo: <sip:bob@example.com>\nCall-ID: {call_id}\nCSeq: 1 INVITE\n\
Contact: <sip:alice@192.0.2.1:5060>\nMax-Forwards: 70\nContent-Type: application/sdp\n\n{}",
            OFFER.replace("\r\n", "\n")
        ));
        tokio::spawn(crate::setup::invite(
            self.core.clone(),
            tx.clone(),
            Harness::flow(),
            invite.clone(),
        ));
        (tx, invite)
    }

    /// A request from the caller inside the call (`to_tag`: sipbus's tag
    /// on the caller's leg).
    pub fn caller_request(&mut self, method: Method, call_id: &str, to_tag: &str, cseq: u32) -> (ServerTxRef, Message) {
        let tx = self.tx();
        let req = parse(&format!(
            "{method} sip:bob@192.0.2.9 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{method}{cseq}\n\
From: <sip:alice@example.com>;tag=alice-tag\nTo: <sip:bob@example.com>;tag={to_tag}\nCall-ID: {call_id}\n\
CSeq: {cseq} {method}\nContact: <sip:alice@192.0.2.1:5060>\nMax-Forwards: 70\n\n"
        ));
        (tx, req)
    }

    /// [`Harness::caller_request`] carrying an SDP offer.
    pub fn caller_offer(&mut self, method: Method, call_id: &str, to_tag: &str, cseq: u32) -> (ServerTxRef, Message) {
        let (tx, mut req) = self.caller_request(method, call_id, to_tag, cseq);
        req.push_header(Known::ContentType, "application/sdp");
        req.set_body(bytes::Bytes::from(OFFER));
        (tx, req)
    }

    /// A call answered by its one branch (tag `b1`), the caller's ACK not
    /// sent: sipbus's tag on the caller's leg, and the callee's INVITE.
    pub async fn answered(&mut self, call_id: &str) -> (String, Message) {
        let (tx, _) = self.call(call_id);
        let (branch, invite) = self.request(Method::Invite).await;
        self.answer(branch, reply(&invite, 200, "b1", true)).await;
        let ok = self.response(&tx).await;
        assert_eq!(ok.status(), Some(200));
        (ok.to_tag().unwrap().to_owned(), invite)
    }

    /// Hands a request with a To tag to session-svc, as the edge does.
    pub async fn in_dialog(&self, tx: ServerTxRef, req: Message) {
        crate::in_dialog::request(&self.core, tx, req).await;
    }

    /// [`Harness::in_dialog`] on a task of its own: for a request whose
    /// relay waits on what the test does next.
    pub fn in_dialog_spawned(&self, tx: ServerTxRef, req: Message) -> tokio::task::JoinHandle<()> {
        let core = self.core.clone();
        tokio::spawn(async move { crate::in_dialog::request(&core, tx, req).await })
    }

    /// The next thing session-svc sent, within 5 s.
    pub async fn next(&mut self) -> Sent {
        tokio::time::timeout(Duration::from_secs(5), self.events.recv())
            .await
            .expect("session-svc sent something within 5 s")
            .expect("the edge is alive")
    }

    /// Waits for a request of `method`, skipping anything else.
    pub async fn request(&mut self, method: Method) -> (ClientTxId, Message) {
        loop {
            if let Sent::Request { id, message } = self.next().await
                && message.method() == Some(&method)
            {
                return (id, message);
            }
        }
    }

    /// Waits for a response on `tx`, skipping anything else.
    pub async fn response(&mut self, tx: &ServerTxRef) -> Message {
        loop {
            if let Sent::Response { tx: t, message } = self.next().await
                && t == tx.id
            {
                return message;
            }
        }
    }

    /// Everything sent until nothing more comes for 200 ms.
    pub async fn drain(&mut self) -> Vec<Sent> {
        let mut out = Vec::new();
        while let Ok(Some(s)) = tokio::time::timeout(Duration::from_millis(200), self.events.recv()).await {
            out.push(s);
        }
        out
    }

    /// The callee answers client transaction `id` with `response`.
    pub async fn answer(&self, id: ClientTxId, response: Message) {
        let sender = self
            .edge
            .clients
            .lock()
            .unwrap()
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, s)| s.clone())
            .expect("a client transaction of that id");
        sender
            .send(ClientEvent {
                response,
                origin: Origin::Peer,
            })
            .await
            .unwrap();
    }

    /// The edge took the transaction's final answer itself (487 after a
    /// CANCEL): what session-svc sends on it later is refused.
    pub fn answered_by_edge(&self, tx: &ServerTxRef) {
        self.edge.answered.lock().unwrap().insert(tx.id);
    }
}

pub(crate) fn parse(text: &str) -> Message {
    let mut text = text.replace('\n', "\r\n");
    if !text.contains("Content-Length") {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        text = format!("{head}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    }
    Message::parse(bytes::Bytes::from(text)).expect("test messages parse")
}

/// The callee's response to a request sipbus sent it.
pub(crate) fn reply(req: &Message, code: u16, tag: &str, with_sdp: bool) -> Message {
    // The edge adds its Via to what it sends; the response carries it.
    let mut sent = req.clone();
    sent.prepend_header(Known::Via, "SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKedge");
    let mut r = sent.make_response(code, "X", Some(tag));
    r.remove_header(Known::ContentLength);
    if (101..300).contains(&code) {
        r.push_header(Known::Contact, &format!("<sip:bob@192.0.2.2:5060;{tag}>"));
    }
    if with_sdp {
        r.push_header(Known::ContentType, "application/sdp");
        r.set_body(bytes::Bytes::from(ANSWER));
    }
    parse(&String::from_utf8_lossy(&r.to_bytes()).replace("\r\n", "\n"))
}
