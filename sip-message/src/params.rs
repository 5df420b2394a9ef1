//! `;name=value` parameter lists, read on demand from the text they live in.

use crate::text::{split_top_level, trim_ws};

/// Parameters as they appear after a URI, a Via or a name-addr: the text
/// from just after the first `;`. Names compare case-insensitively; values
/// are returned raw (quoted strings keep their quotes, escapes stay escaped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a> {
    raw: &'a str,
}

impl<'a> Params<'a> {
    pub fn new(raw: &'a str) -> Self {
        Self { raw }
    }

    /// The raw text, without the leading `;`.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Every `(name, value)` in order; `value` is `None` for a bare flag.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
        let raw = self.raw;
        split_top_level(raw, b';')
            .filter(move |p| !raw.is_empty() && !trim_ws(p).is_empty())
            .map(|p| match p.split_once('=') {
                Some((n, v)) => (trim_ws(n), Some(trim_ws(v))),
                None => (trim_ws(p), None),
            })
    }

    /// `Some(value)` when the parameter is present (`Some(None)` for a flag).
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The value of a present parameter that has one.
    pub fn value(&self, name: &str) -> Option<&'a str> {
        self.get(name).flatten()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_keeps_flags() {
        let p = Params::new("branch=z9hG4bK1;RPort;received=10.0.0.1;x=\"a;b\"");
        assert_eq!(p.value("BRANCH"), Some("z9hG4bK1"));
        assert_eq!(p.get("rport"), Some(None));
        assert_eq!(p.value("x"), Some("\"a;b\""));
        assert_eq!(p.get("missing"), None);
        assert_eq!(Params::new("").iter().count(), 0);
    }
}
