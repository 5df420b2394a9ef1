//! Command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// sipbus: a SIP application server built as small services joined by a
/// gRPC extension bus.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "\
CONFIGURATION
  Settings come from built-in defaults, then the TOML file given with
  --config, then environment variables. A variable SIPBUS_<SECTION>__<KEY>
  sets <section>.<key>; nested tables are joined with a double underscore:
    SIPBUS_EDGE__TIMERS__T1_MS=250
    SIPBUS_EDGE__LISTEN='[\"udp:127.0.0.1:5060\", \"tcp:127.0.0.1:5060\"]'
    SIPBUS_LOG__LEVEL=debug
  Values are TOML literals (numbers, booleans, [arrays]); anything that is
  not one is taken as a string. --print-config shows every key with its
  effective value; sipbus.example.toml in the repository documents them.

  A bad configuration names every offending key and exits with status 2."
)]
pub struct Cli {
    /// TOML configuration file. Without it, the defaults (plus SIPBUS_*
    /// environment variables) apply: every service in one process,
    /// listening on UDP and TCP port 5060 of every IPv4 address.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Which part of sipbus this process runs. `all` runs every service in
    /// one process (embedded store unless [store] redis is set); the others
    /// run one service each, for split deployments: `sip-edge` (transports,
    /// transactions, validation; reaches the services listed in [bus]),
    /// `registrar-svc` and `session-svc` (serve gRPC on [grpc] listen; need
    /// [store] redis) and `sdp-svc` (serves gRPC on [grpc] listen).
    #[arg(
        short,
        long,
        default_value = "all",
        env = "SIPBUS_TARGET",
        value_parser = clap::builder::PossibleValuesParser::new(sipbus::modules::targets())
    )]
    pub target: String,

    /// Load the configuration and run every check a start of --target
    /// would, print each problem with its key, and exit without starting
    /// anything (status 0 when it is valid).
    #[arg(long)]
    pub check_config: bool,

    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Tools that talk to a running sipbus over its gRPC API.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Message-waiting state of a mailbox (RFC 3842): what subscribers to
    /// its `message-summary` see.
    Mwi {
        #[command(subcommand)]
        action: MwiAction,
    },
    /// The modules of every extension point, as the service answering sees
    /// them: for each point the chain a session or subscription starting
    /// now gets, built-in, configured and registered, with filters,
    /// priority, deadline, failure policy, lease left, and the last
    /// minute's calls, failures and p99 latency (every replica of the service); then
    /// lapsed registered modules.
    Extensions {
        #[command(flatten)]
        server: Server,
        #[command(flatten)]
        token: Token,
        /// Only this point.
        #[arg(long, value_enum)]
        point: Option<PointArg>,
    },
    /// Drives an extension server through the cases of its point's
    /// contract (every callback with realistic messages, repeated calls
    /// that must give the same answer, the deadline) and prints what passed
    /// and what did not, with the rule each case checks. Exits 1 when a
    /// case fails.
    ExtensionCheck(CheckArgs),
    /// Operator commands against a running sipbus, over its admin gRPC API
    /// (what kamcmd is to Kamailio): registrations, calls, subscriptions,
    /// publications and extensions as the cluster holds them, and actions
    /// on them. Ask a process that runs the service concerned (all-in-one
    /// runs them all; any replica answers for every replica).
    Ctl(CtlArgs),
}

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The gRPC API of all-in-one or of a split process running the
    /// service concerned.
    #[arg(long, global = true, env = "SIPBUS_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// The shared registry token (`registry.token`), sent as a bearer
    /// token; not needed on loopback when sipbus has none configured.
    /// Default: SIPBUS_REGISTRY_TOKEN, else SIPBUS_REGISTRY__TOKEN (what a
    /// sipbus pod's environment holds, for `kubectl exec`).
    #[arg(long, global = true, env = "SIPBUS_REGISTRY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub action: CtlAction,
}

#[derive(Debug, Subcommand)]
pub enum CtlAction {
    /// Registered contacts (registrar-svc): of a user (`alice`), of an
    /// address-of-record (`alice@example.com`), or all.
    Registrations {
        #[arg(long)]
        user: Option<String>,
        /// Address-of-record records read at most.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Removes a contact of an address-of-record (by Contact URI or
    /// +sip.instance), or all of its contacts (registrar-svc).
    Unregister {
        /// `user@domain`.
        aor: String,
        #[arg(long)]
        contact: Option<String>,
    },
    /// Calls in progress (session-svc): caller and callee legs, state,
    /// duration, and the replica that last handled each.
    Calls {
        /// Only calls whose caller or callee contains this.
        #[arg(long)]
        filter: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Hangs up a call (the id `calls` shows): BYE on both legs.
    Hangup { id: String },
    /// Subscriptions (pubsub-svc).
    Subscriptions {
        /// Only those whose resource or watcher contains this.
        #[arg(long)]
        filter: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Event state publications (publish-svc).
    Publications {
        /// Only those whose resource contains this.
        #[arg(long)]
        filter: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// The modules of every extension point (as `sipbus extensions`).
    Extensions {
        #[arg(long, value_enum)]
        point: Option<PointArg>,
    },
    /// Sets a mailbox's message-waiting counts (publish-svc), or clears
    /// them with --clear.
    Mwi {
        /// A user of the first domain, or `sip:user@domain`.
        mailbox: String,
        #[arg(long, default_value_t = 0)]
        new: u32,
        #[arg(long, default_value_t = 0)]
        old: u32,
        #[arg(long)]
        clear: bool,
    },
    /// Rereads the edge's TLS certificate, key and CA files now (sip-edge).
    ReloadTls,
}

/// An extension point, on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PointArg {
    Supplement,
    Sdp,
    Subscription,
    Publication,
}

impl PointArg {
    pub fn point(self) -> extension::Point {
        match self {
            PointArg::Supplement => extension::Point::SessionSupplement,
            PointArg::Sdp => extension::Point::SdpHandler,
            PointArg::Subscription => extension::Point::SubscriptionHandler,
            PointArg::Publication => extension::Point::PublicationHandler,
        }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Which contract the server implements.
    #[arg(long, value_enum)]
    pub point: PointArg,
    /// The extension server, `http://host:port`.
    #[arg(long)]
    pub url: String,
    /// The deadline sipbus would give each call (the module's timeout_ms).
    #[arg(long, default_value_t = 500)]
    pub timeout_ms: u64,
    /// What the module registers for, to test with: methods (supplement,
    /// default INVITE), a media type (sdp, default audio), an event
    /// package (subscription and publication, default presence).
    #[arg(long)]
    pub filter: Option<String>,
    /// A body type the module produces (subscription) or takes
    /// (publication); default: the package's usual one.
    #[arg(long)]
    pub content_type: Option<String>,
}

/// The registry's token.
#[derive(Debug, Args)]
pub struct Token {
    /// The shared registry token (`registry.token`), sent as a bearer
    /// token; not needed on loopback when sipbus has none configured.
    #[arg(long, env = "SIPBUS_REGISTRY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum MwiAction {
    /// Sets a mailbox's counts (kept until set again or cleared).
    Set {
        /// The mailbox: a user of the first domain, or `sip:user@domain`.
        mailbox: String,
        /// New (unheard) voice messages.
        #[arg(long, default_value_t = 0)]
        new: u32,
        /// Old (heard) voice messages.
        #[arg(long, default_value_t = 0)]
        old: u32,
        #[arg(long, default_value_t = 0)]
        urgent_new: u32,
        #[arg(long, default_value_t = 0)]
        urgent_old: u32,
        #[command(flatten)]
        server: Server,
        #[command(flatten)]
        token: Token,
    },
    /// Removes the state `set` gave the mailbox.
    Clear {
        mailbox: String,
        #[command(flatten)]
        server: Server,
        #[command(flatten)]
        token: Token,
    },
}

/// Which sipbus to talk to.
#[derive(Debug, Args)]
pub struct Server {
    /// The gRPC API of all-in-one or of a split service replica
    /// (publish-svc for `mwi`; the service of the point for `extensions`).
    #[arg(long, env = "SIPBUS_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
}
