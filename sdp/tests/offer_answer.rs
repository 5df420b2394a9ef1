#![allow(clippy::unwrap_used)]

//! RFC 3264 answers through the built-in RTP policy: codec choice, DTMF,
//! directions, declined streams, and 488 when nothing is acceptable.

use std::net::IpAddr;

use sdp::negotiate::{Codec, LocalSession, NoStreamAccepted, RtpPolicy, StreamAnswer, answer};
use sdp::{Direction, Sdp};

fn policy(codecs: &[&str]) -> RtpPolicy {
    RtpPolicy {
        codecs: codecs.iter().filter_map(|c| Codec::parse(c)).collect(),
        telephone_event: true,
    }
}

fn local() -> LocalSession {
    LocalSession {
        username: "sipbus".into(),
        session_id: 42,
        version: 1,
        address: "192.0.2.50".parse().unwrap(),
    }
}

fn negotiate(offer: &str, policy: &RtpPolicy) -> Result<Sdp, NoStreamAccepted> {
    let offer = Sdp::parse(offer.as_bytes()).unwrap();
    let addr: IpAddr = "192.0.2.50".parse().unwrap();
    answer(&offer, &local(), |i, m| {
        let is_rtp = m
            .media_line()
            .is_some_and(|ml| ml.media == "audio" || ml.media == "video");
        match (is_rtp, policy.answer_stream(m, 20_000 + 2 * i as u16, Some(addr))) {
            (true, Some(a)) => StreamAnswer::Accept(a),
            _ => StreamAnswer::Decline,
        }
    })
}

const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 111 101\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendonly\r\n\
m=video 51372 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
m=text 11000 RTP/AVP 98\r\na=rtpmap:98 t140/1000\r\n";

#[test]
fn codecs_in_policy_order_with_dtmf_and_mirrored_direction() {
    let a = negotiate(OFFER, &policy(&["PCMA/8000", "PCMU/8000", "H264/90000"])).unwrap();
    assert_eq!(a.origin().unwrap().username, "sipbus");
    assert_eq!(a.media.len(), 3, "every offered stream answered, in order");
    let audio = &a.media[0];
    assert_eq!(audio.media_line().unwrap().formats, vec!["8", "0", "101"]);
    let maps: Vec<String> = audio.rtpmaps().map(|r| r.to_string()).collect();
    assert_eq!(maps, vec!["8 PCMA/8000", "0 PCMU/8000", "101 telephone-event/8000"]);
    assert_eq!(audio.fmtps().next().map(|f| f.parameters), Some("0-16"));
    assert_eq!(audio.ptime(), Some(20));
    assert_eq!(
        audio.direction(),
        Some(Direction::RecvOnly),
        "sendonly offer, recvonly answer"
    );
    assert_eq!(a.media[1].media_line().unwrap().port, 20_002);
    // Text has no handler here: declined in place, port 0.
    let text = a.media[2].media_line().unwrap();
    assert_eq!((text.media, text.port, text.formats), ("text", 0, vec!["98"]));
    // The answer is valid SDP and round-trips.
    let again = Sdp::parse(a.to_text().as_bytes()).unwrap();
    assert_eq!(again.to_text(), a.to_text());
}

#[test]
fn opus_keeps_channels_and_fmtp() {
    let a = negotiate(OFFER, &policy(&["opus/48000/2", "PCMU/8000"])).unwrap();
    let audio = &a.media[0];
    assert_eq!(audio.media_line().unwrap().formats, vec!["111", "0", "101"]);
    let opus = audio.rtpmaps().next().unwrap();
    assert_eq!(opus.to_string(), "111 opus/48000/2");
    assert!(
        audio
            .fmtps()
            .any(|f| f.payload_type == 111 && f.parameters == "useinbandfec=1")
    );
    // Video not in this policy: declined.
    assert_eq!(a.media[1].media_line().unwrap().port, 0);
}

#[test]
fn nothing_acceptable_is_an_error() {
    assert_eq!(negotiate(OFFER, &policy(&["G722/8000"])), Err(NoStreamAccepted));
    // DTMF alone does not make a stream acceptable.
    let dtmf_only = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 101\r\na=rtpmap:101 telephone-event/8000\r\n";
    assert_eq!(negotiate(dtmf_only, &policy(&["PCMU/8000"])), Err(NoStreamAccepted));
}
