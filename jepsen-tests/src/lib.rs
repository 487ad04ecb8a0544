//! flashstock's fault-injection harness, in the style of Jepsen.
//!
//! A run ([`run::run`]) starts a real six-node cluster on loopback (three voters, three
//! gateways), drives a [`workload`] of purchases, re-sends, restocks, views and checkout (holds,
//! carts, cancellations, limits per customer) through the public API while a [`nemesis`] kills,
//! pauses, partitions and restarts nodes, records the [`history`]
//! of what every client was told, heals everything, and hands the history and the final state of
//! every node (read by [`final_state`]) to the [`checker`], whose invariants are pure functions
//! of the two. With the [`archive`] on, a PostgreSQL primary and its synchronous standby
//! ([`archive_db`]) run beside the cluster, may be crashed or failed over, and must end up
//! holding every order exactly once. The [`report`] prints operations
//! by result, the faults, each invariant's verdict and purchase latencies.
//!
//! The `jepsen` binary runs a long, configurable run; `tests/t10_faults.rs` a short one for CI.

pub mod archive;
pub mod archive_db;
pub mod checker;
pub mod final_state;
pub mod history;
pub mod nemesis;
pub mod partition;
pub mod proxy;
pub mod report;
pub mod rng;
pub mod run;
pub mod timeline;
pub mod workload;

/// What can stop a run before the checker has spoken.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cluster: {0}")]
    Cluster(#[from] flashstock_deploy::local::Error),
    #[error("{0}")]
    Harness(String),
}
