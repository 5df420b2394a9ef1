//! Built-in `session-timer`: RFC 4028 session timers on both legs.
//!
//! sipbus negotiates a session interval with the caller (422 with Min-SE
//! below its minimum) and asks the callee for the same, relays refreshes
//! (re-INVITE or UPDATE) from either phone with the timer headers each leg
//! needs, and watches them: a session nobody refreshed within the interval
//! (minus a third, at most 32 s, RFC 4028 10) ends on both legs with a BYE
//! and a Reason. Who refreshes each leg is negotiated as the RFC says; when
//! neither phone refreshes, sipbus does, at half the interval, with UPDATE
//! where the phone takes it and a re-INVITE otherwise.
//!
//! Settings: `expires_s` (the interval asked for, 1800), `min_se_s` (the
//! smallest accepted, 90; RFC 4028 4 makes 90 the floor, lower values are
//! for tests).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use extension::{ConfigProblem, Settings};
use serde::{Deserialize, Serialize};
use sip_message::{Known, Message, Method, Refusal};
use state_store::now_ms;

use super::chain::Erased;
use super::{Cx, Draft, SessionSupplement, Verdict};
use crate::config::SessionConfig;
use crate::session::{Side, Sides};

/// The Reason of the BYEs that end an unrefreshed session.
pub const EXPIRED: &str = "SIP;cause=408;text=\"Session timer expired\"";

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TimerSettings {
    expires_s: u32,
    min_se_s: u32,
}

impl Default for TimerSettings {
    fn default() -> Self {
        Self {
            expires_s: 1800,
            min_se_s: 90,
        }
    }
}

pub struct SessionTimer {
    expires_s: u32,
    min_se_s: u32,
}

pub fn build(settings: &Settings<'_>, _config: &SessionConfig) -> Result<Arc<dyn Erased>, ConfigProblem> {
    let s: TimerSettings = settings.parse()?;
    if s.min_se_s == 0 || s.expires_s < s.min_se_s {
        return Err(settings.problem(format!(
            "min_se_s ({}) must be above 0 and at most expires_s ({})",
            s.min_se_s, s.expires_s
        )));
    }
    Ok(Arc::new(SessionTimer {
        expires_s: s.expires_s,
        min_se_s: s.min_se_s,
    }))
}

/// Who refreshes a leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refresher {
    /// The phone on that leg.
    Phone,
    /// sipbus.
    #[default]
    Sipbus,
}

/// The `refresher` parameter (RFC 4028 4): the UAC or the UAS of the
/// request that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Uac,
    Uas,
}

impl Role {
    fn token(self) -> &'static str {
        match self {
            Role::Uac => "uac",
            Role::Uas => "uas",
        }
    }
}

/// A session's timer. A field missing from a stored state takes its
/// default (a state written by an older version still loads).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Timer {
    /// The session interval, seconds.
    interval: u32,
    /// The smallest interval either side accepts.
    min_se: u32,
    /// The phone on each leg does session timers (Supported: timer).
    supports: Sides<bool>,
    refresher: Sides<Refresher>,
    /// The role the caller asked for in its INVITE.
    asked: Option<Role>,
    /// The callee's answer is in: the timer runs.
    running: bool,
    /// When a refresh last succeeded (ms since the epoch).
    refreshed_at_ms: u64,
}

/// `Session-Expires: <seconds>[;refresher=uac|uas]`.
fn session_expires(m: &Message) -> Option<(u32, Option<Role>)> {
    let value = m.known_header(Known::SessionExpires)?;
    let mut parts = value.split(';');
    let seconds = parts.next()?.trim().parse().ok()?;
    let role = parts.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("refresher") {
            return None;
        }
        match value.trim().to_ascii_lowercase().as_str() {
            "uac" => Some(Role::Uac),
            "uas" => Some(Role::Uas),
            _ => None,
        }
    });
    Some((seconds, role))
}

fn min_se(m: &Message) -> Option<u32> {
    m.known_header(Known::MinSe)?.split(';').next()?.trim().parse().ok()
}

/// The option tag `timer` in Supported or Require.
fn supports_timer(m: &Message) -> bool {
    m.lists(Known::Supported, "timer") || m.lists(Known::Require, "timer")
}

fn is_refresh(method: Option<&Method>) -> bool {
    matches!(method, Some(Method::Invite | Method::Update))
}

/// The method a response answers.
fn answered_method(m: &Message) -> Option<Method> {
    m.cseq().ok().map(|c| c.method)
}

impl Timer {
    /// RFC 4028 10: BYE when no refresh came by the interval minus a third
    /// of it, at most 32 s.
    fn deadline_ms(&self) -> u64 {
        let margin = (self.interval / 3).min(32);
        self.refreshed_at_ms + u64::from(self.interval - margin) * 1000
    }

    /// sipbus refreshes only when neither phone does: a phone's refreshes
    /// reach the other leg through sipbus anyway.
    fn sipbus_refreshes(&self) -> bool {
        self.refresher.a == Refresher::Sipbus && self.refresher.b == Refresher::Sipbus
    }

    fn next_due_ms(&self) -> u64 {
        if self.sipbus_refreshes() {
            self.refreshed_at_ms + u64::from(self.interval) * 500
        } else {
            self.deadline_ms()
        }
    }

    /// The `refresher` of a request sipbus sends on `side`, or of a 2xx it
    /// sends there: seen from the request's UAC.
    fn role_on(&self, side: Side, sipbus_is_uac: bool) -> Role {
        match (self.refresher[side], sipbus_is_uac) {
            (Refresher::Sipbus, true) | (Refresher::Phone, false) => Role::Uac,
            (Refresher::Sipbus, false) | (Refresher::Phone, true) => Role::Uas,
        }
    }
}

fn arm(cx: &mut Cx<'_, Timer>) {
    let due = cx.state.next_due_ms();
    cx.set_timer(Duration::from_millis(due.saturating_sub(now_ms())));
}

/// Adds `timer` to Supported when it is not there.
fn add_supported(draft: &mut Draft<'_>) {
    let now: Vec<String> = draft
        .message()
        .known_values(Known::Supported)
        .map(|t| t.trim().to_owned())
        .collect();
    if !now.iter().any(|t| t.eq_ignore_ascii_case("timer")) {
        let mut tags = now;
        tags.push("timer".into());
        draft.replace("Supported", &tags.join(", "));
    }
}

#[async_trait]
impl SessionSupplement for SessionTimer {
    type State = Timer;
    const TIMER: bool = true;

    async fn incoming_request(&self, cx: &mut Cx<'_, Timer>, side: Side, req: &Message) -> Verdict {
        if !is_refresh(req.method()) {
            return Verdict::Continue;
        }
        let asked = session_expires(req);
        let floor = self.min_se_s.max(cx.state.min_se);
        if let Some((seconds, _)) = asked
            && seconds < floor
        {
            return Verdict::Stop(Refusal::session_interval_too_small(floor));
        }
        if side == Side::A && req.to_tag().is_none() {
            let their_min = min_se(req).unwrap_or(0);
            let min_se = self.min_se_s.max(their_min);
            *cx.state = Timer {
                interval: asked.map_or(self.expires_s, |(s, _)| s).max(min_se),
                min_se,
                supports: Sides {
                    a: supports_timer(req),
                    b: false,
                },
                asked: asked.and_then(|(_, role)| role),
                ..Timer::default()
            };
        } else if let Some((seconds, _)) = asked {
            // A refresh may ask for another interval; never below ours.
            cx.state.interval = seconds.max(floor);
        }
        Verdict::Continue
    }

    async fn outgoing_request(&self, cx: &mut Cx<'_, Timer>, side: Side, draft: &mut Draft<'_>) {
        if !is_refresh(draft.message().method()) || cx.state.interval == 0 {
            return;
        }
        let t = &*cx.state;
        let value = if draft.message().to_tag().is_none() {
            // The callee's INVITE: the caller refreshes through sipbus
            // (as the UAC of this leg) when it takes the role; otherwise
            // the callee picks.
            let caller_refreshes = t.supports.a && t.asked != Some(Role::Uas);
            if caller_refreshes {
                format!("{};refresher=uac", t.interval)
            } else {
                t.interval.to_string()
            }
        } else {
            format!("{};refresher={}", t.interval, t.role_on(side, true).token())
        };
        draft.replace("Session-Expires", &value);
        draft.replace("Min-SE", &t.min_se.to_string());
        add_supported(draft);
    }

    async fn incoming_response(&self, cx: &mut Cx<'_, Timer>, side: Side, resp: &Message) {
        let method = answered_method(resp);
        let code = resp.status().unwrap_or(0);
        if !is_refresh(method.as_ref()) || cx.state.interval == 0 {
            return;
        }
        if code == 422 {
            // The callee wants longer: the caller hears its Min-SE.
            if let Some(theirs) = min_se(resp) {
                cx.state.min_se = cx.state.min_se.max(theirs);
            }
            return;
        }
        if !(200..300).contains(&code) {
            return;
        }
        let asked = session_expires(resp);
        if !cx.state.running && side == Side::B {
            // The callee answered the call: both legs' refreshers are
            // known.
            let t = &mut *cx.state;
            t.supports.b = asked.is_some();
            t.refresher.b = match asked {
                Some((_, Some(Role::Uas))) => Refresher::Phone,
                _ => Refresher::Sipbus,
            };
            let caller_refreshes = t.supports.a && t.asked != Some(Role::Uas);
            t.refresher.a = if caller_refreshes {
                Refresher::Phone
            } else {
                Refresher::Sipbus
            };
            t.running = true;
        }
        if let Some((seconds, _)) = asked {
            cx.state.interval = seconds.max(cx.state.min_se);
        }
        cx.state.refreshed_at_ms = now_ms();
        arm(cx);
    }

    async fn outgoing_response(&self, cx: &mut Cx<'_, Timer>, side: Side, draft: &mut Draft<'_>) {
        let resp = draft.message();
        let code = resp.status().unwrap_or(0);
        if !is_refresh(answered_method(resp).as_ref()) || cx.state.interval == 0 {
            return;
        }
        if code == 422 && side == Side::A {
            draft.replace("Min-SE", &cx.state.min_se.to_string());
            return;
        }
        if !(200..300).contains(&code) || !cx.state.running {
            return;
        }
        let t = &*cx.state;
        draft.replace(
            "Session-Expires",
            &format!("{};refresher={}", t.interval, t.role_on(side, false).token()),
        );
        // Added to what the response requires already, once.
        let required = draft
            .message()
            .known_values(Known::Require)
            .any(|v| v.eq_ignore_ascii_case("timer"));
        if t.supports[side] && !required {
            draft.add("Require", "timer");
        }
        // A 2xx to a refresh the phone sent: the session is refreshed.
        cx.state.refreshed_at_ms = now_ms();
        arm(cx);
    }

    async fn timer(&self, cx: &mut Cx<'_, Timer>) {
        if !cx.state.running {
            return;
        }
        let now = now_ms();
        if now >= cx.state.deadline_ms() {
            tracing::info!(session = %cx.session.id, "session not refreshed in time: hanging up");
            cx.hang_up(EXPIRED);
            return;
        }
        if cx.state.sipbus_refreshes() && now >= cx.state.next_due_ms() {
            cx.refresh(Side::A);
            cx.refresh(Side::B);
            // Should the refreshes fail, the deadline still comes.
            let deadline = cx.state.deadline_ms();
            cx.set_timer(Duration::from_millis(deadline.saturating_sub(now)));
            return;
        }
        arm(cx);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn msg(headers: &[(&str, &str)]) -> Message {
        let mut m = Message::request(Method::Invite, "sip:b@example.com");
        for (n, v) in headers {
            m.push_header_as_spelled(n, v);
        }
        m
    }

    #[test]
    fn headers_read() {
        let m = msg(&[
            ("Session-Expires", "90;refresher=UAC"),
            ("Min-SE", "60"),
            ("k", "100rel, timer"),
        ]);
        assert_eq!(session_expires(&m), Some((90, Some(Role::Uac))));
        assert_eq!(min_se(&m), Some(60));
        assert!(supports_timer(&m));
        let m = msg(&[("x", "1800")]);
        assert_eq!(session_expires(&m), Some((1800, None)));
        assert!(!supports_timer(&m));
        assert_eq!(session_expires(&msg(&[("Session-Expires", "soon")])), None);
    }

    #[test]
    fn deadlines() {
        let mut t = Timer {
            interval: 90,
            refreshed_at_ms: 1_000_000,
            ..Timer::default()
        };
        // 90 - 30 s.
        assert_eq!(t.deadline_ms(), 1_060_000);
        t.interval = 1800;
        // 1800 - 32 s.
        assert_eq!(t.deadline_ms(), 1_000_000 + 1768 * 1000);
        assert!(t.sipbus_refreshes());
        assert_eq!(t.next_due_ms(), 1_000_000 + 900 * 1000);
        t.refresher.a = Refresher::Phone;
        assert_eq!(t.next_due_ms(), t.deadline_ms());
        // The caller refreshes: sipbus as the callee leg's UAC refreshes
        // there, and the caller is the UAC of its own refreshes.
        t.refresher.b = Refresher::Sipbus;
        assert_eq!(t.role_on(Side::B, true), Role::Uac);
        assert_eq!(t.role_on(Side::A, false), Role::Uac);
        assert_eq!(t.role_on(Side::A, true), Role::Uas);
    }
}
