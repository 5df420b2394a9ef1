//! The two event extension points over gRPC, with a real server started by
//! the test and named in the configuration: a subscription handler and a
//! publication handler for the package `x-sipbus-test`. A SUBSCRIBE gets
//! the server's bodies (with the NOTIFY count as version), a watcher the
//! server refuses gets its status, a PUBLISH the server refuses gets its
//! status. Then the server is stopped and the configured failure policy
//! ("closed", 503) applies to both.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_types)]

use std::net::SocketAddr;
use std::time::Duration;

use proto::publish::v1 as ppb;
use proto::publish::v1::publication_handler_server::{PublicationHandler, PublicationHandlerServer};
use proto::pubsub::v1 as spb;
use proto::pubsub::v1::subscription_handler_server::{SubscriptionHandler, SubscriptionHandlerServer};
use sipbus_tests::{Sipbus, filled, run_sipp, sipp_to};
use tonic::{Request, Response, Status};

const TYPE: &str = "application/x-sipbus-test+json";

struct Package;

#[tonic::async_trait]
impl SubscriptionHandler for Package {
    async fn new_subscription(
        &self,
        r: Request<spb::NewSubscriptionRequest>,
    ) -> Result<Response<spb::NewSubscriptionReply>, Status> {
        let sub = r.into_inner().subscription.unwrap_or_default();
        let decision = if sub.resource.starts_with("sip:denied@") {
            spb::new_subscription_reply::Decision::Reject(spb::Reject {
                status: 603,
                reason: "Declined (test package)".into(),
            })
        } else {
            spb::new_subscription_reply::Decision::Active(spb::Empty {})
        };
        Ok(Response::new(spb::NewSubscriptionReply {
            decision: Some(decision),
        }))
    }
    async fn established(&self, _r: Request<spb::SubscriptionEvent>) -> Result<Response<spb::Empty>, Status> {
        Ok(Response::new(spb::Empty {}))
    }
    async fn refreshed(&self, _r: Request<spb::SubscriptionEvent>) -> Result<Response<spb::Empty>, Status> {
        Ok(Response::new(spb::Empty {}))
    }
    async fn terminated(&self, _r: Request<spb::TerminatedRequest>) -> Result<Response<spb::Empty>, Status> {
        Ok(Response::new(spb::Empty {}))
    }
    async fn state(&self, r: Request<spb::StateRequest>) -> Result<Response<spb::StateReply>, Status> {
        let r = r.into_inner();
        let body = format!(
            "{{\"from\": \"external handler\", \"resource\": \"{}\", \"version\": {}}}",
            r.resource, r.version
        );
        Ok(Response::new(spb::StateReply { body: body.into() }))
    }
    async fn notified(&self, _r: Request<spb::NotifiedRequest>) -> Result<Response<spb::Empty>, Status> {
        Ok(Response::new(spb::Empty {}))
    }
}

#[tonic::async_trait]
impl PublicationHandler for Package {
    async fn new_publication(
        &self,
        r: Request<ppb::NewPublicationRequest>,
    ) -> Result<Response<ppb::NewPublicationReply>, Status> {
        let p = r.into_inner().publication.unwrap_or_default();
        let decision = if p.body.as_ref().starts_with(b"reject") {
            ppb::new_publication_reply::Decision::Reject(ppb::Reject {
                status: 488,
                reason: "Not Acceptable Here (test package)".into(),
            })
        } else {
            ppb::new_publication_reply::Decision::Accept(Default::default())
        };
        Ok(Response::new(ppb::NewPublicationReply {
            decision: Some(decision),
        }))
    }
    async fn state_changed(&self, _r: Request<ppb::StateChangedRequest>) -> Result<Response<ppb::Empty>, Status> {
        Ok(Response::new(ppb::Empty {}))
    }
    async fn compose(&self, r: Request<ppb::ComposeRequest>) -> Result<Response<ppb::ComposeReply>, Status> {
        let r = r.into_inner();
        Ok(Response::new(ppb::ComposeReply {
            content_type: TYPE.into(),
            body: r.publications.last().map(|p| p.body.clone()).unwrap_or_default(),
        }))
    }
}

fn serve() -> (SocketAddr, tokio::runtime::Runtime) {
    sipbus_tests::serve_grpc(
        tonic::transport::Server::builder()
            .add_service(SubscriptionHandlerServer::new(Package))
            .add_service(PublicationHandlerServer::new(Package)),
    )
    .unwrap()
}

/// One request, answered `status`; with `-trace_msg` into `log`.
fn request(server: SocketAddr, method: &str, user: &str, headers: &str, body: &str, status: u16, log: &str) -> String {
    let sf = filled(
        "request_status.xml",
        &[
            ("METHOD", method),
            ("FROM", "watcher"),
            ("HEADERS", headers),
            ("BODY", body),
            ("STATUS", &status.to_string()),
            ("CHECK_HEADER", "To:"),
            ("CHECK_RE", user),
        ],
    )
    .unwrap();
    run(server, &sf, user, log)
}

/// One run of scenario `sf` towards `user`, its message log's text.
fn run(server: SocketAddr, sf: &str, user: &str, log: &str) -> String {
    let args = sipp_to(
        server,
        sf,
        user,
        &[
            "-m",
            "1",
            "-timeout",
            "20s",
            "-timeout_error",
            "-trace_msg",
            "-message_file",
            log,
        ],
    )
    .unwrap();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = run_sipp(&refs, Duration::from_secs(30)).unwrap();
    assert_eq!(r.exit_code, Some(0), "{sf} to {user}: {}", r.output);
    std::fs::read_to_string(log).unwrap_or_default()
}

#[test]
fn external_event_handlers_and_their_failure_policy() {
    let (addr, rt) = serve();
    let subscription = format!(
        r#"[{{name = "x-test", url = "http://{addr}", events = ["x-sipbus-test"], types = ["{TYPE}"], timeout_ms = 300, on_failure = "closed", reject_status = 503}}]"#
    );
    let publication = format!(
        r#"[{{name = "x-test", url = "http://{addr}", events = ["x-sipbus-test"], types = ["{TYPE}"], timeout_ms = 300, on_failure = "closed", reject_status = 503}}]"#
    );
    let env = [
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "ext", password = "secret"}, {user = "denied", password = "secret"}]"#,
        ),
        ("SIPBUS_PUBSUB__AUTHENTICATE", "false"),
        ("SIPBUS_PUBLISH__AUTHENTICATE", "false"),
        ("SIPBUS_PUBSUB__HANDLERS", subscription.as_str()),
        ("SIPBUS_PUBLISH__HANDLERS", publication.as_str()),
    ];
    let sipbus = Sipbus::start("all", &env).unwrap();
    let server = sipbus.sip;
    let log = std::env::temp_dir().join(format!("ext-events-{}.log", server.port()));
    let log = log.to_str().unwrap();
    let sub = "      Event: x-sipbus-test\n      Expires: 0";
    // A fetch: 200, then one NOTIFY with the server's body.
    let watcher = filled(
        "subscriber.xml",
        &[
            ("EVENT", "x-sipbus-test"),
            ("ACCEPT", TYPE),
            ("EXPIRES", "0"),
            ("IDLE_MS", "5000"),
            ("FROM", "watcher"),
        ],
    )
    .unwrap();
    let text = run(server, &watcher, "ext", log);
    assert!(
        text.contains("\"from\": \"external handler\"") && text.contains("\"version\": 0"),
        "{text}\n{}",
        sipbus.log_text()
    );
    assert!(text.contains(&format!("Content-Type: {TYPE}")), "{text}");
    // The server refuses this watcher.
    request(server, "SUBSCRIBE", "denied", sub, "", 603, log);
    // Unknown packages name the external one among the others.
    let text = request(server, "SUBSCRIBE", "ext", "      Event: none", "", 489, log);
    assert!(text.contains("x-sipbus-test"), "{text}");
    // Publication handler: refuses by body, accepts otherwise.
    let publish = format!("      Event: x-sipbus-test\n      Content-Type: {TYPE}");
    request(server, "PUBLISH", "ext", &publish, "reject me", 488, log);
    request(server, "PUBLISH", "ext", &publish, "{\"fine\": true}", 200, log);

    // Server gone: "closed" answers 503 on both points.
    rt.shutdown_background();
    std::thread::sleep(Duration::from_millis(200));
    request(
        server,
        "SUBSCRIBE",
        "ext",
        "      Event: x-sipbus-test\n      Expires: 600",
        "",
        503,
        log,
    );
    request(server, "PUBLISH", "ext", &publish, "{\"fine\": true}", 503, log);
    let logs = sipbus.log_text();
    assert!(logs.contains("extension failed"), "{logs}");
}
