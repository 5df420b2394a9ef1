//! Cases of `sipbus.pubsub.v1.SubscriptionHandler` and
//! `sipbus.publish.v1.PublicationHandler`.

use proto::publish::v1 as publ;
use proto::publish::v1::publication_handler_client::PublicationHandlerClient;
use proto::pubsub::v1 as sub;
use proto::pubsub::v1::subscription_handler_client::SubscriptionHandlerClient;
use tonic::transport::Channel;

use super::Report;
use crate::cli::CheckArgs;

const RESOURCE: &str = "sip:alice@example.com";
const WATCHER: &str = "sip:bob@example.com";

/// The body type a package usually carries.
fn usual_type(package: &str) -> &'static str {
    match package {
        "presence" => "application/pidf+xml",
        "message-summary" => "application/simple-message-summary",
        "dialog" => "application/dialog-info+xml",
        _ => "text/plain",
    }
}

/// A realistic body of `content_type`.
fn body(content_type: &str, note: &str) -> Vec<u8> {
    match content_type {
        "application/pidf+xml" => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{RESOURCE}\">\n  <tuple id=\"t1\"><status><basic>open</basic></status></tuple>\n  <note>{note}</note>\n</presence>\n"
        )
        .into_bytes(),
        "application/simple-message-summary" => b"Messages-Waiting: yes\r\nVoice-Message: 2/1 (0/0)\r\n".to_vec(),
        _ => format!("{note}\n").into_bytes(),
    }
}

fn package_and_type(args: &CheckArgs) -> (String, String) {
    let package = args
        .filter
        .clone()
        .unwrap_or_else(|| "presence".into())
        .to_ascii_lowercase();
    let content_type = args.content_type.clone().unwrap_or_else(|| usual_type(&package).into());
    (package, content_type)
}

fn subscription_of(package: &str, content_type: &str) -> Option<sub::Subscription> {
    Some(sub::Subscription {
        id: "extension-check-subscription".into(),
        package: package.to_owned(),
        resource: RESOURCE.into(),
        watcher: WATCHER.into(),
        content_type: content_type.to_owned(),
    })
}

const RULE_NEW_SUB: &str =
    "NewSubscription: decide on a new subscription: active, pending, or a rejection with a status (400 to 699)";
const RULE_LIFECYCLE: &str = "Established / Refreshed / Terminated: the lifecycle, for the handler's own bookkeeping";
const RULE_STATE: &str =
    "State: the current state of a resource as a body of the requested type (empty for no state yet)";
const RULE_STATELESS: &str = "any replica calls the handler for any subscription: a handler keeps no per-subscription memory it cannot rebuild from these calls";
const RULE_NOTIFIED: &str = "Notified: the subscriber role: a NOTIFY arrived on a subscription sipbus made";

pub(super) async fn subscription(channel: Channel, args: &CheckArgs, report: &mut Report) {
    let mut client = SubscriptionHandlerClient::new(channel);
    let (package, content_type) = package_and_type(args);
    for allowed in [true, false] {
        let reply = report
            .call(
                "NewSubscription",
                client.new_subscription(sub::NewSubscriptionRequest {
                    subscription: subscription_of(&package, &content_type),
                    request: None,
                    allowed,
                }),
            )
            .await;
        report.check(
            format!("NewSubscription ({package}, policy allowed: {allowed}) decides"),
            RULE_NEW_SUB,
            reply.and_then(|r| match r.decision {
                Some(sub::new_subscription_reply::Decision::Reject(r)) if !(400..700).contains(&r.status) => {
                    Err(format!("rejected with status {}", r.status))
                }
                Some(_) => Ok(()),
                None => Err("no decision".into()),
            }),
        );
    }
    let event = || sub::SubscriptionEvent {
        subscription: subscription_of(&package, &content_type),
    };
    let established = report.call("Established", client.established(event())).await;
    report.check("Established answers", RULE_LIFECYCLE, established.map(|_| ()));
    let state = || sub::StateRequest {
        package: package.clone(),
        resource: RESOURCE.into(),
        content_type: content_type.clone(),
        subscription: "extension-check-subscription".into(),
        version: 0,
    };
    let first = report.call("State", client.state(state())).await;
    report.check(
        format!("State of {RESOURCE} as {content_type} answers"),
        RULE_STATE,
        first.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    let refreshed = report.call("Refreshed", client.refreshed(event())).await;
    report.check("Refreshed answers", RULE_LIFECYCLE, refreshed.map(|_| ()));
    if let Ok(first) = first {
        let second = report.call("State", client.state(state())).await;
        report.check(
            "State asked twice for the same NOTIFY gives the same body",
            RULE_STATELESS,
            second.and_then(|s| {
                (s.body == first.body).then_some(()).ok_or_else(|| {
                    format!(
                        "{:?} then {:?}",
                        String::from_utf8_lossy(&first.body),
                        String::from_utf8_lossy(&s.body)
                    )
                })
            }),
        );
    }
    let notified = report
        .call(
            "Notified",
            client.notified(sub::NotifiedRequest {
                package: package.clone(),
                resource: RESOURCE.into(),
                notify: None,
            }),
        )
        .await;
    report.check("Notified answers", RULE_NOTIFIED, notified.map(|_| ()));
    let terminated = report
        .call(
            "Terminated",
            client.terminated(sub::TerminatedRequest {
                subscription: subscription_of(&package, &content_type),
                reason: sub::TerminationReason::Timeout as i32,
            }),
        )
        .await;
    report.check("Terminated answers", RULE_LIFECYCLE, terminated.map(|_| ()));
}

fn publication_of(package: &str, content_type: &str, etag: &str, note: &str) -> publ::Publication {
    publ::Publication {
        package: package.to_owned(),
        resource: RESOURCE.into(),
        etag: etag.to_owned(),
        content_type: content_type.to_owned(),
        body: body(content_type, note).into(),
        publisher: RESOURCE.into(),
        expires_at_ms: state_store::now_ms() + 3_600_000,
    }
}

const RULE_NEW_PUB: &str = "NewPublication: accept the body (normalised or unchanged) or refuse it with a status (400 to 699); this is where a body is validated";
const RULE_SAME: &str =
    "publications live in the store and any replica serves any refresh: the same body gets the same decision";
const RULE_CHANGED: &str = "StateChanged: a publication was initialized, refreshed, modified, removed or expired";
const RULE_COMPOSE: &str =
    "Compose: the state of a resource from all its live publications (a content type with any body; empty: no state)";

type Decision = Result<Option<(u32, String)>, String>;

fn decision(reply: Result<publ::NewPublicationReply, String>) -> Decision {
    match reply?.decision {
        Some(publ::new_publication_reply::Decision::Accept(_)) => Ok(None),
        Some(publ::new_publication_reply::Decision::Reject(r)) if (400..700).contains(&r.status) => {
            Ok(Some((r.status, r.reason)))
        }
        Some(publ::new_publication_reply::Decision::Reject(r)) => Err(format!("refused with status {}", r.status)),
        None => Err("no decision".into()),
    }
}

pub(super) async fn publication(channel: Channel, args: &CheckArgs, report: &mut Report) {
    let mut client = PublicationHandlerClient::new(channel);
    let (package, content_type) = package_and_type(args);
    let p1 = publication_of(&package, &content_type, "etag-1", "in a meeting");
    let mut decisions = Vec::new();
    for _ in 0..2 {
        let reply = report
            .call(
                "NewPublication",
                client.new_publication(publ::NewPublicationRequest {
                    publication: Some(p1.clone()),
                }),
            )
            .await;
        decisions.push(decision(reply));
    }
    report.check(
        format!("NewPublication of a {content_type} body decides"),
        RULE_NEW_PUB,
        decisions[0].clone().map(|_| ()),
    );
    report.check(
        "NewPublication of the same body twice decides the same",
        RULE_SAME,
        match (&decisions[0], &decisions[1]) {
            (Ok(a), Ok(b)) if a == b => Ok(()),
            (Ok(a), Ok(b)) => Err(format!("{a:?} then {b:?}")),
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
        },
    );
    let changes = [
        publ::Change::Initialized,
        publ::Change::Refreshed,
        publ::Change::Modified,
    ];
    changed(&mut client, report, &p1, &changes).await;
    let p2 = publication_of(&package, &content_type, "etag-2", "on the phone");
    let compose = |list: Vec<publ::Publication>| publ::ComposeRequest {
        package: package.clone(),
        resource: RESOURCE.into(),
        publications: list,
    };
    let first = report
        .call("Compose", client.compose(compose(vec![p1.clone(), p2.clone()])))
        .await;
    report.check(
        "Compose of two publications gives a state",
        RULE_COMPOSE,
        first.clone().and_then(|c| {
            if !c.body.is_empty() && c.content_type.is_empty() {
                return Err("a body without a content type".into());
            }
            Ok(())
        }),
    );
    if let Ok(first) = first {
        let second = report
            .call("Compose", client.compose(compose(vec![p1.clone(), p2.clone()])))
            .await;
        report.check(
            "Compose of the same publications twice gives the same state",
            RULE_SAME,
            second.and_then(|c| {
                (c.body == first.body && c.content_type == first.content_type)
                    .then_some(())
                    .ok_or_else(|| "another state the second time".to_owned())
            }),
        );
    }
    let empty = report.call("Compose", client.compose(compose(Vec::new()))).await;
    report.check("Compose of no publication answers", RULE_COMPOSE, empty.map(|_| ()));
    changed(
        &mut client,
        report,
        &p2,
        &[publ::Change::Removed, publ::Change::Expired],
    )
    .await;
}

/// StateChanged of `publication` with each change.
async fn changed(
    client: &mut PublicationHandlerClient<Channel>,
    report: &mut Report,
    publication: &publ::Publication,
    changes: &[publ::Change],
) {
    for change in changes {
        let r = report
            .call(
                "StateChanged",
                client.state_changed(publ::StateChangedRequest {
                    publication: Some(publication.clone()),
                    change: *change as i32,
                }),
            )
            .await;
        report.check(
            format!("StateChanged ({change:?}) answers"),
            RULE_CHANGED,
            r.map(|_| ()),
        );
    }
}
