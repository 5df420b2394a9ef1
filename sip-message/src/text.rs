//! Small grammar helpers shared by the parser and the typed headers
//! (RFC 3261 section 25.1): tokens, linear white space, quoted strings and
//! top-level splitting that respects quotes and angle brackets.

use std::borrow::Cow;

/// `token` characters of RFC 3261 25.1, as a table: one load per byte in
/// the parser's hottest loops.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~');
        i += 1;
    }
    t
};

/// `token` characters of RFC 3261 25.1.
#[inline]
pub fn is_token_byte(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

/// True when `s` is a non-empty `token`.
#[inline]
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// `word` characters (Call-ID): token plus a few separators.
#[inline]
pub fn is_word_byte(b: u8) -> bool {
    is_token_byte(b)
        || matches!(
            b,
            b'(' | b')' | b'<' | b'>' | b':' | b'\\' | b'"' | b'/' | b'[' | b']' | b'?' | b'{' | b'}'
        )
}

#[inline]
pub fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Trims spaces and tabs (after unfolding, LWS is only these) on both ends.
#[inline]
pub fn trim_ws(s: &str) -> &str {
    let b = s.as_bytes();
    let mut start = 0;
    let mut end = b.len();
    while start < end && is_ws(b[start]) {
        start += 1;
    }
    while end > start && is_ws(b[end - 1]) {
        end -= 1;
    }
    // Both ends sit next to ASCII bytes, so they are char boundaries.
    s.get(start..end).unwrap_or_default()
}

/// Splits `s` at every top-level `sep`: separators inside a quoted string
/// (with backslash escapes) or inside `<...>` do not count. An unterminated
/// quote or bracket makes the last piece extend to the end; callers that care
/// detect it with [`balanced`].
pub fn split_top_level(s: &str, sep: u8) -> SplitTopLevel<'_> {
    SplitTopLevel { rest: Some(s), sep }
}

pub struct SplitTopLevel<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> Iterator for SplitTopLevel<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        match find_top_level(s, self.sep) {
            Some(i) => {
                self.rest = Some(&s[i + 1..]);
                Some(&s[..i])
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

/// Index of the first `sep` outside quotes and angle brackets. Jumps from
/// one interesting byte to the next with memchr: most values have none.
pub fn find_top_level(s: &str, sep: u8) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    loop {
        i += memchr::memchr3(sep, b'"', b'<', &bytes[i..])?;
        match bytes[i] {
            b'"' => {
                // Skip the quoted string, honouring backslash escapes.
                i += 1;
                loop {
                    i += memchr::memchr2(b'"', b'\\', &bytes[i..])?;
                    if bytes[i] == b'\\' {
                        i += 2;
                        if i >= bytes.len() {
                            return None;
                        }
                    } else {
                        i += 1;
                        break;
                    }
                }
            }
            b'<' => i += memchr::memchr(b'>', &bytes[i..])? + 1,
            _ => return Some(i),
        }
        if i >= bytes.len() {
            return None;
        }
    }
}

/// True when every quoted string is closed and every `<` has its `>`.
pub fn balanced(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut in_quote = false;
    let mut depth = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_quote {
            match b {
                b'\\' => i += 1,
                b'"' => in_quote = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_quote = true,
                b'<' => depth += 1,
                b'>' => {
                    if depth == 0 {
                        return false;
                    }
                    depth -= 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    !in_quote && depth == 0
}

/// Removes the surrounding quotes of a quoted string and resolves
/// `\`-escapes; returns the input unchanged when it is not quoted.
pub fn unquote(s: &str) -> Cow<'_, str> {
    let inner = match s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) if s.len() >= 2 => inner,
        _ => return Cow::Borrowed(s),
    };
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Quotes `s` as a SIP quoted-string, escaping `"` and `\`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Decodes `%XX` escapes. Invalid escapes are kept as they are (lenient, as
/// RFC 4475 3.1.1.4 "esc02" expects a `%` that does not escape anything to
/// be tolerated by elements that do not need the decoded value).
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parses a decimal number made only of ASCII digits, refusing overflow.
pub fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Case-insensitive ASCII prefix strip.
pub fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()) {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_respects_quotes_and_angles() {
        let parts: Vec<_> = split_top_level(r#""a,b" <sip:x@y;a=1,2>, <sip:z>;q=0.5"#, b',').collect();
        assert_eq!(parts, vec![r#""a,b" <sip:x@y;a=1,2>"#, " <sip:z>;q=0.5"]);
    }

    #[test]
    fn unquote_resolves_escapes() {
        assert_eq!(unquote(r#""a\"b\\c""#), r#"a"b\c"#);
        assert_eq!(unquote("plain"), "plain");
        assert_eq!(quote(r#"a"b"#), r#""a\"b""#);
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn balance_detects_open_quote() {
        assert!(balanced(r#""x" <sip:a>"#));
        assert!(!balanced(r#""x <sip:a>"#));
        assert!(!balanced("<sip:a"));
    }
}
