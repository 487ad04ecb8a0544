//! Processes: who we are, signalling one, and listing them from `/proc`.

use std::path::Path;

/// Whether this process runs with effective user id 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The signals flashstock's programs send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ctrl-C, passed on by the launcher.
    Int,
    /// Stop cleanly (drain, flush, exit).
    Term,
    /// Stop at once: no drain, no flush.
    Kill,
    /// Freeze: the process holds its connections and answers nothing.
    Stop,
    /// Thaw a stopped process.
    Cont,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Signal::Int => libc::SIGINT,
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
        }
    }
}

/// Send `signal` to process `pid`.
pub fn signal(pid: u32, signal: Signal) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| std::io::Error::other(format!("{pid} is not a process id")))?;
    // A pid of 0 or below would signal a whole process group.
    if pid <= 0 {
        return Err(std::io::Error::other(format!("{pid} is not a process id")));
    }
    // SAFETY: kill only sends a signal, to one process (pid > 0).
    if unsafe { libc::kill(pid, signal.number()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Send `signal` to every process of the group led by `leader` (a process started in a group of
/// its own, and everything it started since).
pub fn signal_group(leader: u32, signal: Signal) -> std::io::Result<()> {
    let group = libc::pid_t::try_from(leader)
        .ok()
        .filter(|group| *group > 1)
        .ok_or_else(|| std::io::Error::other(format!("{leader} is not a process group")))?;
    // SAFETY: kill only sends a signal; a negative pid names the group `group`.
    if unsafe { libc::kill(-group, signal.number()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Every process running now: the one scan of `/proc` (Linux). A process may exit between this
/// listing and a later read of its files; readers below return `None` then.
pub fn pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

/// Whether process `pid` still exists (a zombie still does, until its parent reaps it).
pub fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The command line of process `pid`, one entry per argument.
pub fn cmdline(pid: u32) -> Option<Vec<Vec<u8>>> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args: Vec<Vec<u8>> = bytes.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
    // The command line ends with a NUL: drop the empty piece after it.
    if args.last().is_some_and(Vec::is_empty) {
        args.pop();
    }
    Some(args)
}

/// The command name of process `pid` (`comm`, at most 15 bytes).
pub fn comm(pid: u32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim().to_owned())
}

/// What `/proc/PID/stat` says of a process, the fields flashstock reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The parent's process id.
    pub ppid: u32,
    /// CPU time in user mode, clock ticks.
    pub utime_ticks: u64,
    /// CPU time in kernel mode, clock ticks.
    pub stime_ticks: u64,
}

impl Stat {
    /// Read and parse `/proc/PID/stat`.
    pub fn read(pid: u32) -> Option<Stat> {
        Stat::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// Parse the text of a `stat` file.
    pub fn parse(stat: &str) -> Option<Stat> {
        // The command name (field 2) may hold spaces and parentheses: count fields after its
        // last closing parenthesis, where field 3 (state) comes first. ppid is field 4, utime
        // and stime are fields 14 and 15.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        Some(Stat {
            ppid: fields.get(1)?.parse().ok()?,
            utime_ticks: fields.get(11)?.parse().ok()?,
            stime_ticks: fields.get(12)?.parse().ok()?,
        })
    }

    /// CPU time (user + system), seconds.
    pub fn cpu_seconds(&self) -> f64 {
        (self.utime_ticks + self.stime_ticks) as f64 / ticks_per_second()
    }
}

/// Clock ticks per second of the CPU times in `/proc`.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_listed_with_its_parent() {
        let me = std::process::id();
        assert!(pids().contains(&me));
        assert!(exists(me));
        let stat = Stat::read(me).expect("our own stat");
        assert_eq!(stat.ppid, std::os::unix::process::parent_id());
        let args = cmdline(me).expect("our own command line");
        assert!(!args.is_empty() && !args[0].is_empty());
    }

    #[test]
    fn a_command_name_with_parentheses_and_spaces_parses() {
        let stat = "42 (a (b) c) S 7 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1 1 1";
        assert_eq!(
            Stat::parse(stat),
            Some(Stat {
                ppid: 7,
                utime_ticks: 250,
                stime_ticks: 50
            })
        );
    }

    #[test]
    fn signals_reach_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        signal(child.id(), Signal::Kill).expect("our own child");
        let status = child.wait().expect("reaped");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(signal(0, Signal::Term).is_err());
    }
}
