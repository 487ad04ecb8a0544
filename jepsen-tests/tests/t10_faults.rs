//! The short fault-injection run of CI, through the `jepsen` binary as a tester runs it: about a
//! minute of purchases, re-sends, restocks and views on a real six-node cluster with the archive
//! on, while every kind of fault happens once: voters killed (one, the leader, all), nodes
//! paused, gateways killed, PostgreSQL crashed, its primary killed and the standby promoted, a
//! follower removed, wiped and added back, a follower restored from its backup, a rolling
//! restart of all six with a leader hand-off, and (as root) partitions of every shape, packet
//! loss and a gateway cut off from every voter. As root the nodes run in network
//! namespaces of their own on a private bridge (`--net auto`); otherwise on loopback.
//!
//! It cannot pass vacuously: the binary exits 0 only when every invariant held and the cluster
//! recovered from every fault, and this test also checks, from the saved report, each of the
//! seventeen invariants by name (the archive's, the cut-off gateways' and checkout's included),
//! that every kind of fault was injected, and that the workload did real work, checkout
//! included (holds confirmed, released and expired, carts, cancellations, limits reached).
//! `JEPSEN_SEED` picks another schedule (7 by default, printed).
//!
//! The iptables kinds (partitions and packet loss) need root and `iptables`. Whether this
//! machine has them is decided when the test is built (`build.rs`): with them,
//! `every_invariant_holds_under_every_kind_of_fault` runs and fails if any kind was skipped;
//! without them, that test is reported ignored with the reason, and
//! `every_invariant_holds_under_every_fault_without_iptables` runs the other kinds instead.
//! As root, `deploy/test.sh` installs iptables before it builds.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use jepsen_tests::nemesis::FaultKind;
use serde_json::Value;

/// Every invariant the short run checks, by the name its report gives it; the ninth is the
/// archive's (the short run archives), the tenth judges gateways cut off from the voters (the
/// `stale-gateway` fault; it passes vacuously, saying so, without iptables), the next six are
/// checkout's, the last judges carts across Raft groups (vacuous with one group, saying so).
const INVARIANTS: [&str; 17] = [
    "no oversell",
    "no lost confirmed purchase",
    "no double apply",
    "definite rejections not applied",
    "replicas agree",
    "restocks add up",
    "views consistent",
    "views as fresh as they say",
    "archive exactly once",
    "cut-off gateways own up",
    "orders add up to sold",
    "holds add up",
    "holds end once, in time",
    "carts all or nothing",
    "limits never exceeded",
    "cancellations once",
    "no cart half bought",
];

fn seed() -> u64 {
    std::env::var("JEPSEN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
}

#[test]
#[cfg_attr(
    not(jepsen_iptables),
    ignore = "partitions and packet loss need root and iptables, which this machine lacked when \
              the test was built; as root, deploy/test.sh installs iptables and the test then runs"
)]
fn every_invariant_holds_under_every_kind_of_fault() {
    let report = short_run();
    assert!(
        report["partitions_skipped"].is_null(),
        "the iptables faults were skipped: {}",
        report["partitions_skipped"]
    );
    check_report(&report, FaultKind::ALL.iter().copied());
}

#[test]
#[cfg_attr(
    jepsen_iptables,
    ignore = "this machine has root and iptables: every_invariant_holds_under_every_kind_of_fault \
              covers these kinds and the iptables ones"
)]
fn every_invariant_holds_under_every_fault_without_iptables() {
    let report = short_run();
    check_report(
        &report,
        FaultKind::ALL
            .iter()
            .copied()
            .filter(|k| !k.needs_iptables()),
    );
}

/// `jepsen --short --tls`, as a tester runs it; its saved report, once it exited 0. The run of CI
/// speaks TLS on every link, so faults are injected into TLS connections too (the node tests
/// cover plaintext).
fn short_run() -> Value {
    let seed = seed();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("jepsen-short");
    let _ = std::fs::remove_dir_all(&out);
    println!("jepsen --short --tls --seed {seed} --out {}", out.display());
    let status = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .args(["--short", "--tls", "--seed", &seed.to_string(), "--out"])
        .arg(&out)
        .status()
        .expect("run the jepsen binary");
    assert_eq!(
        status.code(),
        Some(0),
        "jepsen exited {status}: 1 = an invariant failed, 2 = no recovery after a fault, \
         3 = the run did not finish (its report is above)"
    );
    assert!(
        std::fs::metadata(out.join("history.jsonl")).unwrap().len() > 0,
        "the history is saved"
    );
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

/// Every invariant by name, passed; exactly the `expected` kinds of fault injected; real work.
fn check_report(report: &Value, expected: impl Iterator<Item = FaultKind>) {
    let network = report["network"].as_str().unwrap_or_default();
    assert!(
        network.ends_with("TLS on every link"),
        "the run was meant to use TLS: {network:?}"
    );
    let invariants: Vec<(&str, bool)> = report["check"]["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["passed"] == true))
        .collect();
    for name in INVARIANTS {
        let verdict = invariants.iter().find(|(n, _)| *n == name);
        assert_eq!(
            verdict.map(|(_, passed)| *passed),
            Some(true),
            "invariant {name:?}: checked and passed? the report has {invariants:?}"
        );
    }
    assert_eq!(
        invariants.len(),
        INVARIANTS.len(),
        "an invariant this test does not know: {invariants:?}"
    );

    let expected: BTreeSet<&str> = expected.map(FaultKind::name).collect();
    let injected: BTreeSet<&str> = report["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let kind: FaultKind = serde_json::from_value(f["fault"]["kind"].clone()).unwrap();
            kind.name()
        })
        .collect();
    assert_eq!(injected, expected, "every kind of fault once");

    let count = |kind: &str, label: &str| -> u64 {
        report["counts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c[0] == kind && (c[1] == label || label == "*"))
            .map(|c| c[2].as_u64().unwrap())
            .sum()
    };
    let work = [
        ("purchases confirmed", count("purchase", "ok"), 100),
        (
            "sold out",
            count("purchase", "rejected:insufficient_stock"),
            1,
        ),
        ("re-sends confirmed", count("resend", "ok"), 1),
        ("restocks confirmed", count("restock", "ok"), 1),
        ("twins", count("twin", "*"), 1),
        ("linearizable views", count("linear-view", "ok"), 1),
        ("holds placed", count("hold", "ok"), 10),
        ("holds confirmed", count("confirm", "ok"), 5),
        ("holds released", count("release", "ok"), 1),
        (
            "abandoned holds confirmed too late",
            count("late-confirm", "rejected:hold_expired"),
            1,
        ),
        ("carts confirmed", count("cart", "ok"), 5),
        ("cancellations confirmed", count("cancel", "ok"), 1),
        (
            "limits per customer reached",
            count("purchase", "rejected:limit_reached")
                + count("hold", "rejected:limit_reached")
                + count("cart", "rejected:limit_reached"),
            1,
        ),
    ];
    for (what, n, least) in work {
        assert!(n >= least, "the workload did too little: {what}: {n}");
    }
    println!("network: {}", report["network"]);
}
