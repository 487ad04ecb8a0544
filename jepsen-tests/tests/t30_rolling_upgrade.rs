//! The rolling upgrade from the previous release, under load: a six-node cluster of the previous
//! release's binary (built from git by `deploy/build-previous.sh`, which `deploy/test.sh` runs
//! first) serves the fault harness's workload, with the archive on and TLS on every link; a
//! quarter into the run, the `upgrade` fault restarts every node with this release's binary,
//! one at a time (gateways, followers, the leader last after a hand-off). Leadership goes to the
//! first upgraded voter for a few seconds, so the new release leads while older nodes are
//! members: that leader must not raise the cluster version yet. Before it leads, the first
//! upgraded voter is rolled back to the previous release and upgraded again: the rollback path
//! for servers upgraded before the switch.
//!
//! It checks what an operator relies on: every invariant of the fault harness over the whole
//! history (no purchase without a definite answer is counted as confirmed, none lost, none
//! applied twice, the archive exact), the cluster whole and purchases confirmed after the
//! upgrade, and the cluster version unchanged while any node ran the previous release, then
//! raised to this release's on every node once the last one was upgraded.

use std::path::{Path, PathBuf};
use std::process::Command;

use flashstock_api::{CLUSTER_VERSION, CLUSTER_VERSION_BASE};
use serde_json::Value;

/// The previous release's node binary, where `deploy/build-previous.sh` puts it.
fn previous_binary() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/build-previous.sh");
    let text = std::fs::read_to_string(&script).expect("read deploy/build-previous.sh");
    let commit = text
        .lines()
        .find_map(|line| line.strip_prefix("PREVIOUS_COMMIT="))
        .expect("build-previous.sh names the previous release's commit");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the build directory")
        .to_owned();
    let binary = target.join("previous").join(commit).join("flashstock-node");
    assert!(
        binary.exists(),
        "{} is missing: run deploy/build-previous.sh (deploy/test.sh does) before this test",
        binary.display()
    );
    binary
}

fn version_of(binary: &Path) -> String {
    let out = Command::new(binary).arg("--version").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
#[cfg_attr(
    not(jepsen_previous_release),
    ignore = "the previous release's node binary was not built when this test was: \
              deploy/build-previous.sh builds it from git (deploy/test.sh runs it first); a \
              clone without the previous release's commit cannot"
)]
fn a_rolling_upgrade_under_load_keeps_every_invariant_and_switches_the_cluster_version_last() {
    let previous = previous_binary();
    let current = flashstock_deploy::local::node_binary().expect("the flashstock-node binary");
    let (from, to) = (version_of(&previous), version_of(&current));
    assert_ne!(from, to, "two different releases");
    println!("rolling upgrade from {from} to {to}");

    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("jepsen-upgrade");
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .env("FLASHSTOCK_NODE_BIN", &previous)
        .args(["--seconds", "24", "--clients", "16", "--seed", "7"])
        .args(["--faults", "upgrade", "--archive", "--tls", "--upgrade-to"])
        .arg(&current)
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run the jepsen binary");
    assert_eq!(
        status.code(),
        Some(0),
        "jepsen exited {status}: 1 = an invariant failed, 2 = a problem around the upgrade (the \
         cluster version moved early or never), 3 = the run did not finish (its report is above)"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();

    let invariants = report["check"]["invariants"].as_array().unwrap();
    assert!(
        invariants.len() >= 9,
        "the harness's invariants: {invariants:?}"
    );
    for invariant in invariants {
        assert_eq!(invariant["passed"], true, "{invariant}");
    }

    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 1, "one upgrade: {faults:?}");
    let upgrade = &faults[0]["fault"];
    assert_eq!(upgrade["kind"], "Upgrade");
    assert_eq!(
        upgrade["problems"].as_array().unwrap().len(),
        0,
        "{upgrade}"
    );
    let description = upgrade["description"].as_str().unwrap();
    assert!(
        description.contains(&format!(
            "cluster version {CLUSTER_VERSION_BASE} -> {CLUSTER_VERSION} on every node"
        )),
        "the switch, after the last node: {description}"
    );
    assert!(
        description.contains("(upgraded) in") && !description.contains("FAILED"),
        "the first upgraded voter led while older nodes were members: {description}"
    );

    println!(
        "the upgrade: {description}; longest without a confirmed purchase: {} ms",
        faults[0]["longest_gap_ms"]
    );

    assert!(
        description.contains(&format!(
            "rolled back to {}",
            from.trim_start_matches("flashstock-node ")
        )) && description.contains("upgraded again"),
        "a voter went back to the previous release and forward again: {description}"
    );

    let confirmed: u64 = report["counts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c[0] == "purchase" && c[1] == "ok")
        .map(|c| c[2].as_u64().unwrap())
        .sum();
    assert!(confirmed >= 100, "the workload did real work: {confirmed}");
}
