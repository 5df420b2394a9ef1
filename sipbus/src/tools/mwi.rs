//! `sipbus mwi`: a mailbox's message-waiting state through the event
//! state API.

use std::time::Duration;

use anyhow::Result;
use proto::publish::v1::SetStateRequest;
use proto::publish::v1::event_state_client::EventStateClient;
use publish_svc::bodies::summary::{CONTENT_TYPE, Summary};

use crate::cli::MwiAction;

pub async fn run(action: MwiAction) -> Result<()> {
    let (mailbox, body, server) = match action {
        MwiAction::Set {
            mailbox,
            new,
            old,
            urgent_new,
            urgent_old,
            server,
        } => {
            let summary = Summary {
                new,
                old,
                urgent_new,
                urgent_old,
            };
            (mailbox, summary.to_body(None), server.server)
        }
        MwiAction::Clear { mailbox, server } => (mailbox, String::new(), server.server),
    };
    let mut client = EventStateClient::new(super::channel(&server)?);
    let mut request = tonic::Request::new(SetStateRequest {
        package: "message-summary".into(),
        resource: mailbox.clone(),
        content_type: CONTENT_TYPE.into(),
        body: body.clone().into(),
    });
    request.set_timeout(Duration::from_secs(5));
    let reply = client
        .set(request)
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", server, s.message()))?
        .into_inner();
    if body.is_empty() {
        println!("{}: cleared", reply.resource);
    } else {
        print!("{}:\n{}", reply.resource, body.replace("\r\n", "\n"));
    }
    Ok(())
}
