//! The client side of digest (RFC 3261 22.2, RFC 8760): the credentials
//! sipbus sends when a server it subscribes to challenges it.

use sip_message::typed::AuthParams;

use crate::Algorithm;

/// `Authorization` / `Proxy-Authorization` value answering `challenge`
/// for `method` to `uri`; `None` when the challenge is not a digest
/// challenge sipbus can answer. `cnonce` is the client nonce to use
/// (random per request).
pub fn answer(challenge: &str, method: &str, uri: &str, user: &str, password: &str, cnonce: &str) -> Option<String> {
    let c = AuthParams::parse(challenge).ok()?;
    if !c.is_digest() {
        return None;
    }
    let realm = c.get("realm")?.into_owned();
    let nonce = c.get("nonce")?.into_owned();
    let alg = match c.get("algorithm") {
        Some(a) if a.eq_ignore_ascii_case("MD5") => Algorithm::Md5,
        Some(a) if a.eq_ignore_ascii_case("SHA-256") => Algorithm::Sha256,
        Some(_) => return None,
        None => Algorithm::Md5,
    };
    let qop_auth = c
        .get("qop")
        .is_some_and(|q| q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")));
    let ha1 = alg.hex(&format!("{user}:{realm}:{password}"));
    let ha2 = alg.hex(&format!("{method}:{uri}"));
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", algorithm={}",
        quote(user),
        quote(&realm),
        quote(&nonce),
        quote(uri),
        alg.token()
    );
    let response = if qop_auth {
        let nc = "00000001";
        out.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{}\"", quote(cnonce)));
        alg.hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
    } else {
        alg.hex(&format!("{ha1}:{nonce}:{ha2}"))
    };
    out.push_str(&format!(", response=\"{response}\""));
    if let Some(opaque) = c.get("opaque") {
        out.push_str(&format!(", opaque=\"{}\"", quote(&opaque)));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use sip_message::typed::AuthParams;

    use super::*;
    use crate::{Authenticator, Secret, Verdict};

    #[test]
    fn our_own_server_accepts_what_the_client_answers() {
        let server = Authenticator::new(
            "example.com",
            b"k",
            Duration::from_secs(300),
            vec![Algorithm::Sha256, Algorithm::Md5],
        );
        for challenge in server.challenges(false) {
            let header = answer(&challenge, "SUBSCRIBE", "sip:vm@example.com", "alice", "secret", "c1").unwrap();
            let creds = [AuthParams::parse(&header).unwrap()];
            let users = |u: &str| (u == "alice").then(|| Secret::Password("secret".into()));
            assert!(
                matches!(
                    server.verify(&creds, "SUBSCRIBE", "sip:vm@example.com", users),
                    Verdict::Authenticated(p) if p.user == "alice" && p.nc == 1
                ),
                "{challenge}"
            );
        }
        assert!(answer("Basic realm=\"x\"", "SUBSCRIBE", "sip:x", "a", "b", "c").is_none());
        assert!(
            answer(
                "Digest realm=\"x\", nonce=\"n\", algorithm=SHA-512",
                "SUBSCRIBE",
                "sip:x",
                "a",
                "b",
                "c"
            )
            .is_none()
        );
    }
}
