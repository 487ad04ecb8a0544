//! Snapshots as files, built and installed as streams: a node needs a few MiB of memory for a
//! snapshot, whatever the size of its state.
//!
//! **Data.** A snapshot's data is the `state` column family's pairs in key order, encoded as
//! bincode encodes a `Vec<(Vec<u8>, Vec<u8>)>`: a little-endian u64 count, then each key and
//! each value as a little-endian u64 length and its bytes. Every release has sent this
//! encoding, so snapshots pass between releases unchanged; only where a node keeps it changed.
//!
//! **Files.** They live in `snapshots/` inside the store's directory:
//! - `snapshot-<index>-<ns>`: a snapshot, written and fsynced before any record names it;
//! - `building-<ns>` and `receiving-<ns>`: one being built or received, removed at open.
//!
//! The `raft` column family's [`RaftKey::SnapshotFile`] record names the current snapshot with
//! its meta. Files a record no longer names are removed; one still being sent to a follower
//! stays readable through its open handle until the sender closes it.
//!
//! **Building** streams a RocksDB snapshot of the column family into `building-*`, patches the
//! count at the front, fsyncs, flushes the column family's memtables (the state's writes skip
//! the write-ahead log, so this is what makes the state up to the snapshot durable before the
//! log behind it may be purged), renames. A build never replaces a newer snapshot (a follower may
//! install one while it builds).
//!
//! **Installing** streams the received file into an SST file holding a range deletion of the
//! whole column family and every pair, then records the snapshot (synced) and ingests the SST:
//! RocksDB swaps the column family's content in one step, and a range deletion in an SST
//! deletes only keys of other files, never its own. Readers see the old state or the new one.
//! A node stopped between the record and the ingestion finds at open a snapshot newer than its
//! state, and ingests it again (`Snapshots::open`).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::Snapshot;
use openraft::{ErrorSubject, LogId, SnapshotMeta, StorageError, StoredMembership};
use rocksdb::{
    IngestExternalFileOptions, IteratorMode, SstFileWriter, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use crate::keys::{Group, RaftKey, StateKey, STATE_KEY_END};
use crate::log_store::{decode, encode, read_error, write_error};
use crate::{Node, NodeId, TypeConfig};

type StorageResult<T> = Result<T, StorageError<NodeId>>;
type Meta = SnapshotMeta<NodeId, Node>;
type Membership = StoredMembership<NodeId, Node>;

/// The directory of snapshot files, inside the store's directory.
pub const DIR: &str = "snapshots";
/// Prefixes of the names of the files in [`DIR`]: a snapshot; one being built; one being
/// received; the table an install hands RocksDB.
const SNAPSHOT: &str = "snapshot-";
const BUILDING: &str = "building-";
const RECEIVING: &str = "receiving-";
const INGESTING: &str = "ingesting-";
/// Most bytes of one key or one value in a snapshot: far above any record of the state (a
/// write's body is bounded well below it), so a malformed length is refused before it is
/// allocated.
const PAIR_PART_BYTES_MAX: u64 = 64 << 20;
/// Bytes buffered between a snapshot file and the code that writes or reads it.
const BUFFER_BYTES: usize = 1 << 20;

/// A snapshot's data as openraft reads, writes and hands it over: an open file, and its path
/// (an install moves the file it received into place).
#[derive(Debug)]
pub struct SnapshotFile {
    file: tokio::fs::File,
    path: PathBuf,
}

impl SnapshotFile {
    /// The file for blocking IO, once every write to it has finished.
    pub(crate) async fn into_std(self) -> (File, PathBuf) {
        (self.file.into_std().await, self.path)
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.file).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.file).poll_complete(cx)
    }
}

/// The current snapshot, as the `raft` column family records it.
#[derive(Serialize, Deserialize)]
struct SnapshotRecord {
    meta: Meta,
    /// Its file's name in [`DIR`].
    file: String,
}

/// The record of releases that kept a snapshot's data inside RocksDB ([`RaftKey::Snapshot`]):
/// moved into a file at open.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: Meta,
    data: Vec<u8>,
}

/// A store's snapshot files and the record naming the current one.
pub struct Snapshots {
    db: Arc<DB>,
    group: Arc<Group>,
    dir: PathBuf,
    /// Held while the record is compared and replaced, and old files removed: a build and an
    /// install may finish at the same time.
    record_lock: Mutex<()>,
}

fn index_of(meta: &Meta) -> u64 {
    meta.last_log_id.map_or(0, |id| id.index)
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Make a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Snapshots {
    /// The snapshots of the store `db`: creates the directory, removes what a stopped build or
    /// receive left, moves a snapshot of an older release out of RocksDB into a file, and
    /// finishes an install the node stopped in.
    pub(crate) fn open(db: Arc<DB>, group: Arc<Group>) -> StorageResult<Snapshots> {
        let subject = || ErrorSubject::Snapshot(None);
        let dir = group.snapshot_dir(db.path());
        std::fs::create_dir_all(&dir).map_err(|e| write_error(subject(), &e))?;
        let snapshots = Snapshots {
            db,
            group,
            dir,
            record_lock: Mutex::new(()),
        };
        snapshots.move_old_record()?;
        let record = snapshots.record()?;
        // What a build, a receive or an install left when the node stopped, and any snapshot
        // but the recorded one.
        snapshots.remove_files(
            &[SNAPSHOT, BUILDING, RECEIVING, INGESTING],
            record.as_ref().map(|r| r.file.as_str()),
        );
        if let Some(record) = record {
            let applied: Option<LogId<NodeId>> = snapshots.state_value(StateKey::Applied)?;
            if applied.map_or(0, |id| id.index) < index_of(&record.meta) {
                // Recorded, not yet ingested: the node stopped in the middle of an install.
                let path = snapshots.dir.join(&record.file);
                snapshots.ingest(&path, &record.meta)?;
            }
        }
        Ok(snapshots)
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // Guards no data of its own: a panicked holder left nothing half done in it.
        self.record_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self) -> StorageResult<Option<SnapshotRecord>> {
        let subject = || ErrorSubject::Snapshot(None);
        let bytes = self
            .db
            .get_cf(self.group.raft(&self.db), RaftKey::SnapshotFile.encode())
            .map_err(|e| read_error(subject(), &e))?;
        bytes.map(|bytes| decode(&bytes, subject())).transpose()
    }

    fn state_value<T: serde::de::DeserializeOwned>(
        &self,
        key: StateKey,
    ) -> StorageResult<Option<T>> {
        let subject = || ErrorSubject::Snapshot(None);
        let bytes = self
            .db
            .get_cf(self.group.state(&self.db), key.encode())
            .map_err(|e| read_error(subject(), &e))?;
        bytes.map(|bytes| decode(&bytes, subject())).transpose()
    }

    /// Record `record` as the current snapshot, with what `batch` holds, in one synced write.
    fn write_record(&self, record: &SnapshotRecord, mut batch: WriteBatch) -> StorageResult<()> {
        let subject = || ErrorSubject::Snapshot(Some(record.meta.signature()));
        batch.put_cf(
            self.group.raft(&self.db),
            RaftKey::SnapshotFile.encode(),
            encode(record, subject())?,
        );
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db
            .write_opt(batch, &options)
            .map_err(|e| write_error(subject(), &e))
    }

    /// An older release kept the snapshot's data in the `raft` column family: write it to a
    /// file, record that, and drop the old record, in one synced batch.
    fn move_old_record(&self) -> StorageResult<()> {
        let subject = || ErrorSubject::Snapshot(None);
        let cf_raft = self.group.raft(&self.db);
        let Some(bytes) = self
            .db
            .get_cf(cf_raft, RaftKey::Snapshot.encode())
            .map_err(|e| read_error(subject(), &e))?
        else {
            return Ok(());
        };
        let old: StoredSnapshot = decode(&bytes, subject())?;
        drop(bytes);
        let name = format!("{SNAPSHOT}{}-{}", index_of(&old.meta), now_ns());
        let path = self.dir.join(&name);
        let written = File::create(&path)
            .and_then(|mut file| {
                file.write_all(&old.data)?;
                file.sync_all()
            })
            .and_then(|()| sync_dir(&self.dir));
        written.map_err(|e| write_error(subject(), &e))?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(cf_raft, RaftKey::Snapshot.encode());
        let record = SnapshotRecord {
            meta: old.meta,
            file: name,
        };
        let _guard = self.lock();
        self.write_record(&record, batch)
    }

    /// Remove the files of this directory whose names start with one of `prefixes`, except
    /// `keep`.
    fn remove_files(&self, prefixes: &[&str], keep: Option<&str>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if prefixes.iter().any(|prefix| name.starts_with(prefix)) && Some(name) != keep {
                if let Err(e) = std::fs::remove_file(entry.path()) {
                    tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove an old snapshot file");
                }
            }
        }
    }

    /// The current snapshot, opened for reading.
    pub(crate) async fn current(&self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        // A build may replace the file between reading the record and opening it: read again.
        let mut attempts = 0;
        loop {
            let Some(record) = self.record()? else {
                return Ok(None);
            };
            let path = self.dir.join(&record.file);
            match tokio::fs::File::open(&path).await {
                Ok(file) => {
                    return Ok(Some(Snapshot {
                        meta: record.meta,
                        snapshot: Box::new(SnapshotFile { file, path }),
                    }))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
                Err(e) => {
                    return Err(read_error(
                        ErrorSubject::Snapshot(Some(record.meta.signature())),
                        &format!("{}: {e}", path.display()),
                    ))
                }
            }
        }
    }

    /// A new file to receive a snapshot into. A receive that starts ends the one before (openraft
    /// streams one snapshot at a time), so what earlier receives left is removed; a file whose
    /// stream finished is read through its open handle, and moved into place by a copy if its
    /// name is gone ([`Snapshots::install`]).
    pub(crate) async fn begin_receiving(&self) -> StorageResult<Box<SnapshotFile>> {
        let subject = || ErrorSubject::Snapshot(None);
        let path = self.dir.join(format!("{RECEIVING}{}", now_ns()));
        self.remove_files(&[RECEIVING], None);
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| write_error(subject(), &e))?;
        Ok(Box::new(SnapshotFile { file, path }))
    }

    /// Build a snapshot of the state as it is now. See the module documentation. Blocks: call
    /// it off the runtime's threads.
    pub(crate) fn build(&self) -> StorageResult<Snapshot<TypeConfig>> {
        let subject = || ErrorSubject::Snapshot(None);
        let building = self.dir.join(format!("{BUILDING}{}", now_ns()));
        let written = self.write_state(&building);
        // The state's writes skip the WAL (`state_machine`): flush what is applied now, which is
        // at least what the file holds, before openraft hears of the snapshot and may purge the
        // log up to it. A crash then never leaves the state behind the purged log.
        let written = written.and_then(|found| {
            self.db
                .flush_cf(self.group.state(&self.db))
                .map_err(|e| write_error(subject(), &e))?;
            Ok(found)
        });
        let (last_log_id, last_membership) = match written {
            Ok(found) => found,
            Err(e) => {
                let _ = std::fs::remove_file(&building);
                return Err(e);
            }
        };
        let built_at_ns = now_ns();
        let snapshot_id = match last_log_id {
            Some(id) => format!("{}-{}-{built_at_ns}", id.leader_id, id.index),
            None => format!("empty-{built_at_ns}"),
        };
        let meta = Meta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let name = format!("{SNAPSHOT}{}-{built_at_ns}", index_of(&meta));
        let path = self.dir.join(&name);
        std::fs::rename(&building, &path)
            .and_then(|()| sync_dir(&self.dir))
            .map_err(|e| write_error(subject(), &e))?;
        let file = File::open(&path).map_err(|e| read_error(subject(), &e))?;

        let _guard = self.lock();
        let newer = self
            .record()?
            .filter(|r| index_of(&r.meta) > index_of(&meta));
        if newer.is_some() {
            // An install recorded a newer snapshot while this one was built: keep that one.
            // This one is still handed back, readable through its open file.
            let _ = std::fs::remove_file(&path);
        } else {
            let record = SnapshotRecord {
                meta: meta.clone(),
                file: name.clone(),
            };
            self.write_record(&record, WriteBatch::default())?;
            self.remove_files(&[SNAPSHOT], Some(&name));
        }
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile {
                file: tokio::fs::File::from_std(file),
                path,
            }),
        })
    }

    /// Write the state column family, read through one RocksDB snapshot, to `path`; return the
    /// applied log id and membership in it (read through the same snapshot: read apart, a
    /// follower could install data newer than the log id it claims, and apply entries twice).
    fn write_state(&self, path: &Path) -> StorageResult<(Option<LogId<NodeId>>, Membership)> {
        let subject = || ErrorSubject::Snapshot(None);
        let io = |e: io::Error| write_error(subject(), &e);
        let applied_key = StateKey::Applied.encode();
        let membership_key = StateKey::Membership.encode();
        let mut out = BufWriter::with_capacity(BUFFER_BYTES, File::create_new(path).map_err(io)?);
        out.write_all(&0u64.to_le_bytes()).map_err(io)?;
        let mut count = 0u64;
        let (mut applied, mut membership) = (None, Membership::default());
        let view = self.db.snapshot();
        for item in view.iterator_cf(self.group.state(&self.db), IteratorMode::Start) {
            let (key, value) = item.map_err(|e| read_error(subject(), &e))?;
            if *key == *applied_key {
                applied = decode(&value, subject())?;
            } else if *key == *membership_key {
                membership = decode(&value, subject())?;
            }
            write_pair(&mut out, &key, &value).map_err(io)?;
            count += 1;
        }
        drop(view);
        let mut file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&count.to_le_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok((applied, membership))
    }

    /// Install the snapshot `meta` received into `received`. See the module documentation.
    /// Blocks: call it off the runtime's threads.
    pub(crate) fn install(&self, meta: &Meta, mut file: File, path: &Path) -> StorageResult<()> {
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        file.sync_all().map_err(|e| write_error(subject(), &e))?;
        let sst = self.sst_from(&mut file, meta).inspect_err(|_| {
            let _ = std::fs::remove_file(path);
        })?;

        // Move the received file into place; by a copy from its handle if a newer receive
        // removed its name, or if the file is not one this store received.
        let name = format!("{SNAPSHOT}{}-{}", index_of(meta), now_ns());
        let target = self.dir.join(&name);
        let received_here = path.parent() == Some(self.dir.as_path())
            && path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with(RECEIVING));
        let moved = match received_here {
            true => match std::fs::rename(path, &target) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    copy_from_start(&mut file, &target)
                }
                other => other,
            },
            false => copy_from_start(&mut file, &target),
        };
        moved
            .and_then(|()| sync_dir(&self.dir))
            .map_err(|e| write_error(subject(), &e))?;

        let _guard = self.lock();
        let record = SnapshotRecord {
            meta: meta.clone(),
            file: name.clone(),
        };
        self.write_record(&record, WriteBatch::default())?;
        self.ingest_sst(&sst, meta)?;
        self.remove_files(&[SNAPSHOT], Some(&name));
        Ok(())
    }

    /// Ingest the snapshot file at `path` into the state column family.
    fn ingest(&self, path: &Path, meta: &Meta) -> StorageResult<()> {
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let mut file = File::open(path).map_err(|e| read_error(subject(), &e))?;
        let sst = self.sst_from(&mut file, meta)?;
        self.ingest_sst(&sst, meta)
    }

    fn ingest_sst(&self, sst: &Path, meta: &Meta) -> StorageResult<()> {
        let mut options = IngestExternalFileOptions::default();
        options.set_move_files(true);
        let ingested = self.db.ingest_external_file_cf_opts(
            self.group.state(&self.db),
            &options,
            vec![sst.to_path_buf()],
        );
        let _ = std::fs::remove_file(sst);
        ingested.map_err(|e| write_error(ErrorSubject::Snapshot(Some(meta.signature())), &e))
    }

    /// An SST file that replaces the state column family with the snapshot in `file`: a range
    /// deletion of every state key, then the pairs. Checks the data on the way: pairs in
    /// strictly increasing key order within the state's key range, lengths within the file,
    /// nothing after the last pair, and a format this release reads (the refusal changes
    /// nothing). Data without a format record gets format 1, which is what it is.
    fn sst_from(&self, file: &mut File, meta: &Meta) -> StorageResult<PathBuf> {
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let sst = self.dir.join(format!("{INGESTING}{}.sst", now_ns()));
        let written = write_sst(file, &sst, &meta.snapshot_id);
        if written.is_err() {
            let _ = std::fs::remove_file(&sst);
        }
        written.map_err(|e| read_error(subject(), &e))?;
        Ok(sst)
    }
}

/// Bytes of the files in the snapshot directory `dir` ([`Group::snapshot_dir`]).
pub fn files_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.metadata().ok())
        .map(|metadata| metadata.len())
        .sum()
}

fn copy_from_start(file: &mut File, target: &Path) -> io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let mut out = File::create_new(target)?;
    io::copy(&mut BufReader::with_capacity(BUFFER_BYTES, file), &mut out)?;
    out.sync_all()
}

fn write_pair(out: &mut impl Write, key: &[u8], value: &[u8]) -> io::Result<()> {
    for bytes in [key, value] {
        out.write_all(&(bytes.len() as u64).to_le_bytes())?;
        out.write_all(bytes)?;
    }
    Ok(())
}

/// Reads a snapshot's pairs one at a time, checking every length against the bytes left.
pub struct PairReader<R> {
    input: R,
    pairs_left: u64,
    bytes_left: u64,
}

impl<R: Read> PairReader<R> {
    /// Read the `len` bytes of a snapshot from `input`.
    pub fn new(input: R, len: u64) -> io::Result<PairReader<R>> {
        let mut reader = PairReader {
            input,
            pairs_left: 0,
            bytes_left: len,
        };
        reader.pairs_left = reader.read_u64()?;
        Ok(reader)
    }

    fn read_u64(&mut self) -> io::Result<u64> {
        let mut bytes = [0; 8];
        self.read_exact(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn read_exact(&mut self, into: &mut [u8]) -> io::Result<()> {
        if into.len() as u64 > self.bytes_left {
            return Err(malformed("ends in the middle of a pair"));
        }
        self.input.read_exact(into)?;
        self.bytes_left -= into.len() as u64;
        Ok(())
    }

    fn read_bytes(&mut self) -> io::Result<Vec<u8>> {
        let len = self.read_u64()?;
        if len > self.bytes_left.min(PAIR_PART_BYTES_MAX) {
            return Err(malformed(&format!(
                "a length of {len} bytes with {} left (at most {PAIR_PART_BYTES_MAX})",
                self.bytes_left
            )));
        }
        let mut bytes = vec![0; len as usize];
        self.read_exact(&mut bytes)?;
        Ok(bytes)
    }

    /// The next pair, or `None` after the last one (and an error if bytes follow it).
    pub fn next_pair(&mut self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        if self.pairs_left == 0 {
            return match self.bytes_left {
                0 => Ok(None),
                left => Err(malformed(&format!("{left} bytes after the last pair"))),
            };
        }
        self.pairs_left -= 1;
        let key = self.read_bytes()?;
        let value = self.read_bytes()?;
        Ok(Some((key, value)))
    }
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed snapshot: {what}"),
    )
}

/// See [`Snapshots::sst_from`].
fn write_sst(file: &mut File, sst: &Path, snapshot_id: &str) -> io::Result<()> {
    let len = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(0))?;
    let mut pairs = PairReader::new(BufReader::with_capacity(BUFFER_BYTES, file), len)?;
    let options = crate::state_options(None);
    let mut writer = SstFileWriter::create(&options);
    let rocks = |e: rocksdb::Error| io::Error::other(e.into_string());
    writer.open(sst).map_err(rocks)?;
    writer
        .delete_range(&[] as &[u8], STATE_KEY_END)
        .map_err(rocks)?;
    let format_key = StateKey::Format.encode();
    let mut format_seen = false;
    let mut previous: Option<Vec<u8>> = None;
    while let Some((key, value)) = pairs.next_pair()? {
        if previous.as_ref().is_some_and(|p| *p >= key) || key.as_slice() >= STATE_KEY_END {
            return Err(malformed("keys out of order or out of the state's range"));
        }
        if !format_seen && key.as_slice() >= format_key.as_slice() {
            format_seen = true;
            if key == format_key {
                let format = crate::format_of(Some(&value)).and_then(|format| {
                    crate::check_format(format, &format!("snapshot {snapshot_id}"))
                });
                format.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            } else {
                writer
                    .put(&format_key, crate::STATE_FORMAT_BASE.to_le_bytes())
                    .map_err(rocks)?;
            }
        }
        writer.put(&key, &value).map_err(rocks)?;
        previous = Some(key);
    }
    if !format_seen {
        writer
            .put(&format_key, crate::STATE_FORMAT_BASE.to_le_bytes())
            .map_err(rocks)?;
    }
    writer.finish().map_err(rocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_written_as_bincode_writes_a_vector_of_them_and_read_back() {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"a".to_vec(), b"one".to_vec()),
            (b"b".to_vec(), Vec::new()),
            (b"m/applied".to_vec(), vec![7; 300]),
        ];
        let mut ours = (pairs.len() as u64).to_le_bytes().to_vec();
        for (key, value) in &pairs {
            write_pair(&mut ours, key, value).unwrap();
        }
        assert_eq!(ours, bincode::serialize(&pairs).unwrap());

        let mut reader = PairReader::new(ours.as_slice(), ours.len() as u64).unwrap();
        let mut read = Vec::new();
        while let Some(pair) = reader.next_pair().unwrap() {
            read.push(pair);
        }
        assert_eq!(read, pairs);
    }

    #[test]
    fn a_length_past_the_end_or_the_bound_or_bytes_after_the_last_pair_are_refused() {
        let pairs = vec![(b"a".to_vec(), b"one".to_vec())];
        let data = bincode::serialize(&pairs).unwrap();
        // A value length raised past what is left: refused before anything is allocated.
        let mut long = data.clone();
        let at = 8 + 8 + 1;
        long[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut reader = PairReader::new(long.as_slice(), long.len() as u64).unwrap();
        let refused = reader.next_pair().unwrap_err();
        assert!(refused.to_string().contains("length"), "{refused}");

        let mut trailing = data.clone();
        trailing.push(0);
        let mut reader = PairReader::new(trailing.as_slice(), trailing.len() as u64).unwrap();
        reader.next_pair().unwrap().unwrap();
        let refused = reader.next_pair().unwrap_err();
        assert!(
            refused.to_string().contains("after the last pair"),
            "{refused}"
        );

        // A length within what is left but past the bound: refused, nothing allocated.
        let mut huge = data.clone();
        huge[at..at + 8].copy_from_slice(&(PAIR_PART_BYTES_MAX + 1).to_le_bytes());
        let mut reader = PairReader::new(huge.as_slice(), u64::MAX).unwrap();
        let refused = reader.next_pair().unwrap_err();
        assert!(refused.to_string().contains("at most"), "{refused}");

        let cut = &data[..data.len() - 1];
        let mut reader = PairReader::new(cut, cut.len() as u64).unwrap();
        assert!(reader.next_pair().is_err());
    }
}
