//! An external module: its channel, its deadline, its failure policy and
//! its counters. Each point's adapter calls it through [`External::call`]
//! and turns a [`Failure`] into the point's fail-open behaviour or the
//! refusal [`External::refusal`] gives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use edge_api::Trace;
use sip_message::Refusal;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::config::{ConfigProblem, ModuleConfig, OnFailure, Point};
use crate::window::{Tally, Window};

/// What a failing or late module does to the request, resolved from the
/// configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    Open,
    Closed { status: u16 },
}

/// Why a call to an external module counts as failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("{}: {}", .0.code(), .0.message())]
    Rpc(Status),
    /// The reply does not validate (what another process sends is checked
    /// before it is used).
    #[error("unusable reply: {0}")]
    Invalid(String),
    /// A registered module whose every lease ran out.
    #[error("no live instance (its lease lapsed)")]
    Lapsed,
}

/// Calls and failures of one module: totals since start and the last
/// minute.
#[derive(Default)]
pub struct Stats {
    calls: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    minute: Window,
}

impl Stats {
    /// (calls, failures, of which timeouts).
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.calls.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
            self.timeouts.load(Ordering::Relaxed),
        )
    }

    /// The last minute, to add to other replicas'.
    pub fn tally(&self) -> Tally {
        self.minute.tally(uptime_s())
    }
}

/// Seconds since the process first asked, for the stats window.
fn uptime_s() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_secs()
}

/// Where an external module's calls go.
enum Instances {
    /// Configured: one address, always there (down is a call failure).
    Fixed(String),
    /// Registered: the live instances' addresses, balanced; none when the
    /// module has lapsed.
    Leased {
        addresses: Mutex<Vec<String>>,
        changes: mpsc::Sender<Change<String, Endpoint>>,
        /// When the last live lease runs out: a running session's call
        /// after it fails by policy at once, even before the next reread.
        live_until_ms: AtomicU64,
    },
}

/// An external module of one point.
#[derive(Clone)]
pub struct External {
    point: Point,
    name: String,
    channel: Channel,
    timeout: Duration,
    policy: FailurePolicy,
    instances: Arc<Instances>,
    stats: Arc<Stats>,
}

fn policy_of(module: &ModuleConfig) -> FailurePolicy {
    match module.on_failure {
        OnFailure::Open => FailurePolicy::Open,
        OnFailure::Closed => FailurePolicy::Closed {
            status: module.reject_status,
        },
    }
}

impl External {
    /// Connects lazily: a module that is down at start fails its calls
    /// (and its policy applies) until it is back. Needs a Tokio runtime;
    /// the configuration must have passed [`ModuleConfig::check`].
    pub fn connect(point: Point, module: &ModuleConfig, key: &str) -> Result<External, ConfigProblem> {
        let timeout = Duration::from_millis(module.timeout_ms.max(1));
        let channel = bus::grpc::module_channel(&module.url, timeout).map_err(|reason| ConfigProblem {
            key: format!("{key}.url"),
            reason,
        })?;
        Ok(External {
            point,
            name: module.name.clone(),
            channel,
            timeout,
            policy: policy_of(module),
            instances: Arc::new(Instances::Fixed(module.url.clone())),
            stats: Arc::default(),
        })
    }

    /// A module that joined through the registry: calls are spread over
    /// the instances [`External::set_instances`] names, and fail at once
    /// (its policy applies) while there are none. Needs a Tokio runtime.
    pub fn leased(point: Point, module: &ModuleConfig) -> External {
        let timeout = Duration::from_millis(module.timeout_ms.max(1));
        let (channel, changes) = Channel::balance_channel(64);
        External {
            point,
            name: module.name.clone(),
            channel,
            timeout,
            policy: policy_of(module),
            instances: Arc::new(Instances::Leased {
                addresses: Mutex::new(Vec::new()),
                changes,
                live_until_ms: AtomicU64::new(0),
            }),
            stats: Arc::default(),
        }
    }

    /// The live instances of a leased module, by address (checked by the
    /// registry before it stored them), and when their last lease runs out.
    pub async fn set_instances(&self, live: &[String], until_ms: u64) {
        let Instances::Leased {
            addresses,
            changes,
            live_until_ms,
        } = &*self.instances
        else {
            return;
        };
        live_until_ms.store(until_ms, Ordering::Relaxed);
        let (gone, new) = {
            let mut now = addresses.lock().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<String> = now.iter().filter(|a| !live.contains(a)).cloned().collect();
            let new: Vec<String> = live.iter().filter(|a| !now.contains(a)).cloned().collect();
            *now = live.to_vec();
            (gone, new)
        };
        for address in gone {
            let _ = changes.send(Change::Remove(address)).await;
        }
        for address in new {
            match bus::grpc::module_endpoint(&address) {
                Ok(e) => {
                    let e = e.connect_timeout(self.timeout).tcp_nodelay(true);
                    let _ = changes.send(Change::Insert(address, e)).await;
                }
                Err(e) => tracing::warn!(module = %self.name, %address, error = %e, "unusable address"),
            }
        }
    }

    /// Where calls go now: the configured address, or the live instances.
    pub fn addresses(&self) -> Vec<String> {
        match &*self.instances {
            Instances::Fixed(url) => vec![url.clone()],
            Instances::Leased { addresses, .. } => addresses.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    fn lapsed(&self) -> bool {
        match &*self.instances {
            Instances::Fixed(_) => false,
            Instances::Leased {
                addresses,
                live_until_ms,
                ..
            } => {
                live_until_ms.load(Ordering::Relaxed) <= state_store::now_ms()
                    || addresses.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub fn policy(&self) -> FailurePolicy {
        self.policy
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A request carrying the module's deadline (grpc-timeout) and the
    /// trace context.
    pub fn request<T>(&self, message: T, trace: Option<&Trace>) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        match trace {
            Some(t) => proto::trace::inject(t, request.metadata_mut()),
            None => proto::trace::inject_current(request.metadata_mut()),
        }
        request
    }

    /// Runs one call, bounded by the deadline even when the module ignores
    /// it or the connection hangs; counts it, and logs a failure with the
    /// point, the module and the hook. A leased module with no live
    /// instance fails at once, uncalled.
    pub async fn call<T>(
        &self,
        hook: &'static str,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, Failure> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = if self.lapsed() {
            Err(Failure::Lapsed)
        } else {
            match tokio::time::timeout(self.timeout, call).await {
                Err(_) => Err(Failure::Timeout(self.timeout)),
                Ok(Err(status)) => Err(Failure::Rpc(status)),
                Ok(Ok(r)) => Ok(r.into_inner()),
            }
        };
        // An uncalled (lapsed) module has no latency to count.
        let latency = (!matches!(result, Err(Failure::Lapsed))).then(|| started.elapsed());
        self.stats.minute.record(uptime_s(), latency, result.is_err());
        if let Some(took) = latency {
            let outcome = match &result {
                Ok(_) => telemetry::metrics::Outcome::ok,
                Err(Failure::Timeout(_)) => telemetry::metrics::Outcome::timeout,
                Err(_) => telemetry::metrics::Outcome::error,
            };
            telemetry::metrics::extension_call(self.point.as_str(), &self.name, outcome, took);
        }
        if let Err(f) = &result {
            self.failed(hook, f);
        }
        result
    }

    /// Counts and logs a failure found after the call (an unusable reply).
    pub fn failed(&self, hook: &'static str, failure: &Failure) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        if matches!(failure, Failure::Invalid(_)) {
            // The call was counted as it returned; now it is a failure.
            self.stats.minute.fail(uptime_s());
        }
        if matches!(failure, Failure::Timeout(_)) {
            self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        tracing::warn!(
            point = %self.point,
            module = %self.name,
            hook,
            error = %failure,
            policy = ?self.policy,
            "extension failed"
        );
    }

    /// What a failure comes to: `None` fails open (the point carries on
    /// without the module), a refusal fails closed.
    pub fn refusal(&self) -> Option<Refusal> {
        match self.policy {
            FailurePolicy::Open => None,
            FailurePolicy::Closed { status: 503 } => Some(Refusal::service_unavailable(&format!(
                "{} {} failed",
                self.point, self.name
            ))),
            FailurePolicy::Closed { status } => Some(Refusal::new(
                status,
                format!("Extension Failed ({} {})", self.point, self.name),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn deadline_counters_and_policies() {
        let mut m = ModuleConfig::builtin("slow");
        m.url = "http://127.0.0.1:9".into();
        m.timeout_ms = 50;
        let ext = External::connect(Point::SdpHandler, &m, "sdp.handlers[0]").unwrap();
        let r = ext
            .call("negotiate", async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(Response::new(()))
            })
            .await;
        assert!(matches!(r, Err(Failure::Timeout(_))));
        let r = ext
            .call("negotiate", async {
                Err::<Response<()>, _>(Status::unavailable("down"))
            })
            .await;
        assert!(matches!(r, Err(Failure::Rpc(_))));
        assert_eq!(ext.stats().snapshot(), (2, 2, 1));
        assert_eq!(ext.refusal(), None);
        m.on_failure = OnFailure::Closed;
        m.reject_status = 503;
        let closed = External::connect(Point::SessionSupplement, &m, "k").unwrap();
        let r = closed.refusal().unwrap();
        assert_eq!(r.code(), 503);
        assert_eq!(r.reason(), "Service Unavailable (session-supplement slow failed)");
        m.reject_status = 403;
        let r = External::connect(Point::SessionSupplement, &m, "k")
            .unwrap()
            .refusal()
            .unwrap();
        assert_eq!(
            (r.code(), r.reason()),
            (403, "Extension Failed (session-supplement slow)")
        );
    }
}
