//! Requests in and around a call, in process: failures relayed, offers
//! that cross (491), CSeq order (500), unknown dialogs (481).

use sip_message::Method;

use super::{Harness, Sent, reply};

#[tokio::test]
async fn a_busy_callee_is_relayed_to_the_caller() {
    let mut h = Harness::new(&["sip:bob@192.0.2.2:5060"]).await;
    let (tx, _) = h.call("busy-1");
    let (branch, invite) = h.request(Method::Invite).await;
    h.answer(branch, reply(&invite, 486, "b1", false)).await;
    let resp = h.response(&tx).await;
    assert_eq!(resp.status(), Some(486));
    assert_eq!(resp.call_id().unwrap(), "busy-1");
}

#[tokio::test]
async fn nobody_registered_is_480_and_unknown_users_404() {
    let mut h = Harness::new(&[]).await;
    let (tx, _) = h.call("nobody-1");
    assert_eq!(h.response(&tx).await.status(), Some(480));
}

#[tokio::test]
async fn a_second_offer_while_one_is_pending_is_glare() {
    let mut h = Harness::new(&["sip:bob@192.0.2.2:5060"]).await;
    let (tag, _) = h.answered("glare-1").await;
    let (tx1, reinvite) = h.caller_offer(Method::Invite, "glare-1", &tag, 2);
    let first = h.in_dialog_spawned(tx1, reinvite);
    // The callee holds the re-INVITE; the caller offers again.
    let (_, relayed) = h.request(Method::Invite).await;
    assert!(relayed.body().len() > 10, "the re-offer is relayed with SDP");
    let (tx2, update) = h.caller_offer(Method::Update, "glare-1", &tag, 3);
    h.in_dialog(tx2.clone(), update).await;
    assert_eq!(h.response(&tx2).await.status(), Some(491));
    first.abort();
}

#[tokio::test]
async fn a_request_lower_in_cseq_is_refused_and_unknown_tags_are_481() {
    let mut h = Harness::new(&["sip:bob@192.0.2.2:5060"]).await;
    let (tag, _) = h.answered("order-1").await;
    let (tx, info) = h.caller_request(Method::Info, "order-1", &tag, 5);
    let core = h.core.clone();
    tokio::spawn(async move { crate::in_dialog::request(&core, tx, info).await });
    let (id, relayed) = h.request(Method::Info).await;
    h.answer(id, reply(&relayed, 200, "b1", false)).await;
    let (old_tx, old) = h.caller_request(Method::Info, "order-1", &tag, 3);
    h.in_dialog(old_tx.clone(), old).await;
    let refused = h.response(&old_tx).await;
    assert_eq!(refused.status(), Some(500));
    let (bad_tx, bad) = h.caller_request(Method::Bye, "order-1", "not-a-session", 9);
    h.in_dialog(bad_tx.clone(), bad).await;
    assert_eq!(h.response(&bad_tx).await.status(), Some(481));
    // Nothing reached the callee for either.
    let rest = h.drain().await;
    assert!(!rest.iter().any(|s| matches!(s, Sent::Request { .. })), "{rest:?}");
}
