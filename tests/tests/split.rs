//! Split mode for real: Redis, one sip-edge, two registrar-svc replicas, each
//! its own process, gRPC between them. SIPp registers through the edge.

use std::net::SocketAddr;
use std::time::Duration;

use registrar_svc::binding::{BindingSet, record_key};
use sipbus_tests::{Sipbus, SippResult, SplitRun, free_port, run_sipp, scenario, temp_file};
use state_store::Store;
use state_store::testing::RedisServer;

/// Users who register in parallel, each its own address-of-record.
const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

fn env() -> Vec<(&'static str, String)> {
    vec![
        ("SIPBUS_REGISTRAR__DOMAINS", r#"["example.com"]"#.to_owned()),
        (
            "SIPBUS_REGISTRAR__USERS",
            format!(
                "[{}]",
                USERS
                    .map(|u| format!("{{user = \"{u}\", password = \"secret\"}}"))
                    .join(", ")
            ),
        ),
        ("SIPBUS_REGISTRAR__AUTH__ALGORITHMS", r#"["MD5", "SHA-256"]"#.to_owned()),
        ("SIPBUS_REGISTRAR__MAX_BINDINGS", "100000".to_owned()),
        ("SIPBUS_REGISTRAR__EXPIRES__MIN_S", "1".to_owned()),
        ("SIPBUS_REGISTRAR__EXPIRY_POLL_MS", "100".to_owned()),
    ]
}

struct Split {
    redis: RedisServer,
    run: SplitRun,
}

fn start_split(redis: RedisServer) -> anyhow::Result<Split> {
    let env = env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = SplitRun::start(&redis.url(), &env, 2)?;
    Ok(Split { redis, run })
}

/// `calls` registrations of `user` at `rate`/s, each a new binding lasting
/// `expires`.
fn register(edge: SocketAddr, user: &str, calls: u32, rate: u32, expires: u32) -> anyhow::Result<SippResult> {
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let csv = temp_file(
        &format!("split-{}-{run}.csv", edge.port()),
        &format!("SEQUENTIAL\n{user};example.com;{expires};run{run}\n"),
    )?;
    let target = edge.to_string();
    let (calls, rate) = (calls.to_string(), rate.to_string());
    let sf = scenario("register_once.xml");
    let args = [
        target.as_str(),
        "-sf",
        sf.to_str().unwrap_or_default(),
        "-inf",
        csv.to_str().unwrap_or_default(),
        "-i",
        "127.0.0.1",
        "-au",
        user,
        "-ap",
        "secret",
        "-auth_uri",
        "example.com",
        "-m",
        &calls,
        "-r",
        &rate,
        "-timeout",
        "60s",
        "-recv_timeout",
        "5000",
    ];
    run_sipp(&args, Duration::from_secs(90))
}

async fn all_bindings(store: &Store) -> anyhow::Result<u64> {
    let mut n = 0;
    for u in USERS {
        n += bindings(store, u).await?.bindings.len() as u64;
    }
    Ok(n)
}

/// `calls` registrations per user, every user at once.
fn register_all(edge: SocketAddr, calls: u32, rate: u32) -> anyhow::Result<Vec<SippResult>> {
    let runs: Vec<_> = USERS
        .map(|u| std::thread::spawn(move || register(edge, u, calls, rate, 3600)))
        .into_iter()
        .collect();
    runs.into_iter()
        .map(|r| r.join().map_err(|_| anyhow::anyhow!("SIPp thread panicked"))?)
        .collect()
}

async fn bindings(store: &Store, user: &str) -> anyhow::Result<BindingSet> {
    let aor = format!("sip:{user}@example.com");
    Ok(match store.get(&record_key(&aor)).await? {
        Some(v) => serde_json::from_slice(&v.value)?,
        None => BindingSet::default(),
    })
}

fn logs(split: &Split) -> String {
    split.run.logs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_bindings_and_survive_a_killed_one() -> anyhow::Result<()> {
    let mut split = start_split(RedisServer::start()?)?;
    let store = Store::redis(&split.redis.url()).await?;

    // Both replicas serve (round robin), and nonces from one verify on the other.
    let edge = split.run.edge.sip;
    let first = register_all(edge, 8, 8)?;
    for r in &first {
        assert_eq!(
            (r.exit_code, r.successful, r.failed),
            (Some(0), 8, 0),
            "{}\n{}",
            r.output,
            logs(&split)
        );
    }
    assert_eq!(all_bindings(&store).await?, 40);

    // Kill one replica while every user registers at a steady rate (50/s in all).
    let load = tokio::task::spawn_blocking(move || register_all(edge, 30, 10));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    split.run.registrars[0].kill()?;
    let during = load.await??;
    let failed: u64 = during.iter().map(|r| r.failed).sum();
    let succeeded: u64 = during.iter().map(|r| r.successful).sum();
    // Only registrations in flight on the killed replica may fail.
    let refusals: Vec<&str> = during
        .iter()
        .flat_map(|r| r.output.lines())
        .filter(|l| l.contains("received 'SIP/2.0"))
        .collect();
    assert!(
        failed <= 5,
        "{failed} failed while one replica died: {refusals:#?}\n{}",
        logs(&split)
    );

    // Once the edge has noticed: zero failures, and nothing made before is lost.
    let after = register_all(edge, 6, 10)?;
    for r in &after {
        assert_eq!((r.exit_code, r.failed), (Some(0), 0), "{}\n{}", r.output, logs(&split));
    }
    assert_eq!(
        all_bindings(&store).await?,
        40 + succeeded + 30,
        "every acknowledged binding is stored"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_binding_expires_once_with_two_replicas() -> anyhow::Result<()> {
    let split = start_split(RedisServer::start()?)?;
    let store = Store::redis(&split.redis.url()).await?;
    let r = register(split.run.edge.sip, "alice", 1, 10, 1)?;
    assert_eq!(
        (r.exit_code, r.successful),
        (Some(0), 1),
        "{}\n{}",
        r.output,
        logs(&split)
    );
    assert_eq!(bindings(&store, "alice").await?.bindings.len(), 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        bindings(&store, "alice").await?.bindings.is_empty(),
        "binding gone after its expiry"
    );
    let events = store.read_events(registrar_svc::EVENT_STREAM, "0", 100).await?;
    let kinds: Vec<String> = events
        .iter()
        .filter_map(|(_, p)| serde_json::from_slice::<serde_json::Value>(p).ok())
        .filter_map(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_owned))
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "registered").count(), 1, "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| *k == "expired").count(),
        1,
        "expired exactly once: {kinds:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_survive_a_restart_of_a_persisting_redis() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("sipbus-split-persist-{}", std::process::id()));
    let redis = RedisServer::start_persistent(dir, free_port()?)?;
    let mut split = start_split(redis)?;
    let r = register(split.run.edge.sip, "alice", 5, 10, 3600)?;
    assert_eq!(
        (r.exit_code, r.successful),
        (Some(0), 5),
        "{}\n{}",
        r.output,
        logs(&split)
    );
    split.redis.restart()?;
    let store = Store::redis(&split.redis.url()).await?;
    assert_eq!(
        bindings(&store, "alice").await?.bindings.len(),
        5,
        "bindings survive the restart"
    );
    // And the services reconnect: registering works again (a first attempt
    // right after the restart may get 503 while connections re-establish).
    let mut last = None;
    for _ in 0..10 {
        let r = register(split.run.edge.sip, "alice", 1, 10, 3600)?;
        if r.exit_code == Some(0) {
            last = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        last.is_some(),
        "registering works after Redis restarted\n{}",
        logs(&split)
    );
    assert_eq!(bindings(&store, "alice").await?.bindings.len(), 6);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_id_follows_a_request_from_edge_to_registrar() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let env = env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("SIPBUS_LOG__LEVEL", "info,bus=debug,registrar_svc=debug"));
    let run = SplitRun::start(&redis.url(), &env, 1)?;
    let r = register(run.edge.sip, "alice", 1, 10, 3600)?;
    assert_eq!(r.exit_code, Some(0), "{}\n{}", r.output, run.logs());
    let trace_ids = |log: &str| -> Vec<String> {
        log.lines()
            .filter_map(|l| l.split("trace_id=").nth(1))
            .map(|rest| rest.chars().take_while(char::is_ascii_hexdigit).collect())
            .collect()
    };
    let edge = trace_ids(&run.edge.log_text());
    let registrar = trace_ids(&run.registrars[0].log_text());
    // Two REGISTERs (challenge, then credentials): two traces, each seen on both sides.
    assert_eq!(edge.len(), 2, "{}", run.logs());
    assert_eq!(edge, registrar, "{}", run.logs());
    assert!(edge.iter().all(|t| t.len() == 32) && edge[0] != edge[1]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_finds_replicas_through_a_dns_name() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let url = redis.url();
    let env = env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("SIPBUS_STORE__REDIS", &url));
    env.push(("SIPBUS_REGISTRAR__AUTH__NONCE_KEY", "k"));
    let grpc: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let registrar = Sipbus::start_service("registrar-svc", &env, grpc)?;
    // `localhost` resolves to the replica (and maybe to ::1, where nothing
    // listens: the edge must step over it).
    let by_name = format!("[\"dns://localhost:{}\"]", grpc.port());
    env.push(("SIPBUS_BUS__REGISTRAR", &by_name));
    let edge = Sipbus::start("sip-edge", &env)?;
    let r = register(edge.sip, "alice", 3, 10, 3600)?;
    assert_eq!(
        (r.exit_code, r.successful),
        (Some(0), 3),
        "{}\n{}\n{}",
        r.output,
        edge.log_text(),
        registrar.log_text()
    );
    Ok(())
}
