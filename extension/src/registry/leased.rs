//! The registered modules of one point as one replica sees them: reread
//! from the store every `registry.refresh_ms` (and at once after a change
//! this replica made), each kept as one [`External`] whose instances follow
//! the leases, turned into the point's trait once.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use state_store::Store;
use tracing::warn;

use super::book::{self, BookError};
use super::{Kind, RegistryConfig, Row};
use crate::config::{ModuleConfig, Point};
use crate::external::External;

/// One registered module.
pub struct LeasedModule<T: ?Sized> {
    pub module: ModuleConfig,
    pub external: External,
    pub handler: Arc<T>,
    /// When its last live instance's lease runs out (in the past: lapsed).
    pub live_until_ms: u64,
}

impl<T: ?Sized> LeasedModule<T> {
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.live_until_ms > now_ms
    }

    pub fn row(&self, now_ms: u64) -> Row {
        Row {
            kind: Kind::Registered,
            module: self.module.clone(),
            addresses: self.external.addresses(),
            lease_left: Some(Duration::from_millis(self.live_until_ms.saturating_sub(now_ms))),
            tally: Some(self.external.stats().tally()),
        }
    }
}

type ConnectFn<T> = dyn Fn(External) -> Arc<T> + Send + Sync;

/// The registered modules of one point.
pub struct Leased<T: ?Sized> {
    point: Point,
    store: Store,
    connect: Box<ConnectFn<T>>,
    refresh_every: Duration,
    current: RwLock<Arc<Vec<Arc<LeasedModule<T>>>>>,
    /// One reread at a time: the periodic one and one after a local
    /// change must not finish out of order (an older list winning).
    rereading: tokio::sync::Mutex<()>,
}

/// Two registrations of a name are the same module (one External, its
/// counters kept) while the settings that shape calls stay the same.
fn same_settings(a: &ModuleConfig, b: &ModuleConfig) -> bool {
    let strip = |m: &ModuleConfig| ModuleConfig {
        url: String::new(),
        ..m.clone()
    };
    strip(a) == strip(b)
}

impl<T: ?Sized + Send + Sync + 'static> Leased<T> {
    /// Empty until the first [`Leased::refresh`].
    pub fn new(
        point: Point,
        store: Store,
        config: &RegistryConfig,
        connect: impl Fn(External) -> Arc<T> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            point,
            store,
            connect: Box::new(connect),
            refresh_every: Duration::from_millis(config.refresh_ms.max(50)),
            current: RwLock::new(Arc::new(Vec::new())),
            rereading: tokio::sync::Mutex::new(()),
        })
    }

    pub fn point(&self) -> Point {
        self.point
    }

    /// Every registered module known, live or lapsed, in registration
    /// order.
    pub fn modules(&self) -> Arc<Vec<Arc<LeasedModule<T>>>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn get(&self, name: &str) -> Option<Arc<LeasedModule<T>>> {
        self.modules().iter().find(|m| m.module.name == name).cloned()
    }

    /// Rereads the point's registrations.
    pub async fn refresh(&self) -> Result<(), BookError> {
        let _one = self.rereading.lock().await;
        let (book, _) = book::read(&self.store, self.point).await?;
        let now = state_store::now_ms();
        let old = self.modules();
        let mut next = Vec::with_capacity(book.entries.len());
        for entry in book.entries {
            let module = entry.module.config();
            let mut live: Vec<String> = entry.live(now).map(|i| i.address.clone()).collect();
            // Pods behind one Service address are one endpoint.
            live.sort();
            live.dedup();
            let live_until_ms = entry.live(now).map(|i| i.expires_ms).max().unwrap_or(0);
            let (external, handler) = match old
                .iter()
                .find(|m| m.module.name == module.name && same_settings(&m.module, &module))
            {
                Some(m) => (m.external.clone(), m.handler.clone()),
                None => {
                    let external = External::leased(self.point, &module);
                    let handler = (self.connect)(external.clone());
                    (external, handler)
                }
            };
            external.set_instances(&live, live_until_ms).await;
            next.push(Arc::new(LeasedModule {
                module,
                external,
                handler,
                live_until_ms,
            }));
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        Ok(())
    }

    /// Refreshes for ever (the task of one replica).
    pub async fn follow(self: Arc<Self>) {
        loop {
            if let Err(e) = self.refresh().await {
                warn!(point = %self.point, error = %e, "extension registry unreadable; keeping the last list");
            }
            tokio::time::sleep(self.refresh_every).await;
        }
    }
}
