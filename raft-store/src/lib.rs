//! flashstock's replicated store: openraft's log storage and state machine on RocksDB, and the
//! inventory logic they replicate.
//!
//! Layout, bottom up:
//! - [`keys`]: every RocksDB key, defined once; three column families (`log`, `raft`, `state`)
//!   per Raft group ([`Group`]), all in one RocksDB.
//! - [`inventory`]: the inventory state machine as pure logic over the [`inventory::InventoryState`]
//!   trait: (state, proposal) → (writes, outcomes). No clock, no randomness, no IO of its own.
//! - [`log_store`]: [`LogStore`], openraft's `RaftLogStorage`: durable appends, each fsynced;
//!   with several groups, one fsync for the appends of every group (`wal_sync`).
//! - [`state_machine`]: [`StateMachine`], openraft's `RaftStateMachine` running the inventory logic
//!   over RocksDB, and [`StateReader`], the read handle views are served from.
//! - [`snapshot`]: snapshots as files, built and installed as streams.
//!
//! Invariants:
//! - Stock changes only in [`inventory::apply_proposal`], called by the state machine in log order.
//! - An entry's writes and its log id are written in one batch: data and applied index agree.
//! - A log append is reported durable only after a WAL fsync covers it; a vote is fsynced before
//!   it is reported saved.
//! - A snapshot's data and log id are read through one RocksDB snapshot.

// openraft's traits dictate `StorageError` as the error type, large as it is; boxing it here would
// only add a conversion at every trait boundary.
#![allow(clippy::result_large_err)]

mod checkout;
pub mod inventory;
pub mod keys;
pub mod log_store;
pub mod records;
pub mod restore;
pub mod snapshot;
pub mod state_machine;
mod wal_sync;

use std::path::Path;
use std::sync::Arc;

use flashstock_api::{Outcome, Proposal};
use openraft::StorageError;
use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, Options, DB};

pub use keys::Group;
use log_store::AppendSync;
pub use log_store::LogStore;
pub use state_machine::{ProductChange, StateMachine, StateReader};

pub type NodeId = u64;
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// The openraft types of flashstock: a log entry carries a [`Proposal`]; applying it yields
    /// one [`Outcome`] per command.
    pub TypeConfig:
        D = Proposal,
        R = Vec<Outcome>,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = snapshot::SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Entry = openraft::Entry<TypeConfig>;
pub type Raft = openraft::Raft<TypeConfig>;

/// The newest format of the data this release reads and writes: the keys and records of the
/// state column family, and so of every snapshot (a snapshot is that column family's content).
/// Stored in the data itself (`m/format`). A store starts in [`STATE_FORMAT_BASE`]; the format
/// follows the replicated cluster version ([`state_format_for`]), so it changes at the same log
/// index on every replica. A release refuses data in a format newer than its own, with a message
/// naming both, rather than misreading it.
///
/// - 1: the first release.
/// - 2: `m/cluster_version`, and idempotency records of [`flashstock_api::Op::SetClusterVersion`];
///   checkout ([`flashstock_api::Op::Hold`] and the kinds after it): holds (`h/`, `hx/`, `hf/`),
///   customers' counts (`c/`), cancellations (`e/`), and product and order records followed by
///   their terms ([`records`]).
/// - 3: carts across Raft groups ([`flashstock_api::Op::HoldPart`],
///   [`flashstock_api::Op::SettlePart`]): the index of parts not settled yet (`cp/`).
/// - 4: idempotency records of bulk requests hold [`flashstock_api::Outcome::BulkDone`].
/// - 5: idempotency records of bulk requests hold [`flashstock_api::Op::BulkDigest`] instead of
///   the request.
pub const STATE_FORMAT: u32 = 5;
/// The format of a new store, and of one written before the format record existed.
pub const STATE_FORMAT_BASE: u32 = 1;

/// The state format a cluster at `cluster_version` writes.
pub fn state_format_for(cluster_version: u32) -> u32 {
    match cluster_version {
        0 | 1 => 1,
        2 => 2,
        3 => 3,
        4 => 4,
        _ => 5,
    }
}

/// The format a store or snapshot is in, from its `m/format` record: absent means 1 (written
/// before the record existed; that data is format 1).
pub(crate) fn format_of(record: Option<&[u8]>) -> Result<u32, String> {
    match record {
        None => Ok(STATE_FORMAT_BASE),
        Some(bytes) => bytes
            .try_into()
            .map(u32::from_le_bytes)
            .map_err(|_| format!("a malformed format record of {} bytes", bytes.len())),
    }
}

/// Whether this release reads data in `format`; the refusal names both formats.
pub(crate) fn check_format(format: u32, what: &str) -> Result<(), String> {
    if (STATE_FORMAT_BASE..=STATE_FORMAT).contains(&format) {
        Ok(())
    } else if format > STATE_FORMAT {
        Err(format!(
            "{what} is in state format {format}, written by a newer release; this release \
             (flashstock {}) reads state formats {STATE_FORMAT_BASE} to {STATE_FORMAT} only: \
             run a release that reads format {format}",
            env!("CARGO_PKG_VERSION")
        ))
    } else {
        Err(format!(
            "{what} is in state format {format}, which no release wrote (this one reads \
             {STATE_FORMAT_BASE} to {STATE_FORMAT})"
        ))
    }
}

/// What the store does that takes time, for whoever watches its latency ([`Observer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreStage {
    /// One append written to the log and fsynced.
    LogAppend,
    /// One run of committed entries applied to the state machine.
    Apply,
}

/// Told how long each [`StoreStage`] took; set with [`LogStore::with_observer`] and
/// [`StateMachine::with_observer`]. Called on the thread that did the work: it must be quick.
pub type Observer = Arc<dyn Fn(StoreStage, std::time::Duration) + Send + Sync>;

/// Block cache of a store, bytes: one cache shared by the state column families of every group,
/// so that a node's cache stays this size whatever its number of groups.
const STATE_BLOCK_CACHE_BYTES: usize = 64 << 20;

/// Most bytes of memtables a learner's store (a gateway's) holds, over every column family of
/// every group (`db_write_buffer_size`): past it, RocksDB flushes a memtable. Without it each
/// family could hold two memtables of 64 MiB, and a gateway applying the standard mix at 6000
/// connections held 60 to 120 MiB more than one serving views only, mostly the state's and the
/// log's memtables; a node of three groups could hold three times that. A memtable is a write
/// buffer, not a cache: reads of what was flushed go through the block cache.
///
/// Voters keep RocksDB's per-family sizes: with the same bound, their synced appends took 1.2
/// to 3 times as long at light load in the benchmark (three pairs, docs/BENCHMARKS.md), the
/// flushes it brings meeting the appends' fsyncs, and a voter's memory has room (a 1 GB
/// target, about 300 MB at 1 000 000 products).
pub const LEARNER_MEMTABLE_BYTES_MAX: usize = 64 << 20;
/// Bloom filter bits per key of the state column family: about 1% false positives.
const STATE_BLOOM_BITS_PER_KEY: f64 = 10.0;

/// Most bytes of write-ahead log files kept before RocksDB flushes the column families that keep
/// the oldest of them alive. A WAL file is deleted only once every column family's writes in it
/// are flushed, and the `raft` family is written rarely (votes, snapshots): without a bound, its
/// small memtable kept every WAL file since its last flush, up to RocksDB's default of four
/// times every write buffer (3 families × 2 × 64 MiB × 4 = 1.5 GiB here). The bound costs a
/// flush of a small memtable now and then.
const WAL_BYTES_MAX: u64 = 64 << 20;

/// Share of a memtable's size given to its Bloom filter of whole keys: 1.3 MiB for the default
/// 64 MiB memtable, over 20 bits per key for the few hundred thousand records one holds.
const STATE_MEMTABLE_BLOOM_RATIO: f64 = 0.02;

/// Options of the state column family. Most lookups of a write are of keys that do not exist
/// (a new idempotency key, a new product): a Bloom filter per table file answers those without
/// reading the file's index and blocks, which otherwise dominate the apply of a bulk create; and
/// one per memtable answers them without searching its skip list, which was a tenth of a
/// gateway's CPU in a flash sale (every purchase looks up its fresh idempotency key there first).
/// Options change no data format: files written before have no filter and are read as before.
/// `cache` is the store's block cache; a writer of table files, which reads no blocks, has none.
pub(crate) fn state_options(cache: Option<&Cache>) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(STATE_BLOOM_BITS_PER_KEY, false);
    if let Some(cache) = cache {
        table.set_block_cache(cache);
    }
    let mut options = Options::default();
    options.set_block_based_table_factory(&table);
    options.set_memtable_prefix_bloom_ratio(STATE_MEMTABLE_BLOOM_RATIO);
    options.set_memtable_whole_key_filtering(true);
    options
}

/// Refuse a store in a format this release does not read; mark one without a format record (new,
/// or written before the record existed) with format 1, which is what its data is.
fn check_or_mark_format(db: &DB, group: &Group, dir: &Path) -> Result<(), StorageError<NodeId>> {
    let subject = || openraft::ErrorSubject::Store;
    let cf_state = group.state(db);
    let key = keys::StateKey::Format.encode();
    let record = db
        .get_cf(cf_state, &key)
        .map_err(|e| log_store::read_error(subject(), &e))?;
    let format = format_of(record.as_deref()).map_err(|e| log_store::read_error(subject(), &e))?;
    check_format(format, &format!("the store in {}", dir.display()))
        .map_err(|e| log_store::read_error(subject(), &e))?;
    if record.is_none() {
        let mut options = rocksdb::WriteOptions::default();
        options.set_sync(true);
        db.put_cf_opt(cf_state, &key, STATE_FORMAT_BASE.to_le_bytes(), &options)
            .map_err(|e| log_store::write_error(subject(), &e))?;
    }
    Ok(())
}

/// Open (or create) the store in `dir` of a cluster of one Raft group: the log storage and the
/// state machine, which share one RocksDB instance and so one write-ahead log.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachine), StorageError<NodeId>> {
    let mut groups = open_groups(dir, 1)?;
    Ok(groups.remove(0))
}

/// Open (or create) the store in `dir` of a cluster of `groups` Raft groups: the log storage and
/// the state machine of each group, in group order, all in one RocksDB instance and so sharing
/// one write-ahead log ([`Group`] says where each group's data lives). A cluster's number of
/// groups is fixed when it is made: a store that holds a group at or past `groups` is refused,
/// rather than opened without it.
pub fn open_groups(
    dir: &Path,
    groups: u16,
) -> Result<Vec<(LogStore, StateMachine)>, StorageError<NodeId>> {
    open_groups_with(dir, groups, Durability::SharedSync)
}

/// How the appends of a store of several groups are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// One WAL sync for the appends of every group written meanwhile (`wal_sync`): what nodes
    /// use.
    SharedSync,
    /// Each append syncs in its own write, as in a store of one group; to measure what the
    /// shared sync gains (`examples/group_commit.rs`).
    OwnSync,
    /// No sync for the appends: reported durable to openraft once written to the WAL. For a
    /// node that is only ever a learner (a gateway), whose log no quorum counts: a purchase is
    /// confirmed by the voters' synced logs whatever a learner holds. A process that dies
    /// keeps what it wrote (the operating system has it); a machine that loses power may lose
    /// the log's tail, and the leader then finds the learner behind what it had acknowledged
    /// and sends the entries again (openraft's feature `loosen-follower-log-revert`, on in
    /// this workspace). The state never gets ahead of such a log: its writes reach the disk
    /// only in a memtable flush, and RocksDB syncs the write-ahead log before it flushes in a
    /// store of several column families.
    Learner,
}

/// [`open_groups`], with the appends made durable as `durability` says.
pub fn open_groups_with(
    dir: &Path,
    groups: u16,
    durability: Durability,
) -> Result<Vec<(LogStore, StateMachine)>, StorageError<NodeId>> {
    let subject = || openraft::ErrorSubject::Store;
    if groups == 0 || groups > flashstock_api::placement::GROUPS_MAX {
        return Err(log_store::read_error(
            subject(),
            &format!(
                "a cluster has 1 to {} groups, not {groups}",
                flashstock_api::placement::GROUPS_MAX
            ),
        ));
    }
    let groups: Vec<Arc<Group>> = (0..groups)
        .map(|number| Arc::new(Group::new(number, groups)))
        .collect();
    let expected: Vec<&str> = groups.iter().flat_map(|group| group.families()).collect();
    // A new store has no families yet; an existing one holds exactly `groups` groups: with
    // another number, products would be looked for in groups that do not hold them.
    if let Ok(existing) = DB::list_cf(&Options::default(), dir) {
        let missing: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|name| !existing.iter().any(|held| held == name))
            .collect();
        let holds_group_0 = groups[0]
            .families()
            .into_iter()
            .any(|name| existing.iter().any(|held| held == name));
        if holds_group_0 && !missing.is_empty() {
            return Err(log_store::read_error(
                subject(),
                &format!(
                    "the store in {} lacks column families {missing:?}: it holds fewer groups \
                     than the {} this node is configured with, and a cluster's number of groups \
                     is fixed when it is made (set cluster.groups back; a node that never joined \
                     a cluster may instead start with an empty data directory)",
                    dir.display(),
                    groups.len()
                ),
            ));
        }
        let unknown: Vec<&String> = existing
            .iter()
            .filter(|name| *name != rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
            .filter(|name| !expected.contains(&name.as_str()))
            .collect();
        if !unknown.is_empty() {
            return Err(log_store::read_error(
                subject(),
                &format!(
                    "the store in {} holds column families {unknown:?}, of more groups than \
                     the {} this node is configured with; a cluster's number of groups is \
                     fixed when it is made",
                    dir.display(),
                    groups.len()
                ),
            ));
        }
    }
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_max_total_wal_size(WAL_BYTES_MAX);
    if durability == Durability::Learner {
        options.set_db_write_buffer_size(LEARNER_MEMTABLE_BYTES_MAX);
    }
    let cache = Cache::new_lru_cache(STATE_BLOCK_CACHE_BYTES);
    let families = groups.iter().flat_map(|group| {
        let state = group.state_family().to_string();
        let cache = &cache;
        group.families().map(move |name| {
            let options = if name == state {
                state_options(Some(cache))
            } else {
                Options::default()
            };
            ColumnFamilyDescriptor::new(name, options)
        })
    });
    let db = DB::open_cf_descriptors(&options, dir, families)
        .map_err(|e| log_store::read_error(subject(), &e))?;
    for name in &expected {
        assert!(
            db.cf_handle(name).is_some(),
            "column family {name} exists after open"
        );
    }
    for group in &groups {
        check_or_mark_format(&db, group, dir)?;
    }
    let db = Arc::new(db);
    let sync = match (groups.len(), durability) {
        (_, Durability::Learner) => AppendSync::Unsynced,
        (1, _) | (_, Durability::OwnSync) => AppendSync::Own,
        _ => AppendSync::Shared(Arc::new(wal_sync::WalSync::start(&db).map_err(|e| {
            log_store::write_error(subject(), &format!("cannot start the WAL sync thread: {e}"))
        })?)),
    };
    groups
        .into_iter()
        .map(|group| {
            let state_machine = StateMachine::new(db.clone(), group.clone())?;
            let log_store = LogStore::new(db.clone(), group, sync.clone());
            Ok((log_store, state_machine))
        })
        .collect()
}
