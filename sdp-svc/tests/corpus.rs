#![allow(clippy::unwrap_used)]

//! Offers as phones send them, through the negotiator built from
//! configuration: the forwarded offer and the final answer, compared byte
//! for byte with `tests/corpus/*.sdp`.

mod common;

use common::{Case, offer, origin_a, origin_b, text};
use proto::sdp::v1 as pb;
use proto::sdp::v1::offer_reply::Result as Offered;
use proto::sdp::v1::sdp_negotiator_server::SdpNegotiator;
use sdp_svc::{Negotiator, SdpConfig, SdpService};
use tonic::Request;

/// The default policy plus one video codec, so video streams have a taker.
fn negotiator() -> SdpService {
    let mut config = SdpConfig::default();
    config.codecs.push("H264/90000".into());
    common::served(Negotiator::from_config(&config).unwrap())
}

async fn run(n: &SdpService, case: &Case) {
    let name = &case.name;
    let address = case.lines("origin").map_or("192.0.2.10".to_owned(), |l| l[0].clone());
    let offered = case.sdp("offer").unwrap();
    let req = pb::OfferRequest {
        session: name.clone(),
        sdp: offered.clone().into(),
        origin: Some(origin_b(&address)),
        initial: true,
        ..Default::default()
    };
    let fwd = match offer(n, req).await.unwrap() {
        Offered::Reject(r) => {
            let expected = case.raw("reject").unwrap_or_else(|| panic!("{name}: rejected: {r:?}"));
            assert_eq!(format!("{} {}\n", r.status, r.warning), expected, "{name}: rejection");
            return;
        }
        Offered::Forward(f) => f,
    };
    assert!(case.raw("reject").is_none(), "{name}: expected a rejection");
    assert_eq!(
        text(&fwd.sdp),
        case.sdp("forwarded").unwrap(),
        "{name}: forwarded offer"
    );
    assert_eq!(fwd.handlers, case.lines("handlers").unwrap(), "{name}: handlers");
    let answer = pb::AnswerRequest {
        session: name.clone(),
        offer: offered.clone().into(),
        forwarded: fwd.sdp.clone(),
        answer: case.sdp("answer").unwrap().into(),
        handlers: fwd.handlers.clone(),
        origin: Some(origin_a(&address)),
        previous: Default::default(),
    };
    let fin = n.answer(Request::new(answer)).await.unwrap().into_inner();
    assert_eq!(text(&fin.sdp), case.sdp("final").unwrap(), "{name}: final answer");
    let end = pb::EndRequest {
        session: name.clone(),
        offer: offered.into(),
        answer: fin.sdp,
        handlers: fwd.handlers,
    };
    n.end(Request::new(end)).await.unwrap();
}

#[tokio::test]
async fn corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut cases: Vec<Case> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sdp"))
        .map(|p| Case::load(&p))
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    // A case that went missing must not pass silently.
    for expected in [
        "audio_only",
        "audio_video",
        "codec_not_allowed",
        "ice_dtls",
        "ipv6",
        "opus",
        "two_audio",
        "unknown_media",
        "unknown_only",
    ] {
        assert!(names.contains(&expected), "corpus case {expected} missing");
    }
    let n = negotiator();
    for case in &cases {
        run(&n, case).await;
    }
}
