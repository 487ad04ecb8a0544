//! The short fault-injection run of CI, through the `jepsen` binary as a tester runs it: about a
//! minute of purchases, re-sends, restocks and views on a real six-node cluster with the archive
//! on, while every kind of fault happens once: voters killed (one, the leader, all), nodes
//! paused, gateways killed, PostgreSQL crashed, a follower removed, wiped and added back, and
//! (as root) partitions of every shape and packet loss. As root the nodes run in network
//! namespaces of their own on a private bridge (`--net auto`); otherwise on loopback.
//!
//! It cannot pass vacuously: the binary exits 0 only when every invariant held and the cluster
//! recovered from every fault, and this test also checks, from the saved report, that every
//! kind of fault was injected and that the workload did real work. `JEPSEN_SEED` picks another
//! schedule (7 by default, printed).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use jepsen_tests::nemesis::FaultKind;

fn seed() -> u64 {
    std::env::var("JEPSEN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
}

#[test]
fn every_invariant_holds_under_every_kind_of_fault() {
    let seed = seed();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("jepsen-short");
    let _ = std::fs::remove_dir_all(&out);
    println!("jepsen --short --seed {seed} --out {}", out.display());
    let status = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .args(["--short", "--seed", &seed.to_string(), "--out"])
        .arg(&out)
        .status()
        .expect("run the jepsen binary");
    assert_eq!(
        status.code(),
        Some(0),
        "jepsen exited {status}: 1 = an invariant failed, 2 = no recovery after a fault, \
         3 = the run did not finish (its report is above)"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let invariants = report["check"]["invariants"].as_array().unwrap();
    assert!(invariants.len() >= 8, "the archive is checked too");
    assert!(invariants.iter().all(|i| i["passed"] == true));

    let mut expected: BTreeSet<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
    if !report["partitions_skipped"].is_null() {
        for kind in FaultKind::ALL.iter().filter(|k| k.needs_iptables()) {
            expected.remove(kind.name());
        }
    }
    let injected: BTreeSet<String> = report["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let kind: FaultKind = serde_json::from_value(f["fault"]["kind"].clone()).unwrap();
            kind.name().to_string()
        })
        .collect();
    let injected: BTreeSet<&str> = injected.iter().map(String::as_str).collect();
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
    ];
    for (what, n, least) in work {
        assert!(n >= least, "the workload did too little: {what}: {n}");
    }
    assert!(
        std::fs::metadata(out.join("history.jsonl")).unwrap().len() > 0,
        "the history is saved"
    );
    println!("network: {}", report["network"]);
}
