// `dialog_info`: pubsub-svc's dialog package. pubsub-svc reads no
// dialog-info document; it writes them, from session-svc's dialog events
// (JSON on the store's event log, with call-ids, tags and peer URIs taken
// from SIP) kept per user in the store. The input is such a log, one event
// per line (a line starting with `!` is an ending nobody watches). What
// must hold, event by event:
// - states only move forward; an event that changes nothing leaves the
//   record alone; `in_call_changed` says whether being in a call changed;
//   at most 32 dialogs are kept; the record reads back as written;
// - the dialog-info document is XML in the RFC 4235 namespace with the
//   version and entity given, and one `dialog` per dialog still shown,
//   its id, call-id, tags and state as kept.

use pubsub_svc::dialogs::{self, DialogEvent, DialogState, Dialogs, Entry, NS};
use state_store::Store;

/// pubsub-svc's MAX_DIALOGS and TERMINATED_KEPT_MS.
const MAX_DIALOGS: usize = 32;
const TERMINATED_KEPT_MS: u64 = 10_000;
/// Event times are session-svc's clock (Unix milliseconds): up to the year
/// 9999.
const LATEST_MS: u64 = 253_402_300_799_999;
const AOR: &str = "sip:bob@example.com";

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
}

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let events: Vec<(DialogEvent, bool)> = text
        .lines()
        .filter_map(|line| {
            let (watched, json) = match line.strip_prefix('!') {
                Some(json) => (false, json),
                None => (true, line),
            };
            let ev: DialogEvent = serde_json::from_str(json).ok()?;
            (ev.at_ms <= LATEST_MS).then_some((ev, watched))
        })
        .take(64)
        .collect();
    if events.is_empty() {
        return;
    }
    RUNTIME.with(|rt| rt.block_on(apply_all(&events)));
}

async fn apply_all(events: &[(DialogEvent, bool)]) {
    let store = Store::memory();
    let mut before = Dialogs::default();
    for (version, (ev, watched)) in (1u32..).zip(events) {
        let applied = dialogs::apply(&store, AOR, ev, *watched)
            .await
            .expect("the embedded store answers");
        let after = dialogs::load(&store, AOR).await.expect("the embedded store answers");
        if applied.changed {
            assert!(!after.entries.is_empty(), "a changed record read back empty");
        } else {
            assert_eq!(after, before, "an event that changed nothing changed the record");
        }
        assert_eq!(
            applied.in_call_changed,
            before.in_a_call() != after.in_a_call(),
            "in_call_changed"
        );
        assert!(
            after.entries.len() <= MAX_DIALOGS,
            "{} dialogs kept",
            after.entries.len()
        );
        for e in &after.entries {
            assert_eq!(
                after.entries.iter().filter(|o| o.id == e.id).count(),
                1,
                "{} twice",
                e.id
            );
            if let Some(old) = before.entries.iter().find(|o| o.id == e.id) {
                assert!(
                    e.state >= old.state,
                    "{} went from {:?} to {:?}",
                    e.id,
                    old.state,
                    e.state
                );
            }
        }
        let json = serde_json::to_vec(&after).expect("a record encodes");
        let decoded: Dialogs = serde_json::from_slice(&json).expect("a record decodes");
        assert_eq!(decoded, after, "the record reads back as written");
        document(&after, &ev.party, version, ev.at_ms);
        before = after;
    }
}

fn document(d: &Dialogs, entity: &str, version: u32, now_ms: u64) {
    let doc = d.dialog_info(entity, version, now_ms);
    let parsed = roxmltree::Document::parse(&doc).unwrap_or_else(|e| panic!("dialog-info is not XML ({e}):\n{doc}"));
    let root = parsed.root_element();
    assert!(root.has_tag_name((NS, "dialog-info")), "{doc}");
    assert_eq!(root.attribute("version"), Some(version.to_string().as_str()));
    assert_eq!(
        root.attribute("entity").map(attribute),
        Some(attribute(entity)),
        "{doc}"
    );
    let shown: Vec<&Entry> = d
        .entries
        .iter()
        .filter(|e| {
            e.state != DialogState::Terminated || (e.at_ms + TERMINATED_KEPT_MS > now_ms && !e.call_id.is_empty())
        })
        .collect();
    let nodes: Vec<_> = root.children().filter(|c| c.has_tag_name((NS, "dialog"))).collect();
    assert_eq!(nodes.len(), shown.len(), "{doc}");
    for (node, e) in nodes.iter().zip(shown) {
        for (name, value) in [
            ("id", &e.id),
            ("call-id", &e.call_id),
            ("local-tag", &e.local_tag),
            ("remote-tag", &e.remote_tag),
        ] {
            assert_eq!(
                node.attribute(name).map(attribute),
                Some(attribute(value)),
                "{name} in {doc}"
            );
        }
        let state = node
            .children()
            .find(|c| c.has_tag_name((NS, "state")))
            .unwrap_or_else(|| panic!("no state in {doc}"));
        assert_eq!(state.text(), Some(state_name(e.state)), "{doc}");
    }
}

fn state_name(s: DialogState) -> &'static str {
    match s {
        DialogState::Trying => "trying",
        DialogState::Early => "early",
        DialogState::Confirmed => "confirmed",
        DialogState::Terminated => "terminated",
    }
}

/// Characters XML 1.0 allows (what `escape` keeps).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// `text` as an attribute value, compared up to attribute-value
/// normalisation: line ends, tabs and LFs read as spaces.
fn attribute(text: &str) -> String {
    let kept: String = text.chars().filter(|c| xml_char(*c)).collect();
    kept.replace("\r\n", "\n").replace(['\r', '\n', '\t'], " ")
}
