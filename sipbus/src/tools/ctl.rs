//! `sipbus ctl`: the operator's commands over the admin gRPC API
//! (`sipbus.admin.v1`), as tables or JSON.

use std::time::Duration;

use anyhow::{Result, bail};
use proto::admin::v1 as pb;
use proto::admin::v1::admin_client::AdminClient;
use publish_svc::bodies::summary::Summary;
use serde_json::json;
use tonic::transport::Channel;

use crate::cli::{CtlAction, CtlArgs};

const DEADLINE: Duration = Duration::from_secs(10);

pub async fn run(args: CtlArgs) -> Result<()> {
    let CtlArgs {
        server,
        token,
        json,
        action,
    } = args;
    let out = Out { json };
    // Inside a pod the configuration's own variable is there: use it.
    let token = token.or_else(|| std::env::var("SIPBUS_REGISTRY__TOKEN").ok().filter(|t| !t.is_empty()));
    let token = token.as_deref();
    match action {
        CtlAction::Registrations { user, limit } => {
            let filter = user.unwrap_or_default();
            let reply = call(
                &server,
                token,
                pb::ListRequest { filter, limit },
                |mut c, r| async move { c.list_registrations(r).await },
            )
            .await?;
            out.registrations(&reply);
        }
        CtlAction::Unregister { aor, contact } => {
            let contact = contact.unwrap_or_default();
            let reply = call(
                &server,
                token,
                pb::UnregisterRequest {
                    aor: aor.clone(),
                    contact,
                },
                |mut c, r| async move { c.unregister(r).await },
            )
            .await?;
            out.affected(&format!("{aor}: {} contact(s) removed", reply.count), reply.count);
        }
        CtlAction::Calls { filter, limit } => {
            let filter = filter.unwrap_or_default();
            let reply = call(
                &server,
                token,
                pb::ListRequest { filter, limit },
                |mut c, r| async move { c.list_calls(r).await },
            )
            .await?;
            out.calls(&reply);
        }
        CtlAction::Hangup { id } => {
            let reply = call(
                &server,
                token,
                pb::HangUpRequest { id: id.clone() },
                |mut c, r| async move { c.hang_up(r).await },
            )
            .await?;
            out.affected(&format!("{id}: hang-up queued (BYE on both legs)"), reply.count);
        }
        CtlAction::Subscriptions { filter, limit } => {
            let filter = filter.unwrap_or_default();
            let reply = call(
                &server,
                token,
                pb::ListRequest { filter, limit },
                |mut c, r| async move { c.list_subscriptions(r).await },
            )
            .await?;
            out.subscriptions(&reply);
        }
        CtlAction::Publications { filter, limit } => {
            let filter = filter.unwrap_or_default();
            let reply = call(
                &server,
                token,
                pb::ListRequest { filter, limit },
                |mut c, r| async move { c.list_publications(r).await },
            )
            .await?;
            out.publications(&reply);
        }
        CtlAction::Extensions { point } => {
            let reply = super::extensions::list(&server, token, point).await?;
            match json {
                true => super::emit(&format!("{}\n", super::extensions::to_json(&reply))),
                false => super::emit(&super::extensions::render(&reply)),
            }
        }
        CtlAction::Mwi {
            mailbox,
            new,
            old,
            clear,
        } => {
            let body = match clear {
                true => String::new(),
                false => Summary {
                    new,
                    old,
                    urgent_new: 0,
                    urgent_old: 0,
                }
                .to_body(None),
            };
            let resource = super::mwi::set(&server, token, &mailbox, &body).await?;
            match json {
                true => super::emit(&format!(
                    "{}\n",
                    json!({ "mailbox": resource, "new": new, "old": old, "cleared": clear })
                )),
                false if clear => super::emit(&format!("{resource}: cleared\n")),
                false => super::emit(&format!("{resource}: {new} new, {old} old\n")),
            }
        }
        CtlAction::ReloadTls => {
            let reply = call(&server, token, pb::ReloadTlsRequest {}, |mut c, r| async move {
                c.reload_tls(r).await
            })
            .await?;
            match json {
                true => super::emit(&format!("{}\n", json!({ "reloaded": reply.detail }))),
                false => super::emit(&format!("reloaded: {}\n", reply.detail)),
            }
        }
    }
    Ok(())
}

/// One call with the deadline and the token; the server's refusal as an
/// error that says which server refused.
async fn call<Q, R, F>(
    server: &str,
    token: Option<&str>,
    message: Q,
    rpc: impl FnOnce(AdminClient<Channel>, tonic::Request<Q>) -> F,
) -> Result<R>
where
    F: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
{
    let client = AdminClient::new(super::channel(server)?);
    let mut request = tonic::Request::new(message);
    request.set_timeout(DEADLINE);
    super::bearer(&mut request, token)?;
    match rpc(client, request).await {
        Ok(reply) => Ok(reply.into_inner()),
        Err(s) => bail!("{server}: {}", s.message()),
    }
}

struct Out {
    json: bool,
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".to_owned() } else { s.to_owned() }
}

impl Out {
    fn more(&self, truncated: bool) {
        if truncated {
            eprintln!("(more records than --limit: listing cut short)");
        }
    }

    fn affected(&self, text: &str, count: u32) {
        match self.json {
            true => super::emit(&format!("{}\n", json!({ "count": count }))),
            false => super::emit(&format!("{text}\n")),
        }
    }

    fn registrations(&self, r: &pb::Registrations) {
        if self.json {
            let list: Vec<_> = r
                .registrations
                .iter()
                .map(|b| {
                    json!({
                        "aor": b.aor, "contact": b.contact, "expires_in_s": b.expires_in_s,
                        "instance": b.instance, "reg_id": b.reg_id, "transport": b.transport,
                        "source": b.source, "edge": b.edge,
                    })
                })
                .collect();
            super::emit(&format!(
                "{}\n",
                json!({ "registrations": list, "truncated": r.truncated })
            ));
            return;
        }
        let rows: Vec<Vec<String>> = r
            .registrations
            .iter()
            .map(|b| {
                vec![
                    b.aor.clone(),
                    b.contact.clone(),
                    format!("{}s", b.expires_in_s),
                    format!("{} {}", b.transport, b.source),
                    or_dash(&b.instance),
                ]
            })
            .collect();
        super::emit(&super::table(&["aor", "contact", "expires", "from", "instance"], &rows));
        self.more(r.truncated);
    }

    fn calls(&self, r: &pb::Calls) {
        if self.json {
            let list: Vec<_> = r
                .calls
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id, "state": c.state, "caller": c.caller, "callee": c.callee,
                        "a": { "call_id": c.a_call_id, "target": c.a_target },
                        "b": { "call_id": c.b_call_id, "target": c.b_target },
                        "started_ms": c.started_ms, "duration_s": c.duration_s,
                        "last_replica": c.last_replica,
                    })
                })
                .collect();
            super::emit(&format!("{}\n", json!({ "calls": list, "truncated": r.truncated })));
            return;
        }
        let rows: Vec<Vec<String>> = r
            .calls
            .iter()
            .map(|c| {
                vec![
                    c.id.clone(),
                    c.state.clone(),
                    format!("{}s", c.duration_s),
                    format!("{} -> {}", c.caller, c.callee),
                    format!("a: {} / b: {}", or_dash(&c.a_target), or_dash(&c.b_target)),
                    or_dash(&c.last_replica),
                ]
            })
            .collect();
        super::emit(&super::table(
            &["id", "state", "duration", "call", "legs", "last replica"],
            &rows,
        ));
        self.more(r.truncated);
    }

    fn subscriptions(&self, r: &pb::Subscriptions) {
        if self.json {
            let list: Vec<_> = r
                .subscriptions
                .iter()
                .map(|s| {
                    json!({
                        "id": s.id, "package": s.package, "resource": s.resource, "watcher": s.watcher,
                        "state": s.state, "expires_in_s": s.expires_in_s, "notifies_sent": s.notifies_sent,
                    })
                })
                .collect();
            super::emit(&format!(
                "{}\n",
                json!({ "subscriptions": list, "truncated": r.truncated })
            ));
            return;
        }
        let rows: Vec<Vec<String>> = r
            .subscriptions
            .iter()
            .map(|s| {
                vec![
                    s.id.clone(),
                    s.package.clone(),
                    s.resource.clone(),
                    s.watcher.clone(),
                    s.state.clone(),
                    format!("{}s", s.expires_in_s),
                    s.notifies_sent.to_string(),
                ]
            })
            .collect();
        super::emit(&super::table(
            &["id", "package", "resource", "watcher", "state", "expires", "notifies"],
            &rows,
        ));
        self.more(r.truncated);
    }

    fn publications(&self, r: &pb::Publications) {
        if self.json {
            let list: Vec<_> = r
                .publications
                .iter()
                .map(|p| {
                    json!({
                        "package": p.package, "resource": p.resource, "etag": p.etag,
                        "content_type": p.content_type, "publisher": p.publisher,
                        "expires_in_s": p.expires_in_s,
                    })
                })
                .collect();
            super::emit(&format!(
                "{}\n",
                json!({ "publications": list, "truncated": r.truncated })
            ));
            return;
        }
        let rows: Vec<Vec<String>> = r
            .publications
            .iter()
            .map(|p| {
                vec![
                    p.package.clone(),
                    p.resource.clone(),
                    or_dash(&p.publisher),
                    p.expires_in_s.map_or_else(|| "kept".to_owned(), |s| format!("{s}s")),
                    p.etag.clone(),
                ]
            })
            .collect();
        super::emit(&super::table(
            &["package", "resource", "publisher", "expires", "etag"],
            &rows,
        ));
        self.more(r.truncated);
    }
}
