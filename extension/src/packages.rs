//! Event packages and their handlers, for the two points that are keyed by
//! package (subscription and publication handlers): each package has one
//! handler, built in or external, with the body types it produces or
//! takes. Built from the configured list plus the point's default
//! built-ins, every problem naming its key.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::builtins::Builtins;
use crate::config::{ConfigProblem, ModuleConfig, Point};
use crate::external::External;

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

/// Package name (lower case) → handler.
pub struct Packages<T: ?Sized> {
    map: BTreeMap<String, PackageEntry<T>>,
}

/// How an external module becomes the point's trait; `None` while a
/// configuration is only checked (nothing connects).
pub type Connect<'a, T> = Option<&'a dyn Fn(External) -> Arc<T>>;

impl<T: ?Sized> Packages<T> {
    pub fn get(&self, package: &str) -> Option<&PackageEntry<T>> {
        self.map.get(&package.to_ascii_lowercase())
    }

    /// Every package served, for Allow-Events.
    pub fn names(&self) -> Vec<&str> {
        self.map.keys().map(String::as_str).collect()
    }

    /// A set made in code (tests, tools).
    pub fn of(entries: Vec<(&str, PackageEntry<T>)>) -> Self {
        Self {
            map: entries.into_iter().map(|(p, e)| (p.to_ascii_lowercase(), e)).collect(),
        }
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
            let handler = if module.is_external() {
                match connect {
                    Some(connect) => match External::connect(point, &module, &k) {
                        Ok(ext) => Some(connect(ext)),
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
            for event in events {
                if let Some(first) = owner.get(&event) {
                    problems.push(problem(
                        "events",
                        format!("package `{event}` already has a handler ({first})"),
                    ));
                    continue;
                }
                owner.insert(event.clone(), module.name.clone());
                if let Some(h) = &handler {
                    map.insert(
                        event,
                        PackageEntry {
                            module: module.name.clone(),
                            types: types.clone(),
                            handler: h.clone(),
                        },
                    );
                }
            }
        }
        if problems.is_empty() {
            Ok(Self { map })
        } else {
            Err(problems)
        }
    }
}
