//! What makes resources change, consumed from the store's event logs so
//! that exactly one replica handles each event (a consumer group per log;
//! a dead replica's unfinished events are taken over after
//! `reclaim_after_ms`): publications and API state (publish-svc), binding
//! changes (registrar-svc: presence), dialog states (session-svc: dialog
//! and presence). Each change fans out one NOTIFY to every subscription
//! of the resource; events are handled concurrently, each acknowledged
//! once its fan-out is done.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use publish_svc::{RESOURCE_CHANGES, ResourceChange};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::core::Core;
use crate::dialogs::{self, DIALOG_EVENTS, DialogEvent};
use crate::notify::{self, Next};
use crate::{subscription, unsolicited};

/// The consumer group of every pubsub-svc replica.
const GROUP: &str = "pubsub-svc";
const BATCH: usize = 64;

/// The logs pubsub-svc follows and what each event means.
#[derive(Debug, Clone, Copy)]
enum Log {
    Resources,
    Bindings,
    Dialogs,
}

impl Log {
    fn stream(self) -> &'static str {
        match self {
            Log::Resources => RESOURCE_CHANGES,
            Log::Bindings => registrar_svc::EVENT_STREAM,
            Log::Dialogs => DIALOG_EVENTS,
        }
    }
}

/// Follows every log until the task is dropped.
pub async fn run(core: Arc<Core>) {
    let permits = Arc::new(Semaphore::new(core.config.max_concurrent_changes.max(1)));
    let mut set = JoinSet::new();
    for log in [Log::Resources, Log::Bindings, Log::Dialogs] {
        set.spawn(follow(core.clone(), log, permits.clone()));
    }
    while set.join_next().await.is_some() {}
}

async fn follow(core: Arc<Core>, log: Log, permits: Arc<Semaphore>) {
    let stream = log.stream();
    let idle = Duration::from_millis(core.config.poll_ms.max(1));
    let reclaim = Duration::from_millis(core.config.reclaim_after_ms);
    loop {
        let events = match core.store.consume(stream, GROUP, &core.consumer, BATCH, reclaim).await {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, stream, "event log not read; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let full = events.len() == BATCH;
        for (id, payload) in events {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let core = core.clone();
            // Boxed: see sip-edge's `Core::on_request`.
            tokio::spawn(Box::pin(async move {
                handle(&core, log, payload).await;
                if let Err(e) = core.store.ack(stream, GROUP, &[id]).await {
                    warn!(error = %e, stream, "event not acknowledged: it will be handled again");
                }
                drop(permit);
            }));
        }
        if !full {
            tokio::time::sleep(idle).await;
        }
    }
}

/// registrar-svc's binding event (the fields used here).
#[derive(Deserialize)]
struct BindingEvent {
    event: String,
    aor: String,
}

async fn handle(core: &Arc<Core>, log: Log, payload: Bytes) {
    match log {
        Log::Resources => {
            if let Ok(c) = serde_json::from_slice::<ResourceChange>(&payload) {
                fan_out(core, &c.package, &c.resource).await;
                if c.package == "message-summary" {
                    unsolicited::notify(core, &c.resource).await;
                }
            }
        }
        Log::Bindings => {
            let Ok(b) = serde_json::from_slice::<BindingEvent>(&payload) else {
                return;
            };
            // A refresh changes nobody's presence.
            if b.event != "refreshed" {
                fan_out(core, "presence", &b.aor).await;
            }
            // A phone that just registered learns its mailbox's state.
            if b.event == "registered" {
                unsolicited::notify(core, &b.aor).await;
            }
        }
        Log::Dialogs => {
            let Ok(ev) = serde_json::from_slice::<DialogEvent>(&payload) else {
                return;
            };
            let Some(aor) = core.user_aor(&ev.party) else { return };
            // Only an ending needs to know: its details are kept for a
            // watcher's NOTIFY, or dropped.
            let watched = ev.state != dialogs::DialogState::Terminated
                || subscription::watchers(&core.store, "dialog", &aor)
                    .await
                    .map_or(true, |w| !w.is_empty());
            match dialogs::apply(&core.store, &aor, &ev, watched).await {
                Ok(applied) => {
                    if applied.changed {
                        fan_out(core, "dialog", &aor).await;
                    }
                    if applied.in_call_changed {
                        fan_out(core, "presence", &aor).await;
                    }
                }
                Err(e) => warn!(error = %e, aor, "dialog state not kept"),
            }
        }
    }
}

/// One NOTIFY with the new state to every subscription of the resource.
pub(crate) async fn fan_out(core: &Arc<Core>, package: &str, resource: &str) {
    if core.packages.get(package).is_none() {
        return;
    }
    let ids = match subscription::watchers(&core.store, package, resource).await {
        Ok(ids) => ids,
        Err(e) => {
            warn!(error = %e, package, resource, "watchers not read");
            return;
        }
    };
    debug!(package, resource, watchers = ids.len(), "resource changed");
    let mut set = JoinSet::new();
    for id in ids {
        let core = core.clone();
        set.spawn(async move { notify::run(&core, &id, Next::State).await });
    }
    while set.join_next().await.is_some() {}
}
