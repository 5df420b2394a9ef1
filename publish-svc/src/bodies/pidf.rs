//! PIDF (RFC 3863) with the RPID activities of RFC 4480: checking a
//! published document, composing several into one, and the document
//! sipbus derives when nothing is published.

use super::{escape, parse_xml};

pub const CONTENT_TYPE: &str = "application/pidf+xml";
pub const NS: &str = "urn:ietf:params:xml:ns:pidf";
const NS_DM: &str = "urn:ietf:params:xml:ns:pidf:data-model";
const NS_RPID: &str = "urn:ietf:params:xml:ns:pidf:rpid";

/// Checks a published document: well-formed XML whose root is a PIDF
/// `presence`.
pub fn check(body: &str) -> Result<(), String> {
    let doc = parse_xml(body)?;
    let root = doc.root_element();
    if root.tag_name().name() != "presence" || root.tag_name().namespace() != Some(NS) {
        return Err("root is not a PIDF presence element".into());
    }
    Ok(())
}

/// One document holding every element of every document (tuples, persons,
/// devices, notes), newest last, for `entity`. Namespace prefixes the
/// documents declare on their roots are declared on the new root; a
/// document that does not parse is left out.
pub fn compose<'a>(entity: &str, docs: impl IntoIterator<Item = &'a str>) -> String {
    let mut namespaces: Vec<(String, String)> = vec![(String::new(), NS.to_owned())];
    let mut children = String::new();
    for text in docs {
        let Ok(doc) = parse_xml(text) else { continue };
        let root = doc.root_element();
        for ns in root.namespaces() {
            let prefix = ns.name().unwrap_or("").to_owned();
            if !namespaces.iter().any(|(p, _)| *p == prefix) {
                namespaces.push((prefix, ns.uri().to_owned()));
            }
        }
        for child in root.children().filter(|c| c.is_element()) {
            // Only elements in a namespace the new root declares the same
            // way keep their meaning when moved.
            let consistent = root.namespaces().all(|ns| {
                namespaces
                    .iter()
                    .any(|(p, u)| p == ns.name().unwrap_or("") && u == ns.uri())
            });
            if consistent {
                children.push_str("\n  ");
                children.push_str(&text[child.range()]);
            }
        }
    }
    let decls: String = namespaces
        .iter()
        .map(|(p, u)| {
            if p.is_empty() {
                format!(" xmlns=\"{}\"", escape(u))
            } else {
                format!(" xmlns:{p}=\"{}\"", escape(u))
            }
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence{decls} entity=\"{}\">{children}\n</presence>\n",
        escape(entity)
    )
}

/// What sipbus knows of a user without a publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Derived {
    /// Some binding is registered.
    pub registered: bool,
    /// In a call (a confirmed or early dialog).
    pub on_the_phone: bool,
}

/// The derived document: `open` with a registered binding, `closed`
/// without; RPID `on-the-phone` during a call.
pub fn derived(entity: &str, d: Derived) -> String {
    let basic = if d.registered { "open" } else { "closed" };
    let person = if d.on_the_phone {
        "\n  <dm:person id=\"sipbus\"><rpid:activities><rpid:on-the-phone/></rpid:activities></dm:person>"
    } else {
        ""
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"{NS}\" xmlns:dm=\"{NS_DM}\" \
         xmlns:rpid=\"{NS_RPID}\" entity=\"{}\">\n  <tuple id=\"sipbus\"><status><basic>{basic}</basic></status></tuple>{person}\n</presence>\n",
        escape(entity)
    )
}

/// A published document with the RPID `on-the-phone` activity of a call
/// sipbus sees, unless the document already says so (or is not PIDF:
/// then it is left alone).
pub fn on_the_phone(doc: &str) -> String {
    if check(doc).is_err() || doc.contains("on-the-phone") {
        return doc.to_owned();
    }
    let Some(end) = doc.rfind("</") else {
        return doc.to_owned();
    };
    format!(
        "{}  <dm:person xmlns:dm=\"{NS_DM}\" xmlns:rpid=\"{NS_RPID}\" id=\"sipbus-call\"><rpid:activities><rpid:on-the-phone/></rpid:activities></dm:person>\n{}",
        &doc[..end],
        &doc[end..]
    )
}

/// The `basic` status of each tuple, in order (for tests and tools).
pub fn basics(body: &str) -> Vec<String> {
    let Ok(doc) = parse_xml(body) else { return Vec::new() };
    doc.descendants()
        .filter(|n| n.tag_name().name() == "basic" && n.tag_name().namespace() == Some(NS))
        .filter_map(|n| n.text().map(|t| t.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const PHONE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">
  <tuple id="phone"><status><basic>open</basic></status><note>desk</note></tuple>
</presence>"#;
    const MOBILE: &str = r#"<?xml version="1.0"?>
<p:presence xmlns:p="urn:ietf:params:xml:ns:pidf" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" entity="sip:alice@example.com">
  <p:tuple id="mobile"><p:status><p:basic>closed</p:basic></p:status></p:tuple>
  <dm:person id="x"><rpid:activities><rpid:away/></rpid:activities></dm:person>
</p:presence>"#;

    #[test]
    fn composes_every_tuple_of_every_publication() {
        check(PHONE).unwrap();
        check(MOBILE).unwrap();
        assert!(check("<presence/>").is_err());
        assert!(check("<x:presence xmlns:x=\"urn:ietf:params:xml:ns:pidf\">").is_err());
        let doc = compose("sip:alice@example.com", [PHONE, MOBILE]);
        check(&doc).unwrap();
        assert_eq!(basics(&doc), ["open", "closed"]);
        assert!(doc.contains("rpid:away"), "{doc}");
        // A removed publication leaves the other.
        assert_eq!(basics(&compose("sip:alice@example.com", [MOBILE])), ["closed"]);
    }

    #[test]
    fn a_call_adds_its_activity_to_a_published_document() {
        let busy = on_the_phone(PHONE);
        check(&busy).unwrap();
        assert!(busy.contains("<rpid:on-the-phone/>"), "{busy}");
        assert_eq!(basics(&busy), ["open"]);
        assert_eq!(on_the_phone(&busy), busy);
        assert_eq!(on_the_phone("not xml"), "not xml");
    }

    #[test]
    fn derived_documents() {
        let d = derived(
            "sip:a&b@example.com",
            Derived {
                registered: true,
                on_the_phone: true,
            },
        );
        check(&d).unwrap();
        assert_eq!(basics(&d), ["open"]);
        assert!(d.contains("on-the-phone"));
        let closed = derived(
            "sip:a@example.com",
            Derived {
                registered: false,
                on_the_phone: false,
            },
        );
        assert_eq!(basics(&closed), ["closed"]);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics_and_output_parses(entity in ".{0,60}", body in ".{0,400}", reg: bool, call: bool) {
            let _ = check(&body);
            let doc = compose(&entity, [body.as_str(), PHONE]);
            proptest::prop_assert!(check(&doc).is_ok(), "{}", doc);
            let d = derived(&entity, Derived { registered: reg, on_the_phone: call });
            proptest::prop_assert!(check(&d).is_ok(), "{}", d);
            let busy = on_the_phone(&doc);
            proptest::prop_assert!(check(&busy).is_ok(), "{}", busy);
        }
    }
}
