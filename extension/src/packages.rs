//! Event packages and their handlers, for the two points that are keyed by
//! package (subscription and publication handlers): each package has one
//! handler, built in or external, with the body types it produces or
//! takes. Built from the configured list plus the point's default
//! built-ins, every problem naming its key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;

use crate::builtins::Builtins;
use crate::config::{ConfigProblem, ModuleConfig, Point};
use crate::external::External;
use crate::registry::{Host, Leased, LeasedModule, Refused, Row};

/// One package's handler.
pub struct PackageEntry<T: ?Sized> {
    /// The module's name (configuration and logs).
    pub module: String,
    /// Body types, preferred first.
    pub types: Vec<String>,
    pub handler: Arc<T>,
}

/// A built-in the point runs unless the configuration names it: its name,
/// packages and body types.
pub struct DefaultBuiltin {
    pub name: &'static str,
    pub events: &'static [&'static str],
    pub types: &'static [&'static str],
}

/// Package name (lower case) → handler: the configured ones, the default
/// built-ins, and those registered at run time.
///
/// A package named in the configuration keeps its handler. A registered
/// handler may take a package a default built-in serves, while it is live;
/// when it lapses the built-in serves new subscriptions again. Running ones
/// of a package only a lapsed handler served apply its failure policy.
pub struct Packages<T: ?Sized> {
    point: Point,
    map: BTreeMap<String, Arc<PackageEntry<T>>>,
    /// Packages served by a default built-in (the others are configured).
    defaults: BTreeSet<String>,
    /// The configured modules, events and types resolved, for listings.
    modules: Vec<(ModuleConfig, Option<External>)>,
    /// Names of built-ins, configured or not: not for registrations.
    reserved: Vec<&'static str>,
    leased: Option<Arc<Leased<T>>>,
}

/// How an external module becomes the point's trait; `None` while a
/// configuration is only checked (nothing connects).
pub type Connect<'a, T> = Option<&'a dyn Fn(External) -> Arc<T>>;

fn leased_entry<T: ?Sized>(m: &LeasedModule<T>) -> Arc<PackageEntry<T>> {
    Arc::new(PackageEntry {
        module: m.module.name.clone(),
        types: m.module.types.clone(),
        handler: m.handler.clone(),
    })
}

impl<T: ?Sized + Send + Sync + 'static> Packages<T> {
    /// The handler of a package for what already runs: a lapsed
    /// registered handler still answers (by its failure policy).
    pub fn get(&self, package: &str) -> Option<Arc<PackageEntry<T>>> {
        self.find(&package.to_ascii_lowercase(), true)
    }

    /// The handler of a package for a new subscription or publication:
    /// lapsed handlers are not.
    pub fn get_new(&self, package: &str) -> Option<Arc<PackageEntry<T>>> {
        self.find(&package.to_ascii_lowercase(), false)
    }

    /// The handler of a subscription (or publication) that began with
    /// `module`: that one while it is known, a lapsed registered one
    /// included (it answers by its failure policy); the package's current
    /// handler when the module is gone or unnamed.
    pub fn began_with(&self, package: &str, module: &str) -> Option<Arc<PackageEntry<T>>> {
        let package = package.to_ascii_lowercase();
        if !module.is_empty() {
            if let Some(e) = self.map.get(&package).filter(|e| e.module == module) {
                return Some(e.clone());
            }
            let leased = self.leased.as_ref().map(|l| l.modules());
            if let Some(m) = leased
                .iter()
                .flat_map(|l| l.iter())
                .find(|m| m.module.name == module && m.module.events.contains(&package))
            {
                return Some(leased_entry(m));
            }
        }
        self.find(&package, true)
    }

    fn find(&self, package: &str, lapsed_too: bool) -> Option<Arc<PackageEntry<T>>> {
        let fixed = self.map.get(package);
        if fixed.is_some() && !self.defaults.contains(package) {
            return fixed.cloned();
        }
        let leased = self.leased.as_ref().map(|l| l.modules());
        let serving = |m: &&Arc<LeasedModule<T>>| m.module.events.iter().any(|e| e == package);
        let now = state_store::now_ms();
        if let Some(m) = leased
            .iter()
            .flat_map(|l| l.iter())
            .filter(serving)
            .find(|m| m.is_live(now))
        {
            return Some(leased_entry(m));
        }
        if fixed.is_some() {
            return fixed.cloned();
        }
        if lapsed_too {
            return leased
                .iter()
                .flat_map(|l| l.iter())
                .find(serving)
                .map(|m| leased_entry(m));
        }
        None
    }

    /// Every package served to new subscriptions, for Allow-Events.
    pub fn names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.map.keys().cloned().collect();
        let now = state_store::now_ms();
        if let Some(l) = &self.leased {
            for m in l.modules().iter().filter(|m| m.is_live(now)) {
                names.extend(m.module.events.iter().cloned());
            }
        }
        names.into_iter().collect()
    }

    /// A set made in code (tests, tools).
    pub fn of(point: Point, entries: Vec<(&str, PackageEntry<T>)>) -> Self {
        Self {
            point,
            map: entries
                .into_iter()
                .map(|(p, e)| (p.to_ascii_lowercase(), Arc::new(e)))
                .collect(),
            defaults: BTreeSet::new(),
            modules: Vec::new(),
            reserved: Vec::new(),
            leased: None,
        }
    }

    /// Handlers registered at run time join these.
    pub fn with_leased(mut self, leased: Arc<Leased<T>>) -> Self {
        self.leased = Some(leased);
        self
    }

    pub fn leased(&self) -> Option<&Arc<Leased<T>>> {
        self.leased.as_ref()
    }

    /// Builds the handlers of `modules` (configured at `key[i]`) and the
    /// `defaults` the list does not name.
    pub fn build<C>(
        point: Point,
        key: &str,
        modules: &[ModuleConfig],
        defaults: &[DefaultBuiltin],
        builtins: &Builtins<T, C>,
        context: &C,
        connect: Connect<'_, T>,
    ) -> Result<Self, Vec<ConfigProblem>> {
        let mut entries: Vec<(String, ModuleConfig)> = modules
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("{key}[{i}]"), m.clone()))
            .collect();
        for d in defaults {
            if !modules.iter().any(|m| m.name == d.name && !m.is_external()) {
                entries.push((format!("{key} (built-in {})", d.name), ModuleConfig::builtin(d.name)));
            }
        }
        let mut problems = Vec::new();
        let mut owner: BTreeMap<String, String> = BTreeMap::new();
        let mut map = BTreeMap::new();
        let mut default_packages = BTreeSet::new();
        let mut listed = Vec::new();
        for (k, module) in entries {
            let found = module.check(point, &k);
            if !found.is_empty() {
                problems.extend(found);
                continue;
            }
            let default = defaults.iter().find(|d| d.name == module.name && !module.is_external());
            let pick = |set: &[String], fallback: Option<&[&str]>| -> Vec<String> {
                if set.is_empty() {
                    fallback.unwrap_or_default().iter().map(|s| (*s).to_owned()).collect()
                } else {
                    set.to_vec()
                }
            };
            let events: Vec<String> = pick(&module.events, default.map(|d| d.events))
                .into_iter()
                .map(|e| e.to_ascii_lowercase())
                .collect();
            let types = pick(&module.types, default.map(|d| d.types));
            let problem = |field: &str, reason: String| ConfigProblem {
                key: format!("{k}.{field}"),
                reason,
            };
            if events.is_empty() {
                problems.push(problem("events", "names no event package".into()));
                continue;
            }
            if types.is_empty() {
                problems.push(problem("types", "names no body type".into()));
                continue;
            }
            let mut external = None;
            let handler = if module.is_external() {
                match connect {
                    Some(connect) => match External::connect(point, &module, &k) {
                        Ok(ext) => {
                            external = Some(ext.clone());
                            Some(connect(ext))
                        }
                        Err(p) => {
                            problems.push(p);
                            continue;
                        }
                    },
                    None => None,
                }
            } else {
                match builtins.build(&module, &k, context) {
                    Ok(h) => Some(h),
                    Err(p) => {
                        problems.push(p);
                        continue;
                    }
                }
            };
            listed.push((
                ModuleConfig {
                    events: events.clone(),
                    types: types.clone(),
                    ..module.clone()
                },
                external,
            ));
            for event in events {
                if let Some(first) = owner.get(&event) {
                    problems.push(problem(
                        "events",
                        format!("package `{event}` already has a handler ({first})"),
                    ));
                    continue;
                }
                owner.insert(event.clone(), module.name.clone());
                if default.is_some() && !modules.iter().any(|m| m.name == module.name) {
                    default_packages.insert(event.clone());
                }
                if let Some(h) = &handler {
                    map.insert(
                        event,
                        Arc::new(PackageEntry {
                            module: module.name.clone(),
                            types: types.clone(),
                            handler: h.clone(),
                        }),
                    );
                }
            }
        }
        if problems.is_empty() {
            Ok(Self {
                point,
                map,
                defaults: default_packages,
                modules: listed,
                reserved: builtins.names(),
                leased: None,
            })
        } else {
            Err(problems)
        }
    }
}

/// The registry's view of a package point: what a registration may take,
/// and the handlers by package.
#[async_trait]
impl<T: ?Sized + Send + Sync + 'static> Host for Packages<T> {
    fn point(&self) -> Point {
        self.point
    }

    fn check(&self, module: &ModuleConfig) -> Vec<Refused> {
        let mut problems = Vec::new();
        if self.modules.iter().any(|(m, _)| m.name == module.name) || self.reserved.contains(&module.name.as_str()) {
            problems.push(Refused::Taken(format!(
                "name: `{}` already exists (a configured or built-in module)",
                module.name
            )));
        }
        if module.events.is_empty() {
            problems.push(Refused::Invalid("filters: name at least one event package".into()));
        }
        if module.types.is_empty() {
            problems.push(Refused::Invalid("types: name at least one body type".into()));
        }
        // Packages of other registered modules are checked again in the
        // store's compare-and-set; this is the early answer.
        let now = state_store::now_ms();
        let leased = self.leased.as_ref().map(|l| l.modules()).unwrap_or_default();
        for event in &module.events {
            if let Some(entry) = self.map.get(event).filter(|_| !self.defaults.contains(event)) {
                problems.push(Refused::Taken(format!(
                    "filters: package `{event}` is already served by `{}` (configured)",
                    entry.module
                )));
            }
            if let Some(other) = leased
                .iter()
                .find(|m| m.module.name != module.name && m.is_live(now) && m.module.events.contains(event))
            {
                problems.push(Refused::Taken(format!(
                    "filters: package `{event}` is already served by `{}` (registered)",
                    other.module.name
                )));
            }
        }
        problems
    }

    /// By package: configured and default built-ins (a default whose every
    /// package a live registered handler took is standing by, not listed),
    /// live registered handlers, then lapsed ones.
    fn rows(&self) -> Vec<Row> {
        let now = state_store::now_ms();
        let leased = self.leased.as_ref().map(|l| l.modules()).unwrap_or_default();
        let taken = |event: &String| leased.iter().any(|m| m.is_live(now) && m.module.events.contains(event));
        let mut rows: Vec<((bool, String), Row)> = Vec::new();
        for (m, ext) in &self.modules {
            let standing_by = m.events.iter().all(|e| self.defaults.contains(e) && taken(e));
            if standing_by {
                continue;
            }
            let first = m.events.first().cloned().unwrap_or_default();
            rows.push(((false, first), Row::configured(m, ext.as_ref())));
        }
        for m in leased.iter() {
            let first = m.module.events.first().cloned().unwrap_or_default();
            rows.push(((!m.is_live(now), first), m.row(now)));
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows.into_iter().map(|(_, r)| r).collect()
    }

    async fn refresh(&self) {
        if let Some(l) = &self.leased
            && let Err(e) = l.refresh().await
        {
            tracing::warn!(error = %e, "extension registry unreadable");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use state_store::Store;

    use super::*;
    use crate::builtins::{Builtin, Settings};
    use crate::registry::{RegistryConfig, book};

    trait Named: Send + Sync {
        fn who(&self) -> String;
    }

    struct Builtin1;
    impl Named for Builtin1 {
        fn who(&self) -> String {
            "built-in".into()
        }
    }

    struct Remote(String);
    impl Named for Remote {
        fn who(&self) -> String {
            self.0.clone()
        }
    }

    fn builtin(_s: &Settings<'_>, _c: &()) -> Result<Arc<dyn Named>, ConfigProblem> {
        Ok(Arc::new(Builtin1))
    }

    static BUILTINS: Builtins<dyn Named, ()> = Builtins(&[Builtin {
        name: "presence",
        build: builtin,
    }]);

    const DEFAULTS: &[DefaultBuiltin] = &[DefaultBuiltin {
        name: "presence",
        events: &["presence"],
        types: &["application/pidf+xml"],
    }];

    async fn register(store: &Store, name: &str, lease: Duration) {
        let mut m = ModuleConfig::builtin(name);
        m.url = "http://127.0.0.1:9".into();
        m.events = vec!["presence".into()];
        m.types = vec!["application/pidf+xml".into()];
        let id = book::new_id(Point::SubscriptionHandler);
        book::update(store, Point::SubscriptionHandler, Duration::from_secs(60), |b, now| {
            book::register(b, now, &m, &id, lease)
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_registered_handler_takes_a_default_package_while_live() {
        let store = Store::memory();
        let connect = |e: External| Arc::new(Remote(e.name().to_owned())) as Arc<dyn Named>;
        let leased = Leased::new(
            Point::SubscriptionHandler,
            store.clone(),
            &RegistryConfig::default(),
            connect,
        );
        let packages = Packages::build(
            Point::SubscriptionHandler,
            "pubsub.handlers",
            &[],
            DEFAULTS,
            &BUILTINS,
            &(),
            Some(&connect),
        )
        .unwrap()
        .with_leased(leased.clone());
        assert_eq!(packages.get_new("presence").unwrap().handler.who(), "built-in");
        // Not a name or package a configured module has: the default may
        // be taken over.
        let mut m = ModuleConfig::builtin("notes");
        m.events = vec!["presence".into()];
        m.types = vec!["application/pidf+xml".into()];
        assert!(packages.check(&m).is_empty(), "{:?}", packages.check(&m));
        m.name = "presence".into();
        assert!(matches!(&packages.check(&m)[0], Refused::Taken(t) if t.contains("already exists")));

        register(&store, "notes", Duration::from_millis(1500)).await;
        leased.refresh().await.unwrap();
        let began = packages.get_new("presence").unwrap();
        assert_eq!(
            (began.module.as_str(), began.handler.who()),
            ("notes", "notes".to_owned())
        );
        let rows = packages.rows();
        let names: Vec<&str> = rows.iter().map(|r| r.module.name.as_str()).collect();
        assert_eq!(names, ["notes"], "the built-in stands by while taken over");

        tokio::time::sleep(Duration::from_millis(1600)).await;
        leased.refresh().await.unwrap();
        let names: Vec<String> = packages.rows().iter().map(|r| r.module.name.clone()).collect();
        assert_eq!(names, ["presence", "notes"], "lapsed, listed after");
        // Lapsed: new subscriptions go back to the built-in; one that began
        // with the registered handler keeps it (and meets its policy).
        assert_eq!(packages.get_new("presence").unwrap().handler.who(), "built-in");
        assert_eq!(packages.began_with("presence", "notes").unwrap().handler.who(), "notes");
        assert_eq!(
            packages.began_with("presence", "presence").unwrap().handler.who(),
            "built-in"
        );
        assert_eq!(packages.began_with("presence", "").unwrap().handler.who(), "built-in");
    }
}
