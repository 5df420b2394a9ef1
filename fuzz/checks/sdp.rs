// `sdp`: arbitrary bytes through the SDP parser, every typed accessor and
// the offer/answer of sdp-svc's RTP handler. What parses writes back byte
// for byte; each section parses on its own; rtpmap, fmtp and m= values
// written from what was read read back the same; an answer answers every
// offered stream in order, with formats the offer had and the policy
// allows, and parses.

use std::net::{IpAddr, Ipv4Addr};

use sdp::negotiate::{self, Codec, LocalSession, RtpPolicy, StreamAnswer};
use sdp::{Fmtp, Limits, Line, Media, Rtpmap, Sdp};

/// For re-reading what was written: writing may add a CR to each line.
const UNBOUNDED: Limits = Limits {
    max_bytes: usize::MAX,
    max_lines: usize::MAX,
    max_media: usize::MAX,
};

const ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));

pub fn check(data: &[u8]) {
    let Ok(offer) = Sdp::parse(data) else {
        return;
    };
    assert_eq!(offer.to_text().as_bytes(), data, "what parses writes back unchanged");
    let _ = (offer.origin(), offer.connection(), offer.direction());
    let policy = RtpPolicy {
        codecs: ["PCMU/8000", "PCMA/8000", "G722/8000", "opus/48000/2"]
            .into_iter()
            .map(|c| Codec::parse(c).expect("a codec name"))
            .collect(),
        telephone_event: true,
    };
    for (i, m) in offer.media.iter().enumerate() {
        section(m);
        stream(&policy, m, port(i));
    }
    let local = LocalSession {
        username: "sipbus".into(),
        session_id: 1,
        version: 1,
        address: ADDRESS,
    };
    let decide = |i: usize, m: &Media| match policy.answer_stream(m, port(i), Some(ADDRESS)) {
        Some(a) => StreamAnswer::Accept(a),
        None => StreamAnswer::Decline,
    };
    let accepted = offer
        .media
        .iter()
        .enumerate()
        .filter(|(i, m)| policy.answer_stream(m, port(*i), Some(ADDRESS)).is_some())
        .count();
    match negotiate::answer(&offer, &local, decide) {
        Ok(answer) => {
            assert!(accepted > 0, "an answer without an accepted stream");
            assert_eq!(
                answer.media.len(),
                offer.media.len(),
                "every offered stream is answered"
            );
            let text = answer.to_text();
            let again = Sdp::parse_with(text.as_bytes(), &UNBOUNDED)
                .unwrap_or_else(|e| panic!("the answer does not parse ({e}):\n{text}"));
            assert_eq!(again, answer, "the answer reads back as written");
            for (a, o) in answer.media.iter().zip(&offer.media) {
                let aml = a.media_line().expect("an answer's m= line");
                let oml = o.media_line().expect("an offer's m= line");
                assert_eq!(aml.media, oml.media, "an answer keeps the stream's type");
            }
        }
        Err(_) => assert_eq!(accepted, 0, "no answer although a stream was accepted"),
    }
}

fn port(i: usize) -> u16 {
    40_000 + 2 * u16::try_from(i).unwrap_or(1000)
}

/// One section of a parsed description: on its own and value by value.
fn section(m: &Media) {
    let ml = m.media_line().expect("a parsed section's m= line reads again");
    let line = format!("m={ml}");
    let rewritten = Media::parse(&line, &UNBOUNDED).unwrap_or_else(|e| panic!("`{line}` does not parse: {e}"));
    assert_eq!(
        rewritten.media_line().as_ref(),
        Some(&ml),
        "the m= line reads back as written"
    );
    for r in m.rtpmaps() {
        assert_eq!(Rtpmap::parse(&r.to_string()), Some(r), "rtpmap `{r}` reads back");
    }
    for f in m.fmtps() {
        let text = format!("{} {}", f.payload_type, f.parameters);
        assert_eq!(Fmtp::parse(&text), Some(f), "fmtp `{text}` reads back");
    }
    let _ = (m.connection(), m.direction(), m.ptime(), m.attributes().count());
    let text = m.to_text();
    let alone =
        Media::parse(&text, &UNBOUNDED).unwrap_or_else(|e| panic!("a section alone does not parse ({e}):\n{text}"));
    assert_eq!(
        fields(&alone.lines),
        fields(&m.lines),
        "a section alone has the same lines"
    );
}

/// What the RTP handler makes of one offered stream.
fn stream(policy: &RtpPolicy, m: &Media, port: u16) {
    let offered: Vec<u8> = m
        .media_line()
        .map(|ml| ml.formats.iter().filter_map(|f| f.parse().ok()).collect())
        .unwrap_or_default();
    let allowed = policy.allowed_formats(m);
    assert!(
        allowed.iter().all(|pt| offered.contains(pt)),
        "allowed {allowed:?} but offered {offered:?}"
    );
    let answer = policy.answer_stream(m, port, Some(ADDRESS));
    assert_eq!(
        answer.is_some(),
        !allowed.is_empty(),
        "answered exactly when a codec is allowed"
    );
    let Some(a) = answer else { return };
    let text = a.to_text();
    let alone =
        Media::parse(&text, &UNBOUNDED).unwrap_or_else(|e| panic!("an answer section does not parse ({e}):\n{text}"));
    assert_eq!(
        fields(&alone.lines),
        fields(&a.lines),
        "an answer section reads back as written"
    );
    let aml = a.media_line().expect("an answer section's m= line");
    assert_eq!(aml.port, port);
    for f in &aml.formats {
        let pt: u8 = f
            .parse()
            .unwrap_or_else(|_| panic!("answer format `{f}` is not a payload type"));
        assert!(allowed.contains(&pt), "answered {pt}, allowed {allowed:?}");
    }
}

fn fields(lines: &[Line]) -> Vec<(char, &str)> {
    lines.iter().map(|l| (l.kind, l.value.as_str())).collect()
}
