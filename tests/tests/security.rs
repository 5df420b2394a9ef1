//! Facing the open internet, against the real binary: a SIPVicious
//! extension scan (svwar) learns no user names; a flood of bad REGISTERs
//! from one address gets that address banned while another registers and
//! calls without a single failure; streams over the limit get 503 with
//! Retry-After and are closed; one address cannot hold more connections
//! than its share.
#![allow(clippy::unwrap_used)]
// Real processes on real sockets: wall-clock time is what counts here.
#![allow(clippy::disallowed_types)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sipbus_tests::{
    Background, Sipbus, free_port, http_get, register_contact, sample, scenario_path, sipp_callee_many, sipp_callers,
};

/// svwar from the venv `tests/security/setup.sh` makes (scripts/test.sh
/// runs it).
fn svwar() -> anyhow::Result<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/security/.venv/bin/sipvicious_svwar");
    if !std::path::Path::new(path).is_file() {
        bail!("{path} missing: run tests/security/setup.sh (PyPI sipvicious)");
    }
    Ok(path.to_owned())
}

/// Two users in the domain svwar names (the address it scans).
fn users_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["127.0.0.1"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "alice", password = "secret"}, {user = "bob", password = "hunter2"}]"#,
        ),
    ]
}

/// The extensions svwar reports, by method. The dictionary starts with
/// names nobody has: svwar reports its own probes and the first names it
/// tries when every answer looks alike, which is noise, not a finding.
fn scan(sipbus: &Sipbus, method: &str) -> anyhow::Result<BTreeSet<String>> {
    let dict = sipbus_tests::temp_file(
        &format!("svwar-{}.txt", sipbus.sip.port()),
        "zed\nyara\nalice\n100\n1000\nbob\nadmin\nmallory\noperator\n",
    )?;
    let out = Command::new("timeout")
        .args(["60", &svwar()?, "-d"])
        .arg(&dict)
        .args(["-m", method, "-p", &sipbus.sip.port().to_string(), "127.0.0.1"])
        .output()
        .context("running svwar")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // Rows of its result table: `| name | reqauth |`.
    Ok(text
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells.len() == 4 && cells[1] != "Extension" && !cells[1].is_empty()).then(|| cells[1].to_owned())
        })
        .collect())
}

#[test]
fn svwar_learns_no_user_names() -> anyhow::Result<()> {
    let sipbus = Sipbus::start("all", &users_env())?;
    let real: BTreeSet<String> = ["alice", "bob"].map(str::to_owned).into();
    for method in ["REGISTER", "INVITE", "SUBSCRIBE", "OPTIONS"] {
        let found = scan(&sipbus, method)?;
        println!("svwar -m {method}: reports {found:?}");
        assert!(
            found.is_disjoint(&real),
            "svwar -m {method} found users {found:?}\n{}",
            sipbus.log_text()
        );
    }
    // The same scan finds both where registration is not authenticated
    // (unknown names get 404, known ones 200): the scan can find users.
    let mut open = users_env();
    open.push(("SIPBUS_REGISTRAR__AUTH__ENABLED", "false"));
    let open = Sipbus::start("all", &open)?;
    let found = scan(&open, "REGISTER")?;
    println!("svwar -m REGISTER, registration not authenticated: reports {found:?}");
    assert!(real.is_subset(&found), "the control scan found {found:?}");
    Ok(())
}

/// svcrack guessing alice's password from a list with the right one
/// 26th (svcrack's digest is MD5 only: MD5 is offered); whether it found
/// the password, and its output.
fn crack(extra: &[(&'static str, &'static str)]) -> anyhow::Result<(bool, String)> {
    let mut env = users_env();
    env.push(("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5"]"#));
    env.extend_from_slice(extra);
    let sipbus = Sipbus::start("all", &env)?;
    let guesses: String = (1..=25).map(|i| format!("guess{i}\n")).collect::<String>() + "secret\n";
    let dict = sipbus_tests::temp_file(&format!("svcrack-{}.txt", sipbus.sip.port()), &guesses)?;
    let cracker = svwar()?.replace("svwar", "svcrack");
    let out = Command::new("timeout")
        .args(["90", &cracker, "-u", "alice", "-d"])
        .arg(&dict)
        .args(["-p", &sipbus.sip.port().to_string(), "127.0.0.1"])
        .output()
        .context("running svcrack")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let found = text.lines().any(|l| l.contains("| alice") && l.contains("secret"));
    Ok((found, text))
}

#[test]
fn svcrack_is_locked_out_before_it_guesses_right() -> anyhow::Result<()> {
    let (found, text) = crack(&[])?;
    assert!(!found, "svcrack found the password:\n{text}");
    // The same run without the lockout finds it: the guessing was real.
    let (found, text) = crack(&[("SIPBUS_REGISTRAR__AUTH__FAILURES__MAX_FAILURES", "0")])?;
    assert!(found, "the control run did not find the password:\n{text}");
    Ok(())
}

#[test]
fn no_product_in_server_or_user_agent() -> anyhow::Result<()> {
    let sipbus = Sipbus::start("all", &users_env())?;
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))?;
    let me = sock.local_addr()?;
    for (method, uri) in [("OPTIONS", "sip:127.0.0.1"), ("REGISTER", "sip:127.0.0.1")] {
        let req = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{method}\r\nFrom: <sip:alice@127.0.0.1>;tag=1\r\n\
             To: <sip:alice@127.0.0.1>\r\nCall-ID: {method}-server-header\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n\
             Contact: <sip:alice@{me}>\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(req.as_bytes(), sipbus.sip)?;
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf)?;
        let resp = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
        assert!(resp.starts_with("sip/2.0 "), "{resp}");
        for name in ["server:", "user-agent:"] {
            assert!(!resp.lines().any(|l| l.starts_with(name)), "{method}: {resp}");
        }
        assert!(!resp.contains("sipbus"), "{method}: {resp}");
    }
    Ok(())
}

/// utime + stime of `pid`, in clock ticks (100 a second on Linux).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields count from after it.
    let after = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

#[test]
fn a_flood_from_one_address_is_banned_and_others_carry_on() -> anyhow::Result<()> {
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let admin_text = admin.to_string();
    let env = vec![
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#),
        ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5", "SHA-256"]"#),
        (
            "SIPBUS_REGISTRAR__USERS",
            r#"[{user = "alice", password = "secret"}, {user = "bob", password = "secret"},
                {user = "carol", password = "secret"}]"#,
        ),
        // Loopback is allow-listed by default; here it is the internet.
        ("SIPBUS_EDGE__FLOOD__ALLOW", "[]"),
        ("SIPBUS_SESSION__AUTHENTICATE", "false"),
        ("SIPBUS_ADMIN__LISTEN", admin_text.as_str()),
    ];
    let sipbus = Sipbus::start("all", &env)?;
    let server = sipbus.sip;

    // The good client, 127.0.0.1: bob registered and answering.
    let callee_port = free_port()?;
    register_contact(server, "bob", callee_port)?;
    let callee = sipp_callee_many(callee_port, 40, Duration::from_secs(70));

    // The flood, 127.0.0.2: 10,000 bad REGISTERs a second for 20 s.
    let flood_port = free_port()?;
    let cpu_before = cpu_ticks(sipbus.pid())?;
    let started = Instant::now();
    let flood = Background::start(
        [
            server.to_string(),
            "-sf".into(),
            scenario_path("flood_register.xml"),
            "-i".into(),
            "127.0.0.2".into(),
            "-p".into(),
            flood_port.to_string(),
            "-r".into(),
            "10000".into(),
            "-rp".into(),
            "1000".into(),
            "-m".into(),
            "200000".into(),
            "-buff_size".into(),
            "4194304".into(),
        ]
        .into(),
        Duration::from_secs(60),
    );
    std::thread::sleep(Duration::from_secs(1));

    // Meanwhile: 40 calls alice → bob at 2 a second, and carol registering
    // every second.
    let calls = sipp_callers(server, "bob", 40, 2, 500);
    let mut registrations = 0;
    let mut failed_registrations = Vec::new();
    let carol_port = free_port()?;
    while started.elapsed() < Duration::from_secs(19) {
        match register_contact(server, "carol", carol_port) {
            Ok(()) => registrations += 1,
            Err(e) => failed_registrations.push(format!("{e:#}")),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let flood = flood.finish()?;
    let flood_secs = started.elapsed().as_secs_f64();
    let cpu_secs = (cpu_ticks(sipbus.pid())? - cpu_before) as f64 / 100.0;
    let calls = calls.finish()?;
    let callee = callee.finish()?;

    let (code, metrics) = http_get(admin, "/metrics")?;
    assert_eq!(code, 200);
    let dropped = sample(&metrics, "sipbus_flood_dropped_total{reason=\"banned\"}").unwrap_or(0.0);
    let bans = sample(&metrics, "sipbus_flood_bans_total").unwrap_or(0.0);
    let sent = flood.successful;
    println!(
        "flood: {sent} REGISTERs sent in {flood_secs:.1} s ({:.0}/s) from 127.0.0.2; {dropped} dropped as banned, {bans} ban(s); \
         sipbus CPU {cpu_secs:.2} s = {:.0} % of one core; good client: {} calls ok, {} failed; {registrations} registrations ok, {} failed",
        sent as f64 / flood_secs,
        100.0 * cpu_secs / flood_secs,
        calls.successful,
        calls.failed,
        failed_registrations.len()
    );
    let log = sipbus.log_text();
    assert!(sent >= 100_000, "the flood was not a flood: {}", flood.output);
    assert!(
        log.lines()
            .any(|l| l.contains("flood: source banned") && l.contains("127.0.0.2")),
        "the flooder was not banned:\n{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("flood: source banned") && l.contains("127.0.0.1")),
        "the good client was banned"
    );
    assert_eq!(bans, 1.0, "one ban, kept while the flood lasts");
    assert!(dropped >= sent as f64 * 0.9, "dropped {dropped} of {sent}");
    assert!(
        failed_registrations.is_empty() && registrations >= 10,
        "registrations: {failed_registrations:?}"
    );
    assert_eq!(
        (calls.successful, calls.failed),
        (40, 0),
        "calls during the flood: {}",
        calls.output
    );
    assert_eq!(callee.failed, 0, "{}", callee.output);
    // Dropping a banned datagram is a hash lookup: the flood must not take
    // the server's CPU (a debug build here; the note has release figures).
    assert!(
        cpu_secs / flood_secs < 0.6,
        "sipbus used {cpu_secs:.1} s of CPU in {flood_secs:.1} s"
    );
    Ok(())
}

/// Reads what `stream` sends until it closes or `limit` passes.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let start = Instant::now();
    let mut text = Vec::new();
    let mut buf = [0u8; 8192];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&text).into_owned(), true),
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return (String::from_utf8_lossy(&text).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&text).into_owned(), false)
}

#[test]
fn streams_over_the_limit_get_503_and_are_closed() -> anyhow::Result<()> {
    let env = vec![
        ("SIPBUS_EDGE__FLOOD__ALLOW", "[]"),
        ("SIPBUS_EDGE__FLOOD__MAX_MESSAGES", "20"),
        ("SIPBUS_EDGE__FLOOD__WINDOW_MS", "10000"),
        ("SIPBUS_EDGE__FLOOD__BAN_S", "30"),
        ("SIPBUS_EDGE__FLOOD__MAX_CONNECTIONS_PER_ADDRESS", "3"),
    ];
    let sipbus = Sipbus::start("all", &env)?;

    // Per address: three connections, the fourth is closed at once. (The
    // start-up check's connection must be gone first: it counts too.)
    std::thread::sleep(Duration::from_millis(300));
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(sipbus.sip))
        .collect::<Result<_, _>>()?;
    std::thread::sleep(Duration::from_millis(200));
    let mut fourth = TcpStream::connect(sipbus.sip)?;
    let (_, closed) = read_until_closed(&mut fourth, Duration::from_secs(3));
    assert!(closed, "a fourth connection from one address stays open");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));

    // 25 OPTIONS on one connection: 20 answered, then 503 with
    // Retry-After, then the connection closes.
    let mut conn = TcpStream::connect(sipbus.sip)?;
    let me = conn.local_addr()?;
    for i in 0..25 {
        let req = format!(
            "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bK-opt{i}\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\n\
             To: <sip:b@127.0.0.1>\r\nCall-ID: flood-tcp\r\nCSeq: {} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            i + 1
        );
        if conn.write_all(req.as_bytes()).is_err() {
            break;
        }
    }
    let (text, closed) = read_until_closed(&mut conn, Duration::from_secs(5));
    let statuses: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("SIP/2.0 "))
        .map(|l| &l[8..11])
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == "200").count(), 20, "{text}");
    assert_eq!(statuses.last(), Some(&"503"), "{text}");
    let retry_after: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Retry-After: "))
        .and_then(|v| v.trim().parse().ok())
        .context("Retry-After on the 503")?;
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert!(closed, "the connection stays open after the 503");
    // Banned: a new connection is closed at once.
    let mut again = TcpStream::connect(sipbus.sip)?;
    let (text, closed) = read_until_closed(&mut again, Duration::from_secs(3));
    assert!(closed && text.is_empty(), "{text}");
    Ok(())
}
