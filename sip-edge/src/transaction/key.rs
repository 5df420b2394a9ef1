//! Transaction keys (RFC 3261 17.1.3 and 17.2.3).

use sip_message::{Message, Method, ParseError};

/// Identifies a transaction. With an RFC 3261 branch: branch + sent-by +
/// method, where ACK maps to INVITE and CANCEL keeps its own. Without one
/// (RFC 2543 peers): the request fields 17.2.3 lists.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxKey {
    Rfc3261 {
        branch: Box<str>,
        sent_by: Box<str>,
        method: Method,
    },
    Rfc2543 {
        request_uri: Box<str>,
        from_tag: Box<str>,
        call_id: Box<str>,
        cseq: u32,
        via: Box<str>,
        method: Method,
    },
}

/// The method a transaction is keyed by: ACK belongs to the INVITE.
fn key_method(m: &Method) -> Method {
    if *m == Method::Ack { Method::Invite } else { m.clone() }
}

impl TxKey {
    /// The method the transaction is keyed by (INVITE for its ACK).
    pub fn method(&self) -> &Method {
        match self {
            TxKey::Rfc3261 { method, .. } | TxKey::Rfc2543 { method, .. } => method,
        }
    }

    /// The server transaction key of a request.
    pub fn server(req: &Message) -> Result<TxKey, ParseError> {
        let method = req.method().cloned().ok_or(ParseError::StartLine("not a request"))?;
        let via = req.top_via()?;
        if via.has_rfc3261_branch() {
            return Ok(TxKey::Rfc3261 {
                branch: via.branch().unwrap_or_default().into(),
                sent_by: via.sent_by.to_ascii_lowercase().into(),
                method: key_method(&method),
            });
        }
        let from_tag = req.from_header()?.tag().unwrap_or_default().into();
        Ok(TxKey::Rfc2543 {
            request_uri: req.request_uri().unwrap_or_default().into(),
            from_tag,
            call_id: req.call_id()?.into(),
            cseq: req.cseq()?.seq,
            via: req
                .known_values(sip_message::Known::Via)
                .next()
                .unwrap_or_default()
                .into(),
            method: key_method(&method),
        })
    }

    /// The key of the INVITE a CANCEL targets (RFC 3261 9.2).
    pub fn cancelled_invite(cancel_key: &TxKey) -> TxKey {
        let mut key = cancel_key.clone();
        match &mut key {
            TxKey::Rfc3261 { method, .. } | TxKey::Rfc2543 { method, .. } => *method = Method::Invite,
        }
        key
    }
}

/// Matches a response to its client transaction (17.1.3): our branch and
/// the CSeq method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub branch: Box<str>,
    pub method: Method,
}

impl ClientKey {
    pub fn of_response(resp: &Message) -> Result<ClientKey, ParseError> {
        let via = resp.top_via()?;
        let branch = via.branch().ok_or(ParseError::BadHeader {
            header: "Via",
            reason: "no branch",
        })?;
        Ok(ClientKey {
            branch: branch.into(),
            method: resp.cseq()?.method,
        })
    }
}

/// Detects merged requests (RFC 3261 8.2.2.2): a request without To tag
/// whose From tag, Call-ID and CSeq match one already in progress under
/// another key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MergeKey {
    pub from_tag: Box<str>,
    pub call_id: Box<str>,
    pub cseq: u32,
    pub method: Method,
}

impl MergeKey {
    pub fn of(req: &Message) -> Option<MergeKey> {
        let to = req.to_header().ok()?;
        if to.tag().is_some() {
            return None;
        }
        let method = req.method()?.clone();
        if matches!(method, Method::Ack | Method::Cancel) {
            return None;
        }
        Some(MergeKey {
            from_tag: req.from_header().ok()?.tag()?.into(),
            call_id: req.call_id().ok()?.into(),
            cseq: req.cseq().ok()?.seq,
            method,
        })
    }
}

/// Matches the ACK of a 2xx to the INVITE server transaction that sent the
/// 2xx (the ACK has a new branch): Call-ID, CSeq number, From tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AckKey {
    pub call_id: Box<str>,
    pub cseq: u32,
    pub from_tag: Box<str>,
}

impl AckKey {
    pub fn of(msg: &Message) -> Option<AckKey> {
        Some(AckKey {
            call_id: msg.call_id().ok()?.into(),
            cseq: msg.cseq().ok()?.seq,
            from_tag: msg.from_header().ok()?.tag().unwrap_or_default().into(),
        })
    }
}
