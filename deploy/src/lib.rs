//! Running flashstock clusters.
//!
//! [`local::LocalCluster`] runs every node as a real `flashstock-node` process on loopback, with
//! ports found free at run time, its own data directories and logs. Tests use it to start, kill,
//! pause, wipe and restart nodes; the local launcher uses it to run the demo cluster.

pub mod local;
