//! `sipbus extension-check`: drives an extension server through its
//! point's contract and reports each case with the rule of the `.proto`
//! file it checks. What is checked is what sipbus relies on; a server that
//! passes behaves under sipbus as its author expects.

mod events;
mod sdp;
mod supplement;

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Result;
use tokio::time::Instant;
use tonic::{Response, Status};

use crate::cli::{CheckArgs, PointArg};

/// One case's outcome.
struct Outcome {
    case: String,
    rule: &'static str,
    problem: Option<String>,
}

/// The cases run so far, and every call's latency against the deadline.
pub(crate) struct Report {
    deadline: Duration,
    outcomes: Vec<Outcome>,
    late: Vec<(String, Duration)>,
    slowest: Duration,
}

impl Report {
    fn new(deadline: Duration) -> Self {
        Self {
            deadline,
            outcomes: Vec::new(),
            late: Vec::new(),
            slowest: Duration::ZERO,
        }
    }

    /// Makes one call, timed: an answer after the deadline is noted (and
    /// still used, so the other cases can be judged); no answer within
    /// four deadlines is a failure of the call.
    async fn call<T>(
        &mut self,
        what: &str,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, String> {
        let started = Instant::now();
        let patience = self.deadline * 4 + Duration::from_secs(1);
        let result = tokio::time::timeout(patience, call).await;
        let took = started.elapsed();
        self.slowest = self.slowest.max(took);
        if took > self.deadline {
            self.late.push((what.to_owned(), took));
        }
        match result {
            Err(_) => Err(format!("{what}: no answer within {patience:?}")),
            Ok(Err(s)) => Err(format!("{what}: {:?}: {}", s.code(), s.message())),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    fn case(&mut self, case: impl Into<String>, rule: &'static str, problem: Option<String>) {
        self.outcomes.push(Outcome {
            case: case.into(),
            rule,
            problem,
        });
    }

    /// Records a case from a result: `Err` is its problem.
    fn check(&mut self, case: impl Into<String>, rule: &'static str, result: Result<(), String>) {
        self.case(case, rule, result.err());
    }

    fn finish(&mut self) {
        let problem = (!self.late.is_empty()).then(|| {
            let list: Vec<String> = self
                .late
                .iter()
                .map(|(what, took)| format!("{what} took {} ms", took.as_millis()))
                .collect();
            format!("{} (deadline {} ms)", list.join(", "), self.deadline.as_millis())
        });
        self.case(
            format!(
                "every call answers within the deadline (slowest {} ms)",
                self.slowest.as_millis()
            ),
            "External modules have a per-call timeout and a failure policy: a late answer counts as a failure",
            problem,
        );
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for o in &self.outcomes {
            let verdict = if o.problem.is_some() { "FAIL" } else { "pass" };
            let _ = writeln!(out, "{verdict}  {}", o.case);
            let _ = writeln!(out, "      rule: {}", o.rule);
            if let Some(p) = &o.problem {
                let _ = writeln!(out, "      found: {p}");
            }
        }
        let failed = self.outcomes.iter().filter(|o| o.problem.is_some()).count();
        let _ = writeln!(
            out,
            "\n{} cases, {} passed, {failed} failed",
            self.outcomes.len(),
            self.outcomes.len() - failed
        );
        out
    }

    fn passed(&self) -> bool {
        self.outcomes.iter().all(|o| o.problem.is_none())
    }
}

/// Runs the point's cases; `Ok(false)` when any failed.
pub async fn run(args: CheckArgs) -> Result<bool> {
    let channel = super::channel(&args.url)?;
    let mut report = Report::new(Duration::from_millis(args.timeout_ms.max(1)));
    super::emit(&format!(
        "extension-check: {} at {} (deadline {} ms)\n\n",
        args.point.point(),
        args.url,
        args.timeout_ms
    ));
    match args.point {
        PointArg::Supplement => supplement::run(channel, &args, &mut report).await,
        PointArg::Sdp => sdp::run(channel, &args, &mut report).await,
        PointArg::Subscription => events::subscription(channel, &args, &mut report).await,
        PointArg::Publication => events::publication(channel, &args, &mut report).await,
    }
    report.finish();
    super::emit(&report.render());
    Ok(report.passed())
}
