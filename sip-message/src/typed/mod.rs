//! Typed access to headers, parsed on demand and borrowing from the message.
//! Nothing here is cached: each call parses the value it needs, which is
//! cheaper than parsing every header of every message up front.

mod addr;
mod auth;
mod cseq;
mod misc;
mod via;

pub use addr::{AddrError, ContactParams, Contacts, NameAddr, parse_qvalue};
pub use auth::{AuthParams, Challenge, Credentials};
pub use cseq::{CSeq, MAX_CSEQ};
pub use misc::{Event, MediaType, Reason, SubState, SubscriptionState};
pub use via::Via;

use crate::error::ParseError;
use crate::message::Message;
use crate::method::Method;
use crate::name::Known;
use crate::text::{parse_u64, split_top_level, trim_ws};

impl Message {
    /// Every Via value, top first, across all Via fields.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, ParseError>> + '_ {
        self.known_values(Known::Via).map(Via::parse)
    }

    /// The top Via value.
    pub fn top_via(&self) -> Result<Via<'_>, ParseError> {
        self.vias().next().unwrap_or(Err(ParseError::MissingHeader("Via")))
    }

    pub fn from_header(&self) -> Result<NameAddr<'_>, ParseError> {
        self.name_addr(Known::From)
    }

    pub fn to_header(&self) -> Result<NameAddr<'_>, ParseError> {
        self.name_addr(Known::To)
    }

    fn name_addr(&self, known: Known) -> Result<NameAddr<'_>, ParseError> {
        let v = self
            .known_header(known)
            .ok_or(ParseError::MissingHeader(known.as_str()))?;
        NameAddr::parse(v).map_err(|e| e.in_header(known))
    }

    pub fn call_id(&self) -> Result<&str, ParseError> {
        if let Some(e) = self.essentials.get() {
            return Ok(self.loc(e.call_id));
        }
        self.known_header(Known::CallId)
            .ok_or(ParseError::MissingHeader("Call-ID"))
    }

    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        if let Some(e) = self.essentials.get() {
            if let Some(method) = Method::parse(self.loc(e.cseq_method)) {
                return Ok(CSeq { seq: e.cseq, method });
            }
        }
        CSeq::parse(
            self.known_header(Known::CSeq)
                .ok_or(ParseError::MissingHeader("CSeq"))?,
        )
    }

    /// The top Via's branch; without parsing again once validated.
    pub fn branch(&self) -> Option<&str> {
        match self.essentials.get() {
            Some(e) => e.branch.map(|l| self.loc(l)),
            None => self.top_via().ok()?.branch(),
        }
    }

    /// The From tag; without parsing again once validated.
    pub fn from_tag(&self) -> Option<&str> {
        match self.essentials.get() {
            Some(e) => e.from_tag.map(|l| self.loc(l)),
            None => self.from_header().ok()?.tag(),
        }
    }

    /// The To tag; without parsing again once validated.
    pub fn to_tag(&self) -> Option<&str> {
        match self.essentials.get() {
            Some(e) => e.to_tag.map(|l| self.loc(l)),
            None => self.to_header().ok()?.tag(),
        }
    }

    /// `Ok(None)` when absent.
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        self.known_header(Known::MaxForwards)
            .map(crate::parse::parse_max_forwards)
            .transpose()
    }

    /// Contact: `*` or every address, across all Contact fields.
    pub fn contacts(&self) -> Result<Contacts<'_>, ParseError> {
        let mut values = self.known_values(Known::Contact).peekable();
        if values.peek() == Some(&"*") {
            values.next();
            if values.next().is_some() {
                return Err(ParseError::BadHeader {
                    header: "Contact",
                    reason: "'*' mixed with addresses",
                });
            }
            return Ok(Contacts::Star);
        }
        values
            .map(|v| NameAddr::parse(v).map_err(|e| e.in_header(Known::Contact)))
            .collect::<Result<Vec<_>, _>>()
            .map(Contacts::List)
    }

    /// Every address of a name-addr list header (Route, Record-Route, Path,
    /// P-Asserted-Identity, ...), in order.
    pub fn addresses(&self, known: Known) -> Result<Vec<NameAddr<'_>>, ParseError> {
        self.known_values(known)
            .map(|v| NameAddr::parse(v).map_err(|e| e.in_header(known)))
            .collect()
    }

    pub fn routes(&self) -> Result<Vec<NameAddr<'_>>, ParseError> {
        self.addresses(Known::Route)
    }

    pub fn record_routes(&self) -> Result<Vec<NameAddr<'_>>, ParseError> {
        self.addresses(Known::RecordRoute)
    }

    pub fn p_asserted_identity(&self) -> Result<Vec<NameAddr<'_>>, ParseError> {
        self.addresses(Known::PAssertedIdentity)
    }

    /// A delta-seconds header (Expires, Min-Expires): `Ok(None)` when absent.
    pub fn delta_seconds(&self, known: Known) -> Result<Option<u32>, ParseError> {
        self.known_header(known)
            .map(|v| {
                // RFC 3261 allows any size here; saturate rather than refuse.
                parse_u64(v)
                    .map(|n| n.min(u64::from(u32::MAX)) as u32)
                    .ok_or(ParseError::BadHeader {
                        header: known.as_str(),
                        reason: "not a number of seconds",
                    })
            })
            .transpose()
    }

    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.delta_seconds(Known::Expires)
    }

    pub fn min_expires(&self) -> Result<Option<u32>, ParseError> {
        self.delta_seconds(Known::MinExpires)
    }

    pub fn content_type(&self) -> Result<Option<MediaType<'_>>, ParseError> {
        self.known_header(Known::ContentType).map(MediaType::parse).transpose()
    }

    /// The declared Content-Length (validated by the parser).
    pub fn content_length(&self) -> Option<usize> {
        self.known_header(Known::ContentLength)
            .and_then(parse_u64)
            .and_then(|n| usize::try_from(n).ok())
    }

    /// Every media range of every Accept field.
    pub fn accept(&self) -> Result<Vec<MediaType<'_>>, ParseError> {
        self.known_values(Known::Accept).map(MediaType::parse).collect()
    }

    pub fn event(&self) -> Result<Option<Event<'_>>, ParseError> {
        self.known_header(Known::Event).map(Event::parse).transpose()
    }

    pub fn subscription_state(&self) -> Result<Option<SubscriptionState<'_>>, ParseError> {
        self.known_header(Known::SubscriptionState)
            .map(SubscriptionState::parse)
            .transpose()
    }

    pub fn sip_etag(&self) -> Option<&str> {
        self.known_header(Known::SipEtag)
    }

    pub fn sip_if_match(&self) -> Option<&str> {
        self.known_header(Known::SipIfMatch)
    }

    /// Every value of a token-list header (Require, Supported, Unsupported,
    /// Allow, Allow-Events, Privacy, Proxy-Require...).
    pub fn tokens(&self, known: Known) -> impl Iterator<Item = &str> + '_ {
        // Privacy separates values with ';' (RFC 3323), the others with ','.
        let sep = if known == Known::Privacy { b';' } else { b',' };
        self.known_fields(known)
            .flat_map(move |v| split_top_level(v, sep))
            .map(trim_ws)
            .filter(|v| !v.is_empty())
    }

    /// Every credential of an Authorization or Proxy-Authorization field.
    pub fn credentials(&self, known: Known) -> Result<Vec<Credentials<'_>>, ParseError> {
        self.known_fields(known).map(AuthParams::parse).collect()
    }

    /// Every challenge of a WWW-Authenticate or Proxy-Authenticate field.
    pub fn challenges(&self, known: Known) -> Result<Vec<Challenge<'_>>, ParseError> {
        self.known_fields(known).map(AuthParams::parse).collect()
    }

    /// Every Reason value (RFC 3326), across fields.
    pub fn reasons(&self) -> Result<Vec<Reason<'_>>, ParseError> {
        self.known_values(Known::Reason).map(Reason::parse).collect()
    }
}
