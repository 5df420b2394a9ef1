#![allow(clippy::unwrap_used)]

//! One media section on its own, as SDP handlers exchange them; the m=
//! line written back; the formats a policy lets through an offer.

use sdp::negotiate::{Codec, RtpPolicy};
use sdp::{Limits, Media, ParseError, Sdp};

#[test]
fn section_parses_and_writes_back_crlf_joined() {
    let text = "m=text 11000 RTP/AVP 98\r\na=rtpmap:98 t140/1000";
    let m = Media::parse(text, &Limits::default()).unwrap();
    assert_eq!(m.lines.len(), 2);
    assert_eq!(m.media_line().unwrap().media, "text");
    assert_eq!(m.to_text(), text);
    // A trailing line ending, or bare LF, gives the same section.
    let m2 = Media::parse("m=text 11000 RTP/AVP 98\na=rtpmap:98 t140/1000\n", &Limits::default()).unwrap();
    assert_eq!(m2.to_text(), text);
}

#[test]
fn section_refusals() {
    let l = Limits::default();
    assert_eq!(Media::parse("", &l), Err(ParseError::Empty));
    assert_eq!(
        Media::parse("a=sendrecv\r\nm=audio 1 RTP/AVP 0", &l),
        Err(ParseError::NotOneSection)
    );
    assert_eq!(
        Media::parse("m=audio 1 RTP/AVP 0\r\nm=video 2 RTP/AVP 96", &l),
        Err(ParseError::NotOneSection)
    );
    assert!(matches!(
        Media::parse("m=audio x RTP/AVP 0", &l),
        Err(ParseError::BadMedia { line: 1, .. })
    ));
    assert_eq!(
        Media::parse("m=audio 1 RTP/AVP 0\r\nbad", &l),
        Err(ParseError::BadLine { line: 2 })
    );
    let tight = Limits {
        max_lines: 2,
        ..Limits::default()
    };
    assert!(matches!(
        Media::parse("m=audio 1 RTP/AVP 0\r\na=x\r\na=y", &tight),
        Err(ParseError::Limit { what: "lines", .. })
    ));
}

#[test]
fn media_line_displays_as_written() {
    for v in [
        "audio 49170 RTP/AVP 0 8 101",
        "video 5000/2 RTP/AVP 96",
        "text 0 RTP/AVP 98",
    ] {
        let m = Media::parse(&format!("m={v}"), &Limits::default()).unwrap();
        assert_eq!(m.media_line().unwrap().to_string(), v);
    }
}

#[test]
fn allowed_formats_keep_offer_order_and_dtmf_at_kept_rates() {
    let offer = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 111 9 0 8 101 102\r\na=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:101 telephone-event/8000\r\na=rtpmap:102 telephone-event/48000\r\n";
    let sdp = Sdp::parse(offer.as_bytes()).unwrap();
    let policy = |codecs: &[&str], te: bool| RtpPolicy {
        codecs: codecs.iter().filter_map(|c| Codec::parse(c)).collect(),
        telephone_event: te,
    };
    let m = &sdp.media[0];
    assert_eq!(
        policy(&["PCMA/8000", "PCMU/8000"], true).allowed_formats(m),
        vec![0, 8, 101]
    );
    assert_eq!(policy(&["opus/48000/2"], true).allowed_formats(m), vec![111, 102]);
    assert_eq!(policy(&["PCMU/8000"], false).allowed_formats(m), vec![0]);
    assert!(policy(&["G729/8000"], true).allowed_formats(m).is_empty());
}
