// `pidf`: a published body through publish-svc's PIDF reader and writers
// (publish-svc/src/bodies/pidf.rs) as the presence handlers use them:
// `check` on PUBLISH, `compose` of the publications, `on_the_phone` while
// the user is in a call, and the XML escaping every writer uses. What
// must hold, whatever the body:
// - a composed document is PIDF, its entity the one given;
// - composing a PIDF document whose root declares the PIDF namespace as
//   default keeps every tuple's basic status;
// - on-the-phone keeps a PIDF document PIDF with the same statuses, and
//   adding it twice changes nothing; other bodies pass unchanged;
// - escaped text reads back as XML normalises it.

use publish_svc::bodies::{escape, parse_xml, pidf};

const ENTITY: &str = "sip:alice@example.com";
const PHONE: &str = "<?xml version=\"1.0\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:alice@example.com\">\n  <tuple id=\"desk\"><status><basic>open</basic></status></tuple>\n</presence>\n";

pub fn check(data: &[u8]) {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    escaped(body);
    let statuses = pidf::basics(body);
    let (is_pidf, default_pidf, entity) = match parse_xml(body) {
        Ok(doc) => {
            let root = doc.root_element();
            (
                pidf::check(body).is_ok(),
                root.lookup_namespace_uri(None) == Some(pidf::NS),
                root.attribute("entity").unwrap_or(ENTITY).to_owned(),
            )
        }
        Err(_) => {
            assert!(pidf::check(body).is_err(), "PIDF that is not XML");
            (false, false, ENTITY.to_owned())
        }
    };

    for docs in [vec![body], vec![body, PHONE], vec![PHONE, body, body]] {
        let composed = pidf::compose(&entity, docs.iter().copied());
        if let Err(e) = pidf::check(&composed) {
            panic!("a composed document is not PIDF ({e}):\n{composed}");
        }
        let parsed = parse_xml(&composed).expect("PIDF is XML");
        assert_eq!(
            parsed.root_element().attribute("entity").map(attribute),
            Some(attribute(&entity)),
            "{composed}"
        );
        if is_pidf && default_pidf {
            let expected: Vec<String> = docs
                .iter()
                .flat_map(|d| {
                    if *d == PHONE {
                        pidf::basics(PHONE)
                    } else {
                        statuses.clone()
                    }
                })
                .collect();
            assert_eq!(pidf::basics(&composed), expected, "statuses lost:\n{composed}");
        }
    }

    let busy = pidf::on_the_phone(body);
    if !is_pidf {
        assert_eq!(busy, body, "a body that is not PIDF passes unchanged");
        return;
    }
    if let Err(e) = pidf::check(&busy) {
        panic!("on-the-phone made PIDF something else ({e}):\n{busy}");
    }
    assert_eq!(
        pidf::basics(&busy),
        statuses,
        "on-the-phone changed the statuses:\n{busy}"
    );
    assert_eq!(pidf::on_the_phone(&busy), busy, "on-the-phone added twice");
}

/// Any text, escaped into an attribute and an element, reads back the
/// same up to what XML normalises.
fn escaped(text: &str) {
    let e = escape(text);
    let doc = format!("<a v=\"{e}\" w='{e}'>{e}</a>");
    let parsed = parse_xml(&doc).unwrap_or_else(|err| panic!("escaped text is not XML ({err}): {doc:?}"));
    let root = parsed.root_element();
    let a = attribute(text);
    assert_eq!(root.attribute("v").map(attribute), Some(a.clone()), "{doc:?}");
    assert_eq!(root.attribute("w").map(attribute), Some(a), "{doc:?}");
    let t: String = root.children().filter_map(|n| n.text()).collect();
    assert_eq!(content(&t), content(text), "{doc:?}");
}

/// Characters XML 1.0 allows (what `escape` keeps).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// `text` as element content, compared up to line-end normalisation (a
/// lone CR or CRLF reads as LF; not every reader does it).
fn content(text: &str) -> String {
    let kept: String = text.chars().filter(|c| xml_char(*c)).collect();
    kept.replace("\r\n", "\n").replace('\r', "\n")
}

/// `text` as an attribute value, compared up to attribute-value
/// normalisation: line ends, tabs and LFs read as spaces.
fn attribute(text: &str) -> String {
    content(text).replace(['\n', '\t'], " ")
}
