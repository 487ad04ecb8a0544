//! Decides, when the tests are built, whether this machine can run the six-hosts test
//! (`tests/six_hosts.rs`): network namespaces need root and `ip` (iproute2). When it cannot, the
//! test is compiled as ignored, with the reason, so that cargo reports it ignored rather than
//! passed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `ip` may be when `PATH` lacks the sbin directories.
const SBIN_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(network_namespaces)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PATH");
    // Installing iproute2 adds a file to /usr/sbin or /sbin: probe again then.
    for dir in &SBIN_DIRS[..2] {
        let path = Path::new(dir);
        if path.is_dir() && !path.is_symlink() {
            println!("cargo::rerun-if-changed={dir}");
        }
    }
    if is_root() && ip_installed() {
        println!("cargo::rustc-cfg=network_namespaces");
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.trim_ascii() == b"0")
}

fn ip_installed() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .any(|dir| dir.join("ip").is_file())
}
