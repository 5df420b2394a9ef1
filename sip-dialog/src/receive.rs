//! Requests received inside a dialog (RFC 3261 12.2.2) and target
//! refreshes (12.2, RFC 3311, RFC 6665).

use sip_message::{Message, Method};

use crate::dialog::Dialog;
use crate::error::DialogError;
use crate::header::contact_uri;

impl Dialog {
    /// 12.2.2: checks the CSeq of a request received in this dialog. ACK
    /// and CANCEL carry the number of the INVITE they belong to and are
    /// accepted without a check and without changing anything. Otherwise:
    /// remote CSeq empty -> set it; lower than the remote CSeq ->
    /// `OutOfOrder` (the UAS answers 500); equal or higher -> recorded
    /// (the highest stays). An unreadable CSeq is `BadHeader("CSeq")`.
    /// Does NOT check tags (that is [`Dialog::matches`]).
    pub fn receive(&mut self, request: &Message) -> Result<(), DialogError> {
        if matches!(request.method(), Some(Method::Ack | Method::Cancel)) {
            return Ok(());
        }
        let seq = request.cseq().map_err(|_| DialogError::BadHeader("CSeq"))?.seq;
        match self.remote_cseq {
            Some(last) if seq < last => Err(DialogError::OutOfOrder { got: seq, last }),
            _ => {
                self.remote_cseq = Some(seq);
                Ok(())
            }
        }
    }

    /// Target refresh (12.2, RFC 3311 UPDATE, RFC 6665 SUBSCRIBE/NOTIFY): the first Contact URI of
    /// `message` (a target-refresh request we received, or a 2xx to one we sent) becomes the remote
    /// target. Returns whether it changed. A message without a usable Contact changes nothing.
    pub fn refresh_target(&mut self, message: &Message) -> bool {
        match contact_uri(message) {
            Ok(uri) if uri != self.remote_target => {
                self.remote_target = uri.to_owned();
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{INVITE, parse};
    use sip_message::Known;

    fn in_dialog(method: Method, cseq: u32) -> Message {
        let mut m = Message::request(method.clone(), "sip:bob@192.0.2.4");
        m.push_header(Known::CSeq, &format!("{cseq} {method}"));
        m
    }

    #[test]
    fn remote_cseq_rules() {
        let mut d = Dialog::uac("c", "l", "<sip:a@x>", "<sip:b@y>", 1);
        assert_eq!(d.remote_cseq(), None);
        d.receive(&in_dialog(Method::Info, 10)).unwrap();
        assert_eq!(d.remote_cseq(), Some(10));
        d.receive(&in_dialog(Method::Info, 10)).unwrap();
        d.receive(&in_dialog(Method::Bye, 12)).unwrap();
        assert_eq!(d.remote_cseq(), Some(12));
        let err = d.receive(&in_dialog(Method::Info, 11)).unwrap_err();
        assert_eq!(err, DialogError::OutOfOrder { got: 11, last: 12 });
        assert_eq!(err.refusal().code(), 500);
        assert_eq!(d.remote_cseq(), Some(12));
        // ACK and CANCEL carry the INVITE's number.
        d.receive(&in_dialog(Method::Ack, 3)).unwrap();
        d.receive(&in_dialog(Method::Cancel, 3)).unwrap();
        assert_eq!(d.remote_cseq(), Some(12));
        let mut bad = in_dialog(Method::Info, 1);
        bad.set_header(Known::CSeq, "many INFO");
        assert_eq!(d.receive(&bad), Err(DialogError::BadHeader("CSeq")));
    }

    #[test]
    fn uas_dialog_starts_from_the_request_number() {
        let mut d = Dialog::uas(&parse(INVITE), "b").unwrap();
        assert_eq!(
            d.receive(&in_dialog(Method::Info, 314158)),
            Err(DialogError::OutOfOrder {
                got: 314158,
                last: 314159
            })
        );
        d.receive(&in_dialog(Method::Bye, 314160)).unwrap();
    }

    #[test]
    fn target_refresh() {
        let mut d = Dialog::uas(&parse(INVITE), "b").unwrap();
        let mut update = in_dialog(Method::Update, 314160);
        assert!(!d.refresh_target(&update));
        update.push_header(Known::Contact, "<sip:alice@198.51.100.7;transport=tcp>");
        assert!(d.refresh_target(&update));
        assert_eq!(d.remote_target(), "sip:alice@198.51.100.7;transport=tcp");
        assert!(!d.refresh_target(&update));
        let mut star = in_dialog(Method::Update, 314161);
        star.push_header(Known::Contact, "*");
        assert!(!d.refresh_target(&star));
        assert_eq!(d.remote_target(), "sip:alice@198.51.100.7;transport=tcp");
    }
}
