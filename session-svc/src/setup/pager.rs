//! Pager-mode MESSAGE outside a dialog (RFC 3428): delivered to every
//! registered contact of the addressed user at once, answered with the
//! first 2xx; 480 when the user has no binding, 404 for unknown users;
//! authenticated like calls. No session is kept: each MESSAGE is one
//! transaction on each side.

use std::sync::Arc;

use edge_api::{Flow, ServerTxRef};
use sip_message::{Known, Message, Refusal};
use tokio::task::JoinSet;
use tracing::info;

use super::route::{self, Plan};
use crate::core::Core;

pub(crate) async fn message(core: Arc<Core>, tx: ServerTxRef, flow: Flow, req: Message) {
    let tag = crate::random_tag();
    let answer = match deliver(&core, &flow, &req).await {
        Ok(mut ok) => {
            // The sender's transaction gets its own To tag; the rest of the
            // recipient's answer (Date, body) is kept.
            ok.remove_header(Known::Via);
            let mut resp = req.make_response(ok.status().unwrap_or(200), ok.reason().unwrap_or("OK"), Some(&tag));
            if !ok.body().is_empty() {
                if let Some(ct) = ok.known_header(Known::ContentType) {
                    resp.push_header(Known::ContentType, ct);
                }
                resp.set_body(ok.body().clone());
            }
            resp
        }
        Err(r) => {
            info!(refusal = %r, "MESSAGE refused");
            r.response_to(&req, Some(&tag))
        }
    };
    core.respond(&tx, answer).await;
}

async fn deliver(core: &Arc<Core>, flow: &Flow, req: &Message) -> Result<Message, Refusal> {
    if core.config.authenticate {
        core.directory.authenticate(req).await?;
    }
    let plans = route::route(core, req, flow).await?;
    let mut set = JoinSet::new();
    for Plan { uri, flow, path } in plans {
        let mut out = req.clone();
        out.remove_header(Known::Via);
        out.remove_header(Known::Route);
        out.remove_header(Known::ProxyAuthorization);
        out.set_request_uri(&uri);
        for p in &path {
            out.push_header(Known::Route, p);
        }
        let mf = req.max_forwards().ok().flatten().map_or(70, |n| n.saturating_sub(1));
        out.set_header(Known::MaxForwards, &mf.to_string());
        let core = core.clone();
        set.spawn(async move {
            let mut client = core.edges.send_request(out, flow).await.ok()?;
            while let Some(ev) = client.next().await {
                if ev.response.status().unwrap_or(0) >= 200 {
                    return Some(ev.response);
                }
            }
            None
        });
    }
    let mut best: Option<Message> = None;
    while let Some(done) = set.join_next().await {
        let Ok(Some(resp)) = done else { continue };
        let status = resp.status().unwrap_or(500);
        if (200..300).contains(&status) {
            // The first 2xx answers; the other deliveries finish alone.
            set.detach_all();
            return Ok(resp);
        }
        if best.as_ref().is_none_or(|b| b.status().unwrap_or(999) > status) {
            best = Some(resp);
        }
    }
    Err(match best {
        Some(r) => {
            let status = r.status().unwrap_or(480);
            let refusal = Refusal::new(status, r.reason().unwrap_or("Failed").to_owned());
            match r.known_header(Known::RetryAfter) {
                Some(v) => refusal.with_header(Known::RetryAfter, v),
                None => refusal,
            }
        }
        None => Refusal::temporarily_unavailable("no contact answered"),
    })
}
