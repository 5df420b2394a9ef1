//! Races of a call setup, in the style of rsipstack's dialog tests: each
//! interleaving the network can produce, driven one step at a time.

use sip_message::{Known, Method};

use super::{Harness, Sent, parse, reply};
use crate::supplements::rfc3326::COMPLETED_ELSEWHERE;

/// The caller's CANCEL for its INVITE (as the edge hands it over after
/// answering 200 and 487).
fn cancel(call_id: &str) -> sip_message::Message {
    parse(&format!(
        "CANCEL sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{call_id}\n\
From: <sip:alice@example.com>;tag=alice-tag\nTo: <sip:bob@example.com>\nCall-ID: {call_id}\nCSeq: 1 CANCEL\n\
Max-Forwards: 70\n\n"
    ))
}

/// After a 2xx nobody wants: the callee gets an ACK and a BYE saying the
/// call was completed elsewhere.
async fn expect_stray_hung_up(h: &mut Harness, tag: &str) {
    let mut acked = false;
    loop {
        match h.next().await {
            Sent::Ack { message } => {
                assert_eq!(message.to_tag(), Some(tag));
                acked = true;
            }
            Sent::Request { message, .. } if message.method() == Some(&Method::Bye) => {
                assert!(acked, "the 2xx is ACKed before the BYE (RFC 3261 13.2.2.4)");
                assert_eq!(message.to_tag(), Some(tag));
                assert_eq!(message.header("Reason"), Some(COMPLETED_ELSEWHERE));
                return;
            }
            Sent::Response { message, .. } => {
                assert_ne!(message.status(), Some(200), "the caller gets no 200: {message}");
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_cancel_that_lands_first_makes_the_crossing_2xx_stray() {
    let mut h = Harness::new(&["sip:bob@192.0.2.2:5060"]).await;
    let (tx, _) = h.call("cross-1");
    let (branch, invite) = h.request(Method::Invite).await;
    h.answer(branch, reply(&invite, 180, "b1", false)).await;
    assert_eq!(h.response(&tx).await.status(), Some(180));
    // The edge answered the CANCEL (200) and the INVITE (487); its notice
    // reaches session-svc before the callee's 2xx.
    h.answered_by_edge(&tx);
    crate::in_dialog::cancelled(&h.core, tx.clone(), cancel("cross-1")).await;
    let Sent::Cancel { id, .. } = h.next().await else {
        panic!("the branch is cancelled");
    };
    assert_eq!(id, branch);
    h.answer(branch, reply(&invite, 200, "b1", true)).await;
    expect_stray_hung_up(&mut h, "b1").await;
}

#[tokio::test]
async fn a_2xx_that_lands_before_the_cancel_notice_is_hung_up() {
    let mut h = Harness::new(&["sip:bob@192.0.2.2:5060"]).await;
    let (tx, _) = h.call("cross-2");
    let (branch, invite) = h.request(Method::Invite).await;
    h.answer(branch, reply(&invite, 180, "b1", false)).await;
    assert_eq!(h.response(&tx).await.status(), Some(180));
    // The edge took the CANCEL (487 sent); the notice is still on its
    // way when the callee answers: the caller cannot get the 200.
    h.answered_by_edge(&tx);
    h.answer(branch, reply(&invite, 200, "b1", true)).await;
    expect_stray_hung_up(&mut h, "b1").await;
    // The notice, late, finds the call over and does nothing more.
    crate::in_dialog::cancelled(&h.core, tx, cancel("cross-2")).await;
    let rest = h.drain().await;
    assert!(
        !rest
            .iter()
            .any(|s| matches!(s, Sent::Request { .. } | Sent::Cancel { .. })),
        "{rest:?}"
    );
}

#[tokio::test]
async fn a_forked_2xx_after_the_winner_is_acked_and_hung_up() {
    let mut h = Harness::new(&["sip:bob@192.0.2.2:5060", "sip:bob@192.0.2.3:5060"]).await;
    let (tx, _) = h.call("fork-1");
    let (first, invite1) = h.request(Method::Invite).await;
    let (second, invite2) = h.request(Method::Invite).await;
    h.answer(first, reply(&invite1, 200, "w", true)).await;
    let ok = h.response(&tx).await;
    assert_eq!(ok.status(), Some(200));
    // The winner's 200 cancels the other branch, as completed elsewhere.
    loop {
        if let Sent::Cancel { id, headers } = h.next().await {
            assert_eq!(id, second);
            assert!(
                headers.iter().any(|(n, v)| n == "Reason" && v == COMPLETED_ELSEWHERE),
                "{headers:?}"
            );
            break;
        }
    }
    // The other phone answered anyway.
    h.answer(second, reply(&invite2, 200, "late", true)).await;
    expect_stray_hung_up(&mut h, "late").await;
    // The call itself goes on: the caller's BYE reaches the winner.
    let tag = ok.to_tag().unwrap().to_owned();
    let (bye_tx, bye) = h.caller_request(Method::Bye, "fork-1", &tag, 2);
    h.in_dialog(bye_tx.clone(), bye).await;
    assert_eq!(h.response(&bye_tx).await.status(), Some(200));
    let (_, out) = h.request(Method::Bye).await;
    assert_eq!(out.to_tag(), Some("w"));
}

#[tokio::test]
async fn an_early_bye_ends_the_setup_and_the_crossing_2xx_is_hung_up() {
    let mut h = Harness::new(&["sip:bob@192.0.2.2:5060"]).await;
    let (tx, _) = h.call("bye-1");
    let (branch, invite) = h.request(Method::Invite).await;
    h.answer(branch, reply(&invite, 180, "b1", false)).await;
    let ringing = h.response(&tx).await;
    let tag = ringing.to_tag().unwrap().to_owned();
    // The caller hangs up on its early dialog as the callee answers.
    let (bye_tx, bye) = h.caller_request(Method::Bye, "bye-1", &tag, 2);
    h.in_dialog(bye_tx.clone(), bye).await;
    let mut seen = (false, false, false);
    while seen != (true, true, true) {
        match h.next().await {
            Sent::Response { tx: t, message } if t == bye_tx.id => {
                assert_eq!(message.status(), Some(200));
                seen.0 = true;
            }
            Sent::Response { tx: t, message } if t == tx.id => {
                assert_eq!(message.status(), Some(487), "the INVITE is terminated");
                seen.1 = true;
            }
            Sent::Cancel { id, .. } => {
                assert_eq!(id, branch);
                seen.2 = true;
            }
            _ => {}
        }
    }
    h.answer(branch, reply(&invite, 200, "b1", true)).await;
    expect_stray_hung_up(&mut h, "b1").await;
}

#[tokio::test]
async fn a_bye_before_the_callers_ack_acks_the_callee_first() {
    let mut h = Harness::new(&["sip:bob@192.0.2.2:5060"]).await;
    let (tx, _) = h.call("bye-2");
    let (branch, invite) = h.request(Method::Invite).await;
    h.answer(branch, reply(&invite, 200, "b1", true)).await;
    let ok = h.response(&tx).await;
    assert_eq!(ok.status(), Some(200));
    assert!(ok.known_header(Known::Contact).is_some());
    // The caller's BYE crosses its own ACK.
    let tag = ok.to_tag().unwrap().to_owned();
    let (bye_tx, bye) = h.caller_request(Method::Bye, "bye-2", &tag, 2);
    h.in_dialog(bye_tx.clone(), bye).await;
    let mut acked = false;
    loop {
        match h.next().await {
            Sent::Ack { message } => {
                assert_eq!(message.to_tag(), Some("b1"));
                acked = true;
            }
            Sent::Request { message, .. } if message.method() == Some(&Method::Bye) => {
                assert!(acked, "the callee's 2xx is ACKed before the BYE");
                assert_eq!(message.to_tag(), Some("b1"));
                break;
            }
            _ => {}
        }
    }
}

/// What the callee gets until the relayed re-INVITE: the ACKs of its 2xx
/// (there must be exactly one, and it must come first).
async fn acks_before_reinvite(h: &mut Harness) -> usize {
    let mut acks = 0;
    loop {
        match h.next().await {
            Sent::Ack { message } => {
                assert_eq!(message.to_tag(), Some("b1"));
                assert_eq!(message.cseq().unwrap().seq, 1, "the ACK of the call's 2xx");
                acks += 1;
            }
            Sent::Request { message, .. } if message.method() == Some(&Method::Invite) => return acks,
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_reinvite_that_overtakes_the_callers_ack_waits_for_it() {
    let mut h = Harness::new(&["sip:bob@192.0.2.2:5060"]).await;
    let (tag, _) = h.answered("overtake-1").await;
    // The caller ACKs, then puts the call on hold; the re-INVITE reaches a
    // replica before another has relayed the ACK.
    let (reinvite_tx, reinvite) = h.caller_offer(Method::Invite, "overtake-1", &tag, 2);
    let relaying = h.in_dialog_spawned(reinvite_tx, reinvite);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (_, ack) = h.caller_request(Method::Ack, "overtake-1", &tag, 1);
    crate::in_dialog::ack(&h.core, ack).await;
    assert_eq!(acks_before_reinvite(&mut h).await, 1);
    let rest = h.drain().await;
    assert!(!rest.iter().any(|s| matches!(s, Sent::Ack { .. })), "one ACK: {rest:?}");
    relaying.abort();
}

#[tokio::test]
async fn a_reinvite_whose_ack_never_comes_acks_the_callee_itself() {
    let mut h = Harness::new(&["sip:bob@192.0.2.2:5060"]).await;
    let (tag, _) = h.answered("overtake-2").await;
    let (reinvite_tx, reinvite) = h.caller_offer(Method::Invite, "overtake-2", &tag, 2);
    let relaying = h.in_dialog_spawned(reinvite_tx, reinvite);
    // The caller's ACK was lost: after the wait sipbus ACKs the callee
    // (the caller has the 2xx: it sent a request in the dialog).
    assert_eq!(acks_before_reinvite(&mut h).await, 1);
    // The ACK, late after all, sends nothing more.
    let (_, ack) = h.caller_request(Method::Ack, "overtake-2", &tag, 1);
    crate::in_dialog::ack(&h.core, ack).await;
    let rest = h.drain().await;
    assert!(!rest.iter().any(|s| matches!(s, Sent::Ack { .. })), "one ACK: {rest:?}");
    relaying.abort();
}
