//! `dialog` (RFC 4235): the busy lamp field, from session-svc's dialog
//! events. Full state in every NOTIFY, `version` counting the NOTIFYs of
//! the subscription (kept in the store, so it continues across replicas).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use extension::{ConfigProblem, Settings};

use super::{StateCx, SubscriptionHandler, no_settings};
use crate::config::PubsubConfig;
use crate::dialogs;

pub const NAME: &str = "dialog";

pub fn build(settings: &Settings<'_>, _: &PubsubConfig) -> Result<Arc<dyn SubscriptionHandler>, ConfigProblem> {
    no_settings(settings, NAME)?;
    Ok(Arc::new(DialogPackage))
}

pub struct DialogPackage;

#[async_trait]
impl SubscriptionHandler for DialogPackage {
    async fn state(&self, cx: StateCx<'_>) -> Option<Bytes> {
        let list = dialogs::load(&cx.sources.store, cx.resource).await.ok()?;
        Some(Bytes::from(list.dialog_info(
            cx.resource,
            cx.version,
            state_store::now_ms(),
        )))
    }
}
