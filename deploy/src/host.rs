//! Two facts about this machine that the launchers, the PostgreSQL helper, the namespaces and
//! the fault harness all need: whether this process is root, and how to signal a process.

use std::process::{Command, Stdio};

/// Whether this process runs with effective user id 0 (from `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Send signal `name` (`TERM`, `KILL`, `STOP`, `CONT`, ...) to process `pid`.
pub fn signal(pid: u32, name: &str) -> std::io::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("kill -{name} {pid} failed")))
    }
}
