#![allow(clippy::unwrap_used)]

//! Offer/answer rules beyond the corpus: o= versions across re-offers
//! (hold), refusals, handler order and kept handlers, endpoint policies.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{forward, initial_offer, offer, origin_a, served, text};
use proto::sdp::v1 as pb;
use proto::sdp::v1::offer_reply::Result as Offered;
use proto::sdp::v1::sdp_negotiator_server::SdpNegotiator;
use sdp_svc::{Claim, EndpointPolicy, HandlerError, Negotiator, SdpConfig, SdpHandler, SdpService, Stream, StreamCx};
use tonic::{Code, Request};

const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 192.0.2.101\r\ns=-\r\nc=IN IP4 192.0.2.101\r\nt=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

fn negotiator() -> SdpService {
    served(Negotiator::from_config(&SdpConfig::default()).unwrap())
}

fn version(sdp: &[u8]) -> String {
    let t = text(sdp);
    let o = t.lines().find(|l| l.starts_with("o=")).unwrap();
    o.split(' ').nth(2).unwrap().to_owned()
}

#[tokio::test]
async fn hold_reoffer_bumps_version_and_same_offer_keeps_it() {
    let n = negotiator();
    let first = forward(offer(&n, initial_offer(OFFER)).await.unwrap());
    assert_eq!(version(&first.sdp), "1");

    // Hold: the offerer sends sendonly (and its own version + 1).
    let hold = OFFER.replace("a=sendrecv", "a=sendonly").replace("1 1 IN", "1 2 IN");
    let reoffer = |sdp: &str, previous: &bytes::Bytes| pb::OfferRequest {
        sdp: sdp.as_bytes().to_vec().into(),
        handlers: first.handlers.clone(),
        initial: false,
        // Ignored when previous is given.
        origin: Some(common::origin_b("198.51.100.1")),
        previous: previous.clone(),
        ..initial_offer(OFFER)
    };
    let second = forward(offer(&n, reoffer(&hold, &first.sdp)).await.unwrap());
    assert_eq!(
        text(&second.sdp),
        text(&first.sdp)
            .replace("2000 1 IN", "2000 2 IN")
            .replace("a=sendrecv", "a=sendonly"),
        "same o= but version + 1, direction passed on"
    );
    // The same offer again (a refresh): nothing changed, same version.
    let third = forward(offer(&n, reoffer(&hold, &second.sdp)).await.unwrap());
    assert_eq!(third.sdp, second.sdp);
    // Only the offerer's o= changed: still nothing changed for the other leg.
    let bumped = hold.replace("1 2 IN", "1 3 IN");
    let fourth = forward(offer(&n, reoffer(&bumped, &second.sdp)).await.unwrap());
    assert_eq!(fourth.sdp, second.sdp);
    // Off hold: version 3.
    let fifth = forward(offer(&n, reoffer(OFFER, &second.sdp)).await.unwrap());
    assert_eq!(version(&fifth.sdp), "3");
}

#[tokio::test]
async fn answer_previous_keeps_or_bumps_version() {
    let n = negotiator();
    let fwd = forward(offer(&n, initial_offer(OFFER)).await.unwrap());
    let answer =
        "v=0\r\no=bob 1 1 IN IP4 192.0.2.201\r\ns=-\r\nc=IN IP4 192.0.2.201\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let req = |answer: &str, previous: bytes::Bytes| pb::AnswerRequest {
        session: "t".into(),
        offer: OFFER.as_bytes().to_vec().into(),
        forwarded: fwd.sdp.clone(),
        answer: answer.as_bytes().to_vec().into(),
        handlers: fwd.handlers.clone(),
        origin: Some(origin_a("192.0.2.10")),
        previous,
    };
    let a1 = n
        .answer(Request::new(req(answer, Default::default())))
        .await
        .unwrap()
        .into_inner();
    let a2 = n
        .answer(Request::new(req(answer, a1.sdp.clone())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a2.sdp, a1.sdp);
    let moved = answer.replace("4000", "4002");
    let a3 = n
        .answer(Request::new(req(&moved, a1.sdp.clone())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version(&a3.sdp), "2");
    assert!(text(&a3.sdp).contains("m=audio 4002 RTP/AVP 0\r\n"));
}

#[tokio::test]
async fn malformed_is_invalid_argument() {
    let n = negotiator();
    for bad in [&b""[..], b"hello", b"v=0\r\nm=audio x RTP/AVP 0\r\n", b"\xff\xfe"] {
        let mut req = initial_offer("");
        req.sdp = bad.to_vec().into();
        let err = offer(&n, req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}");
        assert!(err.message().starts_with("sdp: "), "{}", err.message());
    }
    let e = offer(&n, initial_offer("s=-\r\nv=0\r\n")).await.unwrap_err();
    assert_eq!(e.message(), "sdp: the first line must be v=0");
    // No origin and no previous: nothing to write into o=.
    let mut req = initial_offer(OFFER);
    req.origin = None;
    assert_eq!(offer(&n, req).await.unwrap_err().code(), Code::InvalidArgument);
    // An answer with another number of m= sections than the offer.
    let fwd = forward(offer(&n, initial_offer(OFFER)).await.unwrap());
    let two = format!("{OFFER}m=video 0 RTP/AVP 96\r\n");
    let req = pb::AnswerRequest {
        offer: OFFER.as_bytes().to_vec().into(),
        forwarded: fwd.sdp,
        answer: two.into(),
        handlers: fwd.handlers,
        origin: Some(origin_a("192.0.2.10")),
        ..Default::default()
    };
    let e = n.answer(Request::new(req)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "answer: 2 m= sections for 1 forwarded");
}

#[tokio::test]
async fn bare_lf_offer_is_sent_with_crlf() {
    let n = negotiator();
    let lf = OFFER.replace("\r\n", "\n");
    let lf = lf.trim_end();
    let fwd = forward(offer(&n, initial_offer(lf)).await.unwrap());
    assert_eq!(
        text(&fwd.sdp),
        OFFER.replace("o=alice 1 1 IN IP4 192.0.2.101", "o=sipbus 2000 1 IN IP4 192.0.2.10")
    );
}

#[tokio::test]
async fn later_offer_with_nothing_accepted_is_forwarded_all_declined() {
    let n = negotiator();
    let g729 = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\n";
    let mut req = initial_offer(g729);
    req.initial = false;
    let fwd = forward(offer(&n, req).await.unwrap());
    assert!(text(&fwd.sdp).ends_with("m=audio 0 RTP/AVP 18\r\n"));
    assert_eq!(fwd.handlers, vec![String::new()]);
}

#[tokio::test]
async fn offered_port_zero_is_not_negotiated() {
    let n = negotiator();
    let removed = OFFER.replace("m=audio 49170", "m=audio 0");
    let mut req = initial_offer(&removed);
    req.initial = false;
    req.handlers = vec!["rtp".into()];
    let fwd = forward(offer(&n, req).await.unwrap());
    assert!(text(&fwd.sdp).ends_with("m=audio 0 RTP/AVP 0\r\n"));
    assert_eq!(fwd.handlers, vec![String::new()]);
}

#[tokio::test]
async fn endpoint_policy_overrides_codecs() {
    let mut config = SdpConfig::default();
    config.endpoints.insert(
        "pcma-only".into(),
        EndpointPolicy {
            codecs: Some(vec!["PCMA/8000".into()]),
            telephone_event: Some(false),
        },
    );
    let n = served(Negotiator::from_config(&config).unwrap());
    let mut req = initial_offer(OFFER);
    req.endpoint = "pcma-only".into();
    let fwd = forward(offer(&n, req).await.unwrap());
    assert!(text(&fwd.sdp).contains("m=audio 49170 RTP/AVP 8\r\na=sendrecv\r\n"));
    // Unknown profile: the default policy.
    let mut req = initial_offer(OFFER);
    req.endpoint = "nobody".into();
    let fwd = forward(offer(&n, req).await.unwrap());
    assert!(text(&fwd.sdp).contains("m=audio 49170 RTP/AVP 0 8 101\r\n"));
}

/// Claims any stream with its offered section, counting calls.
#[derive(Default)]
struct Echo {
    negotiated: AtomicUsize,
    ended: AtomicUsize,
}

#[async_trait::async_trait]
impl SdpHandler for Echo {
    async fn negotiate(&self, _cx: &StreamCx<'_>, offered: Stream<'_>) -> Result<Claim, HandlerError> {
        self.negotiated.fetch_add(1, Ordering::SeqCst);
        Ok(Claim::Take(offered.media.clone()))
    }
    // apply: the default, the other leg's answer as it is.
    async fn ended(&self, _cx: &StreamCx<'_>, _stream: Stream<'_>) {
        self.ended.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn first_claim_wins_and_reoffer_keeps_the_handler() {
    let a = Arc::new(Echo::default());
    let b = Arc::new(Echo::default());
    let mut n = Negotiator::new();
    n.register("a", &["audio".into()], a.clone()).unwrap();
    n.register("b", &["audio".into(), "text".into()], b.clone()).unwrap();
    assert!(
        n.register("a", &["video".into()], b.clone()).is_err(),
        "names are unique"
    );
    assert_eq!(n.chain("audio"), ["a", "b"]);
    assert_eq!(n.chain("text"), ["b"]);
    let n = served(n);

    let fwd = forward(offer(&n, initial_offer(OFFER)).await.unwrap());
    assert_eq!(fwd.handlers, ["a"]);
    assert_eq!(a.negotiated.load(Ordering::SeqCst), 1);
    assert_eq!(b.negotiated.load(Ordering::SeqCst), 0);

    // Re-offer: the stream had handler b; only b is asked.
    let mut req = initial_offer(OFFER);
    req.initial = false;
    req.handlers = vec!["b".into()];
    let fwd = forward(offer(&n, req).await.unwrap());
    assert_eq!(fwd.handlers, ["b"]);
    assert_eq!(a.negotiated.load(Ordering::SeqCst), 1);

    let end = pb::EndRequest {
        session: "t".into(),
        offer: OFFER.as_bytes().to_vec().into(),
        answer: Default::default(),
        handlers: fwd.handlers,
    };
    n.end(Request::new(end)).await.unwrap();
    assert_eq!((a.ended.load(Ordering::SeqCst), b.ended.load(Ordering::SeqCst)), (0, 1));
}

#[tokio::test]
async fn no_handlers_at_all_is_488_304() {
    let n = served(Negotiator::new());
    match offer(&n, initial_offer(OFFER)).await.unwrap() {
        Offered::Reject(r) => assert_eq!(
            (r.status, r.warning.as_str()),
            (488, "304 sipbus \"no acceptable media stream\"")
        ),
        Offered::Forward(f) => panic!("forwarded {f:?}"),
    }
}
