//! Decides, when the tests are built, whether this machine can run the CPU-budget test: as root,
//! with the cgroup v1 `cpu` controller mounted. When it cannot, that test compiles as ignored,
//! with the reason, rather than passing without having run.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(host_cpu_cgroup)");
    println!("cargo::rerun-if-changed=build.rs");
    let controller = Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us");
    if is_root() && controller.exists() {
        println!("cargo::rustc-cfg=host_cpu_cgroup");
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}
