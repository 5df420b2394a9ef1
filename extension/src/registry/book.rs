//! The registrations of one point as the store keeps them: one record per
//! point (`ext:reg:{point}`), changed by compare-and-set, so every replica
//! reads the same list and two registrations never lose each other.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use state_store::{Expect, Store, StoreError};

use crate::config::{ModuleConfig, OnFailure, Point};

/// A registered module's settings as stored: every field defaulted and
/// unknown ones ignored, so replicas of two versions read each other's
/// records during a rolling upgrade (the configuration's own type refuses
/// unknown keys, as a configuration file should).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Stored {
    pub name: String,
    pub url: String,
    pub methods: Vec<String>,
    pub media: Vec<String>,
    pub events: Vec<String>,
    pub types: Vec<String>,
    pub priority: i32,
    pub timeout_ms: u64,
    pub on_failure: OnFailure,
    pub reject_status: u16,
}

impl From<&ModuleConfig> for Stored {
    fn from(m: &ModuleConfig) -> Self {
        Stored {
            name: m.name.clone(),
            url: m.url.clone(),
            methods: m.methods.clone(),
            media: m.media.clone(),
            events: m.events.clone(),
            types: m.types.clone(),
            priority: m.priority,
            timeout_ms: m.timeout_ms,
            on_failure: m.on_failure,
            reject_status: m.reject_status,
        }
    }
}

impl Stored {
    pub fn config(&self) -> ModuleConfig {
        ModuleConfig {
            url: self.url.clone(),
            methods: self.methods.clone(),
            media: self.media.clone(),
            events: self.events.clone(),
            types: self.types.clone(),
            priority: self.priority,
            timeout_ms: self.timeout_ms,
            on_failure: self.on_failure,
            reject_status: self.reject_status,
            ..ModuleConfig::builtin(&self.name)
        }
    }
}

/// One instance of a registered module: a pod that renews its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub address: String,
    pub expires_ms: u64,
    /// The lease granted: what each renewal extends it by.
    pub lease_ms: u64,
}

/// A registered module: the settings of its latest registration and its
/// instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// `url` holds the latest instance's address (the module is external).
    pub module: Stored,
    pub instances: Vec<Instance>,
    /// When the last instance's lease runs (or ran) out: a module is kept,
    /// lapsed, until `retain` after this, so sessions that began with it
    /// still find its failure policy.
    pub until_ms: u64,
}

impl Entry {
    pub fn live(&self, now_ms: u64) -> impl Iterator<Item = &Instance> {
        self.instances.iter().filter(move |i| i.expires_ms > now_ms)
    }
}

/// Every registration of one point.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Book {
    pub entries: Vec<Entry>,
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("registry record of {0} unreadable: {1}")]
    Corrupt(Point, String),
    #[error("registry record of {0} kept changing; try again")]
    Busy(Point),
    /// No live instance has this id (it lapsed, or was never there).
    #[error("no live registration {0}")]
    Unknown(String),
    /// The point, or the module, has as many registrations as it may.
    #[error("{0}")]
    Full(String),
    /// Another live module serves an event package this one asks for.
    #[error("{0}")]
    Taken(String),
}

/// Registered modules per point, and live instances per module: what one
/// record holds stays small whatever callers send.
pub const MAX_MODULES: usize = 64;
pub const MAX_INSTANCES: usize = 64;

fn key(point: Point) -> String {
    format!("ext:reg:{{{}}}", point.as_str())
}

/// A registration id names its point, so Renew and Deregister find the
/// record from the id alone.
pub fn point_of(id: &str) -> Option<Point> {
    let (point, rest) = id.split_once('.')?;
    (rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| Point::ALL.into_iter().find(|p| p.as_str() == point))
        .flatten()
}

pub fn new_id(point: Point) -> String {
    format!("{}.{}", point.as_str(), random_hex())
}

/// 128 random bits in hex.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    // Without OS randomness a clock-derived id still differs per call.
    if getrandom::fill(&mut bytes).is_err() {
        bytes[..8].copy_from_slice(&state_store::now_ms().to_le_bytes());
        bytes[8..].copy_from_slice(&fastrand::u64(..).to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn read(store: &Store, point: Point) -> Result<(Book, Option<u64>), BookError> {
    match store.get(&key(point)).await? {
        None => Ok((Book::default(), None)),
        Some(v) => serde_json::from_slice(&v.value)
            .map(|b| (b, Some(v.version)))
            .map_err(|e| BookError::Corrupt(point, e.to_string())),
    }
}

/// Reads, changes with `edit`, prunes what is past retention, and writes
/// back if nothing changed meanwhile (a few tries).
pub async fn update<R>(
    store: &Store,
    point: Point,
    retain: Duration,
    mut edit: impl FnMut(&mut Book, u64) -> Result<R, BookError>,
) -> Result<R, BookError> {
    for _ in 0..16 {
        let (mut book, version) = read(store, point).await?;
        let now = state_store::now_ms();
        let result = edit(&mut book, now)?;
        let keep_ms = u64::try_from(retain.as_millis()).unwrap_or(u64::MAX);
        for e in &mut book.entries {
            e.instances.retain(|i| i.expires_ms > now);
        }
        book.entries.retain(|e| e.until_ms.saturating_add(keep_ms) > now);
        // The record outlives its last lease by the retention.
        let last = book.entries.iter().map(|e| e.until_ms).max().unwrap_or(now);
        let ttl = Duration::from_millis(last.saturating_sub(now).saturating_add(keep_ms).max(1000));
        let bytes = serde_json::to_vec(&book).map_err(|e| BookError::Corrupt(point, e.to_string()))?;
        let expect = version.map_or(Expect::Absent, Expect::Version);
        match store.put(&key(point), bytes.into(), expect, Some(ttl)).await {
            Ok(_) => return Ok(result),
            // Many pods renewing at once: spread the retries.
            Err(StoreError::Conflict { .. }) => {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=20))).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(BookError::Busy(point))
}

/// Adds an instance of `module` with a new id; the module's settings
/// become these. Refused when another live module serves one of its event
/// packages, or when the point or the module is full (a lapsed module is
/// forgotten early to make room).
pub fn register(book: &mut Book, now: u64, module: &ModuleConfig, id: &str, lease: Duration) -> Result<(), BookError> {
    let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    let expires_ms = now.saturating_add(lease_ms);
    // Checked here, in the compare-and-set, not against a replica's view:
    // two registrations racing for one package cannot both win.
    if let Some((other, event)) = book
        .entries
        .iter()
        .filter(|e| e.module.name != module.name && e.live(now).next().is_some())
        .find_map(|e| {
            module
                .events
                .iter()
                .find(|ev| e.module.events.contains(ev))
                .map(|ev| (&e.module.name, ev))
        })
    {
        return Err(BookError::Taken(format!(
            "package `{event}` is already served by `{other}` (registered)"
        )));
    }
    let instance = Instance {
        id: id.to_owned(),
        address: module.url.clone(),
        expires_ms,
        lease_ms,
    };
    if let Some(e) = book.entries.iter_mut().find(|e| e.module.name == module.name) {
        // Instances are told apart by id, not address: pods behind one
        // Service address each keep their own lease.
        e.instances.retain(|i| i.expires_ms > now);
        if e.instances.len() >= MAX_INSTANCES {
            return Err(BookError::Full(format!(
                "`{}` has {MAX_INSTANCES} live instances already",
                module.name
            )));
        }
        e.module = Stored::from(module);
        e.instances.push(instance);
        e.until_ms = e.until_ms.max(expires_ms);
        return Ok(());
    }
    if book.entries.len() >= MAX_MODULES {
        let oldest_lapsed = book
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.until_ms <= now)
            .min_by_key(|(_, e)| e.until_ms)
            .map(|(i, _)| i);
        match oldest_lapsed {
            Some(i) => {
                book.entries.remove(i);
            }
            None => {
                return Err(BookError::Full(format!(
                    "{MAX_MODULES} live modules are registered with this point already"
                )));
            }
        }
    }
    book.entries.push(Entry {
        module: Stored::from(module),
        instances: vec![instance],
        until_ms: expires_ms,
    });
    Ok(())
}

/// Extends a live instance's lease by the lease it was granted.
pub fn renew(book: &mut Book, now: u64, id: &str) -> Result<Duration, BookError> {
    for e in &mut book.entries {
        if let Some(i) = e.instances.iter_mut().find(|i| i.id == id && i.expires_ms > now) {
            i.expires_ms = now.saturating_add(i.lease_ms);
            e.until_ms = e.until_ms.max(i.expires_ms);
            return Ok(Duration::from_millis(i.lease_ms));
        }
    }
    Err(BookError::Unknown(id.to_owned()))
}

/// Removes an instance; a module left with none has lapsed now.
pub fn deregister(book: &mut Book, now: u64, id: &str) -> Result<(), BookError> {
    for e in &mut book.entries {
        if let Some(at) = e.instances.iter().position(|i| i.id == id) {
            e.instances.remove(at);
            e.until_ms = e.live(now).map(|i| i.expires_ms).max().unwrap_or(now);
            return Ok(());
        }
    }
    Err(BookError::Unknown(id.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn module(name: &str, url: &str) -> ModuleConfig {
        let mut m = ModuleConfig::builtin(name);
        m.url = url.into();
        m
    }

    #[test]
    fn ids_name_their_point() {
        let id = new_id(Point::SdpHandler);
        assert_eq!(point_of(&id), Some(Point::SdpHandler));
        assert_eq!(point_of("sdp-handler.xyz"), None);
        assert_eq!(point_of("nope.00000000000000000000000000000000"), None);
        assert_ne!(new_id(Point::SdpHandler), id);
    }

    #[tokio::test]
    async fn instances_lease_lapse_and_stay_known_for_retention() {
        let store = Store::memory();
        let retain = Duration::from_secs(3600);
        let a = module("screen", "http://127.0.0.1:7001");
        let b = module("screen", "http://127.0.0.1:7002");
        let p = Point::SessionSupplement;
        update(&store, p, retain, |book, now| {
            register(book, now, &a, "i1", Duration::from_secs(30))
        })
        .await
        .unwrap();
        update(&store, p, retain, |book, now| {
            register(book, now, &b, "i2", Duration::from_secs(30))
        })
        .await
        .unwrap();
        let (book, _) = read(&store, p).await.unwrap();
        assert_eq!(book.entries.len(), 1);
        assert_eq!(book.entries[0].instances.len(), 2);
        assert_eq!(book.entries[0].module.config().url, "http://127.0.0.1:7002");
        update(&store, p, retain, |book, now| renew(book, now, "i1"))
            .await
            .unwrap();
        update(&store, p, retain, |book, now| deregister(book, now, "i2"))
            .await
            .unwrap();
        let err = update(&store, p, retain, |book, now| renew(book, now, "i2"))
            .await
            .unwrap_err();
        assert!(matches!(err, BookError::Unknown(_)), "{err}");
        update(&store, p, retain, |book, now| deregister(book, now, "i1"))
            .await
            .unwrap();
        // Lapsed, not forgotten: running sessions still find its policy.
        let (book, _) = read(&store, p).await.unwrap();
        let now = state_store::now_ms();
        assert_eq!(book.entries.len(), 1);
        assert_eq!(book.entries[0].live(now).count(), 0);
        // Past retention it is gone.
        update(&store, p, Duration::ZERO, |_, _| Ok(())).await.unwrap();
        assert!(read(&store, p).await.unwrap().0.entries.is_empty());
    }

    #[test]
    fn a_point_holds_a_bounded_number_of_modules_and_instances() {
        let mut book = Book::default();
        let lease = Duration::from_secs(30);
        for i in 0..MAX_MODULES {
            register(
                &mut book,
                1,
                &module(&format!("m{i}"), "http://127.0.0.1:1"),
                "x",
                lease,
            )
            .unwrap();
        }
        let err = register(&mut book, 1, &module("one-more", "http://127.0.0.1:1"), "x", lease).unwrap_err();
        assert!(matches!(err, BookError::Full(_)), "{err}");
        // Once one has lapsed, it makes room.
        let later = 1 + 31_000;
        register(&mut book, later, &module("m0", "http://127.0.0.1:1"), "y", lease).unwrap();
        register(&mut book, later, &module("one-more", "http://127.0.0.1:1"), "z", lease).unwrap();
        assert_eq!(book.entries.len(), MAX_MODULES);
        let mut book = Book::default();
        for i in 0..MAX_INSTANCES {
            let m = module("m", &format!("http://127.0.0.1:{}", 1000 + i));
            register(&mut book, 1, &m, &format!("i{i}"), lease).unwrap();
        }
        let m = module("m", "http://127.0.0.1:9");
        assert!(register(&mut book, 1, &m, "late", lease).is_err());
    }

    #[test]
    fn a_live_module_keeps_its_packages_and_records_of_other_versions_read() {
        let lease = Duration::from_secs(30);
        let mut a = module("a", "http://127.0.0.1:1");
        a.events = vec!["presence".into()];
        let mut b = module("b", "http://127.0.0.1:2");
        b.events = vec!["dialog".into(), "presence".into()];
        let mut book = Book::default();
        register(&mut book, 1, &a, "ia", lease).unwrap();
        let err = register(&mut book, 1, &b, "ib", lease).unwrap_err();
        assert!(matches!(err, BookError::Taken(_)), "{err}");
        // Lapsed, it no longer holds them.
        register(&mut book, 40_000, &b, "ib", lease).unwrap();
        // A field a later version added is ignored, one it dropped defaults.
        let text =
            r#"{"entries":[{"module":{"name":"x","url":"http://h:1","future":true},"instances":[],"until_ms":5}]}"#;
        let read: Book = serde_json::from_str(text).unwrap();
        assert_eq!(read.entries[0].module.config().name, "x");
        assert_eq!(read.entries[0].module.config().url, "http://h:1");
    }
}
