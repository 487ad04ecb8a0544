//! The harness can fail: against a node whose gateways confirm purchases before they are
//! committed (the test-only binary `flashstock-node-ack-before-commit`), a short run without any
//! fault must be reported invalid, with lost confirmed purchases named.

use std::path::PathBuf;

use jepsen_tests::run::{run, RunConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn confirming_before_commit_is_reported_as_lost_purchases() {
    let mut config = RunConfig::short(3);
    config.seconds = 6;
    config.nemesis.kinds.clear();
    config.archive = false;
    config.node_binary = Some(PathBuf::from(env!(
        "CARGO_BIN_EXE_flashstock-node-ack-before-commit"
    )));
    let outcome = run(&config).await.unwrap_or_else(|e| panic!("{e}"));
    let report = &outcome.report;
    println!("{}", report.render());
    assert!(!report.passed(), "a broken node passed the checker");
    let lost = report
        .check
        .invariants
        .iter()
        .find(|i| i.name == "no lost confirmed purchase")
        .expect("the lost-purchase invariant is checked");
    assert!(!lost.passed, "{lost:?}");
    assert!(
        !lost.details.is_empty(),
        "the violations are named: {lost:?}"
    );
}
