//! The event state API (`sipbus.publish.v1.EventState`): state set
//! without SIP, e.g. a mailbox's counts by `sipbus mwi set`.

use std::sync::Arc;

use proto::publish::v1 as pb;
use proto::publish::v1::event_state_server::{EventState, EventStateServer};
use tonic::{Request, Response, Status};

use crate::service::Publisher;

pub struct EventStateService {
    inner: Arc<Publisher>,
    /// `registry.token`: callers need it, or loopback when it is empty.
    token: String,
}

impl EventStateService {
    pub fn new(inner: Arc<Publisher>, token: String) -> Self {
        Self { inner, token }
    }

    pub fn into_server(self) -> EventStateServer<Self> {
        EventStateServer::new(self)
    }
}

#[tonic::async_trait]
impl EventState for EventStateService {
    async fn set(&self, request: Request<pb::SetStateRequest>) -> Result<Response<pb::SetStateReply>, Status> {
        extension::registry::check_token(&self.token, &request, "event state", "set")?;
        let r = request.into_inner();
        let body = if r.body.is_empty() {
            None
        } else {
            Some(String::from_utf8(r.body.to_vec()).map_err(|_| Status::invalid_argument("body is not UTF-8"))?)
        };
        match self
            .inner
            .set_state(&r.package, &r.resource, &r.content_type, body)
            .await
        {
            Ok(resource) => Ok(Response::new(pb::SetStateReply { resource })),
            Err(refusal) => Err(match refusal.code() {
                404 | 489 => Status::not_found(refusal.to_string()),
                503 => Status::unavailable(refusal.to_string()),
                _ => Status::invalid_argument(refusal.to_string()),
            }),
        }
    }
}
