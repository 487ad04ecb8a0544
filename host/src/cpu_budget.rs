//! A fixed CPU budget per process, as if each ran on a server of its own: one cgroup (v1, `cpu`
//! controller) per process, with a CFS quota of so many cores.
//!
//! On one machine every node borrows whatever CPU the others leave idle, so a leader that does
//! the most work is never the ceiling it would be on a server of its own. A budget puts each
//! node back on its own "server": `cores` × 20 ms of CPU time in every 20 ms period, whatever
//! the machine has free. Needs root and the v1 `cpu` hierarchy at [`CPU_HIERARCHY`].
//!
//! Layout: `CPU_HIERARCHY/flashstock-<pid>-<n>/<name>/` per budgeted process; a restarted
//! process goes back into its name's group. Dropping the [`CpuBudget`] moves any process still
//! in its groups back to the root group and removes the groups.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the v1 `cpu` controller is mounted.
pub const CPU_HIERARCHY: &str = "/sys/fs/cgroup/cpu";
/// The CFS period of every group, microseconds. A process that spends its quota early in a
/// period waits for the next one, so a stall lasts up to the period less the quota: at the
/// kernel's default of 100 ms a quarter-core node would sit out 75 ms at a time, which a server
/// of its own never does. 20 ms keeps such waits to 15 ms.
const PERIOD_US: u64 = 20_000;
/// The smallest budget: 1 ms per period is the least quota the kernel takes.
pub const CORES_MIN: f64 = 0.05;

/// A set of per-process CPU budgets of `cores` each; removed when dropped.
#[derive(Debug)]
pub struct CpuBudget {
    dir: PathBuf,
    cores: f64,
}

impl CpuBudget {
    /// A new set of budgets of `cores` each, under [`CPU_HIERARCHY`]. Fails, saying why, when
    /// this process is not root, the hierarchy is not mounted, or `cores` is below [`CORES_MIN`].
    pub fn new(cores: f64) -> io::Result<CpuBudget> {
        CpuBudget::under(Path::new(CPU_HIERARCHY), cores)
    }

    fn under(hierarchy: &Path, cores: f64) -> io::Result<CpuBudget> {
        if !(cores.is_finite() && cores >= CORES_MIN) {
            return Err(io::Error::other(format!(
                "a CPU budget is at least {CORES_MIN} cores (got {cores})"
            )));
        }
        if !crate::is_root() {
            return Err(io::Error::other(
                "CPU budgets need root (they create cgroups)",
            ));
        }
        if !hierarchy.join("cpu.cfs_quota_us").exists() {
            return Err(io::Error::other(format!(
                "no cgroup v1 cpu controller at {} (CPU budgets need it)",
                hierarchy.display()
            )));
        }
        static SETS: AtomicU32 = AtomicU32::new(0);
        let dir = hierarchy.join(format!(
            "flashstock-{}-{}",
            std::process::id(),
            SETS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)?;
        Ok(CpuBudget { dir, cores })
    }

    /// Cores of each budget.
    pub fn cores(&self) -> f64 {
        self.cores
    }

    /// The CFS quota of one group, microseconds per [`PERIOD_US`].
    fn quota_us(&self) -> u64 {
        (self.cores * PERIOD_US as f64).round() as u64
    }

    /// Put process `pid` (every thread of it, and what it starts later) on the budget named
    /// `name`, creating that group on first use.
    pub fn place(&self, name: &str, pid: u32) -> io::Result<()> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(io::Error::other(format!("{name:?} is not a group name")));
        }
        let group = self.dir.join(name);
        if !group.exists() {
            std::fs::create_dir(&group)?;
            std::fs::write(group.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
            std::fs::write(group.join("cpu.cfs_quota_us"), self.quota_us().to_string())?;
        }
        // In v1, a process id written to `cgroup.procs` moves all of its threads.
        std::fs::write(group.join("cgroup.procs"), pid.to_string())
    }

    /// Times a process of group `name` was held back for having used its quota, and for how
    /// long in all (`cpu.stat`'s `nr_throttled` and `throttled_time`, in seconds).
    pub fn throttled(&self, name: &str) -> Option<(u64, f64)> {
        let stat = std::fs::read_to_string(self.dir.join(name).join("cpu.stat")).ok()?;
        let field = |key: &str| {
            stat.lines()
                .find_map(|line| line.strip_prefix(key)?.trim().parse::<u64>().ok())
        };
        Some((
            field("nr_throttled ")?,
            field("throttled_time ")? as f64 / 1e9,
        ))
    }
}

impl Drop for CpuBudget {
    fn drop(&mut self) {
        let root = self.dir.parent().map(|p| p.join("cgroup.procs"));
        if let Ok(groups) = std::fs::read_dir(&self.dir) {
            for group in groups.flatten().map(|g| g.path()).filter(|p| p.is_dir()) {
                // A group with a process left in it cannot be removed: move it out first.
                if let (Some(root), Ok(procs)) = (
                    root.as_ref(),
                    std::fs::read_to_string(group.join("cgroup.procs")),
                ) {
                    for pid in procs.lines() {
                        let _ = std::fs::write(root, pid);
                    }
                }
                let _ = std::fs::remove_dir(&group);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_below_the_kernels_least_quota_is_refused() {
        let error = CpuBudget::under(Path::new(CPU_HIERARCHY), 0.01).unwrap_err();
        assert!(error.to_string().contains("at least"), "{error}");
        assert!(CpuBudget::under(Path::new(CPU_HIERARCHY), f64::NAN).is_err());
    }

    /// A process that would spin a whole core gets about its budget, and the kernel says it
    /// held it back; the group is gone once the budget is dropped.
    #[test]
    #[cfg_attr(
        not(host_cpu_cgroup),
        ignore = "needs root and the cgroup v1 cpu controller at /sys/fs/cgroup/cpu"
    )]
    fn a_spinning_process_is_held_to_its_budget() {
        let budget = CpuBudget::new(0.2).expect("a budget");
        let mut spinner = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("sh starts");
        budget.place("spinner", spinner.id()).expect("placed");
        let group = budget.dir.join("spinner");
        let before = crate::Stat::read(spinner.id())
            .expect("its stat")
            .cpu_seconds();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let used = crate::Stat::read(spinner.id())
            .expect("its stat")
            .cpu_seconds()
            - before;
        let (throttled, _) = budget.throttled("spinner").expect("cpu.stat");
        spinner.kill().expect("killed");
        spinner.wait().expect("reaped");
        // 0.2 core for 1.5 s is 0.3 s; a tick of accounting either side.
        assert!(
            used <= 0.45,
            "used {used:.2} s of CPU in 1.5 s on a 0.2-core budget"
        );
        assert!(throttled > 0, "the kernel never held the spinner back");
        drop(budget);
        assert!(!group.exists(), "the group outlived its budget");
    }

    #[test]
    fn a_hierarchy_without_the_cpu_controller_is_refused_by_name() {
        let missing = Path::new("/nonexistent-cgroup-hierarchy");
        let error = CpuBudget::under(missing, 0.5).unwrap_err();
        // Either not root, or the hierarchy named.
        let message = error.to_string();
        assert!(
            message.contains("root") || message.contains("/nonexistent-cgroup-hierarchy"),
            "{message}"
        );
    }
}
