//! `presence` (RFC 3856): PIDF documents are checked, stamped with the
//! resource as entity, and every device's publication is composed into one
//! document with all their tuples.

use std::sync::Arc;

use async_trait::async_trait;
use extension::{ConfigProblem, Settings};
use sip_message::Refusal;

use super::{Accepted, PublicationHandler, Scope};
use crate::bodies::pidf;
use crate::config::PublishConfig;
use crate::publication::Publication;
use crate::state::Composed;

pub const NAME: &str = "presence";

pub fn build(settings: &Settings<'_>, _: &PublishConfig) -> Result<Arc<dyn PublicationHandler>, ConfigProblem> {
    if settings.parse::<toml::Table>()?.is_empty() {
        Ok(Arc::new(Presence))
    } else {
        Err(settings.problem("the presence handler takes no settings"))
    }
}

pub struct Presence;

#[async_trait]
impl PublicationHandler for Presence {
    async fn publication(&self, _scope: Scope<'_>, p: &Publication) -> Accepted {
        match pidf::check(&p.body) {
            Ok(()) => Accepted::Store(p.body.clone()),
            Err(e) => Accepted::Reject(Refusal::bad_request(&format!("PIDF: {e}"))),
        }
    }

    async fn compose(&self, scope: Scope<'_>, publications: &[Publication]) -> Composed {
        Composed {
            content_type: pidf::CONTENT_TYPE.to_owned(),
            body: pidf::compose(scope.resource, publications.iter().map(|p| p.body.as_str())),
        }
    }
}
