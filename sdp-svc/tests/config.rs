#![allow(clippy::unwrap_used)]

//! `[sdp]` from TOML: defaults, overrides, refusals naming the key.

use sdp_svc::{ConfigError, ExternalHandlerConfig, Negotiator, OnFailure, SdpConfig};

fn parse(s: &str) -> Result<SdpConfig, toml::de::Error> {
    toml::from_str(s)
}

fn build_err(c: &SdpConfig) -> ConfigError {
    match Negotiator::from_config(c) {
        Ok(_) => panic!("accepted {c:?}"),
        Err(e) => e,
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
        (OnFailure::Reject, 500, 500)
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
        build_err(&c),
        ConfigError::BadCodec {
            key: "sdp.codecs[1]".into(),
            value: "PCMA".into()
        }
    );
    let mut c = SdpConfig::default();
    c.endpoints.insert(
        "trunk".into(),
        sdp_svc::EndpointPolicy {
            codecs: Some(vec!["telephone-event/8000".into()]),
            telephone_event: None,
        },
    );
    assert!(build_err(&c).to_string().starts_with("sdp.endpoints.trunk.codecs[0]:"));
}

fn handler(url: &str) -> ExternalHandlerConfig {
    ExternalHandlerConfig {
        name: "x".into(),
        url: url.into(),
        media: vec!["text".into()],
        ..ExternalHandlerConfig::default()
    }
}

#[tokio::test]
async fn bad_handlers_are_refused() {
    for url in ["not a url", "ftp://127.0.0.1:1", "127.0.0.1:7000", ""] {
        let c = SdpConfig {
            handlers: vec![handler(url)],
            ..SdpConfig::default()
        };
        let e = build_err(&c);
        assert!(e.to_string().starts_with("sdp.handlers[0].url:"), "{url}: {e}");
    }
    let with = |f: fn(&mut ExternalHandlerConfig)| {
        let mut h = handler("http://127.0.0.1:1");
        f(&mut h);
        build_err(&SdpConfig {
            handlers: vec![h],
            ..SdpConfig::default()
        })
    };
    assert!(matches!(
        with(|h| h.name = "rtp".into()),
        ConfigError::DuplicateHandler { .. }
    ));
    assert!(matches!(with(|h| h.name = String::new()), ConfigError::BadName { .. }));
    assert!(matches!(with(|h| h.media.clear()), ConfigError::NoMedia { .. }));
    assert!(matches!(with(|h| h.timeout_ms = 0), ConfigError::BadValue { .. }));
    let e = with(|h| {
        h.on_failure = OnFailure::Reject;
        h.reject_status = 200;
    });
    assert_eq!(
        e.to_string(),
        "sdp.handlers[0].reject_status: 200 is not a SIP error status (400 to 699)"
    );
    // Two handlers of one name.
    let c = SdpConfig {
        handlers: vec![handler("http://127.0.0.1:1"), handler("http://127.0.0.1:2")],
        ..SdpConfig::default()
    };
    assert!(matches!(build_err(&c), ConfigError::DuplicateHandler { .. }));
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
