//! `message-summary` (RFC 3842): a mailbox's state is what an external
//! voicemail server last NOTIFYed for it (the subscriber role), else what
//! was published for it (PUBLISH, `sipbus mwi set`), else "no messages".

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use extension::{ConfigProblem, Settings};
use publish_svc::bodies::summary::Summary;

use std::time::Duration;

use sip_message::Message;
use state_store::Expect;

use super::{NotifiedCx, StateCx, SubscriptionHandler, no_settings};
use crate::config::PubsubConfig;

pub const NAME: &str = "message-summary";

pub fn build(settings: &Settings<'_>, _: &PubsubConfig) -> Result<Arc<dyn SubscriptionHandler>, ConfigProblem> {
    no_settings(settings, NAME)?;
    Ok(Arc::new(MessageSummary))
}

pub struct MessageSummary;

/// The last summary an upstream notifier sent for a mailbox.
fn upstream_key(resource: &str) -> String {
    format!("mwi-up:{{{resource}}}")
}

/// How long an upstream summary counts without a refresh of the
/// subscription that brought it (upstream subscriptions refresh well
/// within a day).
const UPSTREAM_TTL: Duration = Duration::from_secs(86_400);

#[async_trait]
impl SubscriptionHandler for MessageSummary {
    async fn notified(&self, cx: NotifiedCx<'_>, notify: &Message) {
        let Ok(text) = std::str::from_utf8(notify.body()) else {
            return;
        };
        if notify.body().is_empty() || Summary::parse(text).is_err() {
            return;
        }
        let store = &cx.sources.store;
        if let Err(e) = store
            .put(
                &upstream_key(cx.resource),
                notify.body().clone(),
                Expect::Any,
                Some(UPSTREAM_TTL),
            )
            .await
        {
            tracing::warn!(error = %e, "upstream message summary not kept");
        }
    }

    async fn state(&self, cx: StateCx<'_>) -> Option<Bytes> {
        if let Some(v) = cx.sources.store.get(&upstream_key(cx.resource)).await.ok()? {
            return Some(v.value);
        }
        let published = publish_svc::state::composed(&cx.sources.store, cx.package, cx.resource)
            .await
            .ok()?;
        Some(match published {
            Some(c) => Bytes::from(c.body),
            None => Bytes::from(Summary::default().to_body(Some(cx.resource))),
        })
    }
}
