//! `;name=value` parameter lists, read on demand from the text they live in.

use crate::text::trim_ws;

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
    /// Empty elements (`;;`) are skipped.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter { s: self.raw, pos: 0 }
    }

    /// `Some(value)` when the parameter is present (`Some(None)` for a flag).
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// The value of a present parameter that has one.
    pub fn value(&self, name: &str) -> Option<&'a str> {
        self.get(name).flatten()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Why a strict walk over parameters failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamError {
    /// `;;` or a leading / trailing `;` (only where empties are refused).
    Empty,
    BadName,
    EmptyValue,
    Unterminated,
    Garbage,
}

impl ParamError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            ParamError::Empty => "empty parameter",
            ParamError::BadName => "parameter name is not a token",
            ParamError::EmptyValue => "empty parameter value",
            ParamError::Unterminated => "unterminated quoted parameter",
            ParamError::Garbage => "invalid parameter",
        }
    }
}

/// Walks `;`-separated generic-params once, strictly (token names; after
/// `=`, a non-empty value or quoted string), and returns the value of the
/// parameter named `want` if present (its first occurrence).
pub(crate) fn scan_strict<'a>(raw: &'a str, want: &str, allow_empty: bool) -> Result<Option<&'a str>, ParamError> {
    let b = raw.as_bytes();
    let ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    let mut found = None;
    let mut i = 0;
    loop {
        ws(&mut i);
        let start = i;
        while i < b.len() && crate::text::is_token_byte(b[i]) {
            i += 1;
        }
        let name_end = i;
        if name_end == start {
            match b.get(i) {
                Some(b';') if allow_empty => {
                    i += 1;
                    continue;
                }
                None if allow_empty => return Ok(found),
                None | Some(b';') => return Err(ParamError::Empty),
                Some(_) => return Err(ParamError::BadName),
            }
        }
        ws(&mut i);
        let mut value = None;
        if b.get(i) == Some(&b'=') {
            i += 1;
            ws(&mut i);
            let vstart = i;
            if b.get(i) == Some(&b'"') {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                if i >= b.len() {
                    return Err(ParamError::Unterminated);
                }
                i += 1;
            } else {
                while i < b.len() && b[i] != b';' && b[i] != b' ' && b[i] != b'\t' {
                    i += 1;
                }
            }
            if i == vstart {
                return Err(ParamError::EmptyValue);
            }
            value = raw.get(vstart..i);
            ws(&mut i);
        }
        if found.is_none() && b[start..name_end].eq_ignore_ascii_case(want.as_bytes()) {
            found = Some(value.unwrap_or_default());
        }
        match b.get(i) {
            None => return Ok(found),
            Some(b';') => i += 1,
            Some(_) => return Err(ParamError::Garbage),
        }
    }
}

/// Iterator over parameters: one pass, `;` inside quoted strings ignored.
#[derive(Debug, Clone)]
pub struct ParamIter<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.s.as_bytes();
        while self.pos < b.len() {
            let start = self.pos;
            let mut i = start;
            let mut eq = None;
            let mut in_quote = false;
            while i < b.len() {
                let c = b[i];
                if in_quote {
                    if c == b'\\' {
                        i += 2;
                        continue;
                    }
                    if c == b'"' {
                        in_quote = false;
                    }
                } else if c == b'"' {
                    in_quote = true;
                } else if c == b';' {
                    break;
                } else if c == b'=' && eq.is_none() {
                    eq = Some(i);
                }
                i += 1;
            }
            let end = i.min(b.len());
            self.pos = end + 1;
            let name = trim_ws(self.s.get(start..eq.unwrap_or(end)).unwrap_or_default());
            let value = eq.map(|e| trim_ws(self.s.get(e + 1..end).unwrap_or_default()));
            if name.is_empty() && value.is_none() {
                continue;
            }
            return Some((name, value));
        }
        None
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
