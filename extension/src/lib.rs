//! extension: the one piece every extension point shares (session
//! supplements, SDP handlers, subscription and publication handlers).
//!
//! - [`ModuleConfig`]: how a module is named in the configuration, built in
//!   or external, with its filters, priority, deadline and failure policy;
//!   checked the same way for every point, every problem naming its key.
//! - [`Builtins`]: the list of a point's built-in modules, name ->
//!   constructor with its own typed settings. A new built-in is one file
//!   and one line in that list.
//! - [`External`]: an external module's gRPC channel, per-call deadline,
//!   failure policy with one vocabulary for all points (fail open: the
//!   module is skipped or its stream declined; fail closed: the request is
//!   answered with a configured status), and counters labelled by point and
//!   module. Each point's adapter turns the gRPC service into the point's
//!   Rust trait through it, so the service cannot tell built-in from
//!   external.

#![forbid(unsafe_code)]

mod builtins;
mod config;
mod external;
mod packages;
pub mod registry;
mod window;

pub use builtins::{Builtin, Builtins, Settings};
pub use config::{ConfigProblem, ModuleConfig, OnFailure, Point};
pub use external::{External, Failure, FailurePolicy, Stats};
pub use packages::{Connect, DefaultBuiltin, PackageEntry, Packages};
pub use registry::{Host, Kind, Leased, LeasedModule, Refused, RegistryConfig, Row};
pub use window::{Minute, Tally};
