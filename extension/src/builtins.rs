//! A point's built-in modules: name -> constructor, each reading its own
//! typed settings.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::config::{ConfigProblem, ModuleConfig};

/// The `settings` table of one module entry, read into the built-in's own
/// type (unknown keys are refused, naming the key).
pub struct Settings<'a> {
    key: String,
    table: Option<&'a toml::Table>,
}

impl<'a> Settings<'a> {
    pub fn new(key: &str, table: Option<&'a toml::Table>) -> Self {
        Self {
            key: format!("{key}.settings"),
            table,
        }
    }

    /// A problem with the settings, named by their key.
    pub fn problem(&self, reason: impl Into<String>) -> ConfigProblem {
        ConfigProblem {
            key: self.key.clone(),
            reason: reason.into(),
        }
    }

    /// The settings as `S`; its defaults when there are none.
    pub fn parse<S: DeserializeOwned + Default>(&self) -> Result<S, ConfigProblem> {
        let Some(table) = self.table else {
            return Ok(S::default());
        };
        S::deserialize(toml::Value::Table(table.clone())).map_err(|e| ConfigProblem {
            key: self.key.clone(),
            reason: e.to_string().trim_end().to_owned(),
        })
    }
}

/// One built-in: its name in the configuration and its constructor, which
/// also gets the point's context `C` (the service's configuration).
pub struct Builtin<T: ?Sized, C> {
    pub name: &'static str,
    pub build: fn(&Settings<'_>, &C) -> Result<Arc<T>, ConfigProblem>,
}

/// Every built-in of one point.
pub struct Builtins<T: ?Sized + 'static, C: 'static>(pub &'static [Builtin<T, C>]);

impl<T: ?Sized, C> Builtins<T, C> {
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|b| b.name).collect()
    }

    /// Builds the built-in a configuration entry names (`key` is the
    /// entry's, for problems).
    pub fn build(&self, module: &ModuleConfig, key: &str, context: &C) -> Result<Arc<T>, ConfigProblem> {
        let Some(builtin) = self.0.iter().find(|b| b.name == module.name) else {
            return Err(ConfigProblem {
                key: format!("{key}.name"),
                reason: format!(
                    "no built-in `{}` (built-ins: {}; an external module needs url)",
                    module.name,
                    self.names().join(", ")
                ),
            });
        };
        (builtin.build)(&Settings::new(key, module.settings.as_ref()), context)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    trait Greet: Send + Sync {
        fn greet(&self) -> String;
    }

    #[derive(Default, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct HelloSettings {
        word: String,
    }

    struct Hello(String);

    impl Greet for Hello {
        fn greet(&self) -> String {
            self.0.clone()
        }
    }

    fn hello(settings: &Settings<'_>, suffix: &&'static str) -> Result<Arc<dyn Greet>, ConfigProblem> {
        let s: HelloSettings = settings.parse()?;
        Ok(Arc::new(Hello(format!("{}{suffix}", s.word))))
    }

    static BUILTINS: Builtins<dyn Greet, &'static str> = Builtins(&[Builtin {
        name: "hello",
        build: hello,
    }]);

    #[test]
    fn built_from_their_settings_or_refused_by_key() {
        let mut m: ModuleConfig = toml::from_str("name = \"hello\"\nsettings = { word = \"hi\" }").unwrap();
        assert_eq!(BUILTINS.build(&m, "x.mods[0]", &"!").unwrap().greet(), "hi!");
        m.settings = Some(toml::from_str("wrod = \"hi\"").unwrap());
        let e = BUILTINS.build(&m, "x.mods[0]", &"!").err().unwrap();
        assert_eq!(e.key, "x.mods[0].settings");
        assert!(e.reason.contains("wrod"), "{e}");
        m.name = "nope".into();
        let e = BUILTINS.build(&m, "x.mods[0]", &"!").err().unwrap();
        assert_eq!(e.key, "x.mods[0].name");
        assert!(e.reason.contains("built-ins: hello"), "{e}");
    }
}
