//! Unsolicited message-waiting (the RFC 3842 practice many desk phones
//! expect): for the users listed in `pubsub.unsolicited_mwi`, every change
//! of their mailbox, and every new registration, sends a NOTIFY outside
//! any subscription to each registered contact.

use std::sync::Arc;

use edge_api::Flow;
use sip_message::{Known, Message, Method};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::core::Core;
use crate::handlers::StateCx;

const PACKAGE: &str = "message-summary";

/// The mailbox `aor` changed, or one of its phones registered.
pub(crate) async fn notify(core: &Arc<Core>, aor: &str) {
    if !registrar_svc::listed(&core.config.unsolicited_mwi, aor) {
        return;
    }
    let Some(entry) = core.packages.get(PACKAGE) else {
        return;
    };
    let Some(content_type) = entry.types.first() else {
        return;
    };
    let cx = StateCx {
        package: PACKAGE,
        resource: aor,
        content_type,
        subscription: "",
        version: 0,
        sources: &core.sources,
    };
    let Some(body) = entry.handler.state(cx).await else {
        return;
    };
    let bindings = match core.sources.locations.lookup(aor).await {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, aor, "bindings not read: no unsolicited NOTIFY");
            return;
        }
    };
    let mut set = JoinSet::new();
    for b in bindings {
        let Some(flow) = b.reach() else { continue };
        let mut m = Message::request(Method::Notify, &b.uri);
        m.push_header(Known::From, &format!("<{aor}>;tag={}", crate::random_id()));
        m.push_header(Known::To, &format!("<{aor}>"));
        m.push_header(Known::CallId, &format!("{}@sipbus", crate::random_id()));
        m.push_header(Known::CSeq, "1 NOTIFY");
        for p in &b.path {
            m.push_header(Known::Route, p);
        }
        m.push_header(Known::Event, PACKAGE);
        m.push_header(Known::SubscriptionState, "active");
        m.push_header(
            Known::Contact,
            &Flow::contact(Some(&flow), "mwi", &core.config.contact_host),
        );
        m.push_header(Known::ContentType, content_type);
        m.set_body(body.clone());
        let core = core.clone();
        set.spawn(async move {
            match core.edges.send_request(m, flow).await {
                // The answer changes nothing: read it to the end.
                Ok(tx) => tx.finish_in_background(),
                Err(e) => debug!(error = %e, "unsolicited NOTIFY not sent"),
            }
        });
    }
    while set.join_next().await.is_some() {}
}
