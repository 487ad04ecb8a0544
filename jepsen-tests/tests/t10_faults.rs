//! The short fault-injection run of CI: about a minute of purchases, re-sends, restocks and views
//! on a real six-node cluster with the archive on, while every kind of fault happens once: voters
//! killed (one, the leader, all), nodes paused, gateways killed, PostgreSQL crashed, a follower
//! removed, wiped and added back, and (as root, with iptables) partitions of every shape and
//! packet loss; then every invariant is checked against the history and the final state of
//! every node.
//!
//! It cannot pass vacuously: it asserts that every kind of fault was injected, that the cluster
//! became whole again after each, and that purchases invoked after each heal were confirmed.
//! `JEPSEN_SEED` picks another schedule.

use std::collections::BTreeSet;

use jepsen_tests::history::{OpKind, OpResult};
use jepsen_tests::nemesis::FaultKind;
use jepsen_tests::run::{run, RunConfig, RunOutcome};

fn seed() -> u64 {
    std::env::var("JEPSEN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
}

/// Panic with the report and the tail of every node's log.
fn fail(outcome: &RunOutcome, why: &str) -> ! {
    panic!(
        "{why}\n{}\nnode logs (tails):\n{}",
        outcome.report.render(),
        outcome.log_tails
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_invariant_holds_under_kills_pauses_and_partitions() {
    let config = RunConfig::short(seed());
    let outcome = run(&config).await.unwrap_or_else(|e| panic!("{e}"));
    let report = &outcome.report;
    println!("{}", report.render());
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("jepsen-short");
    for path in outcome.save(&artifacts).expect("save the run's artifacts") {
        println!("artifact: {}", path.display());
    }

    let failed: Vec<&str> = report
        .check
        .invariants
        .iter()
        .filter(|i| !i.passed)
        .map(|i| i.name)
        .collect();
    if !failed.is_empty() {
        fail(&outcome, &format!("invariants failed: {failed:?}"));
    }

    let mut expected: BTreeSet<FaultKind> = FaultKind::ALL.into_iter().collect();
    if report.partitions_skipped.is_some() {
        expected.retain(|kind| !kind.needs_iptables());
    }
    let injected: BTreeSet<FaultKind> = report.faults.iter().map(|f| f.fault.kind).collect();
    if injected != expected {
        fail(
            &outcome,
            &format!("faults injected {injected:?}, expected {expected:?}"),
        );
    }
    let problems = report.availability_problems();
    if !problems.is_empty() {
        fail(&outcome, &format!("availability: {problems:#?}"));
    }

    let confirmed = outcome
        .history
        .of_kind(OpKind::Purchase)
        .filter(|op| matches!(op.result, OpResult::Confirmed { .. }))
        .count();
    let sold_out = outcome
        .history
        .ops
        .iter()
        .filter(|op| op.result.label() == "rejected:insufficient_stock")
        .count();
    let resends = outcome
        .history
        .of_kind(OpKind::Resend)
        .filter(|op| matches!(op.result, OpResult::Confirmed { .. }))
        .count();
    let restocks = outcome
        .history
        .of_kind(OpKind::Restock)
        .filter(|op| matches!(op.result, OpResult::Restocked { .. }))
        .count();
    let twins = outcome.history.of_kind(OpKind::Twin).count();
    let linear_views = outcome
        .history
        .of_kind(OpKind::LinearView)
        .filter(|op| matches!(op.result, OpResult::Viewed { .. }))
        .count();
    let too_little = confirmed < 100
        || sold_out == 0
        || resends == 0
        || restocks == 0
        || twins == 0
        || linear_views == 0;
    if too_little {
        fail(
            &outcome,
            &format!(
                "the workload did too little: {confirmed} purchases confirmed, {sold_out} \
                 sold out, {resends} re-sends confirmed, {restocks} restocks confirmed, \
                 {twins} twins, {linear_views} linearizable views"
            ),
        );
    }
}
