//! Where a call goes: the bindings of a local address-of-record, or the
//! outbound target for other domains.

use edge_api::Flow;
use registrar_svc::binding::Binding;
use sip_message::{Message, Refusal, Uri};
use tracing::warn;

use crate::config::NonLocal;
use crate::core::Core;

/// One place to ring.
pub(super) struct Plan {
    pub uri: String,
    pub flow: Flow,
    /// RFC 3327 Path of the binding: the Route of requests to it.
    pub path: Vec<String>,
}

pub(super) async fn route(core: &Core, req: &Message, flow: &Flow) -> Result<Vec<Plan>, Refusal> {
    let ruri = req.request_uri().unwrap_or("");
    let Ok(Uri::Sip(uri)) = Uri::parse(ruri) else {
        return Err(Refusal::unsupported_uri_scheme(""));
    };
    let host = uri.host.to_string().to_ascii_lowercase();
    // A request addressed to the edge's own IP is for our first domain.
    let to_me = uri.host.ip().is_some_and(|ip| flow.local.is_some_and(|l| l.ip() == ip));
    let domain = if core.directory.serves(&host) {
        host
    } else if to_me && let Some(d) = core.directory.domains.first() {
        d.to_ascii_lowercase()
    } else {
        return outbound(core, ruri);
    };
    let user = uri
        .user_decoded()
        .ok_or_else(|| Refusal::not_found("no user part"))?
        .into_owned();
    if !core.directory.knows(&user, &domain) {
        return Err(Refusal::not_found("unknown user"));
    }
    let aor = format!("sip:{user}@{domain}");
    let bindings = core.locations.lookup(&aor).await.map_err(|e| {
        warn!(error = %e, "registrar lookup failed");
        Refusal::service_unavailable("location service")
    })?;
    let plans: Vec<Plan> = bindings
        .into_iter()
        .filter_map(plan_of)
        .take(core.config.max_branches.max(1))
        .collect();
    if plans.is_empty() {
        return Err(Refusal::temporarily_unavailable("not registered"));
    }
    secure_only(uri.secure, plans)
}

/// A `sips:` request leaves only over TLS or WSS (RFC 5630 3.1.3).
fn secure_only(sips: bool, plans: Vec<Plan>) -> Result<Vec<Plan>, Refusal> {
    if !sips {
        return Ok(plans);
    }
    let secure: Vec<Plan> = plans.into_iter().filter(|p| p.flow.transport.is_secure()).collect();
    if secure.is_empty() {
        return Err(Refusal::sips_not_possible("no TLS flow to the callee"));
    }
    Ok(secure)
}

fn outbound(core: &Core, ruri: &str) -> Result<Vec<Plan>, Refusal> {
    match core.config.non_local {
        NonLocal::Reject403 => Err(Refusal::forbidden("domain not served here")),
        NonLocal::Reject404 => Err(Refusal::not_found("domain not served here")),
        NonLocal::Outbound => {
            // Checked with the configuration.
            let flow =
                Flow::to_uri(&core.config.outbound).ok_or_else(|| Refusal::service_unavailable("no outbound route"))?;
            let sips = ruri.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("sips:"));
            secure_only(
                sips,
                vec![Plan {
                    uri: ruri.to_owned(),
                    flow,
                    path: Vec::new(),
                }],
            )
        }
    }
}

/// One binding as a place to ring.
fn plan_of(b: Binding) -> Option<Plan> {
    Some(Plan {
        flow: b.reach()?,
        uri: b.uri,
        path: b.path,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use edge_api::Transport;

    use super::*;

    fn plan(transport: Transport) -> Plan {
        Plan {
            uri: "sip:bob@192.0.2.1".into(),
            flow: Flow::to(transport, "192.0.2.1:5060".parse().unwrap()),
            path: Vec::new(),
        }
    }

    #[test]
    fn sips_requests_leave_only_over_secure_flows() {
        let mixed = || vec![plan(Transport::Udp), plan(Transport::Tls), plan(Transport::Wss)];
        assert_eq!(secure_only(false, mixed()).unwrap().len(), 3);
        let kept = secure_only(true, mixed()).unwrap();
        assert!(kept.iter().all(|p| p.flow.transport.is_secure()));
        assert_eq!(kept.len(), 2);
        let Err(refusal) = secure_only(true, vec![plan(Transport::Udp), plan(Transport::Tcp)]) else {
            panic!("a sips: request went out over plain transports");
        };
        assert_eq!(refusal.code(), 480);
        assert!(
            refusal
                .headers()
                .any(|(n, v)| n.as_str() == "Warning" && v.starts_with("380 "))
        );
    }
}
