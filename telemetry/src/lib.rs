//! What a sipbus process reports about itself: Prometheus metrics and
//! readiness. Libraries record; the binary serves them on its admin port.

pub mod health;
pub mod metrics;
pub mod trace;

pub use metrics::metrics;
