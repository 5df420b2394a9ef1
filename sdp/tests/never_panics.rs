//! Random bytes and mutated offers never panic, and what parses round-trips.

use proptest::prelude::*;
use sdp::Sdp;

const BASE: &str = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n";

fn exercise(bytes: &[u8]) {
    if let Ok(sdp) = Sdp::parse(bytes) {
        let _ = (sdp.origin(), sdp.connection(), sdp.direction());
        for m in &sdp.media {
            let _ = (m.media_line(), m.connection(), m.direction(), m.ptime());
            let _ = (m.rtpmaps().count(), m.fmtps().count());
        }
        assert_eq!(sdp.to_text().as_bytes(), bytes, "what parses writes back unchanged");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_offer(pos in 0usize..BASE.len(), byte in any::<u8>(), cut in 0usize..BASE.len()) {
        let mut b = BASE.as_bytes().to_vec();
        b[pos] = byte;
        exercise(&b);
        exercise(&BASE.as_bytes()[..cut]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_section(text in "[a-z=0-9 /:\r\n-]{0,200}") {
        if let Ok(m) = sdp::Media::parse(&text, &sdp::Limits::default()) {
            let _ = (m.media_line(), m.rtpmaps().count(), m.to_text());
        }
    }
}
