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
//!
//! A store of several Raft groups is prepared group by group, each from its own commit index,
//! and every group starts the same new incarnation: the number is above every incarnation of
//! every group, so no group's new orders can take an id any group handed out before.

use std::path::Path;

use flashstock_api::INCARNATION_MAX;
use openraft::LogId;
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};

use crate::inventory::{Incarnation, Incarnations};
use crate::keys::{log_index, log_key, Group, RaftKey, StateKey, CF_STATE};
use crate::NodeId;

/// What [`prepare`] did to one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The group (0 in a store of one group).
    pub group: u16,
    /// The incarnation new entries belong to.
    pub incarnation: u8,
    /// The group's incarnation in the backup.
    pub previous: u8,
    /// The last log index kept; entries after it belong to the new incarnation.
    pub kept_up_to: u64,
    /// Log entries dropped after it (uncommitted when the backup was taken).
    pub dropped_entries: u64,
}

/// What [`inspect`] found, without changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Raft groups the store holds.
    pub groups: u16,
    /// The highest incarnation any group has started.
    pub incarnation: u8,
    /// The highest last committed index of any group.
    pub committed: u64,
}

/// The data directory's groups, incarnations and last committed indexes.
pub fn inspect(dir: &Path) -> Result<Found, String> {
    let (db, groups) = open(dir)?;
    let mut found = Found {
        groups: groups.len() as u16,
        incarnation: 0,
        committed: 0,
    };
    for group in &groups {
        let current = read_incarnations(&db, group)?.current();
        found.incarnation = found.incarnation.max(current);
        found.committed = found.committed.max(committed_index(&db, group)?);
    }
    Ok(found)
}

/// Prepare the data directory `dir` (a stopped node's, restored from a backup) to start
/// incarnation `incarnation` in every group it holds. See the module documentation.
pub fn prepare(dir: &Path, incarnation: u8) -> Result<Vec<Prepared>, String> {
    let (db, groups) = open(dir)?;
    let db = std::sync::Arc::new(db);
    let mut prepared = Vec::new();
    for group in groups {
        prepared.push(prepare_group(&db, group, incarnation)?);
    }
    db.flush_wal(true)
        .map_err(|e| format!("cannot sync the restored state: {e}"))?;
    Ok(prepared)
}

fn prepare_group(
    db: &std::sync::Arc<DB>,
    group: Group,
    incarnation: u8,
) -> Result<Prepared, String> {
    let mut incarnations = read_incarnations(db, &group)?;
    let previous = incarnations.current();
    if incarnation <= previous || incarnation > INCARNATION_MAX {
        return Err(format!(
            "incarnation {incarnation} cannot follow the data's incarnation {previous} (group \
             {}): it must be above it and at most {INCARNATION_MAX}",
            group.number()
        ));
    }
    let kept_up_to = committed_index(db, &group)?;

    let mut batch = WriteBatch::default();
    let log = group.log(db);
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
    batch.put_cf(group.state(db), StateKey::Incarnations.encode(), encoded);
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    db.write_opt(batch, &sync)
        .map_err(|e| format!("cannot write the restored state: {e}"))?;
    let number = group.number();
    crate::snapshot::Snapshots::open(db.clone(), std::sync::Arc::new(group))
        .and_then(|snapshots| snapshots.build())
        .map_err(|e| format!("cannot rebuild the snapshot of group {number}: {e}"))?;
    Ok(Prepared {
        group: number,
        incarnation,
        previous,
        kept_up_to,
        dropped_entries,
    })
}

/// Open the store in `dir` with every column family it holds, and say which groups those are.
fn open(dir: &Path) -> Result<(DB, Vec<Group>), String> {
    if !dir.join("CURRENT").exists() {
        return Err(format!(
            "{} holds no store (no RocksDB CURRENT file): unpack the backup there first",
            dir.display()
        ));
    }
    let options = rocksdb::Options::default();
    let families = DB::list_cf(&options, dir).map_err(|e| {
        format!(
            "cannot list the store's column families in {}: {e}",
            dir.display()
        )
    })?;
    // Group 0's families are `state` and so on; group g's `state-g<g>`.
    let count = families
        .iter()
        .filter(|name| name.as_str() == CF_STATE || name.starts_with("state-g"))
        .count();
    if count == 0 || count > usize::from(flashstock_api::placement::GROUPS_MAX) {
        return Err(format!(
            "{} holds {count} groups' state: not a flashstock store",
            dir.display()
        ));
    }
    let groups: Vec<Group> = (0..count as u16)
        .map(|number| Group::new(number, count as u16))
        .collect();
    let db = DB::open_cf(&options, dir, &families)
        .map_err(|e| format!("cannot open the store in {}: {e}", dir.display()))?;
    for group in &groups {
        for family in group.families() {
            if db.cf_handle(family).is_none() {
                return Err(format!(
                    "the store in {} lacks column family {family}",
                    dir.display()
                ));
            }
        }
    }
    Ok((db, groups))
}

fn read_incarnations(db: &DB, group: &Group) -> Result<Incarnations, String> {
    match db
        .get_cf(group.state(db), StateKey::Incarnations.encode())
        .map_err(|e| format!("cannot read the incarnations: {e}"))?
    {
        Some(bytes) => {
            bincode::deserialize(&bytes).map_err(|e| format!("malformed incarnations: {e}"))
        }
        None => Ok(Incarnations::default()),
    }
}

/// What was certainly committed in this copy of `group`: the stored commit index, or the
/// applied index if it is further (the commit index is saved without a sync).
fn committed_index(db: &DB, group: &Group) -> Result<u64, String> {
    let committed = log_id_at(
        db,
        group.raft(db),
        RaftKey::Committed.encode(),
        "commit index",
    )?;
    let applied = log_id_at(
        db,
        group.state(db),
        &StateKey::Applied.encode(),
        "applied index",
    )?;
    let index = |id: Option<LogId<NodeId>>| id.map_or(0, |id| id.index);
    Ok(index(committed).max(index(applied)))
}

/// The log id stored under `key` of column family `family`, if any.
fn log_id_at(
    db: &DB,
    family: &rocksdb::ColumnFamily,
    key: &[u8],
    what: &str,
) -> Result<Option<LogId<NodeId>>, String> {
    match db
        .get_cf(family, key)
        .map_err(|e| format!("cannot read the {what}: {e}"))?
    {
        Some(bytes) => bincode::deserialize::<Option<LogId<NodeId>>>(&bytes)
            .map_err(|e| format!("malformed {what}: {e}")),
        None => Ok(None),
    }
}
