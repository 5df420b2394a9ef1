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
