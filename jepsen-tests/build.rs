//! Decides, when the tests are built, whether this machine can inject the fault harness's
//! iptables faults (partitions and packet loss): as root, with `iptables` installed. When it
//! cannot, `tests/t10_faults.rs` compiles its every-kind-of-fault test as ignored, with the
//! reason, and runs the same short run over the other kinds instead: a fault kind is never
//! skipped by a test that then reports itself passed.

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
