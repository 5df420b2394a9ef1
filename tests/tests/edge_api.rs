//! The edge API over gRPC, as a split service uses it: a service that
//! answers a REGISTER later through Edge.Respond, and a request sent
//! through Edge.SendRequest with its responses streamed back.

use std::net::SocketAddr;
use std::time::Duration;

use proto::convert::{from_proto, to_proto};
use proto::edge::v1 as pb;
use proto::edge::v1::edge_client::EdgeClient;
use proto::edge::v1::request_handler_server::{RequestHandler, RequestHandlerServer};
use sip_message::{Known, Message, Method};
use sipbus_tests::{Sipbus, free_port, run_sipp, temp_file};
use tonic::{Request, Response, Status};

/// Answers nothing at once; 100 ms later it sends 486 through the edge API.
struct AnswersLater {
    edge_api: String,
}

#[tonic::async_trait]
impl RequestHandler for AnswersLater {
    async fn handle(&self, request: Request<pb::IncomingRequest>) -> Result<Response<pb::HandleReply>, Status> {
        let incoming = request.into_inner();
        let msg = from_proto(incoming.message.ok_or_else(|| Status::invalid_argument("no message"))?)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let flow = incoming.flow.unwrap_or_default();
        let busy = msg.make_response(486, "Busy Here (answered later)", Some("later"));
        let edge_api = self.edge_api.clone();
        let server_tx = incoming.server_tx;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let Ok(mut client) = EdgeClient::connect(edge_api).await else {
                return;
            };
            let _ = client
                .respond(pb::RespondRequest {
                    edge_instance: flow.edge_instance,
                    server_tx,
                    response: Some(to_proto(&busy)),
                })
                .await;
        });
        Ok(Response::new(pb::HandleReply { response: None }))
    }
}

const EXPECT_486: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register answered later">
  <send retrans="500">
    <![CDATA[
      REGISTER sip:example.com SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:alice@example.com>;tag=[call_number]
      To: <sip:alice@example.com>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:alice@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true" />
  <recv response="486" />
</scenario>
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_answer_later_and_send_requests_through_the_edge_api() -> anyhow::Result<()> {
    let handler_addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let edge_grpc: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let service = AnswersLater {
        edge_api: format!("http://{edge_grpc}"),
    };
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RequestHandlerServer::new(service))
            .serve(handler_addr),
    );
    let replicas = format!("[\"http://{handler_addr}\"]");
    let grpc = edge_grpc.to_string();
    let edge = Sipbus::start(
        "sip-edge",
        &[("SIPBUS_BUS__REGISTRAR", &replicas), ("SIPBUS_GRPC__LISTEN", &grpc)],
    )?;

    // Answered later, from elsewhere, through Edge.Respond.
    let scenario = temp_file("later.xml", EXPECT_486)?;
    let target = edge.sip.to_string();
    let r = tokio::task::spawn_blocking(move || {
        run_sipp(
            &[
                &target,
                "-sf",
                scenario.to_str().unwrap_or_default(),
                "-i",
                "127.0.0.1",
                "-m",
                "1",
                "-recv_timeout",
                "5000",
            ],
            Duration::from_secs(30),
        )
    })
    .await??;
    assert_eq!(
        (r.exit_code, r.successful),
        (Some(0), 1),
        "{}\n{}",
        r.output,
        edge.log_text()
    );

    // A request sent through Edge.SendRequest: OPTIONS to the edge itself,
    // whose 200 comes back on the stream.
    let mut client = EdgeClient::connect(format!("http://{edge_grpc}")).await?;
    let mut options = Message::request(Method::Options, &format!("sip:{}", edge.sip));
    options.push_header(Known::From, "<sip:service@example.com>;tag=s1");
    options.push_header(Known::To, &format!("<sip:{}>", edge.sip));
    options.push_header(Known::CallId, "edge-api-1");
    options.push_header(Known::CSeq, "1 OPTIONS");
    let flow = pb::Flow {
        transport: pb::Transport::Udp as i32,
        remote: edge.sip.to_string(),
        ..Default::default()
    };
    let mut stream = client
        .send_request(pb::SendRequestRequest {
            request: Some(to_proto(&options)),
            flow: Some(flow),
        })
        .await?
        .into_inner();
    // The first item names the client transaction; the responses follow.
    let named = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await??
        .expect("the client transaction");
    assert!(named.response.is_none());
    assert_ne!(named.client_tx, 0);
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await??
        .expect("a response");
    assert_eq!(first.client_tx, named.client_tx);
    let response = from_proto(first.response.expect("response"))?;
    assert_eq!(response.status(), Some(200), "{}", edge.log_text());
    assert!(!first.local);
    assert_eq!(response.known_header(Known::Allow), Some("OPTIONS, REGISTER"));

    // A server transaction that does not exist is refused with NotFound.
    let err = client
        .respond(pb::RespondRequest {
            edge_instance: String::new(),
            server_tx: 999_999,
            response: Some(to_proto(&options.make_response(200, "OK", None))),
        })
        .await
        .expect_err("unknown instance refused");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    server.abort();
    Ok(())
}
