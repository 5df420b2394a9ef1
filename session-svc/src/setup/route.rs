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
    Ok(plans)
}

fn outbound(core: &Core, ruri: &str) -> Result<Vec<Plan>, Refusal> {
    match core.config.non_local {
        NonLocal::Reject403 => Err(Refusal::forbidden("domain not served here")),
        NonLocal::Reject404 => Err(Refusal::not_found("domain not served here")),
        NonLocal::Outbound => {
            // Checked with the configuration.
            let flow =
                Flow::to_uri(&core.config.outbound).ok_or_else(|| Refusal::service_unavailable("no outbound route"))?;
            Ok(vec![Plan {
                uri: ruri.to_owned(),
                flow,
                path: Vec::new(),
            }])
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
