//! The UAC side of dialog creation (RFC 3261 12.1.2, 13.2.2.4).

use sip_message::Message;

use crate::dialog::Dialog;
use crate::error::DialogError;
use crate::header::{contact_uri, record_routes, without_tag};
use crate::state::DialogState;

impl Dialog {
    /// UAC side, before any response: our half (state Calling). local_uri/remote_uri are header
    /// values without tags (a tag given anyway is dropped); cseq is the CSeq of the
    /// dialog-creating request we send. Not secure until [`Dialog::set_secure`] says so.
    pub fn uac(call_id: &str, local_tag: &str, local_uri: &str, remote_uri: &str, cseq: u32) -> Dialog {
        Dialog {
            call_id: call_id.to_owned(),
            local_tag: local_tag.to_owned(),
            remote_tag: String::new(),
            local_uri: without_tag(local_uri),
            remote_uri: without_tag(remote_uri),
            local_cseq: cseq,
            remote_cseq: None,
            remote_target: String::new(),
            route_set: Vec::new(),
            secure: false,
            state: DialogState::Calling,
        }
    }

    /// UAC side, 12.1.2: a tagged response (101-299) to our dialog-creating
    /// request. It sets the remote tag (To tag), the remote target (first
    /// Contact URI) and the route set (Record-Route values reversed); 1xx
    /// makes the dialog Early, 2xx Confirmed. `secure` never changes.
    ///
    /// Later responses with the same To tag: a 2xx confirms an Early dialog
    /// and replaces its target and route set with its own (13.2.2.4); a 1xx
    /// only refreshes the target of an Early dialog when it has a Contact;
    /// nothing changes a Confirmed dialog (2xx retransmissions, late 1xx).
    /// A Terminated dialog learns what the response says but stays
    /// Terminated, so that a 2xx that crossed our CANCEL can still be acked
    /// and hung up along the right route.
    ///
    /// Errors, with the dialog left as it was: a status outside 101-299 (or
    /// not a response: `NotDialogCreating(0)`); a Call-ID other than ours or
    /// a From tag other than our local tag (`BadHeader`: not our request); no To tag; a
    /// 2xx without a usable Contact (a 1xx may have none: the target stays
    /// as it was, empty while Calling); an unparsable Record-Route; a To tag
    /// other than the remote tag already known (`OtherFork`: that fork is a
    /// dialog of its own, start it from [`Dialog::uac`]).
    pub fn establish(&mut self, response: &Message) -> Result<(), DialogError> {
        let status = response.status().unwrap_or(0);
        if !(101..=299).contains(&status) {
            return Err(DialogError::NotDialogCreating(status));
        }
        if response.call_id().ok() != Some(self.call_id.as_str()) {
            return Err(DialogError::BadHeader("Call-ID"));
        }
        if response.from_tag() != Some(self.local_tag.as_str()) {
            return Err(DialogError::BadHeader("From"));
        }
        let to = response.to_header().map_err(|_| DialogError::BadHeader("To"))?;
        let tag = match to.tag() {
            Some(tag) if !tag.is_empty() => tag,
            _ => return Err(DialogError::MissingTag("To")),
        };
        if !self.remote_tag.is_empty() && self.remote_tag != tag {
            return Err(DialogError::OtherFork);
        }
        if self.state == DialogState::Confirmed {
            return Ok(());
        }
        let success = status >= 200;
        let target = match contact_uri(response) {
            Ok(uri) => Some(uri),
            Err(e) if success => return Err(e),
            Err(_) => None,
        };
        let first = self.state == DialogState::Calling || self.remote_tag.is_empty();
        let routes = if first || success {
            let mut routes = record_routes(response)?;
            routes.reverse();
            Some(routes)
        } else {
            None
        };

        self.remote_tag = tag.to_owned();
        if let Some(target) = target {
            self.remote_target = target.to_owned();
        }
        if let Some(routes) = routes {
            self.route_set = routes;
        }
        self.state = match self.state {
            DialogState::Terminated => DialogState::Terminated,
            _ if success => DialogState::Confirmed,
            _ => DialogState::Early,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{INVITE, parse, response};

    fn calling() -> Dialog {
        Dialog::uac(
            "a84b4c76e66710@pc33.atlanta.com",
            "1928301774",
            "Alice <sip:alice@atlanta.com>",
            "Bob <sip:bob@biloxi.com>",
            314159,
        )
    }

    #[test]
    fn calling_has_no_remote_half() {
        let d = calling();
        assert_eq!(d.state(), DialogState::Calling);
        assert_eq!(d.remote_tag(), "");
        assert_eq!(d.remote_target(), "");
        assert_eq!(d.local_cseq(), 314159);
        assert_eq!(d.remote_cseq(), None);
        assert!(!d.is_secure());
    }

    #[test]
    fn early_then_confirmed() {
        let invite = parse(INVITE);
        let mut d = calling();
        let ringing = response(
            &invite,
            180,
            Some("t1"),
            &[
                "Contact: <sip:bob@ringing.biloxi.com>",
                "Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>",
            ],
        );
        d.establish(&ringing).unwrap();
        assert_eq!(d.state(), DialogState::Early);
        assert_eq!(d.remote_tag(), "t1");
        assert_eq!(d.remote_target(), "sip:bob@ringing.biloxi.com");
        assert_eq!(d.route_set(), ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]);

        let ok = response(
            &invite,
            200,
            Some("t1"),
            &[
                "Record-Route: <sip:p3.example.com;lr>",
                "Record-Route: <sip:p2.example.com;lr>,<sip:p1.example.com;lr>",
                "Contact: \"Bob\" <sip:bob@192.0.2.4>",
            ],
        );
        d.establish(&ok).unwrap();
        assert_eq!(d.state(), DialogState::Confirmed);
        assert_eq!(d.remote_target(), "sip:bob@192.0.2.4");
        assert_eq!(
            d.route_set(),
            [
                "<sip:p1.example.com;lr>",
                "<sip:p2.example.com;lr>",
                "<sip:p3.example.com;lr>"
            ]
        );
        // A retransmitted 2xx or a late 1xx changes nothing.
        let before = d.clone();
        d.establish(&ok).unwrap();
        d.establish(&ringing).unwrap();
        assert_eq!(d, before);
    }

    #[test]
    fn provisional_without_contact_and_direct_2xx() {
        let invite = parse(INVITE);
        let mut d = calling();
        d.establish(&response(&invite, 183, Some("t1"), &[])).unwrap();
        assert_eq!(d.state(), DialogState::Early);
        assert_eq!(d.remote_target(), "");
        d.establish(&response(&invite, 180, Some("t1"), &["Contact: <sip:bob@h1>"]))
            .unwrap();
        assert_eq!(d.remote_target(), "sip:bob@h1");

        let mut d = calling();
        d.establish(&response(&invite, 200, Some("t2"), &["Contact: <sip:bob@h2>"]))
            .unwrap();
        assert_eq!(d.state(), DialogState::Confirmed);
        assert!(d.route_set().is_empty());
    }

    #[test]
    fn refused_responses() {
        let invite = parse(INVITE);
        let contact = "Contact: <sip:bob@h>";
        let mut d = calling();
        assert_eq!(
            d.establish(&response(&invite, 200, None, &[contact])),
            Err(DialogError::MissingTag("To"))
        );
        assert_eq!(
            d.establish(&response(&invite, 200, Some("t"), &[])),
            Err(DialogError::MissingContact)
        );
        assert_eq!(
            d.establish(&response(&invite, 100, Some("t"), &[contact])),
            Err(DialogError::NotDialogCreating(100))
        );
        assert_eq!(
            d.establish(&response(&invite, 486, Some("t"), &[contact])),
            Err(DialogError::NotDialogCreating(486))
        );
        assert_eq!(d.establish(&invite), Err(DialogError::NotDialogCreating(0)));
        let mut other = response(&invite, 200, Some("t"), &[contact]);
        other.set_header(sip_message::Known::CallId, "another");
        assert_eq!(d.establish(&other), Err(DialogError::BadHeader("Call-ID")));
        assert_eq!(d, calling());

        d.establish(&response(&invite, 180, Some("t1"), &[contact])).unwrap();
        let fork = response(&invite, 200, Some("t2"), &[contact]);
        assert_eq!(d.establish(&fork), Err(DialogError::OtherFork));
        assert_eq!(d.remote_tag(), "t1");
        assert_eq!(d.state(), DialogState::Early);
    }

    #[test]
    fn terminated_learns_the_route_of_a_late_2xx() {
        let invite = parse(INVITE);
        let mut d = calling();
        d.terminate();
        let ok = response(
            &invite,
            200,
            Some("t1"),
            &["Contact: <sip:bob@h>", "Record-Route: <sip:p1;lr>"],
        );
        d.establish(&ok).unwrap();
        assert_eq!(d.state(), DialogState::Terminated);
        assert_eq!(d.remote_tag(), "t1");
        assert_eq!(d.remote_target(), "sip:bob@h");
        assert_eq!(d.route_set(), ["<sip:p1;lr>"]);
    }
}
