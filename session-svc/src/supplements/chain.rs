//! The chain a session runs at each event: which supplements, in which
//! order, hearing which methods, and their state kept with the session.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use extension::{
    ConfigProblem, External, Host, Leased, LeasedModule, ModuleConfig, Point, Refused, RegistryConfig, Row,
};
use sip_message::{Message, Method, Refusal};
use tracing::warn;

use super::external::ExternalSupplement;
use super::{Action, BUILTINS, Cx, Draft, SessionInfo, SessionSupplement, Verdict};
use crate::config::SessionConfig;
use crate::session::{Session, Side};

/// A supplement's stored state while one callback runs.
pub struct Raw<'a> {
    name: &'a str,
    session: &'a SessionInfo,
    state: &'a mut Option<serde_json::Value>,
    actions: &'a mut Vec<Action>,
}

impl Raw<'_> {
    fn load<S: serde::de::DeserializeOwned + Default>(&self) -> S {
        match self.state.as_ref().map(S::deserialize) {
            None => S::default(),
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                warn!(supplement = self.name, error = %e, "stored state unreadable; starting afresh");
                S::default()
            }
        }
    }

    fn save<S: serde::Serialize>(&mut self, state: &S) {
        // Plain data always serialises; a stateless supplement stores
        // nothing.
        *self.state = serde_json::to_value(state).ok().filter(|v| !v.is_null());
    }
}

/// [`SessionSupplement`] with its state type erased, so supplements of
/// every kind sit in one list.
#[async_trait]
pub trait Erased: Send + Sync + 'static {
    async fn begin(&self, raw: &mut Raw<'_>);
    async fn end(&self, raw: &mut Raw<'_>);
    async fn incoming_request(&self, raw: &mut Raw<'_>, side: Side, request: &Message) -> Verdict;
    async fn incoming_response(&self, raw: &mut Raw<'_>, side: Side, response: &Message);
    async fn outgoing(&self, raw: &mut Raw<'_>, side: Side, message: &mut Message);
    async fn timer(&self, raw: &mut Raw<'_>);
    /// [`SessionSupplement::TIMER`].
    fn has_timer(&self) -> bool;
}

#[async_trait]
impl<T: SessionSupplement> Erased for T {
    async fn begin(&self, raw: &mut Raw<'_>) {
        let mut state = raw.load::<T::State>();
        T::begin(self, &mut Cx::new(raw.session, &mut state, raw.actions)).await;
        raw.save(&state);
    }

    async fn end(&self, raw: &mut Raw<'_>) {
        let mut state = raw.load::<T::State>();
        T::end(self, &mut Cx::new(raw.session, &mut state, raw.actions)).await;
    }

    async fn incoming_request(&self, raw: &mut Raw<'_>, side: Side, request: &Message) -> Verdict {
        let mut state = raw.load::<T::State>();
        let verdict =
            T::incoming_request(self, &mut Cx::new(raw.session, &mut state, raw.actions), side, request).await;
        raw.save(&state);
        verdict
    }

    async fn incoming_response(&self, raw: &mut Raw<'_>, side: Side, response: &Message) {
        let mut state = raw.load::<T::State>();
        T::incoming_response(self, &mut Cx::new(raw.session, &mut state, raw.actions), side, response).await;
        raw.save(&state);
    }

    async fn outgoing(&self, raw: &mut Raw<'_>, side: Side, message: &mut Message) {
        let mut state = raw.load::<T::State>();
        let request = message.is_request();
        let mut draft = Draft::new(message, raw.name);
        let mut cx = Cx::new(raw.session, &mut state, raw.actions);
        if request {
            T::outgoing_request(self, &mut cx, side, &mut draft).await;
        } else {
            T::outgoing_response(self, &mut cx, side, &mut draft).await;
        }
        raw.save(&state);
    }

    async fn timer(&self, raw: &mut Raw<'_>) {
        let mut state = raw.load::<T::State>();
        T::timer(self, &mut Cx::new(raw.session, &mut state, raw.actions)).await;
        raw.save(&state);
    }

    fn has_timer(&self) -> bool {
        T::TIMER
    }
}

/// One supplement of a chain.
struct Registered {
    name: String,
    /// Empty: every method.
    methods: Vec<Method>,
    imp: Arc<dyn Erased>,
    /// As configured (or registered), for listings.
    module: ModuleConfig,
    external: Option<External>,
}

impl Registered {
    fn hears(&self, method: Option<&Method>) -> bool {
        self.methods.is_empty() || method.is_some_and(|m| self.methods.contains(m))
    }
}

/// A configured supplement, and its external module when it is one.
type Built = (Arc<dyn Erased>, Option<External>);

/// What supplements asked for while a chain ran, each with its name.
pub type Actions = Vec<(String, Action)>;

/// Every configured supplement, ordered by priority (stable), and those
/// registered at run time.
pub struct Supplements {
    list: Vec<Arc<Registered>>,
    leased: Option<Arc<Leased<dyn Erased>>>,
    /// The registered ones as chain members, made once per reread of the
    /// registry rather than at every message.
    members: RwLock<Members>,
}

type LeasedList = Arc<Vec<Arc<LeasedModule<dyn Erased>>>>;
/// Each registered supplement with its chain member.
type MemberList = Arc<Vec<(Arc<LeasedModule<dyn Erased>>, Arc<Registered>)>>;

/// Chain members of one reread's list (`from`).
#[derive(Default)]
struct Members {
    from: LeasedList,
    list: MemberList,
}

/// A registered supplement as a chain member; its methods were checked
/// when it registered (one that does not parse is dropped).
fn leased_member(m: &LeasedModule<dyn Erased>) -> Arc<Registered> {
    Arc::new(Registered {
        name: m.module.name.clone(),
        methods: m.module.methods.iter().filter_map(|x| Method::parse(x)).collect(),
        imp: m.handler.clone(),
        module: m.module.clone(),
        external: Some(m.external.clone()),
    })
}

fn info(s: &Session) -> SessionInfo {
    SessionInfo {
        id: s.id.clone(),
        caller: s.caller.clone(),
        callee: s.callee.clone(),
        endpoint: s.endpoint.clone(),
    }
}

impl Supplements {
    /// The configured chain; external supplements connect on first use,
    /// which needs a Tokio runtime.
    pub fn from_config(config: &SessionConfig) -> Result<Self, Vec<ConfigProblem>> {
        Self::build(config, true)
    }

    /// Every problem [`Supplements::from_config`] would find, without
    /// connecting anywhere.
    pub fn check(config: &SessionConfig) -> Vec<ConfigProblem> {
        Self::build(config, false).err().unwrap_or_default()
    }

    fn build(config: &SessionConfig, connect: bool) -> Result<Self, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mut list: Vec<(i32, Registered)> = Vec::new();
        for (i, module) in config.supplements.iter().enumerate() {
            let key = format!("session.supplements[{i}]");
            let found = module.check(Point::SessionSupplement, &key);
            if !found.is_empty() {
                problems.extend(found);
                continue;
            }
            if config.supplements[..i].iter().any(|m| m.name == module.name) {
                problems.push(ConfigProblem {
                    key: format!("{key}.name"),
                    reason: format!("`{}` is listed twice", module.name),
                });
                continue;
            }
            let methods: Result<Vec<Method>, ConfigProblem> = module
                .methods
                .iter()
                .map(|m| {
                    Method::parse(m).ok_or_else(|| ConfigProblem {
                        key: format!("{key}.methods"),
                        reason: format!("`{m}` is not a method"),
                    })
                })
                .collect();
            let imp = methods.and_then(|methods| Ok((methods, Self::module(config, module, &key, connect)?)));
            match imp {
                Ok((methods, Some((imp, external)))) => list.push((
                    module.priority,
                    Registered {
                        name: module.name.clone(),
                        methods,
                        imp,
                        module: module.clone(),
                        external,
                    },
                )),
                Ok((_, None)) => {}
                Err(p) => problems.push(p),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        list.sort_by_key(|(priority, _)| *priority);
        Ok(Self {
            list: list.into_iter().map(|(_, r)| Arc::new(r)).collect(),
            leased: None,
            members: RwLock::default(),
        })
    }

    /// Supplements registered at run time join new chains (read from
    /// `store`, refreshed by [`Supplements::follow_registry`]).
    pub fn with_registry(mut self, store: state_store::Store, config: &RegistryConfig) -> Self {
        let connect = |ext| Arc::new(ExternalSupplement::new(ext)) as Arc<dyn Erased>;
        self.leased = Some(Leased::new(Point::SessionSupplement, store, config, connect));
        self
    }

    /// Keeps the registered supplements current (one task per replica).
    pub async fn follow_registry(self: Arc<Self>) {
        if let Some(l) = self.leased.clone() {
            l.follow().await;
        }
    }

    /// A built-in, or an external supplement (`None` when only checking).
    fn module(
        config: &SessionConfig,
        module: &ModuleConfig,
        key: &str,
        connect: bool,
    ) -> Result<Option<Built>, ConfigProblem> {
        match (module.is_external(), connect) {
            (false, _) => BUILTINS.build(module, key, config).map(|b| Some((b, None))),
            (true, false) => Ok(None),
            (true, true) => {
                let ext = External::connect(Point::SessionSupplement, module, key)?;
                Ok(Some((Arc::new(ExternalSupplement::new(ext.clone())), Some(ext))))
            }
        }
    }

    /// The configured supplements and the live registered ones, by
    /// priority; equal priorities keep configuration, then registration,
    /// order.
    fn current(&self) -> Vec<Arc<Registered>> {
        let mut all: Vec<Arc<Registered>> = self.list.clone();
        let now = state_store::now_ms();
        all.extend(
            self.registered()
                .iter()
                .filter(|(m, _)| m.is_live(now))
                .map(|(_, r)| r.clone()),
        );
        all.sort_by_key(|r| r.module.priority);
        all
    }

    /// Every registered supplement, live or lapsed, with its chain member.
    fn registered(&self) -> MemberList {
        let Some(l) = &self.leased else {
            return Arc::default();
        };
        let modules = l.modules();
        {
            let m = self.members.read().unwrap_or_else(|p| p.into_inner());
            if Arc::ptr_eq(&m.from, &modules) {
                return m.list.clone();
            }
        }
        let list = Arc::new(
            modules
                .iter()
                .map(|m| (m.clone(), leased_member(m)))
                .collect::<Vec<_>>(),
        );
        *self.members.write().unwrap_or_else(|p| p.into_inner()) = Members {
            from: modules,
            list: list.clone(),
        };
        list
    }

    /// The chain a new session keeps for its whole life.
    pub fn chain(&self) -> Vec<String> {
        self.current().iter().map(|r| r.name.clone()).collect()
    }

    /// The supplements of `chain` that may have a timer armed.
    pub fn timed(&self, chain: &[String]) -> Vec<String> {
        self.of(chain)
            .into_iter()
            .filter(|r| r.imp.has_timer())
            .map(|r| r.name.clone())
            .collect()
    }

    /// The session's supplements in the session's order. A registered one
    /// whose lease lapsed is still there (its calls fail by its policy);
    /// one removed from the configuration, or forgotten by the registry,
    /// is skipped.
    fn of(&self, chain: &[String]) -> Vec<Arc<Registered>> {
        let registered = self.registered();
        chain
            .iter()
            .filter_map(|name| {
                self.list
                    .iter()
                    .chain(registered.iter().map(|(_, r)| r))
                    .find(|r| &r.name == name)
                    .cloned()
            })
            .collect()
    }

    /// Runs one callback for each supplement of the session that hears
    /// `method`, with its state, until one says stop.
    async fn run(&self, s: &mut Session, method: Option<&Method>, mut hook: Hook<'_>) -> (Option<Refusal>, Actions) {
        let session = info(s);
        let mut actions = Actions::new();
        let chain = s.chain.clone();
        // Begin, end and timers come to every supplement.
        let always = matches!(hook, Hook::Begin | Hook::End | Hook::Timer);
        for r in self.of(&chain) {
            if !always && !r.hears(method) {
                continue;
            }
            let mut state = s.data.remove(&r.name);
            let mut asked = Vec::new();
            let mut raw = Raw {
                name: &r.name,
                session: &session,
                state: &mut state,
                actions: &mut asked,
            };
            let span = tracing::debug_span!(
                "extension.call",
                extension.point = "session-supplement",
                extension.module = %r.name,
                extension.hook = hook.name(),
            );
            let verdict = tracing::Instrument::instrument(
                async {
                    match &mut hook {
                        Hook::Begin => {
                            r.imp.begin(&mut raw).await;
                            Verdict::Continue
                        }
                        Hook::End => {
                            r.imp.end(&mut raw).await;
                            Verdict::Continue
                        }
                        Hook::Request(side, req) => r.imp.incoming_request(&mut raw, *side, req).await,
                        Hook::Response(side, resp) => {
                            r.imp.incoming_response(&mut raw, *side, resp).await;
                            Verdict::Continue
                        }
                        Hook::Outgoing(side, out) => {
                            r.imp.outgoing(&mut raw, *side, out).await;
                            Verdict::Continue
                        }
                        Hook::Timer => {
                            r.imp.timer(&mut raw).await;
                            Verdict::Continue
                        }
                    }
                },
                span,
            )
            .await;
            if let Some(v) = state {
                s.data.insert(r.name.clone(), v);
            }
            let timer = r.imp.has_timer();
            for a in asked {
                if !timer && matches!(a, Action::SetTimer(_) | Action::CancelTimer) {
                    warn!(supplement = %r.name, "timer of a supplement that declares none ignored");
                    continue;
                }
                actions.push((r.name.clone(), a));
            }
            if let Verdict::Stop(refusal) = verdict {
                return (Some(refusal), actions);
            }
        }
        (None, actions)
    }

    pub async fn begin(&self, s: &mut Session) -> Actions {
        self.run(s, None, Hook::Begin).await.1
    }

    /// Once per session, also when the call failed. What supplements ask
    /// for now is moot: the session is over.
    pub async fn end(&self, s: &Session) {
        let mut copy = s.clone();
        self.run(&mut copy, None, Hook::End).await;
    }

    /// Runs the chain on a request that arrived on `side`; `Err` when a
    /// supplement (or a failing one's policy) answered it.
    pub async fn incoming_request(&self, s: &mut Session, side: Side, req: &Message) -> (Result<(), Refusal>, Actions) {
        let (stop, actions) = self.run(s, req.method(), Hook::Request(side, req)).await;
        (stop.map_or(Ok(()), Err), actions)
    }

    pub async fn incoming_response(&self, s: &mut Session, side: Side, resp: &Message) -> Actions {
        let method = resp.cseq().ok().map(|c| c.method);
        self.run(s, method.as_ref(), Hook::Response(side, resp)).await.1
    }

    /// Runs the outgoing hooks on a message about to leave on `side`.
    pub async fn outgoing(&self, s: &mut Session, side: Side, out: &mut Message) -> Actions {
        let method = match out.method() {
            Some(m) => Some(m.clone()),
            None => out.cseq().ok().map(|c| c.method),
        };
        self.run(s, method.as_ref(), Hook::Outgoing(side, out)).await.1
    }

    /// One supplement's timer fired.
    pub async fn timer(&self, s: &mut Session, name: &str) -> Actions {
        if !s.chain.iter().any(|n| n == name) {
            return Actions::new();
        }
        let chain = std::mem::replace(&mut s.chain, vec![name.to_owned()]);
        let (_, actions) = self.run(s, None, Hook::Timer).await;
        s.chain = chain;
        actions
    }
}

/// The registry's view of this point: what a registration may take, and
/// the chain.
#[async_trait]
impl Host for Supplements {
    fn point(&self) -> Point {
        Point::SessionSupplement
    }

    fn check(&self, module: &ModuleConfig) -> Vec<Refused> {
        let mut problems = Vec::new();
        if self.list.iter().any(|r| r.name == module.name) || BUILTINS.names().contains(&module.name.as_str()) {
            problems.push(Refused::Taken(format!(
                "name: `{}` already exists (a configured or built-in supplement)",
                module.name
            )));
        }
        for m in &module.methods {
            if Method::parse(m).is_none() {
                problems.push(Refused::Invalid(format!("filters: `{m}` is not a method")));
            }
        }
        problems
    }

    fn rows(&self) -> Vec<Row> {
        let now = state_store::now_ms();
        let leased = self.leased.as_ref().map(|l| l.modules()).unwrap_or_default();
        let mut rows: Vec<Row> = self
            .current()
            .iter()
            .map(|r| match leased.iter().find(|m| m.module.name == r.name) {
                Some(m) if !self.list.iter().any(|c| c.name == r.name) => m.row(now),
                _ => Row::configured(&r.module, r.external.as_ref()),
            })
            .collect();
        rows.extend(leased.iter().filter(|m| !m.is_live(now)).map(|m| m.row(now)));
        rows
    }

    async fn refresh(&self) {
        if let Some(l) = &self.leased
            && let Err(e) = l.refresh().await
        {
            warn!(error = %e, "extension registry unreadable");
        }
    }
}

/// Which callback a chain run makes.
enum Hook<'m> {
    Begin,
    End,
    Request(Side, &'m Message),
    Response(Side, &'m Message),
    Outgoing(Side, &'m mut Message),
    Timer,
}

impl Hook<'_> {
    fn name(&self) -> &'static str {
        match self {
            Hook::Begin => "begin",
            Hook::End => "end",
            Hook::Request(..) => "incoming_request",
            Hook::Response(..) => "incoming_response",
            Hook::Outgoing(..) => "outgoing",
            Hook::Timer => "timer",
        }
    }
}

/// A test supplement: name, priority, methods, the supplement.
#[cfg(test)]
pub(crate) type TestEntry<'a> = (&'a str, i32, Vec<Method>, Arc<dyn Erased>);

#[cfg(test)]
impl Supplements {
    /// A chain of test supplements.
    pub(crate) fn of_list(mut list: Vec<TestEntry<'_>>) -> Self {
        list.sort_by_key(|(_, p, _, _)| *p);
        Self {
            list: list
                .into_iter()
                .map(|(name, priority, methods, imp)| {
                    let mut module = ModuleConfig::builtin(name);
                    module.priority = priority;
                    Arc::new(Registered {
                        name: name.to_owned(),
                        methods,
                        imp,
                        module,
                        external: None,
                    })
                })
                .collect(),
            leased: None,
            members: RwLock::default(),
        }
    }
}
