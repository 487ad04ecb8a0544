//! Decides, when the tests are built, whether this machine can inject the fault harness's
//! iptables faults (partitions and packet loss): as root, with `iptables` installed. When it
//! cannot, `tests/t10_faults.rs` compiles its every-kind-of-fault test as ignored, with the
//! reason, and runs the same short run over the other kinds instead: a fault kind is never
//! skipped by a test that then reports itself passed.
//!
//! It also decides whether the previous release's node binary is built
//! (`deploy/build-previous.sh`, which `deploy/test.sh` runs first): without it, as in a clone
//! without the previous release's commit, `tests/t30_rolling_upgrade.rs` compiles as ignored,
//! with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where iptables may be when `PATH` lacks the sbin directories (as `src/partition.rs` looks).
const SBIN_DIRS: &[&str] = &["/usr/sbin", "/sbin"];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(jepsen_iptables)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PATH");
    // Installing iptables adds a file to one of these directories: probe again then.
    for dir in SBIN_DIRS {
        let path = Path::new(dir);
        if path.is_dir() && !path.is_symlink() {
            println!("cargo::rerun-if-changed={dir}");
        }
    }
    if is_root() && iptables_installed() {
        println!("cargo::rustc-cfg=jepsen_iptables");
    }

    println!("cargo::rustc-check-cfg=cfg(jepsen_previous_release)");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/build-previous.sh");
    println!("cargo::rerun-if-changed={}", script.display());
    if let Some(binary) = previous_release_binary(&script) {
        // Built later (or removed): probe again then.
        println!("cargo::rerun-if-changed={}", binary.display());
        if binary.is_file() {
            println!("cargo::rustc-cfg=jepsen_previous_release");
        }
    }
}

/// Where `deploy/build-previous.sh` puts the previous release's node binary: the build
/// directory's `previous/<commit>/flashstock-node`.
fn previous_release_binary(script: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(script).ok()?;
    let commit = text
        .lines()
        .find_map(|line| line.strip_prefix("PREVIOUS_COMMIT="))?;
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR")?);
    let target = out_dir.ancestors().nth(4)?;
    Some(target.join("previous").join(commit).join("flashstock-node"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.trim_ascii() == b"0")
}

fn iptables_installed() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .any(|dir| dir.join("iptables").is_file())
}
