//! Cases of `sipbus.sdp.v1.SdpHandler`.

use proto::sdp::v1 as pb;
use proto::sdp::v1::sdp_handler_client::SdpHandlerClient;
use tonic::transport::Channel;

use super::Report;
use crate::cli::CheckArgs;

const SESSION_LINES: &str =
    "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0";

/// A realistic offered section of `media`.
fn offered(media: &str, port: u16) -> String {
    match media {
        "audio" => format!(
            "m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv"
        ),
        "video" => format!(
            "m=video {port} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 profile-level-id=42e01f\r\na=sendrecv"
        ),
        // RFC 4103: T.140 with redundancy.
        "text" => format!(
            "m=text {port} RTP/AVP 100 98\r\na=rtpmap:98 t140/1000\r\na=rtpmap:100 red/1000\r\na=fmtp:100 98/98/98\r\na=sendrecv"
        ),
        other => format!("m={other} {port} RTP/AVP 96\r\na=rtpmap:96 x-check/8000\r\na=sendrecv"),
    }
}

fn stream(media: &str, section: String) -> Option<pb::Stream> {
    Some(pb::Stream {
        index: 1,
        media: media.to_owned(),
        section,
        session_lines: SESSION_LINES.to_owned(),
    })
}

/// An m= section of `media`: "m=" first, CRLF-joined, a port that parses.
fn section_ok(media: &str, section: &str) -> Result<(), String> {
    let mut lines = section.split("\r\n");
    let first = lines.next().unwrap_or("");
    let mut fields = first.split(' ');
    if fields.next() != Some(&format!("m={media}")) {
        return Err(format!("the section starts `{first}`, not `m={media} ...`"));
    }
    let port = fields.next().unwrap_or("");
    if port.split('/').next().and_then(|p| p.parse::<u16>().ok()).is_none() {
        return Err(format!("port `{port}` is not a number"));
    }
    if fields.next().is_none() || fields.next().is_none() {
        return Err(format!("`{first}` lacks a protocol or formats"));
    }
    if section.split("\r\n").any(|l| l.contains(['\r', '\n'])) {
        return Err("lines are not CRLF-joined (a bare LF)".into());
    }
    if let Some(l) = section
        .split("\r\n")
        .skip(1)
        .find(|l| l.len() < 2 || l.as_bytes()[1] != b'=')
    {
        return Err(format!("`{l}` is not an SDP line"));
    }
    Ok(())
}

const RULE_NEGOTIATE: &str = "Negotiate: claim the stream with the m= section (its lines, \"m=\" first, CRLF-joined) to offer on the other leg, or decline it";
const RULE_APPLY: &str = "Apply: the other leg answered a claimed stream: the answer section for the offerer";
const RULE_ENDED: &str = "Ended: a claimed stream ended (the session ended, or a later offer removed it)";

pub(super) async fn run(channel: Channel, args: &CheckArgs, report: &mut Report) {
    let mut client = SdpHandlerClient::new(channel);
    let media = args.filter.clone().unwrap_or_else(|| "audio".into());
    let offer = offered(&media, 49170);
    let reply = report
        .call(
            "Negotiate",
            client.negotiate(pb::NegotiateRequest {
                session: "extension-check-session".into(),
                offered: stream(&media, offer.clone()),
                endpoint: String::new(),
            }),
        )
        .await;
    let claim = match &reply {
        Ok(r) => match &r.result {
            Some(pb::negotiate_reply::Result::Claim(section)) => Ok(Some(section.clone())),
            Some(pb::negotiate_reply::Result::Decline(_)) => Ok(None),
            None => Err("neither a claim nor a decline".to_owned()),
        },
        Err(e) => Err(e.clone()),
    };
    report.check(
        format!("Negotiate of an offered {media} stream claims it with a section, or declines it"),
        RULE_NEGOTIATE,
        claim.clone().and_then(|c| c.map_or(Ok(()), |s| section_ok(&media, &s))),
    );
    let Ok(Some(forwarded)) = claim else {
        report.case(
            format!("Apply and Ended of a claimed {media} stream"),
            RULE_APPLY,
            Some(format!("not run: the handler did not claim the {media} stream")),
        );
        return;
    };
    let answered = offered(&media, 30000).replace("192.0.2.10", "192.0.2.20");
    let applied = report
        .call(
            "Apply",
            client.apply(pb::ApplyRequest {
                session: "extension-check-session".into(),
                offered: stream(&media, offer.clone()),
                forwarded: stream(&media, forwarded),
                answered: stream(&media, answered),
            }),
        )
        .await;
    report.check(
        format!("Apply of the {media} answer gives an answer section"),
        RULE_APPLY,
        applied.and_then(|r| section_ok(&media, &r.section)),
    );
    let ended = report
        .call(
            "Ended",
            client.ended(pb::EndedRequest {
                session: "extension-check-session".into(),
                stream: stream(&media, offer),
            }),
        )
        .await;
    report.check("Ended answers", RULE_ENDED, ended.map(|_| ()));
}
