//! `--check-config` runs every check a start of `--target` would: each
//! configuration here passed the old check and then failed at start; now
//! the check refuses it (exit 2) and names the key. Valid split
//! configurations pass.

#![allow(clippy::unwrap_used)]

use std::process::Command;

/// `sipbus --check-config --target <target>` with `env`: (exit code,
/// stderr).
fn check(target: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sipbus"));
    c.env_remove("RUST_LOG")
        .arg("--check-config")
        .arg("--target")
        .arg(target);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

fn refused(target: &str, env: &[(&str, &str)], key: &str) {
    let (code, err) = check(target, env);
    assert_eq!(code, Some(2), "--target {target} {env:?} was accepted");
    assert!(
        err.lines().any(|l| l.starts_with(&format!("config: {key}"))),
        "--target {target} {env:?}: no problem names `{key}`:\n{err}"
    );
}

const REDIS: (&str, &str) = ("SIPBUS_STORE__REDIS", "redis://127.0.0.1:1/");
const NONCE: (&str, &str) = ("SIPBUS_REGISTRAR__AUTH__NONCE_KEY", "k");
const DOMAINS: (&str, &str) = ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#);
const EDGES: (&str, &str) = ("SIPBUS_BUS__EDGES", r#"{ edge1 = "http://127.0.0.1:7001" }"#);
const REGISTRARS: (&str, &str) = ("SIPBUS_BUS__REGISTRAR", r#"["http://127.0.0.1:7002"]"#);
const SDPS: (&str, &str) = ("SIPBUS_BUS__SDP", r#"["http://127.0.0.1:7003"]"#);

#[test]
fn split_services_need_the_store() {
    refused("registrar-svc", &[NONCE, DOMAINS], "store.redis");
    refused("session-svc", &[NONCE, DOMAINS, EDGES, REGISTRARS, SDPS], "store.redis");
}

#[test]
fn replicas_need_a_shared_nonce_key() {
    refused("registrar-svc", &[REDIS, DOMAINS], "registrar.auth.nonce_key");
    refused(
        "session-svc",
        &[REDIS, DOMAINS, EDGES, REGISTRARS, SDPS],
        "registrar.auth.nonce_key",
    );
}

#[test]
fn session_svc_needs_its_neighbours() {
    refused("session-svc", &[REDIS, NONCE, DOMAINS, REGISTRARS, SDPS], "bus.edges");
    refused("session-svc", &[REDIS, NONCE, DOMAINS, EDGES, SDPS], "bus.registrar");
    refused("session-svc", &[REDIS, NONCE, DOMAINS, EDGES, REGISTRARS], "bus.sdp");
    refused(
        "session-svc",
        &[
            REDIS,
            NONCE,
            DOMAINS,
            ("SIPBUS_BUS__EDGES", r#"{ edge1 = "edge1:7001" }"#),
            REGISTRARS,
            SDPS,
        ],
        "bus.edges.edge1",
    );
    refused(
        "session-svc",
        &[
            REDIS,
            NONCE,
            DOMAINS,
            EDGES,
            ("SIPBUS_BUS__SDP", r#"["10.0.0.1:7003"]"#),
            REGISTRARS,
        ],
        "bus.sdp",
    );
}

#[test]
fn the_edge_needs_services_and_a_name_for_session_svc() {
    refused("sip-edge", &[], "bus.registrar, bus.session");
    refused(
        "sip-edge",
        &[("SIPBUS_BUS__SESSION", r#"["http://127.0.0.1:7004"]"#)],
        "edge.instance",
    );
    refused(
        "sip-edge",
        &[("SIPBUS_BUS__REGISTRAR", r#"["registrar:50051"]"#)],
        "bus.registrar",
    );
}

#[test]
fn supplements_are_checked_before_start() {
    let cases = [
        (r#"[{name = "caler-id"}]"#, "session.supplements[0].name"),
        (
            r#"[{name = "x", url = "ftp://127.0.0.1:7000"}]"#,
            "session.supplements[0].url",
        ),
        (
            r#"[{name = "reason", methods = ["IN VITE"]}]"#,
            "session.supplements[0].methods",
        ),
        (
            r#"[{name = "x", url = "http://127.0.0.1:7000", on_failure = "closed", reject_status = 200}]"#,
            "session.supplements[0].reject_status",
        ),
        (
            r#"[{name = "session-timer", settings = {min_se_s = 0}}]"#,
            "session.supplements[0].settings",
        ),
        (
            r#"[{name = "session-timer", settings = {expires = 90}}]"#,
            "session.supplements[0].settings",
        ),
        (
            r#"[{name = "reason"}, {name = "reason"}]"#,
            "session.supplements[1].name",
        ),
        (
            r#"[{name = "reason", media = ["audio"]}]"#,
            "session.supplements[0].media",
        ),
    ];
    for (list, key) in cases {
        refused("all", &[("SIPBUS_SESSION__SUPPLEMENTS", list)], key);
        refused(
            "session-svc",
            &[
                REDIS,
                NONCE,
                DOMAINS,
                EDGES,
                REGISTRARS,
                SDPS,
                ("SIPBUS_SESSION__SUPPLEMENTS", list),
            ],
            key,
        );
    }
}

#[test]
fn sdp_handlers_and_codecs_are_checked_before_start() {
    refused(
        "sdp-svc",
        &[("SIPBUS_SDP__CODECS", r#"["PCMU/8000", "PCMA"]"#)],
        "sdp.codecs[1]",
    );
    refused(
        "sdp-svc",
        &[(
            "SIPBUS_SDP__HANDLERS",
            r#"[{name = "t140", url = "nowhere", media = ["text"]}]"#,
        )],
        "sdp.handlers[0].url",
    );
    refused(
        "all",
        &[(
            "SIPBUS_SDP__HANDLERS",
            r#"[{name = "t", url = "http://127.0.0.1:1", media = ["text"]}, {name = "t", url = "http://127.0.0.1:2", media = ["text"]}]"#,
        )],
        "sdp.handlers[1]",
    );
    refused(
        "all",
        &[("SIPBUS_SDP__ENDPOINTS", r#"{ trunk = { codecs = ["G729"] } }"#)],
        "sdp.endpoints.trunk.codecs[0]",
    );
}

#[test]
fn an_outbound_route_must_be_an_address() {
    refused(
        "all",
        &[
            ("SIPBUS_SESSION__NON_LOCAL", "outbound"),
            ("SIPBUS_SESSION__OUTBOUND", "sip:gateway.example.com"),
        ],
        "session.outbound",
    );
}

#[test]
fn every_problem_at_once_and_valid_split_configurations_pass() {
    let (code, err) = check("session-svc", &[DOMAINS]);
    assert_eq!(code, Some(2));
    for key in [
        "store.redis",
        "bus.edges",
        "bus.registrar",
        "bus.sdp",
        "registrar.auth.nonce_key",
    ] {
        assert!(err.contains(&format!("config: {key}")), "{key} missing:\n{err}");
    }
    for (target, env) in [
        ("all", vec![]),
        ("registrar-svc", vec![REDIS, NONCE, DOMAINS]),
        ("session-svc", vec![REDIS, NONCE, DOMAINS, EDGES, REGISTRARS, SDPS]),
        ("sdp-svc", vec![REDIS]),
        ("sip-edge", vec![REGISTRARS]),
    ] {
        let (code, err) = check(target, &env);
        assert_eq!(code, Some(0), "--target {target}: {err}");
    }
}

#[test]
fn addresses_and_timing_that_would_fail_later() {
    refused(
        "registrar-svc",
        &[NONCE, DOMAINS, ("SIPBUS_STORE__REDIS", "localhost:6379")],
        "store.redis",
    );
    refused(
        "sip-edge",
        &[("SIPBUS_BUS__REGISTRAR", r#"["ftp://10.0.0.1:50051"]"#)],
        "bus.registrar",
    );
    // TLS needs all its files, and readable ones.
    refused(
        "sip-edge",
        &[REGISTRARS, ("SIPBUS_GRPC__TLS__CA_FILE", "/etc/hostname")],
        "grpc.tls",
    );
    // Files that are not PEM are found now, not at the first call.
    refused(
        "sip-edge",
        &[
            REGISTRARS,
            ("SIPBUS_GRPC__TLS__CA_FILE", "/etc/hostname"),
            ("SIPBUS_GRPC__TLS__CERT_FILE", "/etc/hostname"),
            ("SIPBUS_GRPC__TLS__KEY_FILE", "/etc/hostname"),
        ],
        "grpc.tls: /etc/hostname: no PEM certificate",
    );
    refused(
        "sip-edge",
        &[
            REGISTRARS,
            ("SIPBUS_GRPC__TLS__CA_FILE", "/nonexistent/ca.pem"),
            ("SIPBUS_GRPC__TLS__CERT_FILE", "/nonexistent/tls.crt"),
            ("SIPBUS_GRPC__TLS__KEY_FILE", "/nonexistent/tls.key"),
        ],
        "grpc.tls",
    );
    refused(
        "registrar-svc",
        &[
            NONCE,
            DOMAINS,
            ("SIPBUS_STORE__REDIS", "rediss://10.0.0.1:6379/#insecure"),
        ],
        "store.redis",
    );
    refused(
        "all",
        &[("SIPBUS_EDGE__LISTEN", r#"["tls:127.0.0.1:5061"]"#)],
        "edge.tls.cert_file",
    );
    refused(
        "sip-edge",
        &[REGISTRARS, ("SIPBUS_EDGE__INSTANCE", "")],
        "edge.instance",
    );
    refused(
        "sip-edge",
        &[REGISTRARS, ("SIPBUS_BUS__CONNECT_TIMEOUT_MS", "3000")],
        "bus.connect_timeout_ms",
    );
    refused(
        "all",
        &[(
            "SIPBUS_SESSION__SUPPLEMENTS",
            r#"[{name = "x", url = "http://127.0.0.1:1"}, {name = "x", url = "http://127.0.0.1:2"}]"#,
        )],
        "session.supplements[1].name",
    );
}
