//! What the machine and its processes hold, from `/proc` (Linux only).

use std::path::Path;

use flashstock_host::process::comm;
use flashstock_host::Stat;
use serde::Serialize;

/// The machine a benchmark ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_mib: u64,
    pub cpu_model: String,
    pub kernel: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split(':').nth(1))
            .map_or_else(|| "unknown".into(), |m| m.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib = field_kib(&meminfo, "MemTotal:").unwrap_or(0);
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_mib: memory_kib / 1024,
            cpu_model,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".into(), |k| k.trim().to_owned()),
        }
    }
}

/// The value in KiB of a `Name:   123 kB` line.
fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Resident memory of a process, MiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field_kib(&status, "VmRSS:").map(|kib| kib as f64 / 1024.0)
}

/// CPU time (user + system) a process has used so far, seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    Some(Stat::read(pid)?.cpu_seconds())
}

/// CPU time every process named `name` has used so far (e.g. PostgreSQL's backends), seconds.
pub fn cpu_seconds_named(name: &str) -> f64 {
    flashstock_host::pids()
        .into_iter()
        .filter(|pid| comm(*pid).is_some_and(|c| c == name))
        .filter_map(cpu_seconds)
        .sum()
}

/// CPU time the whole machine has spent busy (not idle, not waiting for IO), seconds over
/// every core: user, nice, system, irq, softirq and steal of `/proc/stat`.
pub fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let fields: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let busy: f64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| fields.get(*i))
        .sum();
    busy / flashstock_host::process::ticks_per_second()
}

/// Bytes of every file under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_the_machine_cores() {
        assert!(rss_mib(std::process::id()).is_some_and(|m| m > 0.0));
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(30) {
            std::hint::black_box(0);
        }
        assert!(cpu_seconds(std::process::id()).is_some_and(|s| s > 0.0));
        assert!(machine_busy_seconds() > 0.0);
        let machine = Machine::read();
        assert!(machine.cores > 0 && machine.memory_mib > 0);
    }
}
