//! Shared by the test files: origins, requests, and the corpus format.

#![allow(dead_code, clippy::unwrap_used)]

use proto::sdp::v1 as pb;
use proto::sdp::v1::offer_reply::Result as Offered;
use std::sync::Arc;

use proto::sdp::v1::sdp_negotiator_server::SdpNegotiator;
use sdp_svc::{Negotiator, SdpService};
use tonic::Request;

/// The negotiator behind its gRPC face, as another process sees it: the
/// tests send what session-svc would send over the wire.
pub fn served(n: Negotiator) -> SdpService {
    SdpService::new(Arc::new(n))
}

/// The o= for the forwarded offer (leg B) and the final answer (leg A).
pub fn origin_b(address: &str) -> pb::Origin {
    pb::Origin {
        username: "sipbus".into(),
        session_id: 2000,
        version: 1,
        address: address.into(),
    }
}

pub fn origin_a(address: &str) -> pb::Origin {
    pb::Origin {
        session_id: 1000,
        ..origin_b(address)
    }
}

pub fn initial_offer(sdp: &str) -> pb::OfferRequest {
    pb::OfferRequest {
        session: "test".into(),
        sdp: sdp.as_bytes().to_vec().into(),
        endpoint: String::new(),
        origin: Some(origin_b("192.0.2.10")),
        handlers: Vec::new(),
        initial: true,
        previous: Default::default(),
    }
}

pub async fn offer(n: &SdpService, req: pb::OfferRequest) -> Result<Offered, tonic::Status> {
    Ok(n.offer(Request::new(req)).await?.into_inner().result.unwrap())
}

pub fn forward(r: Offered) -> pb::Forward {
    match r {
        Offered::Forward(f) => f,
        Offered::Reject(r) => panic!("rejected: {} {}", r.status, r.warning),
    }
}

pub fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

/// A corpus file: `--- <name>` headers, each followed by its body; lines
/// before the first header are comments. Files are LF for reading; SDP
/// bodies get CRLF, as on the wire.
pub struct Case {
    pub name: String,
    parts: Vec<(String, String)>,
}

impl Case {
    pub fn load(path: &std::path::Path) -> Case {
        let raw = std::fs::read_to_string(path).unwrap();
        let mut parts: Vec<(String, String)> = Vec::new();
        for line in raw.lines() {
            if let Some(h) = line.strip_prefix("--- ") {
                parts.push((h.trim().to_owned(), String::new()));
            } else if let Some((_, body)) = parts.last_mut() {
                body.push_str(line);
                body.push('\n');
            }
        }
        Case {
            name: path.file_stem().unwrap().to_string_lossy().into_owned(),
            parts,
        }
    }

    pub fn raw(&self, part: &str) -> Option<&str> {
        self.parts.iter().find(|(h, _)| h == part).map(|(_, b)| b.as_str())
    }

    pub fn sdp(&self, part: &str) -> Option<String> {
        self.raw(part).map(|b| b.replace('\n', "\r\n"))
    }

    /// One name a line; an empty line is a declined stream.
    pub fn lines(&self, part: &str) -> Option<Vec<String>> {
        self.raw(part).map(|b| {
            b.strip_suffix('\n')
                .unwrap_or(b)
                .split('\n')
                .map(String::from)
                .collect()
        })
    }
}
