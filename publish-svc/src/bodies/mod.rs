//! Event state bodies: PIDF presence documents (RFC 3863, RPID RFC 4480)
//! and message summaries (RFC 3842), read from untrusted publications and
//! written for subscribers. Readers never panic and bound what they read;
//! writers escape everything they put in XML.

pub mod pidf;
pub mod summary;

/// Text as XML character data or attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 does not allow are dropped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            '\u{FFFE}' | '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Parsing limits for untrusted XML (roxmltree's defaults are larger).
pub fn parse_xml(text: &str) -> Result<roxmltree::Document<'_>, String> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: 10_000,
    };
    roxmltree::Document::parse_with_options(text, options).map_err(|e| e.to_string())
}
