//! Two real softphones (baresip) call each other through sipbus all-in-one:
//! both register with digest, alice dials bob (407, then credentials), bob
//! answers by itself, each sends a sine tone over RTP straight to the other,
//! alice hangs up. Both phones must report the call established and RTP
//! received, and sipbus must log the answer and the BYE.
//!
//! baresip 1.0 (Debian 12) fails any challenge list that includes SHA-256,
//! so this registrar offers MD5 only.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use sipbus_tests::{Sipbus, free_port, temp_file};

fn phone(dir: &Path, who: &str, sip_port: u16, server: u16, tone: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let heard = dir.join("heard.wav");
    // baresip also takes sip_port + 1 for TLS; free_port ports are far apart.
    std::fs::write(
        dir.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\naudio_player aufile,{}\n\
             audio_source ausine,{tone}\naudio_alert aufile,/dev/null\nausrc_srate 48000\n\
             ausrc_channels 2\nauplay_srate 48000\nmodule_path /usr/lib/baresip/modules\n\
             module g711.so\nmodule ausine.so\nmodule aufile.so\nmodule_app account.so\nmodule_app menu.so\n",
            heard.display()
        ),
    )?;
    std::fs::write(
        dir.join("accounts"),
        format!("<sip:{who}@127.0.0.1:{server}>;auth_pass={who}-secret;regint=600;answermode=auto;audio_codecs=PCMU\n"),
    )?;
    Ok(())
}

#[test]
fn two_baresip_phones_call_each_other() -> anyhow::Result<()> {
    anyhow::ensure!(
        Command::new("baresip").arg("-h").output().is_ok(),
        "baresip is not installed (Debian package baresip-core); scripts/test.sh installs it"
    );
    let env = [
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["127.0.0.1"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "alice", password = "alice-secret"}, {user = "bob", password = "bob-secret"}]"#,
        ),
        ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5"]"#),
    ];
    let sipbus = Sipbus::start("all", &env)?;
    let server = sipbus.sip.port();
    let base = temp_file(&format!("baresip-{server}.keep"), "")?.with_extension("d");
    let (alice_dir, bob_dir) = (base.join("alice"), base.join("bob"));
    phone(&alice_dir, "alice", free_port()?, server, 440)?;
    phone(&bob_dir, "bob", free_port()?, server, 880)?;

    let bob_log = std::fs::File::create(base.join("bob.log"))?;
    let mut bob = Command::new("timeout")
        .args(["--signal=KILL", "20", "baresip", "-f"])
        .arg(&bob_dir)
        .args(["-t", "12"])
        .stdin(Stdio::null())
        .stdout(bob_log.try_clone()?)
        .stderr(bob_log)
        .spawn()?;
    std::thread::sleep(Duration::from_secs(2));
    let alice_log = std::fs::File::create(base.join("alice.log"))?;
    let dial = format!("/dial sip:bob@127.0.0.1:{server}");
    let alice = Command::new("timeout")
        .args(["--signal=KILL", "20", "baresip", "-f"])
        .arg(&alice_dir)
        .args(["-t", "7", "-e", &dial])
        .stdin(Stdio::null())
        .stdout(alice_log.try_clone()?)
        .stderr(alice_log)
        .status();
    std::thread::sleep(Duration::from_secs(1));
    let _ = bob.kill();
    let _ = bob.wait();
    alice?;

    for who in ["alice", "bob"] {
        let log = std::fs::read_to_string(base.join(format!("{who}.log")))?;
        let without_meters: String = log
            .lines()
            .filter(|l| !l.contains("audio="))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            log.contains("Call established") && log.contains("incoming rtp for 'audio' established"),
            "{who}: no established call with RTP:\n{without_meters}\n--- sipbus ---\n{}",
            sipbus.log_text()
        );
    }
    let logs = sipbus.log_text();
    assert!(logs.contains("call answered") && logs.contains("call ended"), "{logs}");
    Ok(())
}

/// Presence between two baresip phones (its `presence` module): each
/// publishes its status (PUBLISH, `pubint`) and watches the other (a
/// contact with `presence=p2p`, SUBSCRIBE with digest). Alice calls Bob,
/// who answers: each sees the other busy (sipbus adds RPID on-the-phone
/// to the published state during a call). Bob quits (unpublishes and
/// unregisters): Alice sees him offline.
#[test]
fn two_baresip_phones_see_each_others_presence() -> anyhow::Result<()> {
    anyhow::ensure!(
        Command::new("baresip").arg("-h").output().is_ok(),
        "baresip is not installed (Debian package baresip-core); scripts/test.sh installs it"
    );
    let env = [
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["127.0.0.1"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "alice", password = "alice-secret"}, {user = "bob", password = "bob-secret"}]"#,
        ),
        ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5"]"#),
    ];
    let sipbus = Sipbus::start("all", &env)?;
    let server = sipbus.sip.port();
    let base = temp_file(&format!("baresip-presence-{server}.keep"), "")?.with_extension("d");
    let (alice_dir, bob_dir) = (base.join("alice"), base.join("bob"));
    for (dir, who, other, tone) in [(&alice_dir, "alice", "bob", 440), (&bob_dir, "bob", "alice", 880)] {
        phone(dir, who, free_port()?, server, tone)?;
        let config = std::fs::read_to_string(dir.join("config"))?;
        std::fs::write(
            dir.join("config"),
            format!("{config}module_app contact.so\nmodule_app presence.so\n"),
        )?;
        let accounts = std::fs::read_to_string(dir.join("accounts"))?;
        std::fs::write(
            dir.join("accounts"),
            accounts.replace(";regint=600", ";regint=600;pubint=600"),
        )?;
        std::fs::write(
            dir.join("contacts"),
            format!("\"{other}\" <sip:{other}@127.0.0.1:{server}>;presence=p2p\n"),
        )?;
    }
    let bob_log = std::fs::File::create(base.join("bob.log"))?;
    let mut bob = Command::new("timeout")
        .args(["--signal=KILL", "20", "baresip", "-f"])
        .arg(&bob_dir)
        .args(["-t", "8"])
        .stdin(Stdio::null())
        .stdout(bob_log.try_clone()?)
        .stderr(bob_log)
        .spawn()?;
    std::thread::sleep(Duration::from_secs(2));
    let alice_log = std::fs::File::create(base.join("alice.log"))?;
    let dial = format!("/dial sip:bob@127.0.0.1:{server}");
    // Alice stays on after Bob quits (8 s in), to see him go.
    let alice = Command::new("timeout")
        .args(["--signal=KILL", "20", "baresip", "-f"])
        .arg(&alice_dir)
        .args(["-t", "11", "-e", &dial])
        .stdin(Stdio::null())
        .stdout(alice_log.try_clone()?)
        .stderr(alice_log)
        .status();
    let _ = bob.wait();
    alice?;
    let read = |who: &str| -> anyhow::Result<String> {
        let log = std::fs::read_to_string(base.join(format!("{who}.log")))?;
        Ok(log
            .lines()
            .filter(|l| l.contains("changed status") || l.contains("Call") || l.contains("call"))
            .collect::<Vec<_>>()
            .join("\n"))
    };
    let (alice_log, bob_log) = (read("alice")?, read("bob")?);
    // baresip logs "<sip:bob@...> changed status from Online to Busy"
    // (with colour codes): the states it went through, in order.
    let changes = |log: &str, of: &str| -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for line in log
            .lines()
            .filter(|l| l.contains(&format!("<sip:{of}@")) && l.contains("changed status from"))
        {
            let plain = without_colours(line);
            let tail = plain.rsplit("changed status from ").next().unwrap_or("");
            for state in tail.split(" to ") {
                let state = state.trim().to_owned();
                if seen.last() != Some(&state) {
                    seen.push(state);
                }
            }
        }
        seen
    };
    let alice_saw = changes(&alice_log, "bob");
    let bob_saw = changes(&bob_log, "alice");
    let context = || {
        format!(
            "alice:\n{alice_log}\nbob:\n{bob_log}\n--- sipbus ---\n{}",
            sipbus.log_text()
        )
    };
    assert!(
        bob_saw.iter().any(|s| s == "Busy"),
        "bob never saw alice busy: {bob_saw:?}\n{}",
        context()
    );
    let busy = alice_saw.iter().position(|s| s == "Busy");
    let offline = alice_saw.iter().rposition(|s| s == "Offline");
    assert!(
        busy.is_some() && offline.is_some() && busy < offline,
        "alice saw {alice_saw:?}\n{}",
        context()
    );
    Ok(())
}

/// `text` without ANSI colour sequences (ESC [ ... m).
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// baresip over TLS (`sip_cafile` trusts the test CA; the account says
/// `transport=tls`) calls a UDP baresip through sipbus, then stays
/// registered and is called back by another UDP phone: that INVITE can
/// only reach it over the TLS connection it registered on.
#[test]
fn baresip_over_tls_calls_a_udp_phone_and_is_called_back_over_its_connection() -> anyhow::Result<()> {
    anyhow::ensure!(
        Command::new("baresip").arg("-h").output().is_ok(),
        "baresip is not installed (Debian package baresip-core); scripts/test.sh installs it"
    );
    let base = temp_file(&format!("baresip-tls-{}.keep", free_port()?), "")?.with_extension("d");
    let ca = sipbus_tests::tls::TestCa::new(&base, "baresip")?;
    let cert = ca.issue("sipbus", &["IP:127.0.0.1"], 1)?;
    let tls_port = free_port()?;
    let (cert_file, key_file) = (cert.cert.display().to_string(), cert.key.display().to_string());
    let env = [
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["127.0.0.1"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "alice", password = "alice-secret"}, {user = "bob", password = "bob-secret"},
                {user = "carol", password = "carol-secret"}]"#,
        ),
        ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5"]"#),
        ("SIPBUS_EDGE__TLS__CERT_FILE", &cert_file),
        ("SIPBUS_EDGE__TLS__KEY_FILE", &key_file),
    ];
    let sipbus = Sipbus::start_listening("all", &env, &[format!("tls:127.0.0.1:{tls_port}")])?;
    let server = sipbus.sip.port();
    let dirs = |who: &str| base.join(who);
    for (who, tone) in [("alice", 440), ("bob", 880), ("carol", 660)] {
        phone(&dirs(who), who, free_port()?, server, tone)?;
    }
    let alice = dirs("alice");
    let config = std::fs::read_to_string(alice.join("config"))?;
    std::fs::write(
        alice.join("config"),
        format!("{config}sip_cafile {}\n", ca.cert.display()),
    )?;
    std::fs::write(
        alice.join("accounts"),
        format!(
            "<sip:alice@127.0.0.1:{tls_port};transport=tls>;auth_pass=alice-secret;regint=600;\
             answermode=auto;audio_codecs=PCMU\n"
        ),
    )?;
    let start = |who: &str, seconds: u32, dial: Option<String>| -> anyhow::Result<std::process::Child> {
        let log = std::fs::File::create(base.join(format!("{who}.log")))?;
        let mut cmd = Command::new("timeout");
        cmd.args(["--signal=KILL", &(seconds + 8).to_string(), "baresip", "-f"])
            .arg(dirs(who))
            .args(["-t", &seconds.to_string()]);
        if let Some(d) = dial {
            cmd.args(["-e", &d]);
        }
        Ok(cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn()?)
    };
    // bob answers, and hangs up when he quits after 6 s.
    let mut bob = start("bob", 6, None)?;
    std::thread::sleep(Duration::from_secs(2));
    // Room for carol's call after bob's, on a loaded machine.
    let mut alice = start(
        "alice",
        25,
        Some(format!("/dial sip:bob@127.0.0.1:{tls_port};transport=tls")),
    )?;
    let _ = bob.wait();
    std::thread::sleep(Duration::from_secs(2));
    // carol calls alice over UDP; sipbus reaches alice over her TLS flow.
    // Long enough to register, dial and talk when baresip starts slowly.
    let mut carol = start("carol", 10, Some(format!("/dial sip:alice@127.0.0.1:{server}")))?;
    let _ = carol.wait();
    let _ = alice.wait();

    let log =
        |who: &str| without_colours(&std::fs::read_to_string(base.join(format!("{who}.log"))).unwrap_or_default());
    let quiet = |text: String| {
        text.lines()
            .filter(|l| !l.contains("audio="))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let alice_log = log("alice");
    assert!(
        alice_log.contains("{0/TLS/v4} 200 OK"),
        "alice did not register over TLS:\n{}\n--- sipbus ---\n{}",
        quiet(alice_log.clone()),
        sipbus.log_text()
    );
    assert_eq!(
        alice_log.matches("Call established").count(),
        2,
        "alice should have had her call to bob and carol's call:\n{}\n--- sipbus ---\n{}",
        quiet(alice_log.clone()),
        sipbus.log_text()
    );
    for who in ["bob", "carol"] {
        let text = log(who);
        assert!(
            text.contains("Call established") && text.contains("incoming rtp for 'audio' established"),
            "{who}: no established call with RTP:\n{}",
            quiet(text.clone())
        );
    }
    let logs = sipbus.log_text();
    assert!(logs.contains("transport=TLS"), "{logs}");
    Ok(())
}
