//! The command line as a person uses it: help, configuration errors that
//! name their key, and a clear failure when the port is taken.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn sipbus() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sipbus"));
    c.env_remove("RUST_LOG");
    c
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("sipbus-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn help_explains_every_option() {
    let out = sipbus().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for option in [
        "--config",
        "--target",
        "--check-config",
        "--print-config",
        "SIPBUS_EDGE__TIMERS__T1_MS",
        "sip-edge",
    ] {
        assert!(help.contains(option), "--help does not mention {option}:\n{help}");
    }
}

#[test]
fn bad_config_names_each_key_and_exits_2() {
    let path = temp_file(
        "bad.toml",
        "[edge]\nlisten = [\"udp:127.0.0.1:5070\"]\nlistn = []\n[edge.timers]\nt2_ms = 10\n",
    );
    let out = sipbus()
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("edge.listn: unknown key"), "{err}");
    assert!(err.contains("edge.timers.t2_ms"), "{err}");

    let out = sipbus()
        .env("SIPBUS_EDGE__LISTEN", "[\"sctp:1.2.3.4:5060\"]")
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("edge.listen"));

    let out = sipbus()
        .arg("--config")
        .arg("/nonexistent/sipbus.toml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("cannot read /nonexistent/sipbus.toml")
    );
    std::fs::remove_file(path).unwrap();
}

#[test]
fn printed_config_loads_back() {
    let out = sipbus()
        .env("SIPBUS_EDGE__TIMERS__T1_MS", "250")
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("t1_ms = 250"), "{text}");
    let path = temp_file("printed.toml", &text);
    let out = sipbus()
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_file(path).unwrap();
}

#[test]
fn taken_port_is_a_clear_error() {
    let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    let out = sipbus()
        .env("SIPBUS_EDGE__LISTEN", format!("[\"udp:{addr}\"]"))
        .env("SIPBUS_LOG__LEVEL", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(&format!("cannot listen on udp:{addr}")), "{err}");
}

#[test]
fn example_config_is_valid_and_documents_the_defaults() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../sipbus.example.toml");
    let from_example = sipbus()
        .arg("--config")
        .arg(example)
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(
        from_example.status.success(),
        "{}",
        String::from_utf8_lossy(&from_example.stderr)
    );
    let defaults = sipbus().arg("--print-config").output().unwrap();
    assert_eq!(
        String::from_utf8(from_example.stdout).unwrap(),
        String::from_utf8(defaults.stdout).unwrap(),
        "sipbus.example.toml drifted from the defaults"
    );
}
