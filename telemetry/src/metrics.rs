//! Every metric family sipbus exports, in one place so names, units and
//! labels stay consistent (Prometheus conventions: `sipbus_` prefix,
//! `_total` on counters, base units in the name). Libraries record into
//! [`metrics()`]; the binary serves [`encode`]. A family a process never
//! touches is still listed (HELP and TYPE only), so dashboards see one
//! schema from every target.
//!
//! Label values are `&'static str` from closed sets (methods outside the
//! RFCs are `other`), status codes and configured module names: nothing a
//! peer sends can grow the number of series.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    pub method: &'static str,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BusLabels {
    /// The contract called: `registrar`, `session`, `edge`, ...
    pub service: &'static str,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub operation: &'static str,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExtensionLabels {
    pub point: &'static str,
    /// The module's configured or registered name.
    pub module: String,
    pub outcome: Outcome,
}

/// How a call ended, as a label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are lower case by convention
pub enum Outcome {
    ok,
    error,
    timeout,
}

/// A histogram family of latencies.
pub type Timed<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 4 s.
    Histogram::new(exponential_buckets(0.00025, 2.0, 15))
}

/// The families. Fields are public so a library records with one line.
pub struct Metrics {
    pub sip_requests_received: Family<RequestLabels, Counter>,
    pub sip_responses_sent: Family<ResponseLabels, Counter>,
    pub sip_requests_sent: Family<MethodLabels, Counter>,
    pub sip_responses_received: Family<ResponseLabels, Counter>,
    /// Server and client transactions the edge holds now.
    pub sip_transactions: Family<KindLabels, Gauge>,
    /// Bytes of transaction state, as the edge's memory limit counts them.
    pub sip_transaction_state_bytes: Family<KindLabels, Gauge>,
    pub sip_retransmissions_received: Family<MethodLabels, Counter>,
    pub sip_retransmissions_sent: Family<MethodLabels, Counter>,
    pub sip_dropped: Family<ReasonLabels, Counter>,
    pub sip_connections: Family<TransportLabels, Gauge>,
    pub bus_call_duration: Timed<BusLabels>,
    pub store_operation_duration: Timed<StoreLabels>,
    pub extension_calls: Family<ExtensionLabels, Counter>,
    pub extension_call_duration: Timed<ExtensionLabels>,
    pub calls_started: Counter,
    pub calls_ended: Counter,
    /// Cluster-wide counts read from the store (every replica reports the
    /// same value: aggregate with `max`, not `sum`).
    pub registrations: Gauge,
    pub subscriptions: Gauge,
    pub publications: Gauge,
    pub draining: Gauge,
    pub auth_refused: Family<ReasonLabels, Counter>,
    pub auth_lockouts: Counter,
    pub flood_dropped: Family<ReasonLabels, Counter>,
    pub flood_bans: Counter,
    /// Sources banned now.
    pub flood_banned: Gauge,
    /// Sources the flood guard tracks now.
    pub flood_sources: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    sip_requests_received: Family::default(),
    sip_responses_sent: Family::default(),
    sip_requests_sent: Family::default(),
    sip_responses_received: Family::default(),
    sip_transactions: Family::default(),
    sip_transaction_state_bytes: Family::default(),
    sip_retransmissions_received: Family::default(),
    sip_retransmissions_sent: Family::default(),
    sip_dropped: Family::default(),
    sip_connections: Family::default(),
    bus_call_duration: Family::new_with_constructor(latency_histogram),
    store_operation_duration: Family::new_with_constructor(latency_histogram),
    extension_calls: Family::default(),
    extension_call_duration: Family::new_with_constructor(latency_histogram),
    calls_started: Counter::default(),
    calls_ended: Counter::default(),
    registrations: Gauge::default(),
    subscriptions: Gauge::default(),
    publications: Gauge::default(),
    draining: Gauge::default(),
    auth_refused: Family::default(),
    auth_lockouts: Counter::default(),
    flood_dropped: Family::default(),
    flood_bans: Counter::default(),
    flood_banned: Gauge::default(),
    flood_sources: Gauge::default(),
});

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let m = metrics();
    let mut r = Registry::with_prefix("sipbus");
    r.register(
        "sip_requests_received",
        "SIP requests received (retransmissions not counted), by method and transport",
        m.sip_requests_received.clone(),
    );
    r.register(
        "sip_responses_sent",
        "SIP responses sent by the edge, by request method and status code",
        m.sip_responses_sent.clone(),
    );
    r.register(
        "sip_requests_sent",
        "SIP requests sent through new client transactions, by method",
        m.sip_requests_sent.clone(),
    );
    r.register(
        "sip_responses_received",
        "SIP responses received on client transactions, by method and status code",
        m.sip_responses_received.clone(),
    );
    r.register(
        "sip_transactions",
        "SIP transactions the edge holds now (server, client)",
        m.sip_transactions.clone(),
    );
    r.register_with_unit(
        "sip_transaction_state",
        "Bytes of SIP transaction state the edge holds now, as edge.overload.transaction_memory_mib counts them",
        prometheus_client::registry::Unit::Bytes,
        m.sip_transaction_state_bytes.clone(),
    );
    r.register(
        "sip_retransmissions_received",
        "Retransmitted SIP requests absorbed by their transaction, by method",
        m.sip_retransmissions_received.clone(),
    );
    r.register(
        "sip_retransmissions_sent",
        "SIP messages the edge retransmitted on its timers (A, E, G, 2xx), by method",
        m.sip_retransmissions_sent.clone(),
    );
    r.register(
        "sip_messages_dropped",
        "SIP messages dropped or refused before a service saw them, by reason",
        m.sip_dropped.clone(),
    );
    r.register(
        "sip_connections",
        "Open SIP connections (TCP, TLS, WS, WSS), by transport",
        m.sip_connections.clone(),
    );
    r.register_with_unit(
        "bus_call_duration",
        "Calls over the extension bus between sipbus services, by contract and outcome",
        Unit::Seconds,
        m.bus_call_duration.clone(),
    );
    r.register_with_unit(
        "store_operation_duration",
        "State store operations, by operation and outcome",
        Unit::Seconds,
        m.store_operation_duration.clone(),
    );
    r.register(
        "extension_calls",
        "Calls to extension modules (built-in and external), by point, module and outcome",
        m.extension_calls.clone(),
    );
    r.register_with_unit(
        "extension_call_duration",
        "Extension module call latency, by point, module and outcome",
        Unit::Seconds,
        m.extension_call_duration.clone(),
    );
    r.register(
        "calls_started",
        "Calls (INVITE sessions) this replica created; active calls = sum(started) - sum(ended) over replicas",
        m.calls_started.clone(),
    );
    r.register(
        "calls_ended",
        "Calls this replica ended (the replica that ran the ending)",
        m.calls_ended.clone(),
    );
    r.register(
        "registrations",
        "Registered contacts (bindings) in the store, cluster-wide",
        m.registrations.clone(),
    );
    r.register(
        "subscriptions",
        "Active subscriptions in the store, cluster-wide",
        m.subscriptions.clone(),
    );
    r.register(
        "publications",
        "Active publications (event state) in the store, cluster-wide",
        m.publications.clone(),
    );
    r.register(
        "draining",
        "1 while this process drains after SIGTERM",
        m.draining.clone(),
    );
    r.register(
        "auth_refused",
        "Requests whose credentials did not admit them, by reason (wrong: password or user; locked_out; replay: a nonce count used before; rejected: forged nonce, malformed)",
        m.auth_refused.clone(),
    );
    r.register(
        "auth_lockouts",
        "User names locked out after repeated authentication failures",
        m.auth_lockouts.clone(),
    );
    r.register(
        "flood_dropped",
        "Messages and connections the edge's flood guard refused, by reason (rate, banned, connections, handshakes)",
        m.flood_dropped.clone(),
    );
    r.register(
        "flood_bans",
        "Source addresses (IPv6: /64 prefixes) banned for sending over the rate limit",
        m.flood_bans.clone(),
    );
    r.register("flood_banned", "Source addresses banned now", m.flood_banned.clone());
    r.register(
        "flood_sources",
        "Source addresses the flood guard tracks now",
        m.flood_sources.clone(),
    );
    r
});

/// The text exposition (OpenMetrics text, which Prometheus scrapes).
pub fn encode() -> String {
    let mut out = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &REGISTRY);
    out
}

/// The Prometheus text format 0.0.4, for scrapers that do not ask for
/// OpenMetrics (and for `promtool check metrics`): the same samples, with
/// counter families named by their `_total` samples and no `# UNIT` or
/// `# EOF` lines.
pub fn encode_prometheus_text() -> String {
    let open = encode();
    let mut out = String::with_capacity(open.len());
    let mut help: Option<&str> = None;
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            help = Some(line);
            continue;
        }
        if let Some(typed) = line.strip_prefix("# TYPE ") {
            let counter = typed.strip_suffix(" counter");
            if let Some(help) = help.take() {
                match (counter, help.strip_prefix("# HELP ").and_then(|h| h.split_once(' '))) {
                    (Some(name), Some((_, text))) => out.push_str(&format!("# HELP {name}_total {text}\n")),
                    _ => {
                        out.push_str(help);
                        out.push('\n');
                    }
                }
            }
            match counter {
                Some(name) => out.push_str(&format!("# TYPE {name}_total counter\n")),
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Why the edge dropped or refused a message before any service saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Not a SIP message: discarded (RFC 3261 has nothing to answer with).
    Unparseable,
    /// Parsed but invalid: answered 4xx/5xx by the edge, or dropped.
    Invalid,
    /// No room for another transaction or request in flight: 503.
    Overload,
    /// A new request while draining: 503 with Retry-After.
    Draining,
    /// A connection over `max_connections`.
    ConnectionLimit,
    /// A TLS or WebSocket handshake that failed or timed out.
    Handshake,
    /// A full UDP send queue.
    SendBacklog,
}

impl Dropped {
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::Unparseable => "unparseable",
            Dropped::Invalid => "invalid",
            Dropped::Overload => "overload",
            Dropped::Draining => "draining",
            Dropped::ConnectionLimit => "connection_limit",
            Dropped::Handshake => "handshake",
            Dropped::SendBacklog => "send_backlog",
        }
    }
}

/// Why credentials did not admit a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefused {
    Wrong,
    LockedOut,
    Replay,
    Rejected,
}

/// Why the flood guard refused a message or a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodRefused {
    /// Over the rate limit (the message that set off a ban, or any while
    /// the table of sources is full).
    Rate,
    /// From a banned source.
    Banned,
    /// Over the per-address connection limit.
    Connections,
    /// Over the per-address limit on TLS handshakes in progress.
    Handshakes,
}

// One line per event for the libraries, so none of them needs the
// Prometheus types.

pub fn auth_refused(reason: AuthRefused) {
    let reason = match reason {
        AuthRefused::Wrong => "wrong",
        AuthRefused::LockedOut => "locked_out",
        AuthRefused::Replay => "replay",
        AuthRefused::Rejected => "rejected",
    };
    metrics().auth_refused.get_or_create(&ReasonLabels { reason }).inc();
}

pub fn auth_lockout() {
    metrics().auth_lockouts.inc();
}

pub fn flood_refused(reason: FloodRefused) {
    let reason = match reason {
        FloodRefused::Rate => "rate",
        FloodRefused::Banned => "banned",
        FloodRefused::Connections => "connections",
        FloodRefused::Handshakes => "handshakes",
    };
    metrics().flood_dropped.get_or_create(&ReasonLabels { reason }).inc();
}

/// A new ban.
pub fn flood_ban() {
    metrics().flood_bans.inc();
}

/// Sources tracked and banned now.
pub fn flood_table(sources: usize, banned: usize) {
    let m = metrics();
    m.flood_sources.set(i64::try_from(sources).unwrap_or(i64::MAX));
    m.flood_banned.set(i64::try_from(banned).unwrap_or(i64::MAX));
}

pub fn sip_request_received(method: &str, transport: &'static str) {
    metrics()
        .sip_requests_received
        .get_or_create(&RequestLabels {
            method: method_label(method),
            transport,
        })
        .inc();
}

pub fn sip_response_sent(method: &str, code: u16) {
    metrics()
        .sip_responses_sent
        .get_or_create(&ResponseLabels {
            method: method_label(method),
            code,
        })
        .inc();
}

pub fn sip_request_sent(method: &str) {
    metrics()
        .sip_requests_sent
        .get_or_create(&MethodLabels {
            method: method_label(method),
        })
        .inc();
}

pub fn sip_response_received(method: &str, code: u16) {
    metrics()
        .sip_responses_received
        .get_or_create(&ResponseLabels {
            method: method_label(method),
            code,
        })
        .inc();
}

pub fn sip_retransmission_received(method: &str) {
    metrics()
        .sip_retransmissions_received
        .get_or_create(&MethodLabels {
            method: method_label(method),
        })
        .inc();
}

pub fn sip_retransmission_sent(method: &str) {
    metrics()
        .sip_retransmissions_sent
        .get_or_create(&MethodLabels {
            method: method_label(method),
        })
        .inc();
}

pub fn sip_dropped(reason: Dropped) {
    metrics()
        .sip_dropped
        .get_or_create(&ReasonLabels {
            reason: reason.as_str(),
        })
        .inc();
}

/// A connection opened (`+1`) or closed (`-1`).
pub fn sip_connection(transport: &'static str, delta: i64) {
    metrics()
        .sip_connections
        .get_or_create(&TransportLabels { transport })
        .inc_by(delta);
}

/// Transactions held and the bytes of their state, (server, client) each.
pub fn sip_transactions(counts: (usize, usize), bytes: (usize, usize)) {
    let set = |family: &Family<KindLabels, Gauge>, (server, client): (usize, usize)| {
        family
            .get_or_create(&KindLabels { kind: "server" })
            .set(i64::try_from(server).unwrap_or(i64::MAX));
        family
            .get_or_create(&KindLabels { kind: "client" })
            .set(i64::try_from(client).unwrap_or(i64::MAX));
    };
    set(&metrics().sip_transactions, counts);
    set(&metrics().sip_transaction_state_bytes, bytes);
}

pub fn bus_call(service: &'static str, outcome: Outcome, took: Duration) {
    metrics()
        .bus_call_duration
        .get_or_create(&BusLabels { service, outcome })
        .observe(took.as_secs_f64());
}

pub fn store_operation(operation: &'static str, outcome: Outcome, took: Duration) {
    metrics()
        .store_operation_duration
        .get_or_create(&StoreLabels { operation, outcome })
        .observe(took.as_secs_f64());
}

pub fn extension_call(point: &'static str, module: &str, outcome: Outcome, took: Duration) {
    let labels = ExtensionLabels {
        point,
        module: module.to_owned(),
        outcome,
    };
    metrics().extension_calls.get_or_create(&labels).inc();
    metrics()
        .extension_call_duration
        .get_or_create(&labels)
        .observe(took.as_secs_f64());
}

/// A SIP method as a label: the RFC methods by name, the rest `other`.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 14] = [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "REFER",
        "MESSAGE",
        "INFO",
        "PRACK",
        "UPDATE",
    ];
    KNOWN.iter().find(|m| **m == method).copied().unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_end_in_total_and_histograms_in_seconds() {
        metrics()
            .sip_requests_received
            .get_or_create(&RequestLabels {
                method: "INVITE",
                transport: "udp",
            })
            .inc();
        metrics()
            .bus_call_duration
            .get_or_create(&BusLabels {
                service: "session",
                outcome: Outcome::ok,
            })
            .observe(0.002);
        let text = encode();
        assert!(
            text.contains("sipbus_sip_requests_received_total{method=\"INVITE\",transport=\"udp\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE sipbus_bus_call_duration_seconds histogram"),
            "{text}"
        );
        assert!(text.contains("# TYPE sipbus_registrations gauge"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        let classic = encode_prometheus_text();
        assert!(
            classic.contains("# TYPE sipbus_sip_requests_received_total counter\n"),
            "{classic}"
        );
        assert!(
            classic.contains("# HELP sipbus_sip_requests_received_total SIP requests received"),
            "{classic}"
        );
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"), "{classic}");
    }

    #[test]
    fn methods_outside_the_rfcs_share_one_label() {
        assert_eq!(method_label("INVITE"), "INVITE");
        assert_eq!(method_label("FOO"), "other");
        assert_eq!(method_label("invite"), "other");
    }
}
