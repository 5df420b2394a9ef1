//! A description kept in a record (`serde` feature): as its text, which is
//! what it is on the wire and the shortest form, parsed again on reading.
//! What was stored was a description sipbus sent or accepted, so a record
//! that no longer parses is a corrupt record, reported as such.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::{Limits, Sdp};

impl Serialize for Sdp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_text())
    }
}

impl<'de> Deserialize<'de> for Sdp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sdp, D::Error> {
        let text = String::deserialize(d)?;
        Sdp::parse_with(text.as_bytes(), &Limits::default()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn round_trips_byte_for_byte() {
        let text = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let sdp = Sdp::parse(text.as_bytes()).unwrap();
        let json = serde_json::to_string(&sdp).unwrap();
        let back: Sdp = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sdp);
        assert_eq!(back.to_text(), text);
        assert!(serde_json::from_str::<Sdp>("\"s=-\\r\\n\"").is_err());
    }
}
