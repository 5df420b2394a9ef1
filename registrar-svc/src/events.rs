//! Binding changes, published to the store's event log for the services
//! that follow registrations (presence, later).

use bytes::Bytes;
use serde::Serialize;
use state_store::Store;
use tracing::warn;

use crate::binding::Binding;

/// The log registrar events go to.
pub const EVENT_STREAM: &str = "sipbus:registrar:events";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Registered,
    Refreshed,
    Removed,
    Expired,
}

#[derive(Debug, Serialize)]
pub struct BindingEvent<'a> {
    pub event: EventKind,
    pub aor: &'a str,
    pub contact: &'a str,
    pub expires_at_ms: u64,
    pub instance: Option<&'a str>,
}

impl<'a> BindingEvent<'a> {
    pub fn new(event: EventKind, aor: &'a str, b: &'a Binding) -> Self {
        Self {
            event,
            aor,
            contact: &b.uri,
            expires_at_ms: b.expires_at_ms,
            instance: b.instance.as_deref(),
        }
    }
}

pub async fn publish(store: &Store, event: &BindingEvent<'_>) {
    let Ok(json) = serde_json::to_vec(event) else {
        return;
    };
    if let Err(e) = store.publish(EVENT_STREAM, Bytes::from(json)).await {
        warn!(error = %e, "binding event not published");
    }
}
