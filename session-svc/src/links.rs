//! How session-svc reaches sdp-svc: in process or over gRPC, through the
//! same contract.

use std::sync::Arc;
use std::time::Duration;

use bus::{NeverArrived, Replica, Replicas};
use proto::sdp::v1 as spb;
use proto::sdp::v1::sdp_negotiator_client::SdpNegotiatorClient;
use proto::sdp::v1::sdp_negotiator_server::SdpNegotiator;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// Deadline of one call to sdp-svc.
const CALL_DEADLINE: Duration = Duration::from_secs(2);

fn request<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.set_timeout(CALL_DEADLINE);
    r
}

#[derive(Clone)]
enum Negotiator {
    Local(Arc<dyn SdpNegotiator>),
    Remote(SdpNegotiatorClient<Channel>),
}

struct Failed(Status);

impl NeverArrived for Failed {
    fn never_arrived(&self) -> bool {
        bus::grpc::never_arrived(&self.0)
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// sdp-svc.
pub struct Negotiators {
    replicas: Replicas<Negotiator>,
}

fn status(e: bus::CallError<Failed>) -> Status {
    match e {
        bus::CallError::Failed { error, .. } | bus::CallError::Unreachable { last: error, .. } => error.0,
        other => Status::unavailable(other_text(&other)),
    }
}

fn other_text(e: &bus::CallError<Failed>) -> String {
    match e {
        bus::CallError::Empty => "no sdp-svc replica".to_owned(),
        bus::CallError::Timeout { replica, deadline } => format!("sdp-svc {replica}: no answer within {deadline:?}"),
        _ => "sdp-svc failed".to_owned(),
    }
}

impl Negotiators {
    pub fn local(n: Arc<dyn SdpNegotiator>) -> Self {
        Self {
            replicas: Replicas::local(Negotiator::Local(n), CALL_DEADLINE),
        }
    }

    pub fn remote(addresses: &[String], connect_timeout: Duration) -> Result<Self, String> {
        let list = addresses
            .iter()
            .map(|a| {
                let ch = bus::grpc::channel(a, connect_timeout).map_err(|e| format!("`{a}`: {e}"))?;
                Ok(Replica {
                    address: a.clone(),
                    client: Negotiator::Remote(SdpNegotiatorClient::new(ch)),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            replicas: Replicas::new(list, CALL_DEADLINE),
        })
    }

    pub async fn offer(&self, msg: spb::OfferRequest) -> Result<spb::OfferReply, Status> {
        self.replicas
            .call(|n| {
                let msg = msg.clone();
                async move {
                    match n {
                        Negotiator::Local(n) => n.offer(request(msg)).await,
                        Negotiator::Remote(mut c) => c.offer(request(msg)).await,
                    }
                    .map(tonic::Response::into_inner)
                    .map_err(Failed)
                }
            })
            .await
            .map_err(status)
    }

    pub async fn answer(&self, msg: spb::AnswerRequest) -> Result<spb::AnswerReply, Status> {
        self.replicas
            .call(|n| {
                let msg = msg.clone();
                async move {
                    match n {
                        Negotiator::Local(n) => n.answer(request(msg)).await,
                        Negotiator::Remote(mut c) => c.answer(request(msg)).await,
                    }
                    .map(tonic::Response::into_inner)
                    .map_err(Failed)
                }
            })
            .await
            .map_err(status)
    }

    pub async fn end(&self, msg: spb::EndRequest) {
        let r = self
            .replicas
            .call(|n| {
                let msg = msg.clone();
                async move {
                    match n {
                        Negotiator::Local(n) => n.end(request(msg)).await,
                        Negotiator::Remote(mut c) => c.end(request(msg)).await,
                    }
                    .map(drop)
                    .map_err(Failed)
                }
            })
            .await;
        if let Err(e) = r {
            tracing::debug!(error = %e, "sdp-svc End failed");
        }
    }
}
