#![allow(clippy::unwrap_used)]

//! Offers phones send, parsed and written back byte for byte, with the
//! typed values offer/answer reads; and the malformed ones refused.

use sdp::{Direction, ParseError, Sdp};

const AUDIO: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

const AUDIO_VIDEO_ICE_DTLS_V6: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP6 2001:db8::1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=msid-semantic: WMS\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\n\
c=IN IP6 2001:db8::1\r\n\
a=ice-ufrag:F7gI\r\n\
a=ice-pwd:x9cml/YzichV2+XlhiMu8g\r\n\
a=fingerprint:sha-256 D1:2C:BE:AD:C4:F6:64:5C:25:16:11:9C:AF:E7:0F:73:79:36:4E:9C:1E:15:54:39:0C:06:8B:ED:96:86:00:39\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=candidate:1 1 udp 2113937151 2001:db8::1 54400 typ host\r\n\
a=sendonly\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
c=IN IP6 2001:db8::1\r\n\
a=mid:1\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=recvonly\r\n";

const TWO_AUDIO_AND_UNKNOWN: &str = "v=0\n\
o=bob 1 1 IN IP4 198.51.100.9\n\
s=two streams\n\
c=IN IP4 198.51.100.9\n\
t=0 0\n\
x=an unknown line type, kept\n\
m=audio 5004 RTP/AVP 0\n\
m=audio 5006 RTP/AVP 8\n\
a=inactive\n\
m=hologram 7000/2 XYZ/AVP 12 13\n\
a=weird-attr\n\
m=text 6000 RTP/AVP 98\n\
a=rtpmap:98 t140/1000";

#[test]
fn round_trips_exactly() {
    for (name, text) in [
        ("audio", AUDIO),
        ("av", AUDIO_VIDEO_ICE_DTLS_V6),
        ("two+unknown", TWO_AUDIO_AND_UNKNOWN),
    ] {
        let sdp = Sdp::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(sdp.to_text(), text, "{name}");
    }
}

#[test]
fn typed_values() {
    let sdp = Sdp::parse(AUDIO.as_bytes()).unwrap();
    let o = sdp.origin().unwrap();
    assert_eq!((o.username, o.version, o.address), ("alice", 2890844526, "192.0.2.101"));
    assert_eq!(sdp.connection().unwrap().address, "192.0.2.101");
    let m = &sdp.media[0];
    let ml = m.media_line().unwrap();
    assert_eq!(
        (ml.media, ml.port, ml.proto, ml.formats),
        ("audio", 49170, "RTP/AVP", vec!["0", "8", "101"])
    );
    let maps: Vec<String> = m.rtpmaps().map(|r| r.to_string()).collect();
    assert_eq!(maps, vec!["0 PCMU/8000", "8 PCMA/8000", "101 telephone-event/8000"]);
    assert_eq!(
        m.fmtps().next().map(|f| (f.payload_type, f.parameters)),
        Some((101, "0-16"))
    );
    assert_eq!(m.ptime(), Some(20));
    assert_eq!(m.direction(), Some(Direction::SendRecv));

    let av = Sdp::parse(AUDIO_VIDEO_ICE_DTLS_V6.as_bytes()).unwrap();
    assert_eq!(av.media.len(), 2);
    let opus = av.media[0].rtpmaps().next().unwrap();
    assert_eq!(
        (opus.encoding, opus.clock_rate, opus.channels),
        ("opus", 48000, Some(2))
    );
    assert_eq!(
        opus.to_string(),
        "111 opus/48000/2",
        "channel count kept for multi-channel codecs"
    );
    assert_eq!(av.media[0].connection().unwrap().addr_type, "IP6");
    assert_eq!(
        av.media[0].direction().map(Direction::answer),
        Some(Direction::RecvOnly)
    );
    assert_eq!(av.media[1].direction(), Some(Direction::RecvOnly));
    assert!(av.media[0].attributes().any(|(n, _)| n == "candidate"));

    let odd = Sdp::parse(TWO_AUDIO_AND_UNKNOWN.as_bytes()).unwrap();
    assert_eq!(odd.media.len(), 4, "every m= section kept");
    assert_eq!(odd.media[2].media_line().unwrap().port_count, Some(2));
    assert_eq!(odd.media[1].direction(), Some(Direction::Inactive));
    assert!(odd.session.iter().any(|l| l.kind == 'x'));
}

#[test]
fn malformed_bodies_are_refused_with_the_line() {
    let cases: [(&str, ParseError); 6] = [
        ("", ParseError::Empty),
        ("o=x 1 1 IN IP4 a\r\n", ParseError::NoVersion),
        ("v=0\r\nthis is not sdp\r\n", ParseError::BadLine { line: 2 }),
        (
            "v=0\r\nm=audio 70000 RTP/AVP 0\r\n",
            ParseError::BadMedia {
                line: 2,
                reason: "port is not 0 to 65535",
            },
        ),
        (
            "v=0\r\nm=audio 5004 RTP/AVP\r\n",
            ParseError::BadMedia {
                line: 2,
                reason: "no formats",
            },
        ),
        ("v=0\r\n1=x\r\n", ParseError::BadLine { line: 2 }),
    ];
    for (text, want) in cases {
        assert_eq!(Sdp::parse(text.as_bytes()), Err(want), "{text:?}");
    }
    assert_eq!(Sdp::parse(&[b'v', b'=', b'0', b'\n', 0xff]), Err(ParseError::NotUtf8));
    let many = format!("v=0\r\n{}", "m=audio 1 RTP/AVP 0\r\n".repeat(65));
    assert!(matches!(
        Sdp::parse(many.as_bytes()),
        Err(ParseError::Limit {
            what: "media sections",
            ..
        })
    ));
}
