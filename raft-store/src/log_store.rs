//! The Raft log and vote on RocksDB.
//!
//! Durability: an append is written to RocksDB with a WAL fsync and reported durable to openraft
//! when that write returns. A vote is fsynced before `save_vote` returns. The one exception is
//! a store opened for a node that is only ever a learner ([`crate::Durability::Learner`]): its
//! appends are reported once written, without the fsync, since no quorum counts them.
//!
//! Threads: a write that syncs runs on a blocking thread. A write that does not (a learner's
//! append, an append of a store of several groups, whose sync is the shared one, and the
//! record of the committed index) is made on the calling task (`LogStore::write_unsynced`):
//! measured, the two thread wake-ups of a hand-off cost more than such a write.
//!
//! There is no group commit within a group because there is nothing to group: openraft 0.9.25
//! waits for each append's completion before it appends again (`RaftCore::append_to_log` awaits
//! the callback; leader and follower alike), so at most one append of a group is ever waiting
//! for an fsync. The batching that pays happens before the log: a gateway coalesces many
//! purchases into one entry, and a follower receives many entries per append. An earlier
//! version fsynced on a separate thread that took "every append waiting"; it never found more
//! than one. Across the groups of one store there is something to group, and
//! the store's shared sync (`wal_sync`) groups it: one sync for the appends of every group.

use std::fmt::{Debug, Display};
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogId, RaftLogReader,
    StorageError, StorageIOError, Vote,
};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::keys::{log_index, log_key, Group, RaftKey};
use crate::wal_sync::WalSync;
use crate::{NodeId, Observer, StoreStage, TypeConfig};

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// Raft log storage. Cloning it gives another reader of the same log.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    group: Arc<Group>,
    sync: AppendSync,
    observer: Option<Observer>,
}

/// What an append waits for before openraft hears that it is durable.
#[derive(Clone)]
pub(crate) enum AppendSync {
    /// Its own write syncs the WAL: a store of one group.
    Own,
    /// The store's one sync for every group's appends written meanwhile.
    Shared(Arc<WalSync>),
    /// Nothing past the write: a learner's log ([`crate::Durability::Learner`]).
    Unsynced,
}

impl LogStore {
    pub(crate) fn new(db: Arc<DB>, group: Arc<Group>, sync: AppendSync) -> LogStore {
        LogStore {
            db,
            group,
            sync,
            observer: None,
        }
    }

    /// How many WAL syncs the store's shared sync has made for the appends of its groups;
    /// `None` in a store of one group.
    pub fn shared_syncs(&self) -> Option<u64> {
        match &self.sync {
            AppendSync::Shared(wal_sync) => Some(wal_sync.syncs()),
            AppendSync::Own | AppendSync::Unsynced => None,
        }
    }

    /// The same store, telling `observer` how long each append's write and fsync take.
    pub fn with_observer(mut self, observer: Observer) -> LogStore {
        self.observer = Some(observer);
        self
    }

    fn get_raft<T: DeserializeOwned>(&self, key: RaftKey) -> StorageResult<Option<T>> {
        let cf = self.group.raft(&self.db);
        let value = self
            .db
            .get_cf(cf, key.encode())
            .map_err(|e| read_error(ErrorSubject::Store, &e))?;
        value
            .map(|bytes| decode(&bytes, ErrorSubject::Store))
            .transpose()
    }

    /// Write a Raft record, with an fsync when `sync` is set (on a blocking thread), else as
    /// [`LogStore::write_unsynced`].
    async fn put_raft<T: Serialize>(
        &self,
        key: RaftKey,
        value: &T,
        sync: bool,
        subject: ErrorSubject<NodeId>,
    ) -> StorageResult<()> {
        let bytes = encode(value, subject.clone())?;
        if !sync {
            let mut batch = WriteBatch::default();
            batch.put_cf(self.group.raft(&self.db), key.encode(), bytes);
            return self.write_unsynced(batch, subject).await;
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.group.raft(&self.db), key.encode(), bytes);
        self.write_blocking(batch, true, subject).await
    }

    /// Write `batch` on a blocking thread, with an fsync when `sync` is set.
    async fn write_blocking(
        &self,
        batch: WriteBatch,
        sync: bool,
        subject: ErrorSubject<NodeId>,
    ) -> StorageResult<()> {
        let db = self.db.clone();
        let result = joined(
            tokio::task::spawn_blocking(move || {
                let mut options = WriteOptions::default();
                options.set_sync(sync);
                db.write_opt(batch, &options)
            })
            .await,
            subject.clone(),
            ErrorVerb::Write,
        )?;
        result.map_err(|e| write_error(subject, &e))
    }

    /// Write `batch` without a sync. Such a write only copies into the memtable and the
    /// operating system's page cache, a few microseconds, so it is made on the calling task:
    /// handing it to a blocking thread and back would cost two thread wake-ups per append, on
    /// every node, more than the write itself. A write RocksDB would stall (too many
    /// memtables or level-0 files waiting for a flush) is refused at once (`no_slowdown`)
    /// instead of blocking the runtime's worker, and is then made on a blocking thread.
    async fn write_unsynced(
        &self,
        batch: WriteBatch,
        subject: ErrorSubject<NodeId>,
    ) -> StorageResult<()> {
        let data = batch.data().to_vec();
        let mut options = WriteOptions::default();
        options.set_no_slowdown(true);
        match self.db.write_opt(batch, &options) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete => {}
            Err(e) => return Err(write_error(subject, &e)),
        }
        self.write_blocking(WriteBatch::from_data(&data), false, subject)
            .await
    }

    /// The write that appends `entries` to the log.
    fn batch_of(
        &self,
        entries: impl IntoIterator<Item = Entry<TypeConfig>>,
    ) -> StorageResult<WriteBatch> {
        let mut batch = WriteBatch::default();
        let cf = self.group.log(&self.db);
        for entry in entries {
            let subject = ErrorSubject::Log(*entry.get_log_id());
            batch.put_cf(
                cf,
                log_key(entry.get_log_id().index),
                encode(&entry, subject)?,
            );
        }
        Ok(batch)
    }

    fn last_entry_log_id(&self) -> StorageResult<Option<LogId<NodeId>>> {
        let cf = self.group.log(&self.db);
        let Some(item) = self.db.iterator_cf(cf, IteratorMode::End).next() else {
            return Ok(None);
        };
        let (_, value) = item.map_err(|e| read_error(ErrorSubject::Logs, &e))?;
        let entry: Entry<TypeConfig> = decode(&value, ErrorSubject::Logs)?;
        Ok(Some(*entry.get_log_id()))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let cf = self.group.log(&self.db);
        let mut entries = Vec::new();
        let from = log_key(start);
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward))
        {
            let (key, value) = item.map_err(|e| read_error(ErrorSubject::Logs, &e))?;
            if !range.contains(&log_index(&key)) {
                break;
            }
            entries.push(decode(&value, ErrorSubject::Logs)?);
        }
        Ok(entries)
    }

    /// The entries replication sends next: a run that starts exactly at `start`, never one that
    /// starts later. openraft builds an AppendEntries from this run with `start - 1` as the
    /// previous log id, so a run with a gap in front (its start was purged) would hand a
    /// follower entries that do not follow the log id they claim to follow. An empty answer is a
    /// heartbeat to openraft, and the leader sends a snapshot instead once it sees the purge.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let entries = self.try_get_log_entries(start..end).await?;
        match entries.first() {
            Some(first) if first.get_log_id().index != start => {
                tracing::warn!(
                    start,
                    first = first.get_log_id().index,
                    "asked to replicate from a purged index; sending nothing"
                );
                Ok(Vec::new())
            }
            _ => Ok(entries),
        }
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.get_raft(RaftKey::Purged)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        // A vote must survive a crash before it is granted or acted on: fsync it.
        self.put_raft(RaftKey::Vote, vote, true, ErrorSubject::Vote)
            .await
    }

    /// The stored vote, read once, at start-up, and always handed back *uncommitted*.
    ///
    /// openraft 0.9 starts a node whose vote is committed and for itself as the leader of that
    /// term at once, trusting its log to hold everything it appended as leader. A store restored
    /// from a copy (a backup of a voter that led a group, put back while the group was still in
    /// that term) breaks that trust: the node would lead the same term again with a shorter
    /// log, and append other entries under log ids the followers already hold, which they then
    /// take for the same entries. Replicas would diverge. Handed back uncommitted, the vote
    /// still stops the node from voting twice in its term, but the node starts as a follower
    /// and leads again only through an election, in a new term, which a log behind the others'
    /// cannot win. A leader that restarts within its lease costs the group an election instead
    /// of resuming; a planned restart hands off first anyway.
    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        let vote: Option<Vote<NodeId>> = self.get_raft(RaftKey::Vote)?;
        Ok(vote.map(|vote| Vote {
            committed: false,
            ..vote
        }))
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        // Only an optimization for restarts (apply up to here without waiting for the leader):
        // no fsync needed.
        self.put_raft(RaftKey::Committed, &committed, false, ErrorSubject::Store)
            .await
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self
            .get_raft::<Option<LogId<NodeId>>>(RaftKey::Committed)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let batch = self.batch_of(entries)?;
        let observer = self.observer.clone();
        let began = std::time::Instant::now();
        if matches!(self.sync, AppendSync::Own) {
            self.write_blocking(batch, true, ErrorSubject::Logs).await?;
        } else {
            self.write_unsynced(batch, ErrorSubject::Logs).await?;
        }
        let AppendSync::Shared(wal_sync) = &self.sync else {
            if let Some(observe) = observer {
                observe(StoreStage::LogAppend, began.elapsed());
            }
            // Own: the write's WAL fsync covers these entries (and every earlier write).
            // Unsynced: written, in the operating system's hands; see `Durability::Learner`.
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        // Written; durable once the next sync of the shared log is done, which is when
        // openraft hears of it.
        wal_sync.after_sync(Box::new(move |synced| {
            if let Some(observe) = observer {
                observe(StoreStage::LogAppend, began.elapsed());
            }
            callback.log_io_completed(synced.map_err(std::io::Error::other));
        }));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let cf = self.group.log(&self.db);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, log_key(log_id.index), log_key(u64::MAX));
        batch.delete_cf(cf, log_key(u64::MAX));
        self.write_blocking(batch, true, ErrorSubject::Logs).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let subject = ErrorSubject::Logs;
        let purged = encode(&log_id, subject.clone())?;
        let (cf_log, cf_raft) = (self.group.log(&self.db), self.group.raft(&self.db));
        // The purge mark and the deletion go in one batch, so the log state read back after a
        // crash is always consistent.
        let mut batch = WriteBatch::default();
        batch.put_cf(cf_raft, RaftKey::Purged.encode(), purged);
        batch.delete_range_cf(cf_log, log_key(0), log_key(log_id.index + 1));
        self.write_blocking(batch, false, subject).await
    }
}

pub(crate) fn encode<T: Serialize>(
    value: &T,
    subject: ErrorSubject<NodeId>,
) -> StorageResult<Vec<u8>> {
    bincode::serialize(value).map_err(|e| io_error(subject, ErrorVerb::Write, &e))
}

pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    subject: ErrorSubject<NodeId>,
) -> StorageResult<T> {
    bincode::deserialize(bytes).map_err(|e| io_error(subject, ErrorVerb::Read, &e))
}

/// The result of a store's blocking task. A task that panicked panics here too; one the runtime
/// cancelled (a blocking task not yet started when the runtime shuts down, after the Raft core
/// has stopped) is an error of `subject`, not a panic: a node that stops cleanly logs no panic.
pub(crate) fn joined<T>(
    joined: Result<T, tokio::task::JoinError>,
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
) -> StorageResult<T> {
    match joined {
        Ok(value) => Ok(value),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(io_error(
            subject,
            verb,
            &format_args!("{e}: the node is stopping"),
        )),
    }
}

pub(crate) fn read_error(subject: ErrorSubject<NodeId>, e: &dyn Display) -> StorageError<NodeId> {
    io_error(subject, ErrorVerb::Read, e)
}

pub(crate) fn write_error(subject: ErrorSubject<NodeId>, e: &dyn Display) -> StorageError<NodeId> {
    io_error(subject, ErrorVerb::Write, e)
}

fn io_error(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: &dyn Display,
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::error(e)).into()
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    use super::*;

    /// RocksDB deletes a write-ahead log file only once every column family's writes in it are
    /// flushed. The `raft` family is written rarely (a vote, then nothing until a snapshot): its
    /// memtable must not keep every WAL file alive while the log grows by hundreds of MiB.
    /// (`openraft`'s append callback cannot be made outside it, so the appends are written as
    /// [`LogStore::append`] writes them, with the same batch.)
    #[test]
    fn the_write_ahead_log_stays_bounded_while_a_family_is_idle() {
        const MIB: u64 = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (mut log, sm) = crate::open(dir.path()).unwrap();
        runtime.block_on(log.save_vote(&Vote::new(1, 1))).unwrap();
        let name = "n".repeat(flashstock_api::PRODUCT_NAME_LEN_MAX);
        let (mut most_wal, mut written) = (0, 0);
        for index in 1..=900u64 {
            let commands = (0..1000)
                .map(|i| flashstock_api::Command {
                    key: format!("p{index}-{i}-{}", "k".repeat(100)),
                    op: flashstock_api::Op::CreateProduct {
                        product: format!("p{index}-{i}"),
                        name: name.clone(),
                        price_cents: 100,
                        stock: 1,
                    },
                })
                .collect();
            let entry = Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
                payload: EntryPayload::Normal(flashstock_api::Proposal {
                    proposed_at_ms: 1_000 + index,
                    forget_keys_before_ms: 0,
                    drop_archived_before_ms: 0,
                    commands,
                }),
            };
            let mut options = WriteOptions::default();
            options.set_sync(true);
            let batch = log.batch_of([entry]).unwrap();
            written += batch.size_in_bytes() as u64;
            log.db.write_opt(batch, &options).unwrap();
            most_wal = most_wal.max(sm.reader().storage().wal_bytes);
        }
        eprintln!(
            "{} MiB appended, write-ahead log at most {} MiB",
            written / MIB,
            most_wal / MIB
        );
        // The appends went well past the bound (64 MiB)...
        assert!(written > 256 * MIB, "only {} MiB appended", written / MIB);
        // ... and the WAL never held much more than the bound: the file being written and the
        // one of a flush in progress at most.
        assert!(
            most_wal <= 160 * MIB,
            "the write-ahead log reached {} MiB while {} MiB were appended",
            most_wal / MIB,
            written / MIB
        );
    }
}
