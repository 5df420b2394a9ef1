// `summary`: a message-summary body (RFC 3842) through publish-svc's reader
// (publish-svc/src/bodies/summary.rs), which judges PUBLISH bodies and
// upstream NOTIFYs: no panic, and a summary read writes a body that reads
// back the same, with or without the Message-Account it named.

use publish_svc::bodies::summary::Summary;

pub fn check(data: &[u8]) {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(summary) = Summary::parse(body) else {
        return;
    };
    let written = summary.to_body(None);
    assert_eq!(Summary::parse(&written), Ok(summary), "{written:?}");
    let account = body.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("message-account")
            .then(|| value.trim())
    });
    if let Some(account) = account {
        let written = summary.to_body(Some(account));
        assert_eq!(Summary::parse(&written), Ok(summary), "{written:?}");
        if !account.contains(['\r', '\n']) {
            assert!(written.contains(account), "{written:?} lost the account");
        }
    }
}
