//! The inventory state machine on RocksDB, its snapshots, and a read handle for views.
//!
//! Applying an entry runs [`apply_proposal`] over an overlay of the database, then writes the
//! overlay's writes and the entry's log id in one `WriteBatch`: the data and the applied log id
//! can never disagree, so a restart never applies an entry twice nor skips one.
//!
//! **The state's writes skip the write-ahead log.** Everything the state holds can be made again
//! from the Raft log, which is fsynced before an entry counts as appended, so writing the state a
//! second time into the WAL (and checksumming and fsyncing it with the next append) buys nothing
//! but cost: a purchase's records are several times its log entry, and a bulk create's record
//! holds every product it made. After a crash the state column family is what its last memtable
//! flush left, the applied log id with it (same batch, same family), and openraft applies the
//! committed entries after that id again, in log order, to the same result. That needs those
//! entries still in the log: a snapshot build flushes the state before it reports the snapshot
//! ([`crate::snapshot`]), and openraft purges only entries at or below a snapshot, so the
//! state on disk never falls behind the log's purge point. A clean shutdown flushes too
//! (RocksDB flushes, at close, memtables holding writes that skipped the WAL).
//!
//! A snapshot is the whole `state` column family read through one RocksDB snapshot, so the data
//! and the applied log id in it are from the same instant; it is built and installed as a file,
//! a stream ([`crate::snapshot`]). Installing one replaces the column family in one step.

use std::collections::BTreeMap;
use std::sync::Arc;

use flashstock_api::{Hold, HoldId, HoldState, Order, OrderId, Outcome, Product, ProductTerms};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StoredMembership,
};
use rocksdb::{ColumnFamily, Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::inventory::{
    apply_proposal, Cancellation, Fault, Incarnations, InventoryMeta, InventoryState, KeyRecord,
};
use crate::keys::{
    cancellation_key_after, decode_hold_index, decode_key_expiry, order_key_after, Group, StateKey,
    CART_PART_PREFIX, HOLD_EXPIRY_PREFIX, HOLD_FINISHED_PREFIX, KEY_EXPIRY_PREFIX, ORDER_PREFIX,
    PRODUCT_PREFIX,
};
use crate::log_store::{decode, joined, read_error, write_error};
use crate::records::{OrderRecord, ProductRecord};
use crate::snapshot::{SnapshotFile, Snapshots};
use crate::{Entry, Node, NodeId, Observer, StoreStage, TypeConfig};

type StorageResult<T> = Result<T, StorageError<NodeId>>;
type Membership = StoredMembership<NodeId, Node>;

/// Stock changes kept for slow subscribers before they miss some (and are told so).
const CHANGES_BUFFERED_MAX: usize = 4096;

/// A product's new state after an entry changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductChange {
    pub log_index: u64,
    pub product: Product,
    /// What is held, and the limit per customer.
    pub terms: ProductTerms,
}

/// The state machine that openraft drives.
pub struct StateMachine {
    db: Arc<DB>,
    reader: StateReader,
    /// Written only by a restore, with the node stopped, and carried by snapshots: read at
    /// open and after a snapshot is installed, not once per entry.
    incarnations: Arc<Incarnations>,
    /// Where the scans of the time-ordered indexes start, and product records: not part of the
    /// state.
    memory: Arc<ApplyMemory>,
    snapshots: Arc<Snapshots>,
    observer: Option<Observer>,
}

/// Where each entry's scans of the indexes kept in time order (idempotency keys by when they
/// were recorded, holds by deadline, finished holds by when they finished) start.
///
/// Those indexes are deleted from the front, one entry after another, and a RocksDB iterator
/// walks past every deleted key it meets (its tombstone) until compaction drops them. Started
/// at the index's first key every entry, each scan walked every hold finished since the last
/// flush: a voter replaying a log of holds applied a few hundred entries per second and could
/// not catch up (found by the fault harness). A floor is a key below which the index is known
/// to be empty, so a scan starts there and each deleted key is walked past about once.
///
/// Kept in memory, not in the state: it changes no outcome, only where reading starts. It is
/// raised by a scan to the first key it found, or, when the scan took every key below its
/// bound (the entry then removes them all), to the index's first key past that bound; it is
/// lowered by any key written below it, so a key written below the floor is never missed (a
/// key deleted leaves the floor a true one). A fresh floor (at open, after a snapshot is
/// installed) is the index's prefix. A scan whose bound is at or below the floor reads
/// nothing, so most entries make no iterator at all.
#[derive(Debug, Default)]
pub(crate) struct ScanFloors(std::sync::Mutex<BTreeMap<&'static [u8], Vec<u8>>>);

impl ScanFloors {
    fn floors(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static [u8], Vec<u8>>> {
        // A floor is only where to start reading: one left by a panicking thread is still one.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where a scan of `prefix` starts.
    fn start(&self, prefix: &'static [u8]) -> Vec<u8> {
        self.floors()
            .get(prefix)
            .cloned()
            .unwrap_or_else(|| prefix.to_vec())
    }

    /// Nothing of `prefix` lies below `to` any more.
    fn raise(&self, prefix: &'static [u8], to: &[u8]) {
        let mut floors = self.floors();
        let floor = floors.entry(prefix).or_insert_with(|| prefix.to_vec());
        if floor.as_slice() < to {
            *floor = to.to_vec();
        }
    }

    /// `key` of `prefix` is being written.
    fn lower(&self, prefix: &'static [u8], key: &[u8]) {
        if let Some(floor) = self.floors().get_mut(prefix) {
            if key < floor.as_slice() {
                *floor = key.to_vec();
            }
        }
    }
}

/// What the apply keeps in memory beside the state of one group. Never part of the state: it
/// changes no outcome, only where reads start or land. Made anew at open and when a snapshot is
/// installed, which replaces the state it describes.
#[derive(Debug, Default)]
struct ApplyMemory {
    floors: ScanFloors,
    products: ProductCache,
}

/// Most products whose records [`ProductCache`] keeps per group: the hot products of a sale,
/// about 4 MiB.
const PRODUCTS_CACHED_MAX: usize = 16_384;

/// The records of the products the apply touched last, as they are in the state.
///
/// Every purchase reads its product's record before it writes it again. Read from RocksDB, that
/// record is the newest of the many versions of a hot product in the memtable's skip list, and
/// the lookup was the largest single part of a follower's apply (13 % of a voter's CPU on the
/// spread workload). Written only by the apply, after its batch is in the state (so an entry
/// that fails leaves nothing here that the state does not hold), read only by the apply, and
/// replaced by an empty one when a snapshot is installed: the apply runs one entry at a time
/// per group, so a record here is always the state's. Not part of the state; at
/// [`PRODUCTS_CACHED_MAX`] it is emptied and fills again with what the next entries touch.
#[derive(Debug, Default)]
pub(crate) struct ProductCache(std::sync::Mutex<std::collections::HashMap<String, ProductRecord>>);

impl ProductCache {
    fn records(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, ProductRecord>> {
        // Only ever holds records as the state has them: one left by a panicking thread is
        // still right.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, id: &str) -> Option<ProductRecord> {
        self.records().get(id).cloned()
    }

    /// `record` is what the state now holds for its product.
    fn put(&self, record: &ProductRecord) {
        let mut records = self.records();
        if records.len() >= PRODUCTS_CACHED_MAX && !records.contains_key(&record.product.id) {
            records.clear();
        }
        records.insert(record.product.id.clone(), record.clone());
    }
}

/// The first key past every key that starts with `prefix` (an index prefix ends in `/`, which
/// is not 0xff).
fn index_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    let last = end.last_mut().expect("an index prefix is not empty");
    debug_assert!(*last < u8::MAX);
    *last += 1;
    end
}

/// The orders and the cancellations (with their positions) of one archive step, read from one
/// snapshot: see [`StateReader::archive_batch`].
pub type ArchiveBatch = (Vec<OrderRecord>, Vec<(OrderId, Cancellation)>);

/// A cheap, clonable handle to read the applied state from any task, and to follow its changes.
#[derive(Clone)]
pub struct StateReader {
    db: Arc<DB>,
    group: Arc<Group>,
    applied: watch::Sender<u64>,
    changes: broadcast::Sender<ProductChange>,
}

impl StateMachine {
    pub(crate) fn new(db: Arc<DB>, group: Arc<Group>) -> StorageResult<StateMachine> {
        // First: it finishes an install the node stopped in, which moves the applied index.
        let snapshots = Arc::new(Snapshots::open(db.clone(), group.clone())?);
        let (changes, _) = broadcast::channel(CHANGES_BUFFERED_MAX);
        let (applied, _) = watch::channel(0);
        let reader = StateReader {
            db: db.clone(),
            group,
            applied,
            changes,
        };
        let index = reader.applied_log_id()?.map_or(0, |id| id.index);
        reader.applied.send_replace(index);
        let incarnations = Arc::new(reader.incarnations()?);
        Ok(StateMachine {
            db,
            reader,
            incarnations,
            memory: Arc::default(),
            snapshots,
            observer: None,
        })
    }

    /// The same state machine, telling `observer` how long each run of entries takes to apply.
    pub fn with_observer(mut self, observer: Observer) -> StateMachine {
        self.observer = Some(observer);
        self
    }

    pub fn reader(&self) -> StateReader {
        self.reader.clone()
    }

    fn apply_blocking(
        db: &DB,
        group: &Group,
        incarnations: &Incarnations,
        memory: &ApplyMemory,
        entries: Vec<Entry>,
        changes: &broadcast::Sender<ProductChange>,
    ) -> StorageResult<Vec<Vec<Outcome>>> {
        let mut responses = Vec::with_capacity(entries.len());
        // See the module documentation: the log is what makes the state durable.
        let mut options = WriteOptions::default();
        options.disable_wal(true);
        for entry in entries {
            let log_id = entry.log_id;
            let mut overlay = Overlay::new(db, group, incarnations, memory);
            let outcomes = match &entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(proposal) => {
                    apply_proposal(&mut overlay, group, log_id.index, proposal)
                        .map_err(|e| write_error(ErrorSubject::Apply(log_id), &e))?
                }
                EntryPayload::Membership(membership) => {
                    let stored = Membership::new(Some(log_id), membership.clone());
                    overlay.put(StateKey::Membership, &stored);
                    Vec::new()
                }
            };
            overlay.put(StateKey::Applied, &Some(log_id));
            let (batch, products) = overlay.into_batch();
            db.write_opt(batch, &options)
                .map_err(|e| write_error(ErrorSubject::Apply(log_id), &e))?;
            for record in products.values() {
                memory.products.put(record);
            }
            for ProductRecord { product, terms } in products.into_values() {
                // No subscriber is not an error.
                let _ = changes.send(ProductChange {
                    log_index: log_id.index,
                    product,
                    terms,
                });
            }
            responses.push(outcomes);
        }
        Ok(responses)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<NodeId>>, Membership)> {
        let applied = self.reader.applied_log_id()?;
        let membership = self.reader.get(StateKey::Membership)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Vec<Outcome>>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|entry| entry.log_id.index) else {
            return Ok(Vec::new());
        };
        let db = self.db.clone();
        let group = self.reader.group.clone();
        let changes = self.reader.changes.clone();
        let incarnations = self.incarnations.clone();
        let memory = self.memory.clone();
        let observer = self.observer.clone();
        let responses = joined(
            tokio::task::spawn_blocking(move || {
                let began = std::time::Instant::now();
                let applied =
                    Self::apply_blocking(&db, &group, &incarnations, &memory, entries, &changes);
                if let Some(observe) = observer {
                    observe(StoreStage::Apply, began.elapsed());
                }
                applied
            })
            .await,
            ErrorSubject::StateMachine,
            ErrorVerb::Write,
        )??;
        self.reader.applied.send_replace(last);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<SnapshotFile>> {
        self.snapshots.begin_receiving().await
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<SnapshotFile>,
    ) -> StorageResult<()> {
        let index = meta.last_log_id.map_or(0, |id| id.index);
        let snapshots = self.snapshots.clone();
        let meta = meta.clone();
        let (file, path) = snapshot.into_std().await;
        joined(
            tokio::task::spawn_blocking(move || snapshots.install(&meta, file, &path)).await,
            ErrorSubject::StateMachine,
            ErrorVerb::Write,
        )??;
        self.incarnations = Arc::new(self.reader.incarnations()?);
        self.memory = Arc::default();
        self.reader.applied.send_replace(index);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        self.snapshots.current().await
    }
}

/// Builds snapshots in the background, off a consistent RocksDB snapshot.
pub struct SnapshotBuilder {
    snapshots: Arc<Snapshots>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let snapshots = self.snapshots.clone();
        joined(
            tokio::task::spawn_blocking(move || snapshots.build()).await,
            ErrorSubject::StateMachine,
            ErrorVerb::Read,
        )?
    }
}

/// RocksDB's property of a column family's memtables, mutable and immutable, bytes.
const MEMTABLE_BYTES: &str = "rocksdb.size-all-mem-tables";

impl StateReader {
    /// What the store holds on disk, by part: each column family's table files and memtables
    /// (RocksDB's own accounting), and the write-ahead log files in its directory.
    pub fn storage(&self) -> flashstock_api::StorageStatus {
        let family = |cf: &ColumnFamily| {
            self.bytes(cf, "rocksdb.total-sst-files-size") + self.bytes(cf, MEMTABLE_BYTES)
        };
        let wal_bytes = std::fs::read_dir(self.db.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|file| file.path().extension().is_some_and(|ext| ext == "log"))
            .filter_map(|file| file.metadata().ok())
            .map(|metadata| metadata.len())
            .sum();
        flashstock_api::StorageStatus {
            log_bytes: family(self.group.log(&self.db)),
            state_bytes: family(self.group.state(&self.db)),
            snapshot_bytes: family(self.group.raft(&self.db))
                + crate::snapshot::files_bytes(&self.group.snapshot_dir(self.db.path())),
            wal_bytes,
        }
    }

    /// Bytes of memtables the group's column families hold now, RocksDB's own accounting (a
    /// learner's store bounds those of every group together).
    pub fn memtable_bytes(&self) -> u64 {
        [
            self.group.log(&self.db),
            self.group.raft(&self.db),
            self.group.state(&self.db),
        ]
        .into_iter()
        .map(|cf| self.bytes(cf, MEMTABLE_BYTES))
        .sum()
    }

    /// RocksDB's integer `property` of `cf`, bytes (0 when it cannot be read).
    fn bytes(&self, cf: &ColumnFamily, property: &str) -> u64 {
        self.db
            .property_int_value_cf(cf, property)
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// The index of the last applied entry (0 before any). Reads made after this call see at
    /// least that entry's effects.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Follow the applied index, e.g. to wait until a write is visible here.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Follow product changes as entries are applied.
    pub fn subscribe(&self) -> broadcast::Receiver<ProductChange> {
        self.changes.subscribe()
    }

    pub fn applied_log_id(&self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self.get(StateKey::Applied)?.flatten())
    }

    pub fn product(&self, id: &str) -> StorageResult<Option<Product>> {
        Ok(self.product_record(id)?.map(|record| record.product))
    }

    /// A product with what is held of it and its limit per customer.
    pub fn product_record(&self, id: &str) -> StorageResult<Option<ProductRecord>> {
        self.get_with(&StateKey::Product(id).encode(), ProductRecord::decode)
    }

    /// Up to `limit` products with ids after `after`, in id order.
    pub fn products(&self, after: Option<&str>, limit: usize) -> StorageResult<Vec<Product>> {
        let records = self.product_records(after, limit)?;
        Ok(records.into_iter().map(|record| record.product).collect())
    }

    /// [`StateReader::products`] with their terms.
    pub fn product_records(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<Vec<ProductRecord>> {
        let from = match after {
            Some(id) => {
                let mut key = StateKey::Product(id).encode();
                key.push(0); // just past `id`
                key
            }
            None => PRODUCT_PREFIX.to_vec(),
        };
        self.scan_with(&from, PRODUCT_PREFIX, limit, ProductRecord::decode)
    }

    pub fn order(&self, id: OrderId) -> StorageResult<Option<Order>> {
        Ok(self.order_record(id)?.map(|record| record.order))
    }

    /// An order with its lines, its hold and whether it was cancelled.
    pub fn order_record(&self, id: OrderId) -> StorageResult<Option<OrderRecord>> {
        self.get_with(&StateKey::Order(id).encode(), OrderRecord::decode)
    }

    /// Up to `limit` orders after `after`, in log order.
    pub fn orders(&self, after: Option<OrderId>, limit: usize) -> StorageResult<Vec<Order>> {
        let records = self.order_records(after, limit)?;
        Ok(records.into_iter().map(|record| record.order).collect())
    }

    /// [`StateReader::orders`] with their terms.
    pub fn order_records(
        &self,
        after: Option<OrderId>,
        limit: usize,
    ) -> StorageResult<Vec<OrderRecord>> {
        self.scan_orders(ReadOptions::default(), after, limit)
    }

    /// Up to `limit` cancellations at positions after `after`, in log order, with their
    /// positions.
    pub fn cancellations(
        &self,
        after: Option<OrderId>,
        limit: usize,
    ) -> StorageResult<Vec<(OrderId, Cancellation)>> {
        self.scan_cancellations(ReadOptions::default(), after, limit)
    }

    /// What the archiver writes next: up to `limit` orders and up to `limit` cancellations
    /// after `after`, both read from one snapshot of the state. Read apart, an entry applied
    /// between the two reads could bring an order the first read missed and a later
    /// cancellation the second one saw, and a cursor moved to that cancellation would pass the
    /// order without archiving it.
    pub fn archive_batch(
        &self,
        after: Option<OrderId>,
        limit: usize,
    ) -> StorageResult<ArchiveBatch> {
        let view = self.db.snapshot();
        let at_view = || {
            let mut options = ReadOptions::default();
            options.set_snapshot(&view);
            options
        };
        let orders = self.scan_orders(at_view(), after, limit)?;
        let cancellations = self.scan_cancellations(at_view(), after, limit)?;
        Ok((orders, cancellations))
    }

    fn scan_orders(
        &self,
        options: ReadOptions,
        after: Option<OrderId>,
        limit: usize,
    ) -> StorageResult<Vec<OrderRecord>> {
        let from = order_key_after(after);
        self.scan(options, &from, ORDER_PREFIX, limit, |_, value| {
            OrderRecord::decode(value)
        })
    }

    fn scan_cancellations(
        &self,
        options: ReadOptions,
        after: Option<OrderId>,
        limit: usize,
    ) -> StorageResult<Vec<(OrderId, Cancellation)>> {
        let from = cancellation_key_after(after);
        let prefix = crate::keys::CANCELLATION_PREFIX;
        self.scan(options, &from, prefix, limit, |key, value| {
            let position = key[prefix.len()..]
                .try_into()
                .map(|bytes| OrderId(u64::from_be_bytes(bytes)))
                .map_err(|_| "a malformed cancellation key".to_owned())?;
            let cancellation = bincode::deserialize(value).map_err(|e| e.to_string())?;
            Ok((position, cancellation))
        })
    }

    pub fn hold(&self, id: HoldId) -> StorageResult<Option<Hold>> {
        self.get(StateKey::Hold(id))
    }

    /// Up to `limit` holds with ids after `after`, held or finished, in log order.
    pub fn holds(&self, after: Option<HoldId>, limit: usize) -> StorageResult<Vec<Hold>> {
        let from = match after {
            Some(HoldId(id)) => {
                let mut key = StateKey::Hold(HoldId(id)).encode();
                key.push(0); // just past `id`
                key
            }
            None => b"h/".to_vec(),
        };
        self.scan_with(&from, b"h/", limit, |bytes| {
            bincode::deserialize(bytes).map_err(|e| format!("malformed hold record: {e}"))
        })
    }

    /// Up to `limit` parts of carts across groups not settled yet, with ids after `after`, in
    /// log order, each as `(part, primary)` (a primary part's is itself).
    pub fn cart_parts(
        &self,
        after: Option<HoldId>,
        limit: usize,
    ) -> StorageResult<Vec<(HoldId, HoldId)>> {
        let from = match after {
            Some(id) => {
                let mut key = StateKey::CartPart(id).encode();
                key.push(0); // just past `id`
                key
            }
            None => CART_PART_PREFIX.to_vec(),
        };
        self.scan(
            ReadOptions::default(),
            &from,
            CART_PART_PREFIX,
            limit,
            |key, value| {
                let id = key
                    .strip_prefix(CART_PART_PREFIX)
                    .and_then(|id| <[u8; 8]>::try_from(id).ok())
                    .ok_or_else(|| format!("malformed cart part key {key:?}"))?;
                let primary: u64 = bincode::deserialize(value)
                    .map_err(|e| format!("malformed cart part record: {e}"))?;
                Ok((HoldId(u64::from_be_bytes(id)), HoldId(primary)))
            },
        )
    }

    /// The earliest deadline of a hold still held, if any: once the log's time passes it, an
    /// entry is due to expire it (the leader proposes one if nothing else comes).
    pub fn next_hold_deadline(&self) -> StorageResult<Option<u64>> {
        let cf = self.group.state(&self.db);
        let mut iter = self.db.iterator_cf(
            cf,
            IteratorMode::From(HOLD_EXPIRY_PREFIX, Direction::Forward),
        );
        match iter.next() {
            Some(item) => {
                let (key, _) = item.map_err(|e| read_error(ErrorSubject::StateMachine, &e))?;
                Ok(decode_hold_index(HOLD_EXPIRY_PREFIX, &key).map(|(at_ms, _)| at_ms))
            }
            None => Ok(None),
        }
    }

    /// What `customer` holds and bought of `product` under its limit.
    pub fn customer_taken(&self, product: &str, customer: &str) -> StorageResult<u64> {
        Ok(self
            .get(StateKey::CustomerTaken(product, customer))?
            .unwrap_or(0))
    }

    pub fn key_record(&self, key: &str) -> StorageResult<Option<KeyRecord>> {
        self.get(StateKey::KeyRecord(key))
    }

    /// The cluster version this replica has applied.
    pub fn cluster_version(&self) -> StorageResult<u32> {
        read_cluster_version(&self.db, &self.group)
    }

    pub fn inventory_meta(&self) -> StorageResult<InventoryMeta> {
        Ok(self.get(StateKey::InventoryMeta)?.unwrap_or_default())
    }

    /// The restores this state went through; new orders belong to the latest incarnation.
    pub fn incarnations(&self) -> StorageResult<Incarnations> {
        Ok(self.get(StateKey::Incarnations)?.unwrap_or_default())
    }

    fn get<T: DeserializeOwned>(&self, key: StateKey) -> StorageResult<Option<T>> {
        get_decoded(&self.db, self.group.state(&self.db), &key.encode())
    }

    fn get_with<T>(
        &self,
        key: &[u8],
        decode: impl Fn(&[u8]) -> Result<T, String>,
    ) -> StorageResult<Option<T>> {
        let value = self
            .db
            .get_pinned_cf(self.group.state(&self.db), key)
            .map_err(|e| read_error(ErrorSubject::StateMachine, &e))?;
        value
            .map(|bytes| decode(&bytes).map_err(|e| read_error(ErrorSubject::StateMachine, &e)))
            .transpose()
    }

    fn scan_with<T>(
        &self,
        from: &[u8],
        prefix: &[u8],
        limit: usize,
        decode: impl Fn(&[u8]) -> Result<T, String>,
    ) -> StorageResult<Vec<T>> {
        self.scan(ReadOptions::default(), from, prefix, limit, |_, value| {
            decode(value)
        })
    }

    /// Up to `limit` records from `from` on while their keys start with `prefix`, each decoded
    /// from its key and value, read with `options` (a snapshot, say).
    fn scan<T>(
        &self,
        options: ReadOptions,
        from: &[u8],
        prefix: &[u8],
        limit: usize,
        decode: impl Fn(&[u8], &[u8]) -> Result<T, String>,
    ) -> StorageResult<Vec<T>> {
        let cf = self.group.state(&self.db);
        let mut found = Vec::new();
        for item in self
            .db
            .iterator_cf_opt(cf, options, IteratorMode::From(from, Direction::Forward))
            .take(limit)
        {
            let (key, value) = item.map_err(|e| read_error(ErrorSubject::StateMachine, &e))?;
            if !key.starts_with(prefix) {
                break;
            }
            found.push(
                decode(&key, &value).map_err(|e| read_error(ErrorSubject::StateMachine, &e))?,
            );
        }
        Ok(found)
    }
}

fn get_decoded<T: DeserializeOwned>(
    db: &DB,
    cf: &ColumnFamily,
    key: &[u8],
) -> StorageResult<Option<T>> {
    let value = db
        .get_pinned_cf(cf, key)
        .map_err(|e| read_error(ErrorSubject::StateMachine, &e))?;
    value
        .map(|bytes| decode(&bytes, ErrorSubject::StateMachine))
        .transpose()
}

/// An entry's writes to the state family: point writes not yet in the batch, by key, each with
/// its last value (`None`: deleted), and the batch they go into in key order.
#[derive(Default)]
struct Writes {
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    batch: WriteBatch,
}

impl Writes {
    /// Move the pending point writes into the batch, in key order.
    fn flush(&mut self, cf: &ColumnFamily) {
        for (key, value) in std::mem::take(&mut self.pending) {
            match value {
                Some(value) => self.batch.put_cf(cf, key, value),
                None => self.batch.delete_cf(cf, key),
            }
        }
    }
}

/// One entry's view of the state: reads see the database plus this entry's own writes, which
/// accumulate in a `WriteBatch` written at the end of the entry.
///
/// Point writes wait in [`Writes`], which keeps the last value of each key, and enter the batch
/// in key order: a flash-sale entry writes its product once instead of once per purchase, and
/// RocksDB can start each insert into its memtable's skip list from where the previous key went.
/// The state after the entry is the same: the batch is applied atomically, each key ends with
/// its last value, and a range deletion stays between the writes made before and after it.
struct Overlay<'a> {
    db: &'a DB,
    group: &'a Group,
    writes: Writes,
    /// Products written by this entry, also the changes to publish.
    products: BTreeMap<String, ProductRecord>,
    /// Orders written by this entry (placed, or cancelled).
    orders: BTreeMap<OrderId, OrderRecord>,
    /// Idempotency records written (`Some`) or forgotten (`None`) by this entry.
    keys: BTreeMap<String, Option<KeyRecord>>,
    /// Holds written (`Some`) or forgotten (`None`) by this entry.
    holds: BTreeMap<HoldId, Option<Hold>>,
    /// Links of cart parts written (`Some(primary)`) or deleted (`None`) by this entry.
    parts: BTreeMap<HoldId, Option<HoldId>>,
    /// Customers' counts written by this entry.
    taken: BTreeMap<(String, String), u64>,
    /// Products whose counts this entry forgot (their limit was removed), before any count in
    /// `taken` of theirs.
    taken_forgotten: std::collections::BTreeSet<String>,
    meta: Option<InventoryMeta>,
    /// Read at most once per entry.
    cluster_version: std::cell::Cell<Option<u32>>,
    incarnations: &'a Incarnations,
    floors: &'a ScanFloors,
    /// Product records as the state holds them, read before the database.
    cached: &'a ProductCache,
}

impl<'a> Overlay<'a> {
    fn new(
        db: &'a DB,
        group: &'a Group,
        incarnations: &'a Incarnations,
        memory: &'a ApplyMemory,
    ) -> Overlay<'a> {
        Overlay {
            db,
            group,
            writes: Writes::default(),
            products: BTreeMap::new(),
            orders: BTreeMap::new(),
            keys: BTreeMap::new(),
            holds: BTreeMap::new(),
            parts: BTreeMap::new(),
            taken: BTreeMap::new(),
            taken_forgotten: std::collections::BTreeSet::new(),
            meta: None,
            cluster_version: std::cell::Cell::new(None),
            incarnations,
            floors: &memory.floors,
            cached: &memory.products,
        }
    }

    fn put<T: Serialize>(&mut self, key: StateKey, value: &T) {
        let bytes = bincode::serialize(value).expect("state values always serialize");
        self.put_bytes(key, bytes);
    }

    fn put_bytes(&mut self, key: StateKey, bytes: Vec<u8>) {
        self.writes.pending.insert(key.encode(), Some(bytes));
    }

    fn delete(&mut self, key: StateKey) {
        self.writes.pending.insert(key.encode(), None);
    }

    /// Delete every key in `from..to`, after the point writes made so far (which may be in the
    /// range) and before those made after.
    fn delete_range(&mut self, from: Vec<u8>, to: Vec<u8>) {
        let cf = self.group.state(self.db);
        self.writes.flush(cf);
        self.writes.batch.delete_range_cf(cf, from, to);
    }

    /// The batch of every write of the entry, in the order that gives them their meaning.
    fn into_batch(mut self) -> (WriteBatch, BTreeMap<String, ProductRecord>) {
        self.writes.flush(self.group.state(self.db));
        (self.writes.batch, self.products)
    }

    fn read<T: DeserializeOwned>(&self, key: StateKey) -> Result<Option<T>, Fault> {
        get_decoded(self.db, self.group.state(self.db), &key.encode())
            .map_err(|e| Fault(e.to_string()))
    }

    fn read_with<T>(
        &self,
        key: StateKey,
        decode: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<Option<T>, Fault> {
        let value = self
            .db
            .get_pinned_cf(self.group.state(self.db), key.encode())
            .map_err(|e| Fault(e.to_string()))?;
        value.map(|bytes| decode(&bytes).map_err(Fault)).transpose()
    }

    /// Put a key of a time-ordered index (see [`ScanFloors`]).
    fn put_index(&mut self, prefix: &'static [u8], key: StateKey) {
        let key = key.encode();
        debug_assert!(key.starts_with(prefix));
        self.floors.lower(prefix, &key);
        self.writes
            .pending
            .insert(key, Some(bincode::serialize(&()).expect("unit")));
    }

    /// Up to `limit` keys of the time-ordered index `prefix` below `before`, in order, from the
    /// database (called before any write of the entry), starting at its floor
    /// ([`ScanFloors`]), which the scan then raises. No iterator is made when the floor is at or
    /// past `before`: the common case, since a scan that takes everything below `before` raises
    /// the floor to the next key of the index, which is usually in the future.
    fn scan_index(
        &self,
        prefix: &'static [u8],
        before: Vec<u8>,
        limit: usize,
    ) -> Result<Vec<Box<[u8]>>, Fault> {
        let from = self.floors.start(prefix);
        if from >= before {
            return Ok(Vec::new());
        }
        let cf = self.group.state(self.db);
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(index_end(prefix));
        let mut iter =
            self.db
                .iterator_cf_opt(cf, options, IteratorMode::From(&from, Direction::Forward));
        let mut found = Vec::new();
        let next = loop {
            let Some(item) = iter.next() else {
                // Nothing left in the index at all.
                break Some(index_end(prefix).into_boxed_slice());
            };
            let (key, _) = item.map_err(|e| Fault(e.to_string()))?;
            if key.as_ref() >= before.as_slice() {
                // Everything below `before` is taken: the index starts here after this entry.
                break Some(key);
            }
            if found.len() == limit {
                // More below `before` than one entry takes: the next entry starts at the first.
                break None;
            }
            found.push(key);
        };
        match (next, found.first()) {
            (Some(next), _) => self.floors.raise(prefix, &next),
            (None, Some(first)) => self.floors.raise(prefix, first),
            (None, None) => {}
        }
        Ok(found)
    }

    /// Up to `limit` keys of a hold index (`hx/` or `hf/`) before `before`, from the
    /// database: called before any write of the entry.
    fn hold_index(
        &self,
        prefix: &'static [u8],
        before: StateKey,
        limit: usize,
    ) -> Result<Vec<(u64, HoldId)>, Fault> {
        debug_assert!(self.holds.is_empty());
        self.scan_index(prefix, before.encode(), limit)?
            .iter()
            .map(|key| {
                decode_hold_index(prefix, key)
                    .ok_or_else(|| Fault(format!("malformed hold index key {key:?}")))
            })
            .collect()
    }
}

impl InventoryState for Overlay<'_> {
    fn product(&self, id: &str) -> Result<Option<ProductRecord>, Fault> {
        if let Some(record) = self.products.get(id) {
            return Ok(Some(record.clone()));
        }
        if let Some(record) = self.cached.get(id) {
            return Ok(Some(record));
        }
        let record = self.read_with(StateKey::Product(id), ProductRecord::decode)?;
        if let Some(record) = &record {
            self.cached.put(record);
        }
        Ok(record)
    }

    fn order(&self, id: OrderId) -> Result<Option<OrderRecord>, Fault> {
        match self.orders.get(&id) {
            Some(record) => Ok(Some(record.clone())),
            None => self.read_with(StateKey::Order(id), OrderRecord::decode),
        }
    }

    fn hold(&self, id: HoldId) -> Result<Option<Hold>, Fault> {
        match self.holds.get(&id) {
            Some(hold) => Ok(hold.clone()),
            None => self.read(StateKey::Hold(id)),
        }
    }

    fn holds_due(&self, before_ms: u64, limit: usize) -> Result<Vec<(u64, HoldId)>, Fault> {
        self.hold_index(
            HOLD_EXPIRY_PREFIX,
            StateKey::HoldExpiry(before_ms, HoldId(0)),
            limit,
        )
    }

    fn holds_finished_before(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<(u64, HoldId)>, Fault> {
        self.hold_index(
            HOLD_FINISHED_PREFIX,
            StateKey::HoldFinished(before_ms, HoldId(0)),
            limit,
        )
    }

    fn customer_taken(&self, product: &str, customer: &str) -> Result<u64, Fault> {
        if let Some(taken) = self.taken.get(&(product.to_owned(), customer.to_owned())) {
            return Ok(*taken);
        }
        if self.taken_forgotten.contains(product) {
            return Ok(0);
        }
        Ok(self
            .read(StateKey::CustomerTaken(product, customer))?
            .unwrap_or(0))
    }

    fn key_record(&self, key: &str) -> Result<Option<KeyRecord>, Fault> {
        match self.keys.get(key) {
            Some(record) => Ok(record.clone()),
            None => self.read(StateKey::KeyRecord(key)),
        }
    }

    fn keys_recorded_before(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, Fault> {
        // Called before any write of the entry, so the database alone is the state.
        debug_assert!(self.keys.is_empty());
        let before = StateKey::KeyExpiry(before_ms, "").encode();
        self.scan_index(KEY_EXPIRY_PREFIX, before, limit)?
            .iter()
            .map(|key| {
                decode_key_expiry(key).ok_or_else(|| Fault(format!("malformed expiry key {key:?}")))
            })
            .collect()
    }

    fn orders_between(
        &self,
        after: Option<OrderId>,
        up_to: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<Order>, Fault> {
        // Orders are placed only by this entry's commands, which come after the ids asked for;
        // a cancellation rewrites an earlier order, but not its id or when it was placed.
        let cf = self.group.state(self.db);
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(match up_to {
            Some(up_to) => order_key_after(Some(up_to)),
            None => order_key_after(Some(OrderId(u64::MAX))),
        });
        let from = order_key_after(after);
        let iter =
            self.db
                .iterator_cf_opt(cf, options, IteratorMode::From(&from, Direction::Forward));
        let mut orders = Vec::new();
        for item in iter.take(limit) {
            let (_, value) = item.map_err(|e| Fault(e.to_string()))?;
            orders.push(OrderRecord::decode(&value).map_err(Fault)?.order);
        }
        Ok(orders)
    }

    fn meta(&self) -> Result<InventoryMeta, Fault> {
        match self.meta {
            Some(meta) => Ok(meta),
            None => Ok(self.read(StateKey::InventoryMeta)?.unwrap_or_default()),
        }
    }

    fn incarnations(&self) -> Result<Incarnations, Fault> {
        Ok(self.incarnations.clone())
    }

    fn put_product(&mut self, record: &ProductRecord) {
        self.put_bytes(StateKey::Product(&record.product.id), record.encode());
        self.products
            .insert(record.product.id.clone(), record.clone());
    }

    fn put_order(&mut self, record: &OrderRecord) {
        self.put_bytes(StateKey::Order(record.order.id), record.encode());
        self.orders.insert(record.order.id, record.clone());
    }

    fn put_hold(&mut self, hold: &Hold) {
        self.put(StateKey::Hold(hold.id), hold);
        self.delete(StateKey::HoldExpiry(hold.expires_at_ms, hold.id));
        if hold.state == HoldState::Held {
            let key = StateKey::HoldExpiry(hold.expires_at_ms, hold.id);
            self.put_index(HOLD_EXPIRY_PREFIX, key);
        } else {
            let key = StateKey::HoldFinished(hold.changed_at_ms, hold.id);
            self.put_index(HOLD_FINISHED_PREFIX, key);
        }
        self.holds.insert(hold.id, Some(hold.clone()));
    }

    fn forget_hold(&mut self, hold: &Hold) {
        self.delete(StateKey::Hold(hold.id));
        self.delete(StateKey::HoldFinished(hold.changed_at_ms, hold.id));
        self.holds.insert(hold.id, None);
    }

    fn part_of(&self, id: HoldId) -> Result<Option<HoldId>, Fault> {
        match self.parts.get(&id) {
            Some(primary) => Ok(*primary),
            None => Ok(self.read::<u64>(StateKey::CartPart(id))?.map(HoldId)),
        }
    }

    fn put_part(&mut self, hold: &Hold, primary: HoldId) {
        if primary == hold.id {
            self.put_hold(hold);
        } else {
            self.put(StateKey::Hold(hold.id), hold);
            self.holds.insert(hold.id, Some(hold.clone()));
        }
        self.put(StateKey::CartPart(hold.id), &primary.0);
        self.parts.insert(hold.id, Some(primary));
    }

    fn delete_part(&mut self, id: HoldId) {
        self.delete(StateKey::CartPart(id));
        self.parts.insert(id, None);
    }

    fn put_customer_taken(&mut self, product: &str, customer: &str, taken: u64) {
        if taken == 0 {
            self.delete(StateKey::CustomerTaken(product, customer));
        } else {
            self.put(StateKey::CustomerTaken(product, customer), &taken);
        }
        self.taken
            .insert((product.to_owned(), customer.to_owned()), taken);
    }

    fn forget_customers_taken(&mut self, product: &str) {
        let from = StateKey::CustomerTaken(product, "").encode();
        let mut to = from.clone();
        *to.last_mut().expect("the key ends with '/'") += 1;
        self.delete_range(from, to);
        self.taken.retain(|(of, _), _| of != product);
        self.taken_forgotten.insert(product.to_owned());
    }

    fn put_cancellation(&mut self, position: OrderId, cancellation: &Cancellation) {
        self.put(StateKey::Cancellation(position), cancellation);
    }

    fn put_key_record(&mut self, key: &str, record: &KeyRecord) {
        self.put(StateKey::KeyRecord(key), record);
        self.put_index(
            KEY_EXPIRY_PREFIX,
            StateKey::KeyExpiry(record.recorded_at_ms, key),
        );
        self.keys.insert(key.to_owned(), Some(record.clone()));
    }

    fn delete_key_record(&mut self, key: &str, recorded_at_ms: u64) {
        self.delete(StateKey::KeyRecord(key));
        self.delete(StateKey::KeyExpiry(recorded_at_ms, key));
        self.keys.insert(key.to_owned(), None);
    }

    fn delete_orders(&mut self, after: Option<OrderId>, up_to: OrderId) {
        self.delete_range(order_key_after(after), order_key_after(Some(up_to)));
        self.delete_range(
            cancellation_key_after(after),
            cancellation_key_after(Some(up_to)),
        );
    }

    fn put_meta(&mut self, meta: &InventoryMeta) {
        self.put(StateKey::InventoryMeta, meta);
        self.meta = Some(*meta);
    }

    fn cluster_version(&self) -> Result<u32, Fault> {
        if let Some(version) = self.cluster_version.get() {
            return Ok(version);
        }
        let version =
            read_cluster_version(self.db, self.group).map_err(|e| Fault(e.to_string()))?;
        self.cluster_version.set(Some(version));
        Ok(version)
    }

    fn put_cluster_version(&mut self, version: u32) {
        self.put_bytes(StateKey::ClusterVersion, version.to_le_bytes().to_vec());
        let format = crate::state_format_for(version);
        self.put_bytes(StateKey::Format, format.to_le_bytes().to_vec());
        self.cluster_version.set(Some(version));
    }
}

/// The cluster version in the applied state: 4 little-endian bytes, absent before it was first
/// raised.
fn read_cluster_version(db: &DB, group: &Group) -> StorageResult<u32> {
    let subject = || ErrorSubject::StateMachine;
    let raw = db
        .get_pinned_cf(group.state(db), StateKey::ClusterVersion.encode())
        .map_err(|e| read_error(subject(), &e))?;
    match raw {
        None => Ok(flashstock_api::CLUSTER_VERSION_BASE),
        Some(bytes) => bytes
            .as_ref()
            .try_into()
            .map(u32::from_le_bytes)
            .map_err(|_| read_error(subject(), &"a malformed cluster version record")),
    }
}
