//! A subscription handler in another process: the
//! `sipbus.pubsub.v1.SubscriptionHandler` gRPC service turned into
//! [`SubscriptionHandler`]. Deadline, counters and failure policy come from
//! [`extension::External`]; what it sends back is checked before use.

use async_trait::async_trait;
use bytes::Bytes;
use extension::{External, Failure};
use proto::pubsub::v1 as pb;
use proto::pubsub::v1::new_subscription_reply::Decision as PbDecision;
use proto::pubsub::v1::subscription_handler_client::SubscriptionHandlerClient;
use sip_message::{Message, Refusal};

use super::{Decision, NotifiedCx, StateCx, SubView, SubscriptionHandler, Termination};

pub struct ExternalHandler {
    module: External,
    client: SubscriptionHandlerClient<tonic::transport::Channel>,
}

impl ExternalHandler {
    pub fn new(module: External) -> Self {
        let client = SubscriptionHandlerClient::new(module.channel());
        Self { module, client }
    }

    fn client(&self) -> SubscriptionHandlerClient<tonic::transport::Channel> {
        self.client.clone()
    }
}

fn view(s: SubView<'_>) -> pb::Subscription {
    pb::Subscription {
        id: s.id.to_owned(),
        package: s.package.to_owned(),
        resource: s.resource.to_owned(),
        watcher: s.watcher.to_owned(),
        content_type: s.content_type.to_owned(),
    }
}

#[async_trait]
impl SubscriptionHandler for ExternalHandler {
    async fn subscribe(&self, sub: SubView<'_>, request: &Message, allowed: bool) -> Decision {
        let req = self.module.request(
            pb::NewSubscriptionRequest {
                subscription: Some(view(sub)),
                request: Some(proto::convert::to_proto(request)),
                allowed,
            },
            None,
        );
        let reply = self
            .module
            .call("new_subscription", self.client().new_subscription(req))
            .await;
        let decided = reply.and_then(|r| match r.decision {
            Some(PbDecision::Active(_)) => Ok(Decision::Active),
            Some(PbDecision::Pending(_)) => Ok(Decision::Pending),
            Some(PbDecision::Reject(r)) => match u16::try_from(r.status) {
                Ok(status) if (400..700).contains(&status) => Ok(Decision::Reject(if r.reason.is_empty() {
                    Refusal::new(status, "Rejected")
                } else {
                    Refusal::new(status, r.reason)
                })),
                _ => Err(Failure::Invalid(format!("reject status {}", r.status))),
            },
            None => Err(Failure::Invalid("no decision".into())),
        });
        match decided {
            Ok(d) => d,
            Err(failure) => {
                if matches!(failure, Failure::Invalid(_)) {
                    self.module.failed("new_subscription", &failure);
                }
                match self.module.refusal() {
                    Some(r) => Decision::Reject(r),
                    // Fail open: the policy's verdict stands.
                    None if allowed => Decision::Active,
                    None => Decision::Reject(Refusal::forbidden("not authorized to watch this resource")),
                }
            }
        }
    }

    async fn established(&self, sub: SubView<'_>) {
        let req = self.module.request(
            pb::SubscriptionEvent {
                subscription: Some(view(sub)),
            },
            None,
        );
        let _ = self.module.call("established", self.client().established(req)).await;
    }

    async fn refreshed(&self, sub: SubView<'_>) {
        let req = self.module.request(
            pb::SubscriptionEvent {
                subscription: Some(view(sub)),
            },
            None,
        );
        let _ = self.module.call("refreshed", self.client().refreshed(req)).await;
    }

    async fn terminated(&self, sub: SubView<'_>, why: Termination) {
        let reason = match why {
            Termination::Unsubscribed => pb::TerminationReason::Unsubscribed,
            Termination::Timeout => pb::TerminationReason::Timeout,
            Termination::Deactivated => pb::TerminationReason::Deactivated,
            Termination::Rejected => pb::TerminationReason::Rejected,
        };
        let req = self.module.request(
            pb::TerminatedRequest {
                subscription: Some(view(sub)),
                reason: reason as i32,
            },
            None,
        );
        let _ = self.module.call("terminated", self.client().terminated(req)).await;
    }

    async fn state(&self, cx: StateCx<'_>) -> Option<Bytes> {
        let req = self.module.request(
            pb::StateRequest {
                package: cx.package.to_owned(),
                resource: cx.resource.to_owned(),
                content_type: cx.content_type.to_owned(),
                subscription: cx.subscription.to_owned(),
                version: cx.version,
            },
            None,
        );
        match self.module.call("state", self.client().state(req)).await {
            Ok(r) => Some(r.body),
            // Open: a NOTIFY without state; closed: none until the next change.
            Err(_) => self.module.refusal().is_none().then(Bytes::new),
        }
    }

    async fn notified(&self, cx: NotifiedCx<'_>, notify: &Message) {
        let req = self.module.request(
            pb::NotifiedRequest {
                package: cx.package.to_owned(),
                resource: cx.resource.to_owned(),
                notify: Some(proto::convert::to_proto(notify)),
            },
            None,
        );
        let _ = self.module.call("notified", self.client().notified(req)).await;
    }
}
