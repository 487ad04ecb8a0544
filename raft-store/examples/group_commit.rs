//! How many entries per second one store makes durable as it holds more Raft groups, and how
//! many WAL syncs that takes: the figure behind "G groups cost one fsync per round, not G".
//!
//! ```text
//! cargo run --release --example group_commit -- [SECONDS_PER_ROW] [GROUP_COUNTS...]
//! ```
//!
//! Each count of several groups is measured twice, side by side: with the shared sync that
//! nodes use, and with each append syncing in its own write (RocksDB still merges concurrent
//! writers into one write group of its own, which is the baseline to beat).
//!
//! Each group is a one-member openraft group (no network: its own vote is a majority), all in
//! one store in a temporary directory, as a voter holds them; one writer per group proposes one
//! product creation at a time and waits for it to be applied, as a busy group's leader does
//! with its batches. One group syncs in each append's own write; several share one sync per
//! round (`raft_store::wal_sync`). Defaults: 5 s per row, groups 1 2 3 6.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashstock_api::{Command, Op, Proposal};
use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use raft_store::{Durability, Node, NodeId, Raft, TypeConfig};

/// A network to no one: a one-member group never calls it.
#[derive(Clone)]
struct Alone;

type Refused<E> = RPCError<NodeId, Node, RaftError<NodeId, E>>;

fn refused<E: std::error::Error>() -> Refused<E> {
    let error = std::io::Error::other("a one-member group has no peers");
    RPCError::Unreachable(Unreachable::new(&error))
}

impl RaftNetworkFactory<TypeConfig> for Alone {
    type Network = Alone;

    async fn new_client(&mut self, _target: NodeId, _node: &Node) -> Alone {
        Alone
    }
}

impl RaftNetwork<TypeConfig> for Alone {
    async fn append_entries(
        &mut self,
        _request: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, Refused<openraft::error::Infallible>> {
        Err(refused())
    }

    async fn install_snapshot(
        &mut self,
        _request: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, Refused<InstallSnapshotError>> {
        Err(refused())
    }

    async fn vote(
        &mut self,
        _request: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, Refused<openraft::error::Infallible>> {
        Err(refused())
    }
}

fn create(group: usize, n: u64) -> Proposal {
    let product = format!("g{group}-p{n}");
    Proposal {
        proposed_at_ms: 1,
        forget_keys_before_ms: 0,
        drop_archived_before_ms: 0,
        commands: vec![Command {
            key: format!("k-{product}"),
            op: Op::CreateProduct {
                name: product.clone(),
                product,
                price_cents: 100,
                stock: 10,
            },
        }],
    }
}

/// One row: `groups` groups in one store, one writer each, for `seconds`.
async fn row(groups: u16, durability: Durability, seconds: u64) -> (f64, Option<f64>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let stores =
        raft_store::open_groups_with(dir.path(), groups, durability).expect("open the store");
    let config = Arc::new(
        openraft::Config {
            heartbeat_interval: 50,
            election_timeout_min: 150,
            election_timeout_max: 300,
            ..Default::default()
        }
        .validate()
        .expect("a valid config"),
    );
    let syncs_of = stores[0].0.clone();
    let mut rafts = Vec::new();
    for (log, state) in stores {
        let raft = Raft::new(1, config.clone(), Alone, log, state)
            .await
            .expect("start Raft");
        raft.initialize(BTreeMap::from([(1, Node::new("alone"))]))
            .await
            .expect("initialize");
        raft.wait(Some(Duration::from_secs(5)))
            .current_leader(1, "leads itself")
            .await
            .expect("a leader");
        rafts.push(raft);
    }
    let entries = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let syncs_before = syncs_of.shared_syncs();
    let began = Instant::now();
    let writers: Vec<_> = rafts
        .iter()
        .enumerate()
        .map(|(group, raft)| {
            let (raft, entries) = (raft.clone(), entries.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < deadline {
                    raft.client_write(create(group, n)).await.expect("a write");
                    entries.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("a writer");
    }
    let elapsed = began.elapsed().as_secs_f64();
    let entries = entries.load(Ordering::Relaxed) as f64;
    // Counted only when shared: RocksDB's own syncs are not.
    let syncs = match (syncs_before, syncs_of.shared_syncs()) {
        (Some(before), Some(after)) => Some((after - before) as f64 / elapsed),
        _ => None,
    };
    for raft in rafts {
        raft.shutdown().await.expect("shut down");
    }
    (entries / elapsed, syncs)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(5, |s| s.parse().expect("seconds"));
    let mut counts: Vec<u16> = args.map(|g| g.parse().expect("a group count")).collect();
    if counts.is_empty() {
        counts = vec![1, 2, 3, 6];
    }
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    println!("| groups | appends | entries/s | per group | shared syncs/s | entries per sync |");
    println!("|---:|---|---:|---:|---:|---:|");
    for groups in counts {
        let modes: &[Durability] = match groups {
            1 => &[Durability::OwnSync],
            _ => &[Durability::OwnSync, Durability::SharedSync],
        };
        for &durability in modes {
            let (entries, syncs) = runtime.block_on(row(groups, durability, seconds));
            let (mode, syncs, per_sync) = match (durability, syncs) {
                (Durability::SharedSync, Some(syncs)) => (
                    "one shared sync",
                    format!("{syncs:.0}"),
                    format!("{:.2}", entries / syncs.max(1.0)),
                ),
                _ => ("each its own sync", "-".into(), "-".into()),
            };
            println!(
                "| {groups} | {mode} | {entries:.0} | {:.0} | {syncs} | {per_sync} |",
                entries / f64::from(groups)
            );
        }
    }
}
