//! What a sipbus process reports about itself: Prometheus metrics and
//! readiness. Libraries record; the binary serves them on its admin port.

pub mod health;
pub mod metrics;
pub mod trace;

pub use metrics::metrics;

/// This process's name among replicas: the host name (a Kubernetes pod's
/// name) and the process id, for operators' listings.
pub fn replica() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|| "localhost".to_owned());
        format!("{host}/{}", std::process::id())
    })
}
