#![allow(clippy::unwrap_used)]

//! `[sdp]` from TOML: defaults, overrides, refusals naming the key.

use extension::{ModuleConfig, OnFailure};
use sdp_svc::{ConfigError, Negotiator, SdpConfig};

fn parse(s: &str) -> Result<SdpConfig, toml::de::Error> {
    toml::from_str(s)
}

fn build_err(c: &SdpConfig) -> ConfigError {
    match Negotiator::from_config(c) {
        Ok(_) => panic!("accepted {c:?}"),
        Err(e) => {
            // The check without connecting finds the same problems.
            if let ConfigError::Invalid(problems) = &e {
                assert_eq!(&c.check(), problems);
            }
            e
        }
    }
}

/// The one problem of a configuration, as `key: reason`.
fn problem(c: &SdpConfig) -> String {
    match build_err(c) {
        ConfigError::Invalid(p) if p.len() == 1 => p[0].to_string(),
        other => panic!("expected one problem, got {other}"),
    }
}

#[test]
fn defaults_and_round_trip() {
    let c = parse("").unwrap();
    assert_eq!(c, SdpConfig::default());
    assert_eq!(c.codecs, ["PCMU/8000", "PCMA/8000", "G722/8000", "opus/48000/2"]);
    assert!(c.telephone_event);
    let again = parse(&toml::to_string(&c).unwrap()).unwrap();
    assert_eq!(again, c);
}

#[test]
fn full_table() {
    let c = parse(
        r#"
codecs = ["PCMA/8000"]
telephone_event = false

[endpoints.trunk]
codecs = ["G722/8000"]

[[handlers]]
name = "t140"
url = "http://127.0.0.1:7000"
media = ["text"]
on_failure = "reject"
reject_status = 500
"#,
    )
    .unwrap();
    assert_eq!(c.endpoints["trunk"].telephone_event, None);
    let h = &c.handlers[0];
    assert_eq!(
        (h.on_failure, h.reject_status, h.timeout_ms),
        (OnFailure::Closed, 500, 500)
    );
    assert!(parse("codec = []").is_err(), "unknown keys are refused");
    assert!(parse("[[handlers]]\nname = \"x\"\nretries = 1").is_err());
    assert!(parse("[[handlers]]\non_failure = \"ignore\"").is_err());
}

#[test]
fn bad_codecs_name_their_key() {
    let c = SdpConfig {
        codecs: vec!["PCMU/8000".into(), "PCMA".into()],
        ..SdpConfig::default()
    };
    assert_eq!(
        problem(&c),
        "sdp.codecs[1]: `PCMA` is not a codec (`name/rate[/channels]`)"
    );
    let mut c = SdpConfig::default();
    c.endpoints.insert(
        "trunk".into(),
        sdp_svc::EndpointPolicy {
            codecs: Some(vec!["telephone-event/8000".into()]),
            telephone_event: None,
        },
    );
    assert!(problem(&c).starts_with("sdp.endpoints.trunk.codecs[0]:"));
}

fn handler(url: &str) -> ModuleConfig {
    ModuleConfig {
        url: url.into(),
        media: vec!["text".into()],
        ..ModuleConfig::builtin("x")
    }
}

#[tokio::test]
async fn bad_handlers_are_refused() {
    for url in ["not a url", "ftp://127.0.0.1:1", "127.0.0.1:7000"] {
        let c = SdpConfig {
            handlers: vec![handler(url)],
            ..SdpConfig::default()
        };
        let e = problem(&c);
        assert!(e.starts_with("sdp.handlers[0].url:"), "{url}: {e}");
    }
    // Without url it is a built-in, and there is no built-in `x`.
    let e = problem(&SdpConfig {
        handlers: vec![handler("")],
        ..SdpConfig::default()
    });
    assert!(
        e.starts_with("sdp.handlers[0].name: no built-in `x` (built-ins: rtp;"),
        "{e}"
    );
    let with = |f: fn(&mut ModuleConfig)| {
        let mut h = handler("http://127.0.0.1:1");
        f(&mut h);
        problem(&SdpConfig {
            handlers: vec![h],
            ..SdpConfig::default()
        })
    };
    assert!(with(|h| h.name = "rtp".into()).contains("sdp handler `rtp` registered twice"));
    assert!(with(|h| h.name = String::new()).starts_with("sdp.handlers[0].name:"));
    assert!(with(|h| h.media.clear()).contains("sdp handler `x` has no media type"));
    assert_eq!(
        with(|h| h.timeout_ms = 0),
        "sdp.handlers[0].timeout_ms: must be above 0"
    );
    let e = with(|h| {
        h.on_failure = OnFailure::Closed;
        h.reject_status = 200;
    });
    assert_eq!(
        e,
        "sdp.handlers[0].reject_status: 200 is not a SIP error status (400 to 699)"
    );
    // Two handlers of one name.
    let c = SdpConfig {
        handlers: vec![handler("http://127.0.0.1:1"), handler("http://127.0.0.1:2")],
        ..SdpConfig::default()
    };
    assert!(problem(&c).contains("registered twice"));
}

#[test]
fn external_handlers_need_a_runtime() {
    let c = SdpConfig {
        handlers: vec![handler("http://127.0.0.1:1")],
        ..SdpConfig::default()
    };
    assert_eq!(build_err(&c), ConfigError::NoRuntime);
    // Without external handlers nothing connects: no runtime needed.
    assert!(Negotiator::from_config(&SdpConfig::default()).is_ok());
}
