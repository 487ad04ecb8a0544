//! What flashstock's programs ask of the operating system (Linux): whether this process is root,
//! how to signal a process, which processes run (one scan of `/proc`, and what a process's
//! `stat` says), the open-files limit, giving freed memory back, entering a network namespace,
//! and a fixed CPU budget per process (a cgroup each, [`CpuBudget`]).
//!
//! Why a crate of its own: the node raises its open-files limit, the launchers and the
//! PostgreSQL helper (`deploy`) signal and find processes, the load generator (`loadgen`) and the
//! fault harness (`jepsen-tests`) do both. `node` sits below `deploy` and `loadgen` and must not
//! depend on them (they start and measure it), so the one copy of this code lives below all of
//! them, depending on `libc` alone.

pub mod cpu_budget;
pub mod limits;
pub mod memory;
pub mod netns;
pub mod process;

pub use cpu_budget::CpuBudget;
pub use limits::{raise_open_files_limit, OpenFiles};
pub use memory::return_free_memory;
pub use netns::enter_network_namespace;
pub use process::{is_root, pids, signal, signal_group, Signal, Stat};
