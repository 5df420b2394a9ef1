//! A publication handler in another process: the
//! `sipbus.publish.v1.PublicationHandler` gRPC service turned into
//! [`PublicationHandler`]. Deadline, counters and failure policy come from
//! [`extension::External`]; what it sends back is checked before use.

use async_trait::async_trait;
use extension::{External, Failure};
use proto::publish::v1 as pb;
use proto::publish::v1::new_publication_reply::Decision;
use proto::publish::v1::publication_handler_client::PublicationHandlerClient;
use sip_message::Refusal;

use super::{Accepted, Change, PublicationHandler, Scope, newest};
use crate::publication::Publication;
use crate::state::Composed;

pub struct ExternalHandler {
    module: External,
    client: PublicationHandlerClient<tonic::transport::Channel>,
}

impl ExternalHandler {
    pub fn new(module: External) -> Self {
        let client = PublicationHandlerClient::new(module.channel());
        Self { module, client }
    }
}

fn to_pb(scope: Scope<'_>, p: &Publication) -> pb::Publication {
    pb::Publication {
        package: scope.package.to_owned(),
        resource: scope.resource.to_owned(),
        etag: p.etag.clone(),
        content_type: p.content_type.clone(),
        body: p.body.clone().into(),
        publisher: p.publisher.clone(),
        expires_at_ms: p.expires_at_ms.unwrap_or(0),
    }
}

fn text(body: &[u8], what: &str) -> Result<String, Failure> {
    String::from_utf8(body.to_vec()).map_err(|_| Failure::Invalid(format!("{what} is not UTF-8")))
}

#[async_trait]
impl PublicationHandler for ExternalHandler {
    async fn publication(&self, scope: Scope<'_>, p: &Publication) -> Accepted {
        let request = self.module.request(
            pb::NewPublicationRequest {
                publication: Some(to_pb(scope, p)),
            },
            None,
        );
        let reply = self
            .module
            .call("new_publication", self.client.clone().new_publication(request))
            .await;
        let decided = reply.and_then(|r| match r.decision {
            Some(Decision::Accept(body)) if body.is_empty() => Ok(Accepted::Store(p.body.clone())),
            Some(Decision::Accept(body)) => text(&body, "accepted body").map(Accepted::Store),
            Some(Decision::Reject(r)) => match u16::try_from(r.status) {
                Ok(status) if (400..700).contains(&status) => Ok(Accepted::Reject(if r.reason.is_empty() {
                    Refusal::new(status, "Rejected")
                } else {
                    Refusal::new(status, r.reason)
                })),
                _ => Err(Failure::Invalid(format!("reject status {}", r.status))),
            },
            None => Err(Failure::Invalid("neither accept nor reject".into())),
        });
        match decided {
            Ok(a) => a,
            Err(failure) => {
                if matches!(failure, Failure::Invalid(_)) {
                    self.module.failed("new_publication", &failure);
                }
                match self.module.refusal() {
                    Some(r) => Accepted::Reject(r),
                    None => Accepted::Store(p.body.clone()),
                }
            }
        }
    }

    async fn changed(&self, scope: Scope<'_>, p: &Publication, change: Change) {
        let change = match change {
            Change::Initialized => pb::Change::Initialized,
            Change::Refreshed => pb::Change::Refreshed,
            Change::Modified => pb::Change::Modified,
            Change::Removed => pb::Change::Removed,
            Change::Expired => pb::Change::Expired,
        };
        let request = self.module.request(
            pb::StateChangedRequest {
                publication: Some(to_pb(scope, p)),
                change: change as i32,
            },
            None,
        );
        // Nothing waits on it: a failure is counted and logged.
        let _ = self
            .module
            .call("state_changed", self.client.clone().state_changed(request))
            .await;
    }

    async fn compose(&self, scope: Scope<'_>, publications: &[Publication]) -> Composed {
        let request = self.module.request(
            pb::ComposeRequest {
                package: scope.package.to_owned(),
                resource: scope.resource.to_owned(),
                publications: publications.iter().map(|p| to_pb(scope, p)).collect(),
            },
            None,
        );
        let reply = self.module.call("compose", self.client.clone().compose(request)).await;
        match reply.and_then(|r| Ok((r.content_type, text(&r.body, "composed body")?))) {
            Ok((content_type, body)) => Composed { content_type, body },
            Err(failure) => {
                if matches!(failure, Failure::Invalid(_)) {
                    self.module.failed("compose", &failure);
                }
                newest(publications)
            }
        }
    }
}
