//! What one side of a dialog remembers (RFC 3261 12), and the changes
//! that need no message.

use serde::{Deserialize, Serialize};
use sip_message::Message;

use crate::header::without_tag;
use crate::id::DialogId;
use crate::state::DialogState;

/// One side of a dialog: the state RFC 3261 12 lists, plus its
/// [`DialogState`].
///
/// Created by [`Dialog::uas`] (12.1.1) or [`Dialog::uac`] and
/// [`Dialog::establish`] (12.1.2); builds the requests it sends with
/// [`Dialog::request`] and [`Dialog::ack`] (12.2.1.1) and checks the ones
/// it receives with [`Dialog::matches`] and [`Dialog::receive`] (12.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dialog {
    pub(crate) call_id: String,
    pub(crate) local_tag: String,
    /// Empty only while [`DialogState::Calling`].
    pub(crate) remote_tag: String,
    /// The From / To header values of our requests, without tag (display
    /// name and other header parameters kept).
    pub(crate) local_uri: String,
    pub(crate) remote_uri: String,
    /// The CSeq number of our last request; 0 = none yet.
    pub(crate) local_cseq: u32,
    /// The highest CSeq number the peer sent; empty until its first request.
    pub(crate) remote_cseq: Option<u32>,
    /// The peer's Contact URI; empty only while [`DialogState::Calling`]
    /// (or Early after a provisional without Contact).
    pub(crate) remote_target: String,
    /// Route header values (name-addr) in the order requests carry them.
    pub(crate) route_set: Vec<String>,
    pub(crate) secure: bool,
    pub(crate) state: DialogState,
}

impl Dialog {
    /// UAS side: our 2xx went out. Only an Early dialog moves; a
    /// terminated one stays terminated.
    pub fn confirm(&mut self) {
        if self.state == DialogState::Early {
            self.state = DialogState::Confirmed;
        }
    }

    /// The dialog is over (BYE, CANCEL, a non-2xx final response, a
    /// timeout: 12.3 leaves which to the caller).
    pub fn terminate(&mut self) {
        self.state = DialogState::Terminated;
    }

    pub fn state(&self) -> DialogState {
        self.state
    }

    pub fn id(&self) -> DialogId {
        DialogId {
            call_id: self.call_id.clone(),
            local_tag: self.local_tag.clone(),
            remote_tag: self.remote_tag.clone(),
        }
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    pub fn local_tag(&self) -> &str {
        &self.local_tag
    }

    pub fn remote_tag(&self) -> &str {
        &self.remote_tag
    }

    pub fn local_uri(&self) -> &str {
        &self.local_uri
    }

    pub fn remote_uri(&self) -> &str {
        &self.remote_uri
    }

    pub fn remote_target(&self) -> &str {
        &self.remote_target
    }

    pub fn route_set(&self) -> &[String] {
        &self.route_set
    }

    pub fn local_cseq(&self) -> u32 {
        self.local_cseq
    }

    pub fn remote_cseq(&self) -> Option<u32> {
        self.remote_cseq
    }

    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// UAC side: the dialog-creating request went over TLS to a SIPS
    /// Request-URI (12.1.2), which [`Dialog::uac`] cannot know.
    pub fn set_secure(&mut self, secure: bool) {
        self.secure = secure;
    }

    /// Replaces our From value (display name/URI) keeping the tag, e.g. when an anonymising
    /// step rewrote the From of the dialog-creating request before it was sent.
    /// A tag in `value` is dropped: the dialog's tag never changes.
    pub fn set_local_uri(&mut self, value: &str) {
        self.local_uri = without_tag(value);
    }

    /// An incoming request belongs to this dialog: same Call-ID, its From tag is our remote tag,
    /// its To tag is our local tag (12.2.2). A request without either tag
    /// never matches, not even a dialog whose remote tag is still unknown.
    pub fn matches(&self, request: &Message) -> bool {
        request.call_id().is_ok_and(|c| c == self.call_id)
            && request
                .from_tag()
                .is_some_and(|t| !t.is_empty() && t == self.remote_tag)
            && request.to_tag().is_some_and(|t| !t.is_empty() && t == self.local_tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{INVITE, parse, response};
    use sip_message::{Known, Method};

    /// Bob's confirmed dialog with Alice.
    fn bob() -> Dialog {
        let mut d = Dialog::uas(&parse(INVITE), "b-tag").unwrap();
        d.confirm();
        d
    }

    /// A request from Alice in the dialog, with these tags and Call-ID.
    fn from_alice(call_id: &str, from_tag: &str, to_tag: &str) -> Message {
        let mut m = Message::request(Method::Bye, "sip:bob@192.0.2.4");
        m.push_header(Known::From, &format!("Alice <sip:alice@atlanta.com>;tag={from_tag}"));
        m.push_header(Known::To, &format!("Bob <sip:bob@biloxi.com>;tag={to_tag}"));
        m.push_header(Known::CallId, call_id);
        m.push_header(Known::CSeq, "314160 BYE");
        m
    }

    #[test]
    fn matching_requests() {
        let d = bob();
        let call_id = "a84b4c76e66710@pc33.atlanta.com";
        assert!(d.matches(&from_alice(call_id, "1928301774", "b-tag")));
        assert!(!d.matches(&from_alice(call_id, "b-tag", "1928301774")));
        assert!(!d.matches(&from_alice(call_id, "1928301774", "other")));
        assert!(!d.matches(&from_alice(call_id, "other", "b-tag")));
        assert!(!d.matches(&from_alice("other@pc33.atlanta.com", "1928301774", "b-tag")));
        // The INVITE itself has no To tag: not yet in the dialog.
        assert!(!d.matches(&parse(INVITE)));
        // A Calling dialog's empty remote tag matches nothing.
        let calling = Dialog::uac(call_id, "b-tag", "<sip:b@y>", "<sip:a@x>", 1);
        let mut no_from_tag = from_alice(call_id, "x", "b-tag");
        no_from_tag.set_header(Known::From, "<sip:alice@atlanta.com>;tag");
        assert!(!calling.matches(&no_from_tag));
    }

    #[test]
    fn id_is_from_this_side() {
        let id = bob().id();
        assert_eq!(id.call_id, "a84b4c76e66710@pc33.atlanta.com");
        assert_eq!(id.local_tag, "b-tag");
        assert_eq!(id.remote_tag, "1928301774");
    }

    #[test]
    fn state_changes_without_messages() {
        let mut d = Dialog::uas(&parse(INVITE), "b").unwrap();
        assert_eq!(d.state(), DialogState::Early);
        d.confirm();
        assert_eq!(d.state(), DialogState::Confirmed);
        d.terminate();
        d.confirm();
        assert_eq!(d.state(), DialogState::Terminated);
        let mut calling = Dialog::uac("c", "l", "<sip:a@x>", "<sip:b@y>", 1);
        calling.confirm();
        assert_eq!(calling.state(), DialogState::Calling);
    }

    #[test]
    fn local_uri_replaced_tag_kept() {
        let mut d = Dialog::uac("c", "l", "Alice <sip:alice@atlanta.com>", "<sip:b@y>", 1);
        d.set_local_uri("\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=ignored");
        assert_eq!(d.local_uri(), "\"Anonymous\" <sip:anonymous@anonymous.invalid>");
        let m = d.request(Method::Info);
        assert_eq!(
            m.known_header(Known::From),
            Some("\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=l")
        );
    }

    #[test]
    fn serde_round_trip_of_a_confirmed_dialog() {
        let invite = parse(INVITE);
        let mut d = Dialog::uac(
            "a84b4c76e66710@pc33.atlanta.com",
            "1928301774",
            "Alice <sip:alice@atlanta.com>",
            "Bob <sip:bob@biloxi.com>",
            314159,
        );
        d.set_secure(true);
        let ok = response(
            &invite,
            200,
            Some("t1"),
            &["Contact: <sip:bob@192.0.2.4>", "Record-Route: <sip:p2;lr>, <sip:p1;lr>"],
        );
        d.establish(&ok).unwrap();
        d.receive(&from_alice("x", "y", "z")).unwrap();
        assert_eq!(d.state(), DialogState::Confirmed);
        let json = serde_json::to_string(&d).unwrap();
        let back: Dialog = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.route_set(), ["<sip:p1;lr>", "<sip:p2;lr>"]);
        assert_eq!(back.remote_cseq(), Some(314160));
        assert!(back.is_secure());
        let id_json = serde_json::to_string(&d.id()).unwrap();
        assert_eq!(serde_json::from_str::<DialogId>(&id_json).unwrap(), d.id());
    }
}
