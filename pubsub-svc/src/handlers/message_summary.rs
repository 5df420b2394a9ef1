//! `message-summary` (RFC 3842): a mailbox's state is what was published
//! for it (PUBLISH, `sipbus mwi set`), or "no messages".

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use extension::{ConfigProblem, Settings};
use publish_svc::bodies::summary::Summary;

use super::{StateCx, SubscriptionHandler, no_settings};
use crate::config::PubsubConfig;

pub const NAME: &str = "message-summary";

pub fn build(settings: &Settings<'_>, _: &PubsubConfig) -> Result<Arc<dyn SubscriptionHandler>, ConfigProblem> {
    no_settings(settings, NAME)?;
    Ok(Arc::new(MessageSummary))
}

pub struct MessageSummary;

#[async_trait]
impl SubscriptionHandler for MessageSummary {
    async fn state(&self, cx: StateCx<'_>) -> Option<Bytes> {
        let published = publish_svc::state::composed(&cx.sources.store, cx.package, cx.resource)
            .await
            .ok()?;
        Some(match published {
            Some(c) => Bytes::from(c.body),
            None => Bytes::from(Summary::default().to_body(Some(cx.resource))),
        })
    }
}
