//! The SDP of a session: what was offered and answered, what each leg was
//! last sent (for o= versions), and the bookkeeping of one exchange.

use sdp::Sdp;
use serde::{Deserialize, Serialize};

use super::{Side, Sides};

/// The SDP of a session.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MediaState {
    /// The last offer / answer exchange: as received from the offerer, as
    /// forwarded, and the answer sent back.
    pub offer: Option<Sdp>,
    pub forwarded: Option<Sdp>,
    pub answered: Option<Sdp>,
    /// The handler of each m= section of the last offer.
    pub handlers: Vec<Option<String>>,
    /// The last description sent on each leg (for o= versions).
    pub last_sent: Sides<Option<Sdp>>,
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
    pub fn record_offer(&mut self, from: Side, offer: Sdp, forwarded: Sdp, handlers: Vec<Option<String>>) {
        self.last_sent[from.other()] = Some(forwarded.clone());
        self.offer = Some(offer);
        self.forwarded = Some(forwarded);
        self.handlers = handlers;
    }

    /// The other leg's answer went back on `to` as `answered`.
    pub fn record_answer(&mut self, to: Side, answered: Sdp) {
        self.last_sent[to] = Some(answered.clone());
        self.answered = Some(answered);
    }
}
