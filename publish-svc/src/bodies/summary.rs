//! `application/simple-message-summary` (RFC 3842 5): whether messages
//! wait, and counts per message class.

/// The body type (RFC 3842 5).
pub const CONTENT_TYPE: &str = "application/simple-message-summary";

/// A mailbox's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub new: u32,
    pub old: u32,
    pub urgent_new: u32,
    pub urgent_old: u32,
}

/// Lines read at most: a summary is a handful of lines.
const MAX_LINES: usize = 64;

impl Summary {
    pub fn waiting(&self) -> bool {
        self.new > 0
    }

    /// The body; `account` is the Message-Account line when known.
    pub fn to_body(&self, account: Option<&str>) -> String {
        let mut s = format!("Messages-Waiting: {}\r\n", if self.waiting() { "yes" } else { "no" });
        if let Some(a) = account.filter(|a| !a.contains(['\r', '\n'])) {
            s.push_str(&format!("Message-Account: {a}\r\n"));
        }
        s.push_str(&format!(
            "Voice-Message: {}/{} ({}/{})\r\n",
            self.new, self.old, self.urgent_new, self.urgent_old
        ));
        s
    }

    /// Reads a body: `Messages-Waiting` is required; the voice-message
    /// counts are taken when present (other classes are ignored).
    pub fn parse(body: &str) -> Result<Summary, String> {
        let mut waiting = None;
        let mut summary = Summary::default();
        for line in body.lines().take(MAX_LINES) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "messages-waiting" => {
                    waiting = Some(match value.to_ascii_lowercase().as_str() {
                        "yes" => true,
                        "no" => false,
                        _ => return Err(format!("Messages-Waiting: `{value}` is neither yes nor no")),
                    })
                }
                "voice-message" => summary = counts(value)?,
                _ => {}
            }
        }
        match waiting {
            None => Err("no Messages-Waiting line".into()),
            Some(w) => {
                // A summary that says "yes" with no counts still lights the lamp.
                if w && summary.new == 0 && summary.urgent_new == 0 {
                    summary.new = 1;
                }
                Ok(summary)
            }
        }
    }
}

/// `new/old` with an optional ` (urgent_new/urgent_old)`.
fn counts(value: &str) -> Result<Summary, String> {
    let bad = || format!("Voice-Message: `{value}` is not new/old (urgent_new/urgent_old)");
    let (main, urgent) = match value.split_once('(') {
        Some((m, u)) => (m.trim(), Some(u.trim().trim_end_matches(')'))),
        None => (value, None),
    };
    let pair = |s: &str| -> Result<(u32, u32), String> {
        let (a, b) = s.split_once('/').ok_or_else(bad)?;
        Ok((
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        ))
    };
    let (new, old) = pair(main)?;
    let (urgent_new, urgent_old) = match urgent {
        Some(u) => pair(u)?,
        None => (0, 0),
    };
    Ok(Summary {
        new,
        old,
        urgent_new,
        urgent_old,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_and_writes_rfc_3842_bodies() {
        let body =
            "Messages-Waiting: yes\r\nMessage-Account: sip:alice@vmail.example.com\r\nVoice-Message: 2/8 (0/2)\r\n";
        let s = Summary::parse(body).unwrap();
        assert_eq!((s.new, s.old, s.urgent_new, s.urgent_old), (2, 8, 0, 2));
        assert_eq!(
            Summary::parse(&s.to_body(Some("sip:alice@vmail.example.com"))).unwrap(),
            s
        );
        assert!(Summary::parse("Voice-Message: 1/2").is_err());
        assert!(Summary::parse("Messages-Waiting: maybe").is_err());
        assert!(Summary::parse("Messages-Waiting: no\r\nVoice-Message: x/2").is_err());
        assert_eq!(Summary::parse("Messages-Waiting: yes").unwrap().new, 1);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_what_it_writes_reads_back(body in ".{0,300}", n in 0u32..1000, o in 0u32..1000, acct in ".{0,40}") {
            let _ = Summary::parse(&body);
            let s = Summary { new: n, old: o, ..Summary::default() };
            let again = Summary::parse(&s.to_body(Some(&acct))).unwrap();
            proptest::prop_assert_eq!(again, s);
        }
    }
}
