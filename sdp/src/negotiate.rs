//! Offer/answer (RFC 3264): the answer to an offer, stream by stream, and
//! the RTP codec choice the built-in audio/video handler makes.
//!
//! Who claims a stream is the caller's business (sdp-svc asks its handlers
//! in order); this module turns their decisions into a valid answer: every
//! offered m= line answered in order, declined ones with port 0, directions
//! mirrored, and an error when nothing was accepted.

use std::net::IpAddr;

use crate::attr::Direction;
use crate::model::{Line, Media, Sdp};

/// What became of one offered stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamAnswer {
    /// Refused: answered with port 0.
    Decline,
    /// Accepted with this answer section (its m= line first).
    Accept(Media),
}

/// Our side of the session: written into `o=` and `c=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSession {
    pub username: String,
    pub session_id: u64,
    /// Incremented by the caller whenever its description changes.
    pub version: u64,
    pub address: IpAddr,
}

/// No offered stream was accepted: an initial offer gets 488.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no offered media stream was acceptable")]
pub struct NoStreamAccepted;

fn addr_line(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("IN IP4 {a}"),
        IpAddr::V6(a) => format!("IN IP6 {a}"),
    }
}

/// Builds the answer to `offer`, asking `decide` about each stream in
/// order (its index and the offered section).
pub fn answer(
    offer: &Sdp,
    local: &LocalSession,
    mut decide: impl FnMut(usize, &Media) -> StreamAnswer,
) -> Result<Sdp, NoStreamAccepted> {
    let mut session = vec![
        Line::new('v', "0"),
        Line::new(
            'o',
            format!(
                "{} {} {} {}",
                local.username,
                local.session_id,
                local.version,
                addr_line(local.address)
            ),
        ),
        Line::new('s', "-"),
        Line::new('c', addr_line(local.address)),
    ];
    let timing = offer
        .session
        .iter()
        .find(|l| l.kind == 't')
        .map_or("0 0".to_owned(), |l| l.value.clone());
    session.push(Line::new('t', timing));
    let mut accepted = 0;
    let mut media = Vec::with_capacity(offer.media.len());
    for (i, offered) in offer.media.iter().enumerate() {
        match decide(i, offered) {
            StreamAnswer::Accept(m) => {
                accepted += 1;
                media.push(m);
            }
            StreamAnswer::Decline => media.push(declined(offered)),
        }
    }
    if accepted == 0 {
        return Err(NoStreamAccepted);
    }
    Ok(Sdp { session, media })
}

/// `m=<media> 0 <proto> <first format>`: a declined stream keeps its place
/// and type (RFC 3264 6).
pub fn declined(offered: &Media) -> Media {
    let value = match offered.media_line() {
        Some(ml) => format!(
            "{} 0 {} {}",
            ml.media,
            ml.proto,
            ml.formats.first().copied().unwrap_or("0")
        ),
        None => "audio 0 RTP/AVP 0".to_owned(),
    };
    Media {
        lines: vec![Line::new('m', value)],
    }
}

/// A codec as policies name it: `PCMU/8000`, `opus/48000/2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    pub name: String,
    pub clock_rate: u32,
    pub channels: Option<u8>,
}

impl Codec {
    /// Parses `name/rate[/channels]`.
    pub fn parse(s: &str) -> Option<Codec> {
        let mut p = s.split('/');
        let name = p.next().filter(|n| !n.is_empty())?.to_owned();
        let clock_rate = p.next()?.parse().ok()?;
        let channels = match p.next() {
            Some(c) => Some(c.parse().ok()?),
            None => None,
        };
        Some(Codec {
            name,
            clock_rate,
            channels,
        })
    }

    fn matches(&self, name: &str, rate: u32, channels: Option<u8>) -> bool {
        self.name.eq_ignore_ascii_case(name)
            && self.clock_rate == rate
            && self.channels.unwrap_or(1) == channels.unwrap_or(1)
    }
}

/// The static payload types of RFC 3551 that phones use without rtpmap.
fn static_payload(pt: u8) -> Option<(&'static str, u32)> {
    Some(match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        18 => ("G729", 8000),
        _ => return None,
    })
}

/// Each offered format with what it names: payload type, encoding, clock
/// rate, channels. Formats that are neither mapped nor static are left out.
fn describe(offered: &Media) -> Vec<(u8, String, u32, Option<u8>)> {
    let Some(ml) = offered.media_line() else {
        return Vec::new();
    };
    ml.formats
        .iter()
        .filter_map(|f| {
            let pt: u8 = f.parse().ok()?;
            match offered.rtpmaps().find(|r| r.payload_type == pt) {
                Some(r) => Some((pt, r.encoding.to_owned(), r.clock_rate, r.channels)),
                None => static_payload(pt).map(|(n, rate)| (pt, n.to_owned(), rate, None)),
            }
        })
        .collect()
}

/// Which codecs an endpoint may use, in preference order, and whether
/// RFC 4733 telephone-events are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPolicy {
    pub codecs: Vec<Codec>,
    pub telephone_event: bool,
}

impl RtpPolicy {
    /// The offered payload types this policy allows, in the offer's order
    /// (an offer passed on keeps the offerer's preference): every format
    /// naming an allowed codec, and telephone-event at the clock rate of an
    /// allowed codec when enabled. Empty when the stream is not RTP or no
    /// codec is allowed (telephone-event alone is not a codec).
    pub fn allowed_formats(&self, offered: &Media) -> Vec<u8> {
        if !offered.media_line().is_some_and(|ml| ml.proto.contains("RTP")) {
            return Vec::new();
        }
        let described = describe(offered);
        let is_codec =
            |name: &str, rate: u32, channels: Option<u8>| self.codecs.iter().any(|c| c.matches(name, rate, channels));
        let rates: Vec<u32> = described
            .iter()
            .filter(|(_, n, r, c)| is_codec(n, *r, *c))
            .map(|d| d.2)
            .collect();
        if rates.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<u8> = Vec::new();
        for (pt, name, rate, channels) in &described {
            let keep = is_codec(name, *rate, *channels)
                || (self.telephone_event && name.eq_ignore_ascii_case("telephone-event") && rates.contains(rate));
            if keep && !out.contains(pt) {
                out.push(*pt);
            }
        }
        out
    }

    /// The answer section to an offered RTP stream, or `None` when no codec
    /// is acceptable. Payload type numbers, rtpmap and fmtp come from the
    /// offer; formats are listed in the policy's preference order;
    /// telephone-event is kept at the clock rate of a chosen codec; ptime
    /// and maxptime are kept; the direction mirrors the offer's.
    pub fn answer_stream(&self, offered: &Media, port: u16, address: Option<IpAddr>) -> Option<Media> {
        let ml = offered.media_line()?;
        if !ml.proto.contains("RTP") {
            return None;
        }
        let described = describe(offered);
        let mut chosen: Vec<&(u8, String, u32, Option<u8>)> = Vec::new();
        for codec in &self.codecs {
            if let Some(d) = described
                .iter()
                .find(|(pt, n, r, c)| codec.matches(n, *r, *c) && !chosen.iter().any(|x| x.0 == *pt))
            {
                chosen.push(d);
            }
        }
        if chosen.is_empty() {
            return None;
        }
        if self.telephone_event {
            let rates: Vec<u32> = chosen.iter().map(|c| c.2).collect();
            for d in &described {
                if d.1.eq_ignore_ascii_case("telephone-event")
                    && rates.contains(&d.2)
                    && !chosen.iter().any(|x| x.0 == d.0)
                {
                    chosen.push(d);
                }
            }
        }
        let pts: Vec<String> = chosen.iter().map(|c| c.0.to_string()).collect();
        let mut lines = vec![Line::new(
            'm',
            format!("{} {port} {} {}", ml.media, ml.proto, pts.join(" ")),
        )];
        if let Some(a) = address {
            lines.push(Line::new('c', addr_line(a)));
        }
        for (pt, name, rate, channels) in chosen.iter().map(|c| (c.0, &c.1, c.2, c.3)) {
            let mut map = format!("rtpmap:{pt} {name}/{rate}");
            if let Some(ch) = channels {
                map.push_str(&format!("/{ch}"));
            }
            lines.push(Line::new('a', map));
            if let Some(f) = offered.fmtps().find(|f| f.payload_type == pt) {
                lines.push(Line::new('a', format!("fmtp:{pt} {}", f.parameters)));
            }
        }
        for (name, value) in offered.attributes() {
            if matches!(name, "ptime" | "maxptime") {
                if let Some(v) = value {
                    lines.push(Line::new('a', format!("{name}:{v}")));
                }
            }
        }
        let direction = offered.direction().unwrap_or(Direction::SendRecv).answer();
        lines.push(Line::new('a', direction.name()));
        Some(Media { lines })
    }
}
