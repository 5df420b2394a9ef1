//! The session-timer supplement and the timer loop, in process.

use extension::ModuleConfig;
use sip_message::{Known, Method};

use super::{Harness, Sent, reply};
use crate::config::SessionConfig;

fn short_timers() -> SessionConfig {
    let mut timer = ModuleConfig::builtin("session-timer");
    timer.settings = Some(toml::from_str("expires_s = 3\nmin_se_s = 1").unwrap());
    SessionConfig {
        authenticate: false,
        timer_poll_ms: 50,
        supplements: vec![ModuleConfig::builtin("reason"), timer],
        ..SessionConfig::default()
    }
}

#[tokio::test]
async fn nobody_refreshing_sipbus_refreshes_then_a_failed_refresh_hangs_up() {
    let mut h = Harness::with(&["sip:bob@192.0.2.2:5060"], short_timers()).await;
    tokio::spawn(crate::timers::run(h.core.clone()));
    let (tx, _) = h.call("st-1");
    let (branch, invite) = h.request(Method::Invite).await;
    assert_eq!(invite.known_header(Known::SessionExpires), Some("3"));
    h.answer(branch, reply(&invite, 200, "b1", true)).await;
    let ok = h.response(&tx).await;
    assert_eq!(ok.known_header(Known::SessionExpires), Some("3;refresher=uas"));

    // Neither phone does timers: sipbus refreshes each leg at half the
    // interval (the caller's INVITE allows no UPDATE: a re-INVITE).
    let (id, refresh) = h.request(Method::Invite).await;
    assert!(refresh.to_tag().is_some(), "a re-INVITE in the dialog: {refresh}");
    // The phone is gone: 481 ends the call on both legs.
    h.answer(id, reply(&refresh, 481, "x", false)).await;
    let mut byes = 0;
    while byes < 2 {
        if let Sent::Request { message, .. } = h.next().await
            && message.method() == Some(&Method::Bye)
        {
            assert!(
                message.header("Reason").is_some_and(|r| r.contains("refresh failed")),
                "{message}"
            );
            byes += 1;
        }
    }
}
