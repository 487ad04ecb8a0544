//! Running flashstock clusters.
//!
//! [`local::LocalCluster`] runs every node as a real `flashstock-node` process on loopback, with
//! ports found free at run time, its own data directories and logs. Tests use it to start, kill,
//! pause, wipe and restart nodes; the local launcher uses it to run the demo cluster.
//!
//! [`launch`] is the launcher behind `flashstock-local`: the demo cluster in one command, with a
//! supervisor that stops the nodes in order.
//!
//! [`postgres::Postgres`] runs a throwaway PostgreSQL server, for the archive's tests and the
//! relational baseline of the benchmarks; [`redis::RedisServer`] a throwaway Redis server, for
//! the benchmark's Redis baseline.
//!
//! [`netns::PrivateNetwork`] puts each node in a network namespace of its own, on a private
//! bridge with no route out, for the fault-injection harness.

/// What the launchers ask of the operating system (signals, root, processes), from the crate
/// every program shares; re-exported so that the users of the launchers need not name it.
pub use flashstock_host as host;
pub mod launch;
pub mod local;
pub mod netns;
pub mod postgres;
pub mod redis;
