//! The figures of one run, as JSON ([`RunReport`]) and as a summary table for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::check::CheckReport;
use crate::driver::{RunConfig, RunResult};
use crate::record::Kind;
use crate::workload::{Workload, WorkloadKind};

/// Latency percentiles of one operation kind, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl LatencySummary {
    fn of(histogram: &Histogram<u64>, seconds: f64) -> LatencySummary {
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            count: histogram.len(),
            per_s: histogram.len() as f64 / seconds.max(1e-9),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
            mean_ms: histogram.mean() / 1000.0,
        }
    }
}

/// How many final answers had one (request, status, code).
#[derive(Debug, Clone, Serialize)]
pub struct AnswerCount {
    pub request: String,
    pub status: u16,
    pub code: String,
    pub count: u64,
    pub error: bool,
}

/// Everything one run measured and checked.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The scenario's name, e.g. `standard-closed`.
    pub name: String,
    /// What was driven: `flashstock`, `axum` or `postgres`.
    pub target: String,
    pub workload: WorkloadKind,
    pub products: usize,
    pub initial_stock: u64,
    pub view_percent: u32,
    pub config: RunConfig,
    pub connect_s: f64,
    pub elapsed_s: f64,
    /// Final answers per second, all kinds.
    pub answers_per_s: f64,
    /// Confirmed purchases per second: over the time to the last confirmed purchase (a flash
    /// sale's selling time), else over the run.
    pub confirmed_per_s: f64,
    /// Burst mode: time from the release of every request to the last answer.
    pub burst_ms: Option<f64>,
    pub latency: BTreeMap<Kind, LatencySummary>,
    /// Purchase attempts repeated with the same key.
    pub retries: u64,
    /// Open loop: requests due, and those dispatched more than 5 ms late for want of a free
    /// connection (their wait is counted in their latency).
    pub scheduled: u64,
    pub late_dispatches: u64,
    pub answers: Vec<AnswerCount>,
    pub errors: u64,
    pub check: Option<CheckReport>,
    /// No error and, where checked, no problem in the final state.
    pub ok: bool,
    /// CPU seconds each process (or group) used during the load phase, when measured;
    /// `machine` is the whole machine's busy time, every process included.
    pub cpu_s: Option<BTreeMap<String, f64>>,
    /// Where the writes' time went, stage by stage, when the nodes were scraped
    /// ([`crate::bench::stages`]).
    pub stages: Option<Vec<crate::bench::stages::StageRow>>,
}

impl RunReport {
    pub fn new(
        name: &str,
        target: &str,
        workload: &Workload,
        config: &RunConfig,
        result: &RunResult,
        check: Option<CheckReport>,
    ) -> RunReport {
        let recorder = &result.recorder;
        let seconds = result.elapsed.as_secs_f64();
        let latency = recorder
            .histograms()
            .iter()
            .map(|(kind, h)| (*kind, LatencySummary::of(h, seconds)))
            .collect();
        let answers: Vec<AnswerCount> = recorder
            .answers
            .iter()
            .map(|((request, status, code), count)| AnswerCount {
                request: (*request).to_owned(),
                status: *status,
                code: code.clone(),
                count: *count,
                error: !(matches!(*status, 200 | 201) && code.is_empty()
                    || matches!(*request, "purchase" | "hold")
                        && *status == 409
                        && code == "insufficient_stock"
                        && workload.sells_out()),
            })
            .collect();
        let total: u64 = answers.iter().map(|a| a.count).sum();
        let confirmed = recorder.count(Kind::PurchaseConfirmed);
        let selling = match (workload.sells_out(), result.last_confirmed) {
            (true, Some(last)) => last.as_secs_f64(),
            _ => seconds,
        };
        let ok = recorder.errors == 0 && check.as_ref().is_none_or(CheckReport::ok);
        RunReport {
            name: name.to_owned(),
            target: target.to_owned(),
            workload: workload.kind,
            products: workload.catalog.products,
            initial_stock: workload.catalog.stock,
            view_percent: workload.view_percent,
            config: config.clone(),
            connect_s: result.connect_time.as_secs_f64(),
            elapsed_s: seconds,
            answers_per_s: total as f64 / seconds.max(1e-9),
            confirmed_per_s: confirmed as f64 / selling.max(1e-9),
            burst_ms: result.burst_time.map(|t| t.as_secs_f64() * 1000.0),
            latency,
            retries: recorder.retries,
            scheduled: result.scheduled,
            late_dispatches: result.late_dispatches,
            answers,
            errors: recorder.errors,
            check,
            ok,
            cpu_s: None,
            stages: None,
        }
    }

    pub fn latency_of(&self, kind: Kind) -> Option<&LatencySummary> {
        self.latency.get(&kind)
    }
}

/// A summary table of runs, one line per run and operation kind, then errors and checks.
pub fn table(reports: &[RunReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<26} {:<9} {:>6} {:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "run",
        "target",
        "conns",
        "kind",
        "answers",
        "per s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms"
    );
    for report in reports {
        for kind in Kind::ALL {
            let Some(l) = report.latency_of(kind) else {
                continue;
            };
            let _ = writeln!(
                out,
                "{:<26} {:<9} {:>6} {:<12} {:>9} {:>9.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                report.name,
                report.target,
                report.config.connections,
                kind.name(),
                l.count,
                l.per_s,
                l.p50_ms,
                l.p99_ms,
                l.p999_ms,
                l.max_ms
            );
        }
    }
    for report in reports {
        let mut notes = vec![format!(
            "{:.0} answers/s, {:.0} confirmed purchases/s",
            report.answers_per_s, report.confirmed_per_s
        )];
        if let Some(burst) = report.burst_ms {
            notes.push(format!("burst answered in {burst:.0} ms"));
        }
        if report.scheduled > 0 {
            notes.push(format!(
                "{} of {} dispatched late",
                report.late_dispatches, report.scheduled
            ));
        }
        if report.retries > 0 {
            notes.push(format!("{} same-key retries", report.retries));
        }
        let _ = writeln!(out, "{}: {}", report.name, notes.join("; "));
        for answer in report
            .answers
            .iter()
            .filter(|a| a.status != 200 || !a.code.is_empty())
        {
            let _ = writeln!(
                out,
                "  {} {} {}: {}{}",
                answer.request,
                answer.status,
                answer.code,
                answer.count,
                if answer.error {
                    " (error)"
                } else {
                    " (expected)"
                }
            );
        }
        if let Some(check) = &report.check {
            let _ = writeln!(
                out,
                "  check: {} products on {} servers, sold {} (seen confirmed {}, unknown {}): {}",
                check.products,
                check.servers,
                check.sold,
                check.confirmed,
                check.unknown,
                if check.ok() {
                    "no oversell, conserved".to_owned()
                } else {
                    format!("{} PROBLEMS", check.problem_count)
                }
            );
            for problem in &check.problems {
                let _ = writeln!(out, "    {problem}");
            }
        }
        let _ = writeln!(out, "  {}", if report.ok { "ok" } else { "FAILED" });
    }
    out
}
