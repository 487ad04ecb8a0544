//! The launcher's two processes, and why the supervisor stops.
//!
//! Ctrl-C in a terminal signals the whole foreground process group. So that the nodes do not all
//! receive it at once (and stop in no particular order), the launcher runs in two processes: the
//! one started from the terminal only forwards SIGINT and SIGTERM to a supervisor it starts in a
//! process group of its own, which runs the nodes (they inherit that group) and stops them in
//! order. The supervisor also stops the cluster if the first process disappears.

use std::process::ExitCode;
use std::time::Duration;

use flashstock_host::Signal as HostSignal;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The process started from the terminal: start this same executable again as the supervisor
/// (with `supervised_env` set to our pid) in its own process group, pass SIGINT and SIGTERM on
/// to it, exit with its status.
pub async fn forward_to_supervisor(supervised_env: &str) -> ExitCode {
    let mut interrupt = signal(SignalKind::interrupt()).expect("install the SIGINT handler");
    let mut terminate = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("flashstock-local: cannot find my own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let child = tokio::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(supervised_env, std::process::id().to_string())
        // The nodes log to files: no terminal colour codes in them.
        .env("NO_COLOR", "1")
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(false)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("flashstock-local: cannot start the supervisor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pid = child.id().expect("a child that was just spawned has an id");
    loop {
        let forwarded = tokio::select! {
            status = child.wait() => {
                return match status {
                    Ok(status) if status.success() => ExitCode::SUCCESS,
                    Ok(status) => ExitCode::from(status.code().map_or(1, |c| c as u8)),
                    Err(e) => {
                        eprintln!("flashstock-local: lost the supervisor: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            _ = interrupt.recv() => HostSignal::Int,
            _ = terminate.recv() => HostSignal::Term,
        };
        let _ = flashstock_host::signal(pid, forwarded);
    }
}

/// Why the supervisor stops the cluster.
pub struct Shutdown {
    interrupt: Signal,
    terminate: Signal,
    parent: u32,
}

impl Shutdown {
    /// Listen for SIGINT and SIGTERM, and watch the launcher `parent` (0: none).
    pub fn new(parent: u32) -> Shutdown {
        Shutdown {
            interrupt: signal(SignalKind::interrupt()).expect("install the SIGINT handler"),
            terminate: signal(SignalKind::terminate()).expect("install the SIGTERM handler"),
            parent,
        }
    }

    /// Completes on SIGINT, SIGTERM, or when the launcher that started this supervisor is gone
    /// (this process was re-parented); returns the reason.
    pub async fn requested(&mut self) -> &'static str {
        let mut orphaned = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return "SIGINT received",
                _ = self.terminate.recv() => return "SIGTERM received",
                _ = orphaned.tick() => {
                    if self.parent != 0 && std::os::unix::process::parent_id() != self.parent {
                        return "the launcher process is gone";
                    }
                }
            }
        }
    }
}
