//! `message-summary` (RFC 3842): a voicemail system (or `sipbus mwi set`)
//! publishes a mailbox's summary; the body is checked and kept as
//! published (other message classes and headers included); the newest publication is the mailbox's state.

use std::sync::Arc;

use async_trait::async_trait;
use extension::{ConfigProblem, Settings};
use sip_message::Refusal;

use super::{Accepted, PublicationHandler, Scope};
use crate::bodies::summary::Summary;
use crate::config::PublishConfig;
use crate::publication::Publication;

pub const NAME: &str = "message-summary";

pub fn build(settings: &Settings<'_>, _: &PublishConfig) -> Result<Arc<dyn PublicationHandler>, ConfigProblem> {
    if settings.parse::<toml::Table>()?.is_empty() {
        Ok(Arc::new(MessageSummary))
    } else {
        Err(settings.problem("the message-summary handler takes no settings"))
    }
}

pub struct MessageSummary;

#[async_trait]
impl PublicationHandler for MessageSummary {
    async fn publication(&self, _scope: Scope<'_>, p: &Publication) -> Accepted {
        match Summary::parse(&p.body) {
            Ok(_) => Accepted::Store(p.body.clone()),
            Err(e) => Accepted::Reject(Refusal::bad_request(&format!("message summary: {e}"))),
        }
    }
}
