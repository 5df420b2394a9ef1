//! The operator's gRPC API (`sipbus.admin.v1`, what `sipbus ctl` talks
//! to): listings read from the shared store and actions on the cluster.

mod service;

pub use service::AdminService;
