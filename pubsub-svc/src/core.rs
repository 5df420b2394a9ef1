//! What every part of pubsub-svc works with.

use std::sync::Arc;

use bus::Edges;
use edge_api::ServerTxRef;
use extension::{ConfigProblem, Host, Leased, Packages, Point, RegistryConfig};
use registrar_svc::{Directory, LocationClient};
use sip_message::{Message, Uri};
use state_store::Store;
use tracing::warn;

use crate::config::PubsubConfig;
use crate::handlers::external::ExternalHandler;
use crate::handlers::{Sources, SubscriptionHandler};

pub struct Core {
    pub(crate) config: PubsubConfig,
    pub(crate) store: Store,
    pub(crate) edges: Edges,
    pub(crate) directory: Directory,
    pub(crate) packages: Arc<Packages<dyn SubscriptionHandler>>,
    pub(crate) sources: Sources,
    /// This replica's name in the event logs' consumer groups.
    pub(crate) consumer: String,
}

impl Core {
    /// Builds the handlers (external ones connect lazily: needs a Tokio
    /// runtime when any is configured).
    pub fn new(
        config: PubsubConfig,
        store: Store,
        edges: Edges,
        directory: Directory,
        locations: LocationClient,
        registry: &RegistryConfig,
    ) -> Result<Self, Vec<ConfigProblem>> {
        let connect = |ext| Arc::new(ExternalHandler::new(ext)) as Arc<dyn SubscriptionHandler>;
        let leased = Leased::new(Point::SubscriptionHandler, store.clone(), registry, connect);
        let packages = Arc::new(config.handlers(Some(&connect))?.with_leased(leased));
        Ok(Self {
            sources: Sources {
                store: store.clone(),
                locations,
            },
            config,
            store,
            edges,
            directory,
            packages,
            consumer: format!("pubsub-{}", crate::random_id()),
        })
    }

    /// Handlers registered at run time: the registry's view of this point.
    pub fn registry_host(&self) -> Arc<dyn Host> {
        self.packages.clone()
    }

    /// Keeps the registered handlers current (one task per replica).
    pub async fn follow_registry(self: Arc<Self>) {
        if let Some(l) = self.packages.leased().cloned() {
            l.follow().await;
        }
    }

    pub(crate) async fn respond(&self, tx: &ServerTxRef, response: Message) {
        if let Err(e) = self.edges.respond(tx, response).await {
            warn!(error = %e, "response not sent");
        }
    }

    /// The address of record of a party in a call (a URI session-svc
    /// saw): its user in its domain, or in our first domain when the host
    /// is an address; `None` for someone not ours.
    pub(crate) fn user_aor(&self, uri: &str) -> Option<String> {
        let Ok(Uri::Sip(u)) = Uri::parse(uri) else { return None };
        let user = u.user_decoded()?.into_owned();
        let host = u.host.to_string().to_ascii_lowercase();
        let domain = if self.directory.serves(&host) {
            host
        } else {
            self.directory.domains.first()?.clone()
        };
        self.directory
            .knows(&user, &domain)
            .then(|| format!("sip:{user}@{domain}"))
    }
}
