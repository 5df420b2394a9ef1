#![allow(clippy::unwrap_used)]

//! Whatever bytes arrive as offer, forwarded offer, answer or previous
//! description, the negotiator answers with a result or an error.

mod common;

use std::sync::OnceLock;

use proptest::prelude::*;
use proto::sdp::v1 as pb;
use proto::sdp::v1::sdp_negotiator_server::SdpNegotiator;
use sdp_svc::{Negotiator, SdpConfig, SdpService};
use tonic::Request;

const OFFER: &str = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n\
m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nm=text 6000 RTP/AVP 98\r\n";

fn env() -> &'static (tokio::runtime::Runtime, SdpService) {
    static ENV: OnceLock<(tokio::runtime::Runtime, SdpService)> = OnceLock::new();
    ENV.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut config = SdpConfig::default();
        config.codecs.push("H264/90000".into());
        (rt, common::served(Negotiator::from_config(&config).unwrap()))
    })
}

fn exercise(offer: &[u8], answer: &[u8], previous: &[u8], handlers: Vec<String>) {
    let (rt, n) = env();
    rt.block_on(async {
        let req = pb::OfferRequest {
            session: "p".into(),
            sdp: offer.to_vec().into(),
            origin: Some(common::origin_b("192.0.2.10")),
            handlers: handlers.clone(),
            initial: handlers.is_empty(),
            previous: previous.to_vec().into(),
            ..Default::default()
        };
        let forwarded = match n.offer(Request::new(req)).await {
            Ok(r) => match r.into_inner().result {
                Some(pb::offer_reply::Result::Forward(f)) => f,
                _ => pb::Forward {
                    sdp: OFFER.as_bytes().to_vec().into(),
                    handlers: handlers.clone(),
                },
            },
            Err(_) => pb::Forward {
                sdp: OFFER.as_bytes().to_vec().into(),
                handlers,
            },
        };
        let req = pb::AnswerRequest {
            session: "p".into(),
            offer: offer.to_vec().into(),
            forwarded: forwarded.sdp.clone(),
            answer: answer.to_vec().into(),
            handlers: forwarded.handlers.clone(),
            origin: Some(common::origin_a("192.0.2.10")),
            previous: previous.to_vec().into(),
        };
        let _ = n.answer(Request::new(req)).await;
        let req = pb::EndRequest {
            session: "p".into(),
            offer: offer.to_vec().into(),
            answer: answer.to_vec().into(),
            handlers: forwarded.handlers,
        };
        let _ = n.end(Request::new(req)).await;
    });
}

fn mutate(base: &str, pos: usize, byte: u8, cut: usize) -> Vec<u8> {
    let mut b = base.as_bytes().to_vec();
    let pos = pos % b.len();
    b[pos] = byte;
    b.truncate(cut % (b.len() + 1));
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes(
        offer in proptest::collection::vec(any::<u8>(), 0..400),
        answer in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        exercise(&offer, &answer, &[], Vec::new());
        exercise(OFFER.as_bytes(), &answer, &[], Vec::new());
        exercise(OFFER.as_bytes(), OFFER.as_bytes(), &offer, vec!["rtp".into()]);
    }

    #[test]
    fn mutated_descriptions(
        pos in any::<usize>(), byte in any::<u8>(), cut in any::<usize>(),
        handlers in proptest::collection::vec("(rtp|x|)", 0..5),
    ) {
        let m = mutate(OFFER, pos, byte, cut);
        exercise(&m, OFFER.as_bytes(), &[], Vec::new());
        exercise(OFFER.as_bytes(), &m, &[], handlers.clone());
        exercise(OFFER.as_bytes(), OFFER.as_bytes(), &m, handlers);
    }
}
