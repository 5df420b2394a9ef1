//! `sipbus mwi`: a mailbox's message-waiting state through the event
//! state API.

use std::time::Duration;

use anyhow::Result;
use proto::publish::v1::SetStateRequest;
use proto::publish::v1::event_state_client::EventStateClient;
use publish_svc::bodies::summary::{CONTENT_TYPE, Summary};

use crate::cli::MwiAction;

pub async fn run(action: MwiAction) -> Result<()> {
    let (mailbox, body, server, token) = match action {
        MwiAction::Set {
            mailbox,
            new,
            old,
            urgent_new,
            urgent_old,
            server,
            token,
        } => {
            let summary = Summary {
                new,
                old,
                urgent_new,
                urgent_old,
            };
            (mailbox, summary.to_body(None), server.server, token.token)
        }
        MwiAction::Clear { mailbox, server, token } => (mailbox, String::new(), server.server, token.token),
    };
    let resource = set(&server, token.as_deref(), &mailbox, &body).await?;
    if body.is_empty() {
        super::emit(&format!("{resource}: cleared\n"));
    } else {
        super::emit(&format!("{resource}:\n{}", body.replace("\r\n", "\n")));
    }
    Ok(())
}

/// Sets (an empty body: clears) a mailbox's message-summary state; the
/// resource as publish-svc names it.
pub async fn set(server: &str, token: Option<&str>, mailbox: &str, body: &str) -> Result<String> {
    let mut client = EventStateClient::new(super::channel(server)?);
    let mut request = tonic::Request::new(SetStateRequest {
        package: "message-summary".into(),
        resource: mailbox.to_owned(),
        content_type: CONTENT_TYPE.into(),
        body: body.to_owned().into(),
    });
    request.set_timeout(Duration::from_secs(5));
    super::bearer(&mut request, token)?;
    let reply = client
        .set(request)
        .await
        .map_err(|s| anyhow::anyhow!("{server}: {}", s.message()))?
        .into_inner();
    Ok(reply.resource)
}
