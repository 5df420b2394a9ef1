//! `sipbus extensions`: every point's chain, from the registry API.

use std::time::Duration;

use anyhow::Result;
use extension::registry::point_to_proto;
use proto::extension::v1 as pb;
use proto::extension::v1::registry_client::RegistryClient;

use crate::cli::PointArg;

pub async fn run(server: &str, token: Option<&str>, point: Option<PointArg>) -> Result<()> {
    super::emit(&render(&list(server, token, point).await?));
    Ok(())
}

/// The registry's listing of every point's modules (or one point's).
pub async fn list(server: &str, token: Option<&str>, point: Option<PointArg>) -> Result<pb::ListReply> {
    let mut client = RegistryClient::new(super::channel(server)?);
    let point = point.map_or(pb::Point::Unspecified, |p| point_to_proto(p.point()));
    let mut request = tonic::Request::new(pb::ListRequest { point: point as i32 });
    request.set_timeout(Duration::from_secs(5));
    super::bearer(&mut request, token)?;
    Ok(client
        .list(request)
        .await
        .map_err(|s| anyhow::anyhow!("{server}: {}", s.message()))?
        .into_inner())
}

/// The listing as JSON, for `sipbus ctl extensions --json`.
pub fn to_json(reply: &pb::ListReply) -> serde_json::Value {
    let chains: Vec<serde_json::Value> = reply
        .chains
        .iter()
        .map(|c| {
            let modules: Vec<serde_json::Value> = c
                .modules
                .iter()
                .map(|m| {
                    let kind = match pb::module::Kind::try_from(m.kind) {
                        Ok(pb::module::Kind::BuiltIn) => "built-in",
                        Ok(pb::module::Kind::Configured) => "configured",
                        Ok(pb::module::Kind::Registered) => "registered",
                        _ => "unknown",
                    };
                    serde_json::json!({
                        "kind": kind,
                        "name": m.name,
                        "addresses": m.addresses,
                        "filters": m.filters,
                        "priority": m.priority,
                        "timeout_ms": m.timeout_ms,
                        "fail_closed": m.on_failure == pb::FailurePolicy::FailClosed as i32,
                        "reject_status": m.reject_status,
                        "lease_left_ms": m.lease_left_ms,
                        "calls": m.calls,
                        "failures": m.failures,
                        "p99_us": m.p99_us,
                        "types": m.types,
                    })
                })
                .collect();
            serde_json::json!({ "point": point_name(c.point), "modules": modules })
        })
        .collect();
    serde_json::json!({ "answered_by": reply.target, "chains": chains })
}

fn point_name(p: i32) -> &'static str {
    match pb::Point::try_from(p) {
        Ok(pb::Point::SessionSupplement) => "session supplements",
        Ok(pb::Point::SdpHandler) => "sdp handlers",
        Ok(pb::Point::SubscriptionHandler) => "subscription handlers",
        Ok(pb::Point::PublicationHandler) => "publication handlers",
        _ => "unknown point",
    }
}

const HEADINGS: [&str; 13] = [
    "#", "kind", "name", "address", "filters", "priority", "timeout", "policy", "lease", "calls", "fail", "p99",
    "types",
];

fn row(i: usize, m: &pb::Module) -> [String; 13] {
    let kind = pb::module::Kind::try_from(m.kind).unwrap_or(pb::module::Kind::Unspecified);
    let external = kind != pb::module::Kind::BuiltIn;
    let dash = || "-".to_owned();
    let list = |v: &[String], empty: &str| if v.is_empty() { empty.to_owned() } else { v.join(",") };
    let policy = match pb::FailurePolicy::try_from(m.on_failure) {
        Ok(pb::FailurePolicy::FailClosed) => format!("closed:{}", m.reject_status),
        _ => "open".to_owned(),
    };
    let lease = match kind {
        pb::module::Kind::Registered if m.lease_left_ms == 0 => "lapsed".to_owned(),
        pb::module::Kind::Registered => format!("{:.1}s", m.lease_left_ms as f64 / 1000.0),
        _ => dash(),
    };
    [
        i.to_string(),
        match kind {
            pb::module::Kind::BuiltIn => "built-in",
            pb::module::Kind::Configured => "configured",
            pb::module::Kind::Registered => "registered",
            pb::module::Kind::Unspecified => "?",
        }
        .to_owned(),
        m.name.clone(),
        list(&m.addresses, "-"),
        list(&m.filters, "*"),
        m.priority.to_string(),
        if external {
            format!("{}ms", m.timeout_ms)
        } else {
            dash()
        },
        if external { policy } else { dash() },
        lease,
        if external { m.calls.to_string() } else { dash() },
        if external { m.failures.to_string() } else { dash() },
        if external && m.calls > 0 {
            format!("{:.1}ms", m.p99_us as f64 / 1000.0)
        } else {
            dash()
        },
        list(&m.types, "-"),
    ]
}

/// One table per point; calls, failures and p99 are the answering
/// replica's last minute.
pub fn render(reply: &pb::ListReply) -> String {
    let mut out = format!(
        "answered by: {} (calls, fail and p99: every replica, last minute)\n",
        reply.target
    );
    for chain in &reply.chains {
        out.push_str(&format!("\n{}\n", point_name(chain.point)));
        let rows: Vec<Vec<String>> = chain
            .modules
            .iter()
            .enumerate()
            .map(|(i, m)| row(i + 1, m).to_vec())
            .collect();
        if rows.is_empty() {
            out.push_str("  (none)\n");
            continue;
        }
        out.push_str(&super::table(&HEADINGS, &rows));
    }
    out
}
