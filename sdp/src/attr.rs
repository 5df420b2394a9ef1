//! The attributes offer/answer reads: rtpmap, fmtp, direction.

/// `a=sendrecv` / `sendonly` / `recvonly` / `inactive` (RFC 3264 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn from_name(name: &str) -> Option<Direction> {
        Some(match name {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an answer takes to this offer (RFC 3264 6.1).
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtpmap<'a> {
    pub payload_type: u8,
    pub encoding: &'a str,
    pub clock_rate: u32,
    pub channels: Option<u8>,
}

impl<'a> Rtpmap<'a> {
    pub fn parse(v: &'a str) -> Option<Rtpmap<'a>> {
        let (pt, rest) = v.split_once(' ')?;
        let payload_type = pt.parse::<u8>().ok().filter(|p| *p <= 127)?;
        let mut parts = rest.trim().split('/');
        let encoding = parts.next().filter(|e| !e.is_empty())?;
        let clock_rate = parts.next()?.parse().ok()?;
        let channels = match parts.next() {
            Some(c) => Some(c.parse().ok()?),
            None => None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Rtpmap {
            payload_type,
            encoding,
            clock_rate,
            channels,
        })
    }
}

impl std::fmt::Display for Rtpmap<'_> {
    /// Multi-channel codecs keep their channel count (`opus/48000/2`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.payload_type, self.encoding, self.clock_rate)?;
        if let Some(c) = self.channels {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

/// `a=fmtp:<pt> <parameters>` (parameters kept as written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fmtp<'a> {
    pub payload_type: u8,
    pub parameters: &'a str,
}

impl<'a> Fmtp<'a> {
    pub fn parse(v: &'a str) -> Option<Fmtp<'a>> {
        let (pt, params) = v.split_once(' ')?;
        Some(Fmtp {
            payload_type: pt.parse().ok().filter(|p| *p <= 127)?,
            parameters: params.trim(),
        })
    }
}
