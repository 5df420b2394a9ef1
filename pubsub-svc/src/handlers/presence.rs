//! `presence` (RFC 3856): the composed PIDF of the user's publications,
//! with RPID on-the-phone added while the user is in a call; when nothing
//! is published, derived from the registrar (a binding: open, none:
//! closed) and from calls (on-the-phone).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use extension::{ConfigProblem, Settings};
use publish_svc::bodies::pidf::{self, Derived};

use super::{StateCx, SubscriptionHandler, no_settings};
use crate::config::PubsubConfig;
use crate::dialogs;

pub const NAME: &str = "presence";

pub fn build(settings: &Settings<'_>, _: &PubsubConfig) -> Result<Arc<dyn SubscriptionHandler>, ConfigProblem> {
    no_settings(settings, NAME)?;
    Ok(Arc::new(Presence))
}

pub struct Presence;

#[async_trait]
impl SubscriptionHandler for Presence {
    async fn state(&self, cx: StateCx<'_>) -> Option<Bytes> {
        let store = &cx.sources.store;
        let on_the_phone = dialogs::load(store, cx.resource).await.ok()?.in_a_call();
        if let Some(c) = publish_svc::state::composed(store, cx.package, cx.resource)
            .await
            .ok()?
        {
            let body = if on_the_phone {
                pidf::on_the_phone(&c.body)
            } else {
                c.body
            };
            return Some(Bytes::from(body));
        }
        let registered = !cx.sources.locations.lookup(cx.resource).await.ok()?.is_empty();
        Some(Bytes::from(pidf::derived(
            cx.resource,
            Derived {
                registered,
                on_the_phone,
            },
        )))
    }
}
