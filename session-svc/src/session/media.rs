//! The SDP of a session: what was offered and answered, what each leg was
//! last sent (for o= versions), and the bookkeeping of one exchange.

use sdp::Sdp;
use serde::{Deserialize, Serialize};

use super::{Side, Sides};

/// A description as the record keeps it: its text, parsed only where a
/// negotiation needs it (a record is read and written several times a
/// call; most of those never look at the SDP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SdpText(String);

impl SdpText {
    pub fn of(sdp: &Sdp) -> SdpText {
        SdpText(sdp.to_text())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The description again; an error means a corrupt record (only
    /// descriptions sipbus sent or accepted are kept).
    pub fn parse(&self) -> Result<Sdp, sdp::ParseError> {
        Sdp::parse(self.0.as_bytes())
    }
}

/// The SDP of a session.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MediaState {
    /// The last offer / answer exchange: as received from the offerer, as
    /// forwarded, and the answer sent back.
    pub offer: Option<SdpText>,
    pub forwarded: Option<SdpText>,
    pub answered: Option<SdpText>,
    /// The handler of each m= section of the last offer.
    pub handlers: Vec<Option<String>>,
    /// The last description sent on each leg (for o= versions).
    pub last_sent: Sides<Option<SdpText>>,
    /// The o= session ids sipbus uses on each leg.
    pub origin_ids: Sides<u64>,
    /// The caller's initial INVITE had no SDP: the offer comes in the 2xx
    /// and the answer in the ACK (RFC 3261 13.2.1).
    pub late_offer: bool,
    /// The branch whose early SDP the caller got (only that one's is
    /// relayed).
    pub early_branch: Option<usize>,
}

impl MediaState {
    pub fn new() -> Self {
        Self {
            origin_ids: Sides {
                a: u64::from(fastrand::u32(..)),
                b: u64::from(fastrand::u32(..)),
            },
            ..Self::default()
        }
    }

    /// An offer from `from` went out on the other leg as `forwarded`.
    pub fn record_offer(&mut self, from: Side, offer: &Sdp, forwarded: &Sdp, handlers: Vec<Option<String>>) {
        let forwarded = SdpText::of(forwarded);
        self.last_sent[from.other()] = Some(forwarded.clone());
        self.offer = Some(SdpText::of(offer));
        self.forwarded = Some(forwarded);
        self.handlers = handlers;
    }

    /// The other leg's answer went back on `to` as `answered`.
    pub fn record_answer(&mut self, to: Side, answered: &Sdp) {
        let answered = SdpText::of(answered);
        self.last_sent[to] = Some(answered.clone());
        self.answered = Some(answered);
    }
}
