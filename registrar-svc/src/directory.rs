//! Who is ours: the registrar's domains and users, and how a request proves
//! which of them sent it. Every service that serves users (calls,
//! subscriptions, publications, messages) checks requests against it.

use std::collections::HashMap;

use edge_api::Flow;
use sip_auth::{Authenticator, Challenger, Secret};
use sip_message::{Message, Refusal, Uri};
use state_store::Store;

use crate::config::RegistrarConfig;
use crate::guard::Guard;

pub struct Directory {
    /// Lower case.
    pub domains: Vec<String>,
    /// (user, domain) → secret.
    pub users: HashMap<(String, String), Secret>,
    /// The digest challenger (realm and nonce key shared with every
    /// replica) and the store's memory of nonce counts and failures;
    /// `None`: requests are not authenticated.
    pub auth: Option<(Authenticator, Guard)>,
}

impl Directory {
    /// The registrar's users and domains; `authenticate` turns the
    /// challenge on, with nonce counts and failures kept in `store`.
    pub fn from_config(config: &RegistrarConfig, authenticate: bool, store: &Store) -> Directory {
        let domains: Vec<String> = config.domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        let realm = config
            .auth
            .realm
            .clone()
            .unwrap_or_else(|| domains.first().cloned().unwrap_or_default());
        Directory {
            auth: authenticate.then(|| {
                (
                    config.authenticator(&realm),
                    Guard::new(store.clone(), config.auth.failures),
                )
            }),
            domains,
            users: config.secrets(),
        }
    }

    pub fn knows(&self, user: &str, domain: &str) -> bool {
        self.users.contains_key(&(user.to_owned(), domain.to_owned()))
    }

    pub fn serves(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// The address of record `uri` names, `sip:user@domain`, when it is
    /// one of our users: 404 for an unknown user, 404 for another domain.
    /// A URI addressed to the edge's own IP (`flow.local`) is for the first
    /// domain.
    pub fn aor_of(&self, uri: &str, flow: Option<&Flow>) -> Result<String, Refusal> {
        let Ok(Uri::Sip(uri)) = Uri::parse(uri) else {
            return Err(Refusal::unsupported_uri_scheme(""));
        };
        let host = uri.host.to_string().to_ascii_lowercase();
        let to_me = uri
            .host
            .ip()
            .is_some_and(|ip| flow.and_then(|f| f.local).is_some_and(|l| l.ip() == ip));
        let domain = if self.serves(&host) {
            host
        } else if to_me && let Some(d) = self.domains.first() {
            d.clone()
        } else {
            return Err(Refusal::not_found("domain not served here"));
        };
        let user = uri
            .user_decoded()
            .ok_or_else(|| Refusal::not_found("no user part"))?
            .into_owned();
        if !self.knows(&user, &domain) {
            return Err(Refusal::not_found("unknown user"));
        }
        Ok(format!("sip:{user}@{domain}"))
    }

    /// RFC 3261 22.3 with a proxy-style 407 challenge (a phone's registrar
    /// credentials work). The authenticated address `sip:user@domain`, the
    /// user looked up in the From domain when it is ours; `None` when
    /// requests are not authenticated.
    pub async fn authenticate(&self, req: &Message) -> Result<Option<String>, Refusal> {
        let Some((auth, guard)) = self.auth.as_ref() else {
            return Ok(None);
        };
        let domain = req
            .from_header()
            .ok()
            .and_then(|f| f.uri.as_sip().map(|u| u.host.to_string().to_ascii_lowercase()))
            .filter(|d| self.serves(d))
            .or_else(|| self.domains.first().cloned())
            .unwrap_or_default();
        let user = guard
            .authenticate(auth, req, Challenger::Proxy, |u| {
                self.users.get(&(u.to_owned(), domain.clone())).cloned()
            })
            .await?;
        Ok(Some(format!("sip:{user}@{domain}")))
    }
}

/// The user part of an address of record `sip:user@domain` ("" for
/// anything else).
pub fn user_of(aor: &str) -> &str {
    aor.strip_prefix("sip:")
        .and_then(|a| a.split_once('@'))
        .map_or("", |(u, _)| u)
}

/// A configuration list names `aor`, by its user (`alice`) or whole
/// (`sip:alice@example.com`).
pub fn listed(list: &[String], aor: &str) -> bool {
    let user = user_of(aor);
    list.iter().any(|entry| entry == aor || entry == user)
}
