//! The summary of a run: operations by result, the faults, the invariants, latencies.

use std::fmt::Write as _;

use serde::Serialize;

use crate::checker::CheckReport;
use crate::history::{stamp, History, OpKind, OpResult};
use crate::nemesis::{FaultFigures, FaultKind, FaultRecord};

/// Nearest-rank percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(mut samples: Vec<u64>) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |q: f64| {
            let index = (q * samples.len() as f64).ceil() as usize;
            samples[index.clamp(1, samples.len()) - 1]
        };
        Some(Percentiles {
            count: samples.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            p999: rank(0.999),
            max: *samples.last().expect("not empty"),
        })
    }
}

/// A fault and how the workload fared around it.
#[derive(Debug, Clone, Serialize)]
pub struct FaultOutcome {
    pub fault: FaultRecord,
    /// Purchases invoked while the fault was in place and confirmed.
    pub confirmed_during: usize,
    /// Purchases invoked after the heal (until the next fault or the end) and confirmed.
    pub confirmed_after: usize,
    /// The longest time without any purchase confirmation, from the fault's start until the
    /// cluster was whole again (or the next fault): how long buyers waited at worst.
    pub longest_gap_ms: u64,
    /// `postgres-failover` only: the longest time without a purchase confirmation while the
    /// archive was halted, from the kill until the first row written on the promoted server
    /// (the whole window above when it never resumed), while views of the gateways' replicas
    /// were still answered. Purchases waiting for the archive would show here; a stall after
    /// the archive is back has another cause, and the rules on the whole window apply to it.
    pub gap_while_archive_halted_ms: Option<u64>,
    /// `postgres-failover` only: the longest time in the same window without a purchase
    /// confirmation during which local views were not answered either. Views involve neither
    /// the leader nor the archive, so a stall of every request is the machine's (in this
    /// harness, the promotion's writes on the disk every node shares), not purchases waiting
    /// for the archive: reported, not counted.
    pub stall_of_every_request_ms: Option<u64>,
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub seed: u64,
    pub clients: usize,
    pub duration_ms: u64,
    pub fault_kinds: Vec<FaultKind>,
    /// Why partitions were skipped, when they were asked for.
    pub partitions_skipped: Option<String>,
    pub counts: Vec<(String, String, usize)>,
    pub faults: Vec<FaultOutcome>,
    pub check: CheckReport,
    pub purchase_latency: Option<Percentiles>,
    pub settled_index: u64,
    /// Which network the nodes were on: loopback, or a namespace each.
    pub network: String,
}

impl Report {
    pub fn new(
        run: RunFacts,
        history: &History,
        faults: Vec<FaultRecord>,
        check: CheckReport,
    ) -> Report {
        let counts = history
            .counts()
            .into_iter()
            .map(|((kind, label), n)| (kind.name().to_string(), label, n))
            .collect();
        let latencies = history
            .of_kind(OpKind::Purchase)
            .filter(|op| matches!(op.result, OpResult::Confirmed { .. }))
            .map(|op| op.latency_ms())
            .collect();
        Report {
            seed: run.seed,
            clients: run.clients,
            duration_ms: run.duration_ms,
            fault_kinds: run.fault_kinds,
            partitions_skipped: run.partitions_skipped,
            counts,
            faults: fault_outcomes(history, faults, run.duration_ms),
            check,
            purchase_latency: Percentiles::of(latencies),
            settled_index: run.settled_index,
            network: run.network,
        }
    }

    /// Every invariant held.
    pub fn passed(&self) -> bool {
        self.check.passed()
    }

    /// Problems of availability: a fault the cluster did not recover from, after which no
    /// purchase was confirmed, or (a PostgreSQL failover) during which purchases waited.
    pub fn availability_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, outcome) in self.faults.iter().enumerate() {
            let fault = &outcome.fault;
            for problem in &fault.problems {
                problems.push(format!(
                    "fault {} ({}): {problem}",
                    i + 1,
                    fault.description
                ));
            }
            let gap_max_ms = crate::nemesis::postgres_failover::PURCHASE_GAP_MAX_MS;
            if let Some(gap_ms) = outcome.gap_while_archive_halted_ms {
                if gap_ms > gap_max_ms {
                    problems.push(format!(
                        "fault {} ({}): purchases waited for the archive: {gap_ms} ms without a \
                         confirmation while it was halted (at most {gap_max_ms} ms)",
                        i + 1,
                        fault.description,
                    ));
                }
            }
            if outcome.confirmed_after == 0 {
                problems.push(format!(
                    "fault {} ({}): no purchase invoked after the heal was confirmed",
                    i + 1,
                    fault.description
                ));
            }
        }
        problems
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_header(&mut out);
        self.render_counts(&mut out);
        self.render_faults(&mut out);
        self.render_invariants(&mut out);
        self.render_unknown(&mut out);
        self.render_latency(&mut out);
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        let _ = writeln!(out, "\nverdict: {verdict}");
        out
    }

    fn render_header(&self, out: &mut String) {
        let kinds: Vec<&str> = self.fault_kinds.iter().map(|k| k.name()).collect();
        let _ = writeln!(out, "==== jepsen report ====");
        let _ = writeln!(
            out,
            "seed {}, {} clients, {:.1} s of workload, faults: {}",
            self.seed,
            self.clients,
            self.duration_ms as f64 / 1000.0,
            if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.join(",")
            }
        );
        let _ = writeln!(out, "network: {}", self.network);
        if let Some(reason) = &self.partitions_skipped {
            let _ = writeln!(out, "partitions: SKIPPED ({reason})");
        }
        let _ = writeln!(out, "final state read at log index {}", self.settled_index);
    }

    fn render_counts(&self, out: &mut String) {
        let _ = writeln!(out, "\n-- operations by result --");
        let mut kind = "";
        for (k, label, n) in &self.counts {
            if k != kind {
                let total: usize = self
                    .counts
                    .iter()
                    .filter(|(k2, _, _)| k2 == k)
                    .map(|c| c.2)
                    .sum();
                let _ = writeln!(out, "{k:<12} {total:>7} total");
                kind = k;
            }
            let _ = writeln!(out, "             {n:>7} {label}");
        }
    }

    fn render_faults(&self, out: &mut String) {
        let _ = writeln!(out, "\n-- faults injected: {} --", self.faults.len());
        for (i, outcome) in self.faults.iter().enumerate() {
            let fault = &outcome.fault;
            let after_heal = |t: Option<u64>| {
                t.map_or("never".into(), |t| format!("+{} ms", t - fault.healed_ms))
            };
            let _ = writeln!(
                out,
                "{:>2}. {} {:<9} {} | held {} ms | whole {} | purchase confirmed {} | \
                 longest without a confirmation {} ms | confirmed during {}, after {}",
                i + 1,
                stamp(fault.started_ms),
                fault.kind.name(),
                fault.description,
                fault.healed_ms - fault.started_ms,
                after_heal(fault.recovered_ms),
                after_heal(fault.resumed_ms),
                outcome.longest_gap_ms,
                outcome.confirmed_during,
                outcome.confirmed_after
            );
            if let Some(figures) = &fault.figures {
                let _ = writeln!(out, "      {}", figures.describe());
            }
            if let Some(gap_ms) = outcome.gap_while_archive_halted_ms {
                let _ = writeln!(
                    out,
                    "      longest without a confirmation while the archive was halted: {gap_ms} ms"
                );
            }
            if let Some(stall_ms) = outcome.stall_of_every_request_ms {
                if stall_ms > crate::nemesis::postgres_failover::PURCHASE_GAP_MAX_MS {
                    let _ = writeln!(
                        out,
                        "      meanwhile a stall of every request, local views included: \
                         {stall_ms} ms (the machine's; views wait for neither the leader nor \
                         the archive)"
                    );
                }
            }
            for problem in &fault.problems {
                let _ = writeln!(out, "      PROBLEM: {problem}");
            }
        }
    }

    fn render_invariants(&self, out: &mut String) {
        let _ = writeln!(out, "\n-- invariants --");
        for (i, invariant) in self.check.invariants.iter().enumerate() {
            let verdict = if invariant.passed { "PASS" } else { "FAIL" };
            let _ = writeln!(
                out,
                "{}. {verdict} {}: {}",
                i + 1,
                invariant.name,
                invariant.summary
            );
            for detail in &invariant.details {
                let _ = writeln!(out, "       {detail}");
            }
        }
        let problems = self.availability_problems();
        let verdict = if problems.is_empty() { "PASS" } else { "FAIL" };
        let _ = writeln!(
            out,
            "   {verdict} availability: every fault healed, cluster whole again, purchases \
             confirmed after it"
        );
        for problem in problems {
            let _ = writeln!(out, "       {problem}");
        }
    }

    fn render_unknown(&self, out: &mut String) {
        let u = &self.check.unknown;
        let _ = writeln!(out, "\n-- unknown outcomes (allowed either way) --");
        let _ = writeln!(
            out,
            "purchases unknown after retries: {} ({} applied, {} not applied)",
            u.purchases,
            u.purchases_applied,
            u.purchases - u.purchases_applied
        );
        let _ = writeln!(
            out,
            "purchases that saw an unknown attempt and learned the outcome by retrying: {}",
            u.purchases_resolved_by_retry
        );
        let _ = writeln!(
            out,
            "restocks unknown: {} ({} items, {} of them applied)",
            u.restocks, u.restock_items, u.restock_items_applied
        );
        let _ = writeln!(
            out,
            "re-sends of confirmed keys left inconclusive (unavailable/unknown/refused for itself): {}",
            u.resends_inconclusive
        );
        for kind in &u.checkout {
            let _ = writeln!(
                out,
                "{} unknown after retries: {} ({} show in the final state)",
                kind.kind, kind.unknown, kind.applied
            );
        }
    }

    fn render_latency(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n-- latency of confirmed purchases (incl. retries) --"
        );
        match &self.purchase_latency {
            Some(p) => {
                let _ = writeln!(
                    out,
                    "n={} p50={} ms p99={} ms p99.9={} ms max={} ms",
                    p.count, p.p50, p.p99, p.p999, p.max
                );
            }
            None => {
                let _ = writeln!(out, "no confirmed purchase");
            }
        }
    }
}

/// Facts of a run that are not in the history or the check.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub seed: u64,
    pub clients: usize,
    pub duration_ms: u64,
    pub fault_kinds: Vec<FaultKind>,
    pub partitions_skipped: Option<String>,
    pub settled_index: u64,
    /// Which network the nodes were on.
    pub network: String,
}

/// How many purchases were confirmed during and after each fault.
fn fault_outcomes(history: &History, faults: Vec<FaultRecord>, end_ms: u64) -> Vec<FaultOutcome> {
    let starts: Vec<u64> = faults.iter().map(|f| f.started_ms).collect();
    faults
        .into_iter()
        .enumerate()
        .map(|(i, fault)| {
            let next = starts.get(i + 1).copied().unwrap_or(u64::MAX).min(end_ms);
            let until = fault
                .recovered_ms
                .unwrap_or(next)
                .max(fault.healed_ms)
                .min(next);
            let (gap_while_archive_halted_ms, stall_of_every_request_ms) = match &fault.figures {
                Some(FaultFigures::PostgresFailover(figures)) => {
                    // From the kill, which comes after the fault's start, until the promoted
                    // server took its first row.
                    let killed = figures.killed_at_ms.clamp(fault.started_ms, until);
                    let halted_until = figures
                        .archive_halted_ms
                        .map_or(until, |halted| (killed + halted).min(until));
                    let stalls = stalls(history, killed, halted_until.max(killed));
                    (Some(stalls.purchases_only), Some(stalls.every_request))
                }
                _ => (None, None),
            };
            FaultOutcome {
                longest_gap_ms: longest_gap(history, fault.started_ms, until),
                gap_while_archive_halted_ms,
                stall_of_every_request_ms,
                confirmed_during: history
                    .confirmed_purchases_invoked_between(fault.started_ms, fault.healed_ms),
                confirmed_after: history.confirmed_purchases_invoked_between(fault.healed_ms, next),
                fault,
            }
        })
        .collect()
}

/// A stall of purchases counts as one of every request when local views were unanswered
/// through all of it but this much.
const EVERY_REQUEST_SLACK_MS: u64 = 500;

/// Completion times within `from..until` of the operations of `kind` that `succeeded`, sorted.
fn completions(
    history: &History,
    kind: OpKind,
    succeeded: fn(&OpResult) -> bool,
    from: u64,
    until: u64,
) -> Vec<u64> {
    let mut times: Vec<u64> = history
        .of_kind(kind)
        .filter(|op| succeeded(&op.result))
        .map(|op| op.completed_ms)
        .filter(|t| (from..until).contains(t))
        .collect();
    times.sort_unstable();
    times
}

fn purchase_confirmed(result: &OpResult) -> bool {
    matches!(result, OpResult::Confirmed { .. })
}

fn viewed(result: &OpResult) -> bool {
    matches!(result, OpResult::Viewed { .. })
}

/// The longest stretch of `from..until` between two of the sorted `times` (or an edge).
fn longest_between(times: &[u64], from: u64, until: u64) -> u64 {
    let mut last = from;
    let mut longest = 0;
    for &t in times.iter().chain([&until]) {
        longest = longest.max(t.saturating_sub(last));
        last = t;
    }
    longest
}

/// The longest stretch of `from..until` without a purchase confirmation (by completion time).
fn longest_gap(history: &History, from: u64, until: u64) -> u64 {
    let confirmations = completions(history, OpKind::Purchase, purchase_confirmed, from, until);
    longest_between(&confirmations, from, until)
}

/// The longest stretches of a window without a purchase confirmation, apart by whether local
/// views were answered meanwhile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Stalls {
    /// Views were answered during it: purchases alone stalled.
    purchases_only: u64,
    /// Views were not answered through all of it but [`EVERY_REQUEST_SLACK_MS`].
    every_request: u64,
}

/// [`Stalls`] of `from..until`. A run whose workload has no local view counts every stall as
/// one of purchases alone.
fn stalls(history: &History, from: u64, until: u64) -> Stalls {
    let confirmations = completions(history, OpKind::Purchase, purchase_confirmed, from, until);
    let views_in_run = history.of_kind(OpKind::View).next().is_some();
    let views = completions(history, OpKind::View, viewed, from, until);
    let mut stalls = Stalls::default();
    let mut last = from;
    for &t in confirmations.iter().chain([&until]) {
        let gap = t.saturating_sub(last);
        // `views` is sorted: the ones answered within `last..t` are one slice of it.
        let inside =
            &views[views.partition_point(|v| *v < last)..views.partition_point(|v| *v < t)];
        let views_gap = longest_between(inside, last, t);
        if views_in_run && gap > EVERY_REQUEST_SLACK_MS && views_gap + EVERY_REQUEST_SLACK_MS >= gap
        {
            stalls.every_request = stalls.every_request.max(gap);
        } else {
            stalls.purchases_only = stalls.purchases_only.max(gap);
        }
        last = t;
    }
    stalls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confirmed(completed_ms: u64) -> crate::history::OpRecord {
        crate::history::OpRecord {
            client: 0,
            kind: OpKind::Purchase,
            key: None,
            product: "p".into(),
            quantity: 1,
            invoked_ms: 0,
            completed_ms,
            attempts: 1,
            unknown_attempts: 0,
            expected: None,
            target: Default::default(),
            result: OpResult::Confirmed {
                order: flashstock_api::Order {
                    id: flashstock_api::OrderId(1),
                    key: String::new(),
                    product: "p".into(),
                    quantity: 1,
                    customer: None,
                    price_cents: 0,
                    remaining: 0,
                    placed_at_ms: 0,
                    token: None,
                },
                replayed: false,
            },
        }
    }

    #[test]
    fn the_longest_gap_counts_the_edges() {
        let mut history = History::default();
        history.extend(vec![confirmed(1500), confirmed(1700), confirmed(4000)]);
        assert_eq!(longest_gap(&history, 1000, 4500), 2300);
        assert_eq!(
            longest_gap(&history, 4100, 9000),
            4900,
            "no confirmation at all"
        );
    }

    #[test]
    fn a_failover_counts_only_the_stall_while_the_archive_is_halted() {
        let failover = |archive_halted_ms| failover_killed_at(1000, archive_halted_ms);
        // Confirmations every 100 ms, but none from 5000 to 8000 ms: a 3 s stall, after the
        // archive resumed at 1000 + 2500 ms.
        let mut history = History::default();
        let times = (1000..=9500)
            .step_by(100)
            .filter(|t| !(5000..8000).contains(t));
        history.extend(times.map(confirmed).collect());
        let outcomes = fault_outcomes(&history, vec![failover(Some(2500))], 10_000);
        assert_eq!(outcomes[0].longest_gap_ms, 3100);
        assert_eq!(outcomes[0].gap_while_archive_halted_ms, Some(100));
        // The archive never resumed: the whole window counts, and the stall is in it.
        let outcomes = fault_outcomes(&history, vec![failover(None)], 10_000);
        assert_eq!(outcomes[0].gap_while_archive_halted_ms, Some(3100));
    }

    #[test]
    fn a_failover_counts_the_halt_from_the_kill_not_from_the_fault_start() {
        // The fault starts at 1000 ms, the primary is killed at 5000 ms (reading the backlog
        // first took that long), and the archive is back 2500 ms after the kill. A stall from
        // 2000 to 4500 ms came before the kill: the archive was running.
        let mut history = History::default();
        let times = (1000..=9500)
            .step_by(100)
            .filter(|t| !(2000..4500).contains(t));
        history.extend(times.map(confirmed).collect());
        let outcomes = fault_outcomes(&history, vec![failover_killed_at(5000, Some(2500))], 10_000);
        assert_eq!(outcomes[0].longest_gap_ms, 2600);
        assert_eq!(outcomes[0].gap_while_archive_halted_ms, Some(100));
        // The same stall after the kill counts.
        let outcomes = fault_outcomes(&history, vec![failover_killed_at(1500, Some(4000))], 10_000);
        assert_eq!(outcomes[0].gap_while_archive_halted_ms, Some(2600));
    }

    fn viewed_at(completed_ms: u64) -> crate::history::OpRecord {
        crate::history::test_view(completed_ms, completed_ms, None, None)
    }

    #[test]
    fn a_stall_of_every_request_while_the_archive_is_halted_is_reported_apart() {
        // Purchases and views every 100 ms from 1000 ms; from 3000 to 5000 ms neither is
        // answered (the machine stalled); from 6000 to 7800 ms views go on and purchases stop.
        let mut history = History::default();
        let times = || (1000..=9500).step_by(100);
        history.extend(
            times()
                .filter(|t| !(3000..5000).contains(t) && !(6000..7800).contains(t))
                .map(confirmed)
                .collect(),
        );
        history.extend(
            times()
                .filter(|t| !(3000..5000).contains(t))
                .map(viewed_at)
                .collect(),
        );
        let outcomes = fault_outcomes(&history, vec![failover_killed_at(1000, Some(8000))], 10_000);
        assert_eq!(outcomes[0].gap_while_archive_halted_ms, Some(1900));
        assert_eq!(outcomes[0].stall_of_every_request_ms, Some(2100));
        // Without views in the run, every stall is counted.
        let mut purchases_only = History::default();
        purchases_only.extend(
            times()
                .filter(|t| !(3000..5000).contains(t))
                .map(confirmed)
                .collect(),
        );
        let outcomes = fault_outcomes(
            &purchases_only,
            vec![failover_killed_at(1000, Some(8000))],
            10_000,
        );
        assert_eq!(outcomes[0].gap_while_archive_halted_ms, Some(2100));
    }

    /// A `postgres-failover` fault from 1000 to 9000 ms whose primary was killed at `killed_at_ms`.
    fn failover_killed_at(killed_at_ms: u64, archive_halted_ms: Option<u64>) -> FaultRecord {
        FaultRecord {
            kind: FaultKind::PostgresFailover,
            description: "failover".into(),
            nodes: Vec::new(),
            started_ms: 1000,
            healed_ms: 9000,
            recovered_ms: Some(9100),
            resumed_ms: Some(9200),
            problems: Vec::new(),
            figures: Some(FaultFigures::PostgresFailover(
                crate::nemesis::postgres_failover::Figures {
                    killed_at_ms,
                    archive_halted_ms,
                    ..Default::default()
                },
            )),
        }
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        assert_eq!(Percentiles::of(vec![]), None);
        let p = Percentiles::of((1..=1000).rev().collect()).unwrap();
        assert_eq!(
            (p.count, p.p50, p.p99, p.p999, p.max),
            (1000, 500, 990, 999, 1000)
        );
        let one = Percentiles::of(vec![7]).unwrap();
        assert_eq!((one.p50, one.p99, one.max), (7, 7, 7));
    }
}
