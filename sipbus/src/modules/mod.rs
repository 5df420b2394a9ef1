//! What a process runs, as a graph of modules (the shape of grafana/dskit
//! `modules`): each module says what it must run with (`needs`), what it
//! comes after when both run in one process (`after`), which `--target`
//! runs it alone, what it checks in the configuration, and how it starts.
//! `all` runs every module in one process; a split target runs its module,
//! what that needs, and the gRPC server. Split and combined run the same
//! code in the same order; only whether a neighbour is in process or
//! reached over gRPC differs. A new service is one file here, a [`Name`]
//! for it, and its line in [`MODULES`] (plus a [`Ctx`] field when other
//! modules use what it starts).

mod edge;
mod grpc;
mod publish;
mod pubsub;
mod registrar;
mod sdp;
mod session;
mod store;

use std::pin::Pin;
use std::sync::Arc;

use anyhow::Result;
use bus::HandlerPool;
use extension::ConfigProblem;
use sip_edge::RunningEdge;
use tokio::task::JoinHandle;

use crate::config::Config;

/// The modules there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Name {
    Store,
    Registrar,
    Sdp,
    Publish,
    Edge,
    Session,
    Pubsub,
    Grpc,
}

/// A module's start: what it makes goes into the context.
pub type Start = for<'a, 'b> fn(&'a mut Ctx<'b>) -> Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

/// One module of the graph.
pub struct Module {
    pub name: Name,
    /// The `--target` that runs this module alone (with what it needs).
    pub target: Option<&'static str>,
    /// What must run in the same process.
    pub needs: &'static [Name],
    /// What starts first when it runs in the same process.
    pub after: &'static [Name],
    /// Problems in the configuration for this module, in this process.
    pub check: fn(&Config, &Process) -> Vec<ConfigProblem>,
    pub start: Start,
}

/// Every module, in no particular order: the graph orders them.
pub static MODULES: [Module; 8] = [
    store::MODULE,
    registrar::MODULE,
    sdp::MODULE,
    publish::MODULE,
    edge::MODULE,
    session::MODULE,
    pubsub::MODULE,
    grpc::MODULE,
];

fn module(name: Name) -> &'static Module {
    MODULES
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| unreachable!("every name has its module"))
}

/// The targets `--target` takes: `all`, then each module's.
pub fn targets() -> Vec<&'static str> {
    std::iter::once("all")
        .chain(MODULES.iter().filter_map(|m| m.target))
        .collect()
}

/// Which modules run in this process, in start order.
pub struct Process {
    pub target: &'static str,
    modules: Vec<Name>,
}

impl Process {
    /// The process of `target`; `None` for a target no module has.
    pub fn of(target: &str) -> Option<Process> {
        let (target, roots): (&'static str, Vec<Name>) = if target == "all" {
            ("all", MODULES.iter().map(|m| m.name).collect())
        } else {
            let m = MODULES.iter().find(|m| m.target == Some(target))?;
            (m.target?, vec![m.name, Name::Grpc])
        };
        let mut modules = Vec::new();
        for root in roots {
            add_with_needs(root, &mut modules);
        }
        Some(Process {
            target,
            modules: order(modules),
        })
    }

    /// A split process serves its service's contract to the others (in
    /// all-in-one everything is called in process; only the tools' APIs are
    /// served).
    pub fn serves_bus(&self) -> bool {
        self.target != "all" && self.runs(Name::Grpc)
    }

    /// A module runs in this process.
    pub fn runs(&self, name: Name) -> bool {
        self.modules.contains(&name)
    }

    /// Every problem each module finds in the configuration, each naming
    /// its key: what `--check-config` reports, and what stops a start.
    pub fn check(&self, config: &Config) -> Vec<ConfigProblem> {
        self.modules
            .iter()
            .flat_map(|n| (module(*n).check)(config, self))
            .collect()
    }

    /// Starts every module in order; any failure stops the process.
    pub async fn start(&self, config: &Config) -> Result<Running> {
        let mut ctx = Ctx {
            config,
            process: self,
            store: None,
            registrar: None,
            sdp: None,
            publisher: None,
            session_pool: None,
            pubsub_pool: None,
            edge: None,
            services: tonic::service::Routes::builder(),
            hosts: Vec::new(),
            tasks: Vec::new(),
            grpc: None,
        };
        for name in &self.modules {
            (module(*name).start)(&mut ctx).await?;
        }
        Ok(Running {
            edge: ctx.edge,
            grpc: ctx.grpc,
            tasks: ctx.tasks,
        })
    }
}

fn add_with_needs(name: Name, into: &mut Vec<Name>) {
    if into.contains(&name) {
        return;
    }
    into.push(name);
    for n in module(name).needs {
        add_with_needs(*n, into);
    }
}

/// Start order: a module after the ones it names in `after` that run too.
fn order(mut pending: Vec<Name>) -> Vec<Name> {
    pending.sort();
    let mut ordered: Vec<Name> = Vec::new();
    while !pending.is_empty() {
        let ready = pending
            .iter()
            .position(|n| {
                module(*n)
                    .after
                    .iter()
                    .all(|a| ordered.contains(a) || !pending.contains(a))
            })
            // The graph has no cycle (a test says so); take any rather
            // than loop.
            .unwrap_or(0);
        ordered.push(pending.remove(ready));
    }
    ordered
}

/// What the modules started so far made, for the ones after them.
pub struct Ctx<'a> {
    pub config: &'a Config,
    pub process: &'a Process,
    pub store: Option<state_store::Store>,
    pub registrar: Option<Arc<registrar_svc::Registrar>>,
    pub sdp: Option<Arc<sdp_svc::Negotiator>>,
    pub publisher: Option<Arc<publish_svc::Publisher>>,
    /// The edge's pools of session-svc and pubsub-svc replicas, when they
    /// run in this process: filled once they exist (they need the edge).
    pub session_pool: Option<Arc<HandlerPool>>,
    pub pubsub_pool: Option<Arc<HandlerPool>>,
    pub edge: Option<RunningEdge>,
    /// gRPC services to serve, for the gRPC module.
    pub services: tonic::service::RoutesBuilder,
    /// The extension points this process hosts, for the registry.
    pub hosts: Vec<Arc<dyn extension::Host>>,
    pub tasks: Vec<JoinHandle<()>>,
    pub grpc: Option<GrpcServer>,
}

/// The gRPC server, stopped apart from the rest: it finishes the calls in
/// progress.
pub struct GrpcServer {
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: JoinHandle<()>,
}

/// Everything a process started; stopped together.
pub struct Running {
    pub edge: Option<RunningEdge>,
    grpc: Option<GrpcServer>,
    tasks: Vec<JoinHandle<()>>,
}

/// How long calls in progress may take to finish at the end.
const FINISH_CALLS: std::time::Duration = std::time::Duration::from_secs(5);

impl Running {
    /// Stops listening, lets gRPC calls in progress finish (for a few
    /// seconds at most), then stops everything.
    pub async fn stop(self) {
        if let Some(edge) = self.edge {
            edge.stop();
        }
        if let Some(grpc) = self.grpc {
            let _ = grpc.stop.send(());
            let mut task = grpc.task;
            if tokio::time::timeout(FINISH_CALLS, &mut task).await.is_err() {
                tracing::warn!("gRPC calls still running after {FINISH_CALLS:?}: stopped");
                task.abort();
            }
        }
        for t in self.tasks {
            t.abort();
        }
    }
}

/// A service that sends through the edge API needs each edge's address
/// when the edge runs elsewhere.
pub(crate) fn edge_api_problems(config: &Config, process: &Process) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    if process.runs(Name::Edge) {
        return problems;
    }
    if config.bus.edges.is_empty() {
        problems.push(problem(
            "bus.edges",
            format!("--target {} needs each edge instance's API address", process.target),
        ));
    }
    for (name, address) in &config.bus.edges {
        if let Err(e) = bus::grpc::check_address(address) {
            problems.push(problem(&format!("bus.edges.{name}"), format!("`{address}`: {e}")));
        }
    }
    problems
}

/// A service this process calls and does not run needs its addresses.
pub(crate) fn neighbour_problems(
    process: &Process,
    runs: Name,
    key: &str,
    list: &[String],
    what: &str,
) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    if process.runs(runs) {
        return problems;
    }
    if list.is_empty() {
        problems.push(problem(key, format!("--target {} needs {what}", process.target)));
    }
    if let Err(e) = bus::ReplicaSource::parse_all(list) {
        problems.push(problem(key, e.to_string()));
    }
    problems
}

/// The replicas of a service in other processes, at `list`'s addresses
/// (`http://host:port`, or `dns://name:port` followed in DNS every
/// `bus.discovery_ms`), each reached through a client `make` builds on its
/// channel.
pub(crate) async fn followed<T: Clone + Send + Sync + 'static>(
    ctx: &mut Ctx<'_>,
    service: &'static str,
    key: &'static str,
    list: &[String],
    deadline: std::time::Duration,
    make: impl Fn(tonic::transport::Channel) -> T + Send + Sync + 'static,
) -> anyhow::Result<Arc<bus::Replicas<T>>> {
    use anyhow::Context as _;
    let bus = &ctx.config.bus;
    let connect_timeout = std::time::Duration::from_millis(bus.connect_timeout_ms);
    let sources = bus::ReplicaSource::parse_all(list).with_context(|| format!("config: {key}"))?;
    let connect = move |address: &str| -> Result<T, String> { Ok(make(bus::grpc::channel(address, connect_timeout)?)) };
    let replicas = bus::Replicas::discover(service, &sources, deadline, &connect)
        .await
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("config: {key}"))?;
    tracing::info!(replicas = ?replicas.addresses(), "{key} replicas");
    let every = std::time::Duration::from_millis(bus.discovery_ms);
    ctx.tasks
        .push(tokio::spawn(replicas.clone().follow(sources, every, connect)));
    Ok(replicas)
}

/// Replicas that authenticate must verify each other's nonces.
pub(crate) fn nonce_problems(
    config: &Config,
    process: &Process,
    authenticate: bool,
    switch: &str,
) -> Vec<ConfigProblem> {
    if process.target != "all" && authenticate && config.registrar.auth.nonce_key.is_empty() {
        vec![problem(
            "registrar.auth.nonce_key",
            format!(
                "required with --target {} when {switch} is on (every replica must verify the nonces the others \
                 issue)",
                process.target
            ),
        )]
    } else {
        Vec::new()
    }
}

/// The edges a service sends through: this process's, or each one's API.
pub(crate) fn edges(ctx: &Ctx<'_>) -> anyhow::Result<bus::Edges> {
    use anyhow::Context as _;
    match &ctx.edge {
        Some(edge) => {
            let handle = edge.handle();
            let id = handle.id().clone();
            Ok(bus::Edges::local(id, Arc::new(handle) as Arc<dyn edge_api::Edge>))
        }
        None => {
            let edges: Vec<(String, String)> = ctx
                .config
                .bus
                .edges
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let connect = std::time::Duration::from_millis(ctx.config.bus.connect_timeout_ms);
            bus::Edges::remote(&edges, connect)
                .map_err(anyhow::Error::msg)
                .context("config: bus.edges")
        }
    }
}

/// The location service: registrar-svc in process, or its replicas.
pub(crate) async fn locations(ctx: &mut Ctx<'_>) -> anyhow::Result<registrar_svc::LocationClient> {
    if let Some(r) = &ctx.registrar {
        return Ok(registrar_svc::LocationClient::new(r.clone()));
    }
    let list = ctx.config.bus.registrar.clone();
    let replicas = followed(
        ctx,
        "location",
        "bus.registrar",
        &list,
        registrar_svc::location::LOOKUP_DEADLINE,
        registrar_svc::location::remote,
    )
    .await?;
    Ok(registrar_svc::LocationClient::following(replicas))
}

/// A problem with a key, for the checks.
pub(crate) fn problem(key: &str, reason: impl Into<String>) -> ConfigProblem {
    ConfigProblem {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_their_modules() {
        assert_eq!(
            targets(),
            [
                "all",
                "registrar-svc",
                "sdp-svc",
                "publish-svc",
                "sip-edge",
                "session-svc",
                "pubsub-svc"
            ]
        );
        let all = Process::of("all").map(|p| p.modules).unwrap_or_default();
        assert_eq!(
            all,
            [
                Name::Store,
                Name::Registrar,
                Name::Sdp,
                Name::Publish,
                Name::Edge,
                Name::Session,
                Name::Pubsub,
                Name::Grpc
            ]
        );
        let session = Process::of("session-svc").map(|p| p.modules).unwrap_or_default();
        assert_eq!(session, [Name::Store, Name::Session, Name::Grpc]);
        let edge = Process::of("sip-edge").map(|p| p.modules).unwrap_or_default();
        assert_eq!(edge, [Name::Edge, Name::Grpc]);
        assert!(Process::of("nothing").is_none());
    }

    #[test]
    fn every_module_can_start_after_what_it_names() {
        // No cycle: each module's `after` only names modules placed
        // before it in the full order.
        let all = order(MODULES.iter().map(|m| m.name).collect());
        for (i, n) in all.iter().enumerate() {
            for a in module(*n).after {
                assert!(all[..i].contains(a), "{n:?} after {a:?}");
            }
        }
    }
}
