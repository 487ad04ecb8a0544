//! Preparing a data directory restored from a backup, before any node starts on it.
//!
//! A backup is a voter's data directory, copied while the node was stopped. Restoring it rewinds
//! the log: the restored group will commit new entries at indexes the lost group had already
//! used, so orders identified by log position alone would take ids of orders the lost group
//! placed after the backup (and archived, or handed to buyers). [`prepare`] makes that
//! impossible and keeps the restored history exact:
//!
//! - It keeps the log up to what was committed when the backup was taken (the larger of the
//!   stored commit index and the applied index) and drops the tail after it. Entries up to there
//!   are the same in the lost group and the restored one, and place the same orders with the same
//!   ids; an uncommitted tail might have been replaced in the lost group by other entries at the
//!   same indexes, or committed there and archived under its old ids.
//! - Entries after that belong to a new incarnation ([`Incarnations`]), whose number every
//!   order id carries ([`flashstock_api::OrderId::placed`]). The caller picks the number: above
//!   every incarnation ever started (the archive keeps the claims, see the node's `restore`).
//! - It rebuilds the stored snapshot from the state, so that a member fed a snapshot gets the
//!   incarnations too.
//!
//! Run it on one voter's directory; the other voters take a copy of the prepared directory, so
//! all of them hold the same log, state and incarnations.

use std::path::Path;

use flashstock_api::INCARNATION_MAX;
use openraft::LogId;
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};

use crate::inventory::{Incarnation, Incarnations};
use crate::keys::{cf, log_index, log_key, RaftKey, StateKey, CF_LOG, CF_RAFT, CF_STATE};
use crate::NodeId;

/// What [`prepare`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The incarnation new entries belong to.
    pub incarnation: u8,
    /// The incarnation of the backup.
    pub previous: u8,
    /// The last log index kept; entries after it belong to the new incarnation.
    pub kept_up_to: u64,
    /// Log entries dropped after it (uncommitted when the backup was taken).
    pub dropped_entries: u64,
}

/// The data directory's incarnations and last committed index, without changing anything.
pub fn inspect(dir: &Path) -> Result<(Incarnations, u64), String> {
    let db = open(dir)?;
    Ok((read_incarnations(&db)?, committed_index(&db)?))
}

/// Prepare the data directory `dir` (a stopped node's, restored from a backup) to start
/// incarnation `incarnation`. See the module documentation.
pub fn prepare(dir: &Path, incarnation: u8) -> Result<Prepared, String> {
    let db = open(dir)?;
    let mut incarnations = read_incarnations(&db)?;
    let previous = incarnations.current();
    if incarnation <= previous || incarnation > INCARNATION_MAX {
        return Err(format!(
            "incarnation {incarnation} cannot follow the data's incarnation {previous}: it must \
             be above it and at most {INCARNATION_MAX}"
        ));
    }
    let kept_up_to = committed_index(&db)?;

    let mut batch = WriteBatch::default();
    let log = cf(&db, CF_LOG);
    let mut dropped_entries = 0;
    for item in db.iterator_cf(
        log,
        IteratorMode::From(&log_key(kept_up_to + 1), rocksdb::Direction::Forward),
    ) {
        let (key, _) = item.map_err(|e| format!("cannot read the log: {e}"))?;
        debug_assert!(log_index(&key) > kept_up_to);
        batch.delete_cf(log, key);
        dropped_entries += 1;
    }
    incarnations.0.push(Incarnation {
        number: incarnation,
        after_index: kept_up_to,
    });
    let encoded = bincode::serialize(&incarnations).expect("incarnations serialize");
    batch.put_cf(cf(&db, CF_STATE), StateKey::Incarnations.encode(), encoded);
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    db.write_opt(batch, &sync)
        .map_err(|e| format!("cannot write the restored state: {e}"))?;
    let db = std::sync::Arc::new(db);
    crate::snapshot::Snapshots::open(db.clone(), std::sync::Arc::new(crate::keys::Group::only()))
        .and_then(|snapshots| snapshots.build())
        .map_err(|e| format!("cannot rebuild the snapshot: {e}"))?;
    db.flush_wal(true)
        .map_err(|e| format!("cannot sync the restored state: {e}"))?;
    Ok(Prepared {
        incarnation,
        previous,
        kept_up_to,
        dropped_entries,
    })
}

fn open(dir: &Path) -> Result<DB, String> {
    if !dir.join("CURRENT").exists() {
        return Err(format!(
            "{} holds no store (no RocksDB CURRENT file): unpack the backup there first",
            dir.display()
        ));
    }
    let options = rocksdb::Options::default();
    DB::open_cf(&options, dir, crate::keys::COLUMN_FAMILIES)
        .map_err(|e| format!("cannot open the store in {}: {e}", dir.display()))
}

fn read_incarnations(db: &DB) -> Result<Incarnations, String> {
    match db
        .get_cf(cf(db, CF_STATE), StateKey::Incarnations.encode())
        .map_err(|e| format!("cannot read the incarnations: {e}"))?
    {
        Some(bytes) => {
            bincode::deserialize(&bytes).map_err(|e| format!("malformed incarnations: {e}"))
        }
        None => Ok(Incarnations::default()),
    }
}

/// What was certainly committed in this copy: the stored commit index, or the applied index if
/// it is further (the commit index is saved without a sync).
fn committed_index(db: &DB) -> Result<u64, String> {
    let committed = log_id_at(db, CF_RAFT, RaftKey::Committed.encode(), "commit index")?;
    let applied = log_id_at(db, CF_STATE, &StateKey::Applied.encode(), "applied index")?;
    let index = |id: Option<LogId<NodeId>>| id.map_or(0, |id| id.index);
    Ok(index(committed).max(index(applied)))
}

/// The log id stored under `key` of column family `family`, if any.
fn log_id_at(
    db: &DB,
    family: &str,
    key: &[u8],
    what: &str,
) -> Result<Option<LogId<NodeId>>, String> {
    match db
        .get_cf(cf(db, family), key)
        .map_err(|e| format!("cannot read the {what}: {e}"))?
    {
        Some(bytes) => bincode::deserialize::<Option<LogId<NodeId>>>(&bytes)
            .map_err(|e| format!("malformed {what}: {e}")),
        None => Ok(None),
    }
}
