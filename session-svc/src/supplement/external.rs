//! An external supplement: the same trait, answered by a gRPC server
//! elsewhere. Deadlines and the failure policy are applied by the chain.

use std::time::Duration;

use proto::session::v1 as spb;
use proto::session::v1::session_supplement_client::SessionSupplementClient;
use proto::session::v1::session_supplement_server::SessionSupplement;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

pub struct External {
    client: SessionSupplementClient<Channel>,
}

impl External {
    /// Connects lazily: a supplement that is down at start-up fails its
    /// calls (and its failure policy applies) until it is back.
    pub fn new(url: &str) -> Result<Self, tonic::transport::Error> {
        let endpoint = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true);
        Ok(Self {
            client: SessionSupplementClient::new(endpoint.connect_lazy()),
        })
    }
}

#[tonic::async_trait]
impl SessionSupplement for External {
    async fn begin(&self, r: Request<spb::BeginRequest>) -> Result<Response<spb::BeginReply>, Status> {
        self.client.clone().begin(r).await
    }
    async fn end(&self, r: Request<spb::EndRequest>) -> Result<Response<spb::EndReply>, Status> {
        self.client.clone().end(r).await
    }
    async fn incoming_request(&self, r: Request<spb::RequestEvent>) -> Result<Response<spb::RequestVerdict>, Status> {
        self.client.clone().incoming_request(r).await
    }
    async fn incoming_response(&self, r: Request<spb::ResponseEvent>) -> Result<Response<spb::ResponseReply>, Status> {
        self.client.clone().incoming_response(r).await
    }
    async fn outgoing_request(&self, r: Request<spb::OutgoingEvent>) -> Result<Response<spb::OutgoingReply>, Status> {
        self.client.clone().outgoing_request(r).await
    }
    async fn outgoing_response(&self, r: Request<spb::OutgoingEvent>) -> Result<Response<spb::OutgoingReply>, Status> {
        self.client.clone().outgoing_response(r).await
    }
}
