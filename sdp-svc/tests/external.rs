#![allow(clippy::unwrap_used)]

//! An external SDP handler over real gRPC on loopback: a T.140 text handler
//! (RFC 4103) claims `m=text`, which the built-in handler does not take;
//! then the handler goes away or is too slow, and each failure policy
//! applies.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{forward, initial_offer, offer, origin_a, served, text};
use extension::{ModuleConfig, OnFailure};
use proto::sdp::v1 as pb;
use proto::sdp::v1::negotiate_reply::Result as Negotiated;
use proto::sdp::v1::offer_reply::Result as Offered;
use proto::sdp::v1::sdp_handler_server::{SdpHandler, SdpHandlerServer};
use proto::sdp::v1::sdp_negotiator_server::SdpNegotiator;
use sdp_svc::{Negotiator, SdpConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::{Code, Request, Response, Status};

const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 192.0.2.101\r\ns=-\r\nc=IN IP4 192.0.2.101\r\nt=0 0\r\n\
m=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
m=text 11000 RTP/AVP 98\r\na=rtpmap:98 t140/1000\r\n";

const ANSWER: &str = "v=0\r\no=bob 1 1 IN IP4 192.0.2.201\r\ns=-\r\nc=IN IP4 192.0.2.201\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
m=text 4002 RTP/AVP 98\r\na=rtpmap:98 t140/1000\r\n";

/// Claims `m=text` with T.140 as offered; slow when told to.
struct T140 {
    delay: Duration,
    ended: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl SdpHandler for T140 {
    async fn negotiate(&self, r: Request<pb::NegotiateRequest>) -> Result<Response<pb::NegotiateReply>, Status> {
        tokio::time::sleep(self.delay).await;
        let offered = r.into_inner().offered.unwrap();
        let result = if offered.media == "text" && offered.section.contains("t140/1000") {
            Negotiated::Claim(offered.section)
        } else {
            Negotiated::Decline(pb::Decline {
                reason: "not T.140".into(),
            })
        };
        Ok(Response::new(pb::NegotiateReply { result: Some(result) }))
    }

    async fn apply(&self, r: Request<pb::ApplyRequest>) -> Result<Response<pb::ApplyReply>, Status> {
        Ok(Response::new(pb::ApplyReply {
            section: r.into_inner().answered.unwrap().section,
        }))
    }

    async fn ended(&self, _: Request<pb::EndedRequest>) -> Result<Response<pb::EndedReply>, Status> {
        self.ended.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(pb::EndedReply {}))
    }
}

/// A gRPC server on 127.0.0.1, port chosen by the system.
struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(handler: T140) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let serve = tonic::transport::Server::builder()
            .add_service(SdpHandlerServer::new(handler))
            .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), async {
                let _ = stopped.await;
            });
        let task = tokio::spawn(async move {
            serve.await.unwrap();
        });
        Server { addr, stop, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful: open connections get GOAWAY and close, so a client must
    /// reconnect, and finds nobody.
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("server stops")
            .unwrap();
    }
}

fn config(url: &str, on_failure: OnFailure, timeout_ms: u64) -> SdpConfig {
    SdpConfig {
        handlers: vec![ModuleConfig {
            url: url.into(),
            media: vec!["text".into()],
            timeout_ms,
            on_failure,
            reject_status: 503,
            ..ModuleConfig::builtin("t140")
        }],
        ..SdpConfig::default()
    }
}

fn answer_request(fwd: &pb::Forward) -> pb::AnswerRequest {
    pb::AnswerRequest {
        session: "ext".into(),
        offer: OFFER.as_bytes().to_vec().into(),
        forwarded: fwd.sdp.clone(),
        answer: ANSWER.as_bytes().to_vec().into(),
        handlers: fwd.handlers.clone(),
        origin: Some(origin_a("192.0.2.10")),
        previous: Default::default(),
    }
}

fn rejection(r: Offered) -> (u32, String) {
    match r {
        Offered::Reject(r) => (r.status, r.warning),
        Offered::Forward(f) => panic!("forwarded: {}", text(&f.sdp)),
    }
}

#[tokio::test]
async fn external_handler_claims_text_then_fails_by_policy() {
    // The built-in handler alone: text has no taker, port 0.
    let builtin = served(Negotiator::from_config(&SdpConfig::default()).unwrap());
    let fwd = forward(offer(&builtin, initial_offer(OFFER)).await.unwrap());
    assert_eq!(fwd.handlers, ["rtp", ""]);
    assert!(text(&fwd.sdp).ends_with("m=text 0 RTP/AVP 98\r\n"));

    let ended = Arc::new(AtomicUsize::new(0));
    let server = Server::start(T140 {
        delay: Duration::ZERO,
        ended: ended.clone(),
    })
    .await;
    let url = server.url();
    let n = Negotiator::from_config(&config(&url, OnFailure::Open, 300)).unwrap();
    assert_eq!(n.chain("text"), ["t140"]);
    assert_eq!(n.chain("audio"), ["rtp"]);
    let n = served(n);

    // Claimed: the text stream is offered on as the handler said.
    let fwd = forward(offer(&n, initial_offer(OFFER)).await.unwrap());
    assert_eq!(fwd.handlers, ["rtp", "t140"]);
    assert_eq!(
        text(&fwd.sdp),
        OFFER.replace("o=alice 1 1 IN IP4 192.0.2.101", "o=sipbus 2000 1 IN IP4 192.0.2.10")
    );
    let fin = n.answer(Request::new(answer_request(&fwd))).await.unwrap().into_inner();
    assert_eq!(
        text(&fin.sdp),
        ANSWER.replace("o=bob 1 1 IN IP4 192.0.2.201", "o=sipbus 1000 1 IN IP4 192.0.2.10")
    );
    let end = pb::EndRequest {
        session: "ext".into(),
        offer: OFFER.as_bytes().to_vec().into(),
        answer: fin.sdp,
        handlers: fwd.handlers.clone(),
    };
    n.end(Request::new(end)).await.unwrap();
    assert_eq!(ended.load(Ordering::SeqCst), 1);

    server.stop().await;

    // Fail open: text declined, audio unaffected; in the answer too.
    let down = forward(offer(&n, initial_offer(OFFER)).await.unwrap());
    assert_eq!(down.handlers, ["rtp", ""]);
    assert!(text(&down.sdp).contains("m=audio 49170 RTP/AVP 0\r\n"));
    assert!(text(&down.sdp).ends_with("m=text 0 RTP/AVP 98\r\n"));
    let fin = n.answer(Request::new(answer_request(&fwd))).await.unwrap().into_inner();
    assert!(text(&fin.sdp).contains("m=audio 4000 RTP/AVP 0\r\n"));
    assert!(text(&fin.sdp).ends_with("m=text 0 RTP/AVP 98\r\n"));
    // Ended errors are logged, not returned.
    let end = pb::EndRequest {
        session: "ext".into(),
        offer: OFFER.as_bytes().to_vec().into(),
        answer: Default::default(),
        handlers: fwd.handlers.clone(),
    };
    n.end(Request::new(end)).await.unwrap();

    // Fail closed: the offer is rejected with the configured status; an
    // answer through the failed handler fails the call.
    let closed = served(Negotiator::from_config(&config(&url, OnFailure::Closed, 300)).unwrap());
    let (status, warning) = rejection(offer(&closed, initial_offer(OFFER)).await.unwrap());
    assert_eq!(
        (status, warning.as_str()),
        (503, "399 sipbus \"sdp handler t140 failed\"")
    );
    let e = closed.answer(Request::new(answer_request(&fwd))).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    // An offer without text never asks it.
    let audio_only = OFFER.split("m=text").next().unwrap();
    let ok = forward(offer(&closed, initial_offer(audio_only)).await.unwrap());
    assert_eq!(ok.handlers, ["rtp"]);
}

#[tokio::test]
async fn slow_handler_times_out_by_policy() {
    let server = Server::start(T140 {
        delay: Duration::from_secs(2),
        ended: Arc::default(),
    })
    .await;
    let url = server.url();
    let started = tokio::time::Instant::now();

    let open = served(Negotiator::from_config(&config(&url, OnFailure::Open, 150)).unwrap());
    let fwd = forward(offer(&open, initial_offer(OFFER)).await.unwrap());
    assert_eq!(fwd.handlers, ["rtp", ""]);

    let mut c = config(&url, OnFailure::Closed, 150);
    c.handlers[0].reject_status = 500;
    let closed = served(Negotiator::from_config(&c).unwrap());
    let (status, _) = rejection(offer(&closed, initial_offer(OFFER)).await.unwrap());
    assert_eq!(status, 500);

    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    drop((open, closed));
    server.stop().await;
}
