//! The RocksDB state machine against the in-memory reference: same entries, same state; the state
//! survives a reopen; a snapshot installed elsewhere reproduces it exactly.

use flashstock_api::{Command, Op, Outcome, Proposal};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder};
use raft_store::inventory::{apply_proposal, MemState, OrderRecord, ProductRecord};
use raft_store::{Entry, Group, StateReader};

fn command(key: &str, op: Op) -> Command {
    Command {
        key: key.into(),
        op,
    }
}

fn purchase(key: &str, product: &str, quantity: u32) -> Command {
    command(
        key,
        Op::Purchase {
            product: product.into(),
            quantity,
            customer: None,
            token: None,
        },
    )
}

/// A little history: two products, purchases that sell one out, a restock, a retry, an archive.
fn proposals() -> Vec<Proposal> {
    let at = |ms: u64, commands: Vec<Command>| Proposal {
        proposed_at_ms: ms,
        forget_keys_before_ms: 0,
        // Archived orders placed before 2005 (entries 2 to 6) are dropped once archived.
        drop_archived_before_ms: 2_005,
        commands,
    };
    let mut all = vec![at(
        1_000,
        vec![
            command(
                "c1",
                Op::CreateProduct {
                    product: "tee".into(),
                    name: "Tee".into(),
                    price_cents: 1500,
                    stock: 5,
                },
            ),
            command(
                "c2",
                Op::CreateProduct {
                    product: "mug".into(),
                    name: "Mug".into(),
                    price_cents: 900,
                    stock: 100,
                },
            ),
        ],
    )];
    for i in 0..20 {
        let batch = (0..4)
            .map(|j| {
                let product = if j % 2 == 0 { "tee" } else { "mug" };
                purchase(&format!("b{i}-{j}"), product, 1 + j % 2)
            })
            .collect();
        all.push(at(2_000 + i, batch));
    }
    // The archive cursor moves to the last order of entry 11; entries 2 to 6 are dropped from
    // the next entry on, entries 7 to 11 stay within their retention.
    all.push(at(
        2_500,
        vec![command(
            "a1",
            Op::MarkArchived {
                up_to: flashstock_api::OrderId::new(11, 3),
            },
        )],
    ));
    all.push(at(
        3_000,
        vec![
            command(
                "r1",
                Op::Restock {
                    product: "tee".into(),
                    quantity: 10,
                },
            ),
            purchase("b0-0", "tee", 1), // a retry: a duplicate
            purchase("late", "tee", 3),
        ],
    ));
    all
}

fn entry(index: u64, proposal: Proposal) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(proposal),
    }
}

/// Everything a reader sees: products and orders, with their terms.
fn contents(reader: &StateReader) -> (Vec<ProductRecord>, Vec<OrderRecord>) {
    (
        reader.product_records(None, 1000).unwrap(),
        reader.order_records(None, 1000).unwrap(),
    )
}

/// The store read by `reader` holds what the reference does: products, orders with their terms,
/// and the horizons, archive cursor and order counters.
fn assert_same_as(reader: &StateReader, reference: &MemState) {
    let (products, orders) = contents(reader);
    assert_eq!(
        products,
        reference.products.values().cloned().collect::<Vec<_>>()
    );
    assert_eq!(
        orders,
        reference.orders.values().cloned().collect::<Vec<_>>()
    );
    assert_eq!(reader.inventory_meta().unwrap(), reference.meta);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn rocksdb_state_matches_the_reference_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut reference = MemState::default();
    let mut expected_outcomes = Vec::new();
    for (i, proposal) in proposals().into_iter().enumerate() {
        expected_outcomes
            .push(apply_proposal(&mut reference, &Group::only(), i as u64 + 1, &proposal).unwrap());
    }

    runtime().block_on(async {
        let (_log, mut sm) = raft_store::open(dir.path()).unwrap();
        let entries: Vec<Entry> = proposals()
            .into_iter()
            .enumerate()
            .map(|(i, p)| entry(i as u64 + 1, p))
            .collect();
        let outcomes = sm.apply(entries).await.unwrap();
        assert_eq!(outcomes, expected_outcomes);
        assert!(matches!(outcomes.last().unwrap()[1], Outcome::Duplicate(_)));
        let reader = sm.reader();
        assert_eq!(reader.applied_index(), proposals().len() as u64);
        assert_same_as(&reader, &reference);
        let meta = reader.inventory_meta().unwrap();
        // The history archives some orders, drops some of those, and leaves a backlog: the
        // comparison above covered all three paths.
        assert!(
            0 < meta.orders_dropped
                && meta.orders_dropped < meta.orders_archived
                && meta.orders_archived < meta.orders_placed,
            "{meta:?}"
        );
    });

    // Reopened: the applied log id and the data it produced come back together.
    runtime().block_on(async {
        let (_log, mut sm) = raft_store::open(dir.path()).unwrap();
        let (applied, _) = sm.applied_state().await.unwrap();
        let last = entry(proposals().len() as u64, proposals().remove(0)).log_id;
        assert_eq!(applied, Some(last), "the applied log id");
        let reader = sm.reader();
        assert_eq!(reader.applied_index(), last.index);
        assert_same_as(&reader, &reference);
    });
}

/// Where the child process of [`a_crash_loses_only_applies_the_log_makes_again`] keeps its store.
const CRASH_CHILD_DIR: &str = "FLASHSTOCK_TEST_CRASH_DIR";
/// The entries that child applies before it builds a snapshot.
const APPLIED_BEFORE_BUILD: usize = 10;

/// The closed store in `dir`, opened bare: its column families as RocksDB finds them, with
/// nothing of the store run on them.
fn open_bare(dir: &std::path::Path) -> rocksdb::DB {
    rocksdb::DB::open_cf(
        &rocksdb::Options::default(),
        dir,
        raft_store::keys::COLUMN_FAMILIES,
    )
    .unwrap()
}

/// The applied log id in the `state` column family of the closed store in `dir`, opened bare:
/// what its files and write-ahead log hold, before anything of the store runs.
fn applied_on_disk(dir: &std::path::Path) -> Option<LogId<u64>> {
    let db = open_bare(dir);
    let cf = raft_store::keys::cf(&db, raft_store::keys::CF_STATE);
    let bytes = db
        .get_cf(cf, raft_store::keys::StateKey::Applied.encode())
        .unwrap();
    bytes.and_then(|bytes| bincode::deserialize(&bytes).unwrap())
}

/// The state's writes skip the write-ahead log, the log being what makes them durable. A crash
/// (an abort: nothing closed, nothing flushed) loses the applies since the state was last
/// flushed, and the applied log id goes back with them, never one without the other; applying
/// the entries after that id again, as openraft does at start, gives the same state. A snapshot
/// build flushes the state: what it covers survives the crash, so the log behind it may go.
#[test]
fn a_crash_loses_only_applies_the_log_makes_again() {
    let entries = || -> Vec<Entry> {
        proposals()
            .into_iter()
            .enumerate()
            .map(|(i, p)| entry(i as u64 + 1, p))
            .collect()
    };
    if let Some(dir) = std::env::var_os(CRASH_CHILD_DIR) {
        runtime().block_on(async {
            let (_log, mut sm) = raft_store::open(std::path::Path::new(&dir)).unwrap();
            let mut before = entries();
            let after = before.split_off(APPLIED_BEFORE_BUILD);
            sm.apply(before).await.unwrap();
            sm.get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap();
            sm.apply(after).await.unwrap();
            assert_eq!(sm.reader().applied_index(), proposals().len() as u64);
            // With the store open: closing it would flush the state.
            std::process::abort();
        });
    }

    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_crash_loses_only_applies_the_log_makes_again",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_DIR, dir.path())
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(6),
        "the child applies everything, then aborts: {status}"
    );
    // On disk: the state as the build flushed it. Every apply after it was lost with the crash.
    assert_eq!(
        applied_on_disk(dir.path()).map(|id| id.index),
        Some(APPLIED_BEFORE_BUILD as u64),
        "the build flushed the state, and the writes after it skipped the write-ahead log"
    );

    let mut reference = MemState::default();
    for (i, proposal) in proposals().into_iter().enumerate() {
        apply_proposal(&mut reference, &Group::only(), i as u64 + 1, &proposal).unwrap();
    }
    runtime().block_on(async {
        let (_log, mut sm) = raft_store::open(dir.path()).unwrap();
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(
            applied.map(|id| id.index),
            Some(APPLIED_BEFORE_BUILD as u64)
        );
        let again = entries().split_off(APPLIED_BEFORE_BUILD);
        sm.apply(again).await.unwrap();
        let reader = sm.reader();
        assert_eq!(reader.applied_index(), proposals().len() as u64);
        assert_same_as(&reader, &reference);
    });
}

/// A store in `dir` with `entries` applied, and a snapshot of it.
async fn applied_and_snapshot(
    dir: &std::path::Path,
    entries: Vec<Entry>,
) -> (
    raft_store::StateMachine,
    openraft::storage::Snapshot<raft_store::TypeConfig>,
) {
    let (_log, mut store) = raft_store::open(dir).unwrap();
    store.apply(entries).await.unwrap();
    let snapshot = store
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    (store, snapshot)
}

/// A snapshot's bytes, read as a sender reads them.
async fn bytes_of(snapshot: &mut openraft::storage::Snapshot<raft_store::TypeConfig>) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut bytes = Vec::new();
    snapshot.snapshot.rewind().await.unwrap();
    snapshot.snapshot.read_to_end(&mut bytes).await.unwrap();
    bytes
}

/// `bytes` received by `target` as openraft receives a snapshot: into the file it begins, in
/// chunks, then shut.
async fn received(
    target: &mut raft_store::StateMachine,
    bytes: &[u8],
) -> Box<raft_store::snapshot::SnapshotFile> {
    use tokio::io::AsyncWriteExt;
    let mut file = target.begin_receiving_snapshot().await.unwrap();
    for chunk in bytes.chunks(1000) {
        file.write_all(chunk).await.unwrap();
    }
    file.shutdown().await.unwrap();
    file
}

/// The snapshot files in the store in `dir`.
fn snapshot_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(raft_store::snapshot::DIR))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_snapshot_installed_elsewhere_reproduces_the_state() {
    let source_dir = tempfile::tempdir().unwrap();
    let target_dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let entries: Vec<Entry> = proposals()
            .into_iter()
            .enumerate()
            .map(|(i, p)| entry(i as u64 + 1, p))
            .collect();
        let (source, mut snapshot) = applied_and_snapshot(source_dir.path(), entries).await;
        assert_eq!(
            snapshot.meta.last_log_id.unwrap().index,
            proposals().len() as u64
        );

        let (_log, mut target) = raft_store::open(target_dir.path()).unwrap();
        // The target had state of its own: installing replaces it whole.
        target
            .apply(vec![entry(1, proposals().remove(0))])
            .await
            .unwrap();
        let bytes = bytes_of(&mut snapshot).await;
        let file = received(&mut target, &bytes).await;
        target.install_snapshot(&snapshot.meta, file).await.unwrap();
        assert_eq!(contents(&target.reader()), contents(&source.reader()));
        let (applied, _) = target.applied_state().await.unwrap();
        assert_eq!(applied, snapshot.meta.last_log_id);
        let mut current = target.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snapshot.meta);
        assert_eq!(bytes_of(&mut current).await, bytes, "kept as received");
        // Idempotency records came along: a retry on the target is still a duplicate.
        assert!(target.reader().key_record("b3-1").unwrap().is_some());
        // The received file became the snapshot file: nothing else is left behind.
        assert_eq!(snapshot_files(target_dir.path()).len(), 1);
        drop((source, target, _log));
        // And the state is the snapshot's after a restart.
        let (_log, target) = raft_store::open(target_dir.path()).unwrap();
        let (_log, source) = raft_store::open(source_dir.path()).unwrap();
        assert_eq!(contents(&target.reader()), contents(&source.reader()));
    });
}

/// The entries applied after an install read the installed state, not what the store had
/// applied before it (nor any record of it the apply kept in memory): a store that had applied
/// the whole history, given a snapshot of its first entries and then the rest again, ends exactly
/// as the reference does.
#[test]
fn entries_after_an_install_see_the_installed_state() {
    const SNAPSHOT_AT: usize = 6;
    let source_dir = tempfile::tempdir().unwrap();
    let target_dir = tempfile::tempdir().unwrap();
    let mut reference = MemState::default();
    for (i, proposal) in proposals().into_iter().enumerate() {
        apply_proposal(&mut reference, &Group::only(), i as u64 + 1, &proposal).unwrap();
    }
    runtime().block_on(async {
        let mut entries: Vec<Entry> = proposals()
            .into_iter()
            .enumerate()
            .map(|(i, p)| entry(i as u64 + 1, p))
            .collect();
        let (_log, mut target) = raft_store::open(target_dir.path()).unwrap();
        target.apply(entries.clone()).await.unwrap();
        let rest = entries.split_off(SNAPSHOT_AT);
        let (_source, mut snapshot) = applied_and_snapshot(source_dir.path(), entries).await;
        let bytes = bytes_of(&mut snapshot).await;
        let file = received(&mut target, &bytes).await;
        target.install_snapshot(&snapshot.meta, file).await.unwrap();
        target.apply(rest).await.unwrap();
        assert_same_as(&target.reader(), &reference);
    });
}

/// The raw `m/format` record of the store in `dir`, or a new value written to it. The store
/// must be closed.
fn format_record(dir: &std::path::Path, write: Option<u32>) -> Option<Vec<u8>> {
    let db = open_bare(dir);
    let cf = raft_store::keys::cf(&db, raft_store::keys::CF_STATE);
    if let Some(format) = write {
        db.put_cf(cf, b"m/format", format.to_le_bytes()).unwrap();
    }
    db.get_cf(cf, b"m/format").unwrap()
}

#[test]
fn a_store_in_a_newer_format_is_refused_with_both_formats_named() {
    let dir = tempfile::tempdir().unwrap();
    drop(raft_store::open(dir.path()).unwrap());
    // A new store is marked with the first format: a cluster starts at the first cluster
    // version, whose state every release reads.
    assert_eq!(
        format_record(dir.path(), None),
        Some(raft_store::STATE_FORMAT_BASE.to_le_bytes().to_vec())
    );
    let newer = raft_store::STATE_FORMAT + 1;
    format_record(dir.path(), Some(newer));
    let refused = match raft_store::open(dir.path()) {
        Ok(_) => panic!("a store in format {newer} opened"),
        Err(error) => error.to_string(),
    };
    assert!(
        refused.contains(&format!("state format {newer}"))
            && refused.contains(&format!(
                "reads state formats {} to {} only",
                raft_store::STATE_FORMAT_BASE,
                raft_store::STATE_FORMAT
            )),
        "{refused}"
    );
}

/// Raising the cluster version moves the store to the state format it implies, in the entry's
/// own batch; a snapshot carries both, so a replica that installs it switches too.
#[test]
fn raising_the_cluster_version_switches_the_state_format_and_snapshots_carry_it() {
    let source_dir = tempfile::tempdir().unwrap();
    let target_dir = tempfile::tempdir().unwrap();
    let version = flashstock_api::CLUSTER_VERSION;
    let raise = Proposal {
        proposed_at_ms: 2_000,
        forget_keys_before_ms: 0,
        drop_archived_before_ms: 0,
        commands: vec![command(
            "cluster-version-next",
            Op::SetClusterVersion { version },
        )],
    };
    runtime().block_on(async {
        let entries = vec![entry(1, proposals().remove(0)), entry(2, raise)];
        let (source, mut snapshot) = applied_and_snapshot(source_dir.path(), entries).await;
        assert_eq!(source.reader().cluster_version().unwrap(), version);
        let (_log, mut target) = raft_store::open(target_dir.path()).unwrap();
        assert_eq!(
            target.reader().cluster_version().unwrap(),
            flashstock_api::CLUSTER_VERSION_BASE,
            "a new store runs the first cluster version"
        );
        let file = received(&mut target, &bytes_of(&mut snapshot).await).await;
        target.install_snapshot(&snapshot.meta, file).await.unwrap();
        assert_eq!(target.reader().cluster_version().unwrap(), version);
        drop((source, target, _log));
    });
    let format = raft_store::state_format_for(version).to_le_bytes().to_vec();
    assert_eq!(format_record(source_dir.path(), None), Some(format.clone()));
    assert_eq!(format_record(target_dir.path(), None), Some(format));
    // And the store opens again in its new format.
    let (_log, store) = raft_store::open(target_dir.path()).unwrap();
    assert_eq!(store.reader().cluster_version().unwrap(), version);
}

#[test]
fn a_snapshot_in_a_newer_format_is_refused_and_changes_nothing() {
    let source_dir = tempfile::tempdir().unwrap();
    let target_dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (_source, mut snapshot) =
            applied_and_snapshot(source_dir.path(), vec![entry(1, proposals().remove(0))]).await;
        // The same snapshot, its format record raised: a newer release's.
        let pairs: Vec<(Vec<u8>, Vec<u8>)> =
            bincode::deserialize(&bytes_of(&mut snapshot).await).unwrap();
        let newer = raft_store::STATE_FORMAT + 1;
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = pairs
            .into_iter()
            .map(|(key, value)| match key.as_slice() {
                b"m/format" => (key, newer.to_le_bytes().to_vec()),
                _ => (key, value),
            })
            .collect();
        let data = bincode::serialize(&pairs).unwrap();

        let (_log, mut target) = raft_store::open(target_dir.path()).unwrap();
        let file = received(&mut target, &data).await;
        let refused = target
            .install_snapshot(&snapshot.meta, file)
            .await
            .expect_err("a snapshot in a newer format is refused");
        assert!(
            refused
                .to_string()
                .contains(&format!("state format {newer}")),
            "{refused}"
        );
        assert_eq!(target.applied_state().await.unwrap().0, None);
        assert!(target.reader().products(None, 10).unwrap().is_empty());
        assert!(target.get_current_snapshot().await.unwrap().is_none());
        assert!(snapshot_files(target_dir.path()).is_empty(), "nothing kept");
    });
}

/// Entry `index`'s proposal for the tests that grow a state by hundreds of MiB: 1000 products
/// named `{prefix}{index}-{i}` with the longest name, each under a 100-byte idempotency key.
fn large_creates(index: u64, prefix: &str) -> Proposal {
    let name = "n".repeat(flashstock_api::PRODUCT_NAME_LEN_MAX);
    let commands = (0..1000)
        .map(|i| {
            let product = format!("{prefix}{index}-{i}");
            let key = format!("{product}-{}", "k".repeat(100));
            let op = Op::CreateProduct {
                product,
                name: name.clone(),
                price_cents: 100,
                stock: 1,
            };
            command(&key, op)
        })
        .collect();
    Proposal {
        proposed_at_ms: 1_000 + index,
        forget_keys_before_ms: 0,
        drop_archived_before_ms: 0,
        commands,
    }
}

/// The state's writes skip the write-ahead log, the Raft log being what makes them durable: while
/// the state grows by hundreds of MiB, the WAL holds only the few writes that go through it (a
/// vote here). Before, it held every write of the state, and the `raft` family, written rarely,
/// kept each WAL file alive until the store's bound on the WAL made RocksDB flush it; that bound
/// now holds the log's appends, the one large writer left (`log_store::tests`).
#[test]
fn the_write_ahead_log_stays_small_while_the_state_grows() {
    use openraft::storage::RaftLogStorage;
    const MIB: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (mut log, mut sm) = raft_store::open(dir.path()).unwrap();
        log.save_vote(&openraft::Vote::new(1, 1)).await.unwrap();
        let mut most_wal = 0;
        for index in 1..=300u64 {
            sm.apply(vec![entry(index, large_creates(index, "p"))])
                .await
                .unwrap();
            most_wal = most_wal.max(sm.reader().storage().wal_bytes);
        }
        let state = sm.reader().storage().state_bytes;
        eprintln!(
            "state {} MiB, write-ahead log at most {} MiB",
            state / MIB,
            most_wal / MIB
        );
        // The state grew well past the store's bound on the WAL (64 MiB)...
        assert!(
            state > 256 * MIB,
            "the state holds only {} MiB",
            state / MIB
        );
        // ... and none of it went through the WAL.
        assert!(
            most_wal <= MIB,
            "the write-ahead log reached {} MiB while the state grew to {} MiB",
            most_wal / MIB,
            state / MIB
        );
    });
}

/// Every group of a learner's store shares one bound on memtables: while three groups' states
/// grow by 100 MiB each, the memtables of all of them together stay near the store's 64 MiB
/// (63 MiB on a quiet machine). Before the bound, each group's state family kept up to 64 MiB
/// before its first flush and could keep a second while the first was flushed (208 MiB here).
#[test]
fn the_memtables_of_every_group_of_a_learner_share_one_bound() {
    const MIB: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let mut groups =
            raft_store::open_groups_with(dir.path(), 3, raft_store::Durability::Learner).unwrap();
        let mut most = 0;
        for index in 1..=100u64 {
            for (number, (_log, sm)) in groups.iter_mut().enumerate() {
                let creates = large_creates(index, &format!("g{number}-p"));
                sm.apply(vec![entry(index, creates)]).await.unwrap();
            }
            let held: u64 = groups
                .iter()
                .map(|(_, sm)| sm.reader().memtable_bytes())
                .sum();
            most = most.max(held);
        }
        let state: u64 = groups
            .iter()
            .map(|(_, sm)| sm.reader().storage().state_bytes)
            .sum();
        eprintln!(
            "three groups' states {} MiB, memtables at most {} MiB",
            state / MIB,
            most / MIB
        );
        assert!(
            state > 256 * MIB,
            "the states hold only {} MiB",
            state / MIB
        );
        // Memtables being flushed stay counted until their table files are written, and the
        // writes go on meanwhile: up to about the bound again on top of it, when other tests
        // keep the disk busy.
        assert!(
            most <= 128 * MIB,
            "the memtables of three groups reached {} MiB",
            most / MIB
        );
    });
}

/// Opens the closed store in `dir` bare, to write what an older release or an interrupted
/// install left in its `raft` column family.
fn with_raft_family(
    dir: &std::path::Path,
    write: impl FnOnce(&rocksdb::DB, &rocksdb::ColumnFamily),
) {
    let db = open_bare(dir);
    write(&db, raft_store::keys::cf(&db, raft_store::keys::CF_RAFT));
}

/// Each build replaces the snapshot file before it; only the newest is kept.
#[test]
fn a_build_replaces_the_snapshot_file_before_it() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (mut store, first) =
            applied_and_snapshot(dir.path(), vec![entry(1, proposals().remove(0))]).await;
        store
            .apply(vec![entry(2, proposals().remove(1))])
            .await
            .unwrap();
        let mut builder = store.get_snapshot_builder().await;
        let second = builder.build_snapshot().await.unwrap();
        assert_eq!(second.meta.last_log_id.unwrap().index, 2);
        let files = snapshot_files(dir.path());
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].starts_with("snapshot-2-"), "{files:?}");
        let current = store.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, second.meta);
        // The first snapshot's file is gone by name but still readable through an open handle,
        // as a sender streaming it to a follower holds one.
        let mut first = first;
        assert!(!bytes_of(&mut first).await.is_empty());
    });
}

/// Releases before snapshot files kept a snapshot inside RocksDB, meta and data in one value
/// (`snapshot`). A store of such a release opens with that snapshot moved into a file, the same
/// bytes.
#[test]
fn a_snapshot_kept_in_the_store_by_an_older_release_is_moved_into_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, bytes) = runtime().block_on(async {
        let (_store, mut snapshot) =
            applied_and_snapshot(dir.path(), vec![entry(1, proposals().remove(0))]).await;
        (snapshot.meta.clone(), bytes_of(&mut snapshot).await)
    });
    std::fs::remove_dir_all(dir.path().join(raft_store::snapshot::DIR)).unwrap();
    with_raft_family(dir.path(), |db, raft| {
        db.delete_cf(raft, b"snapshot_file").unwrap();
        let old = bincode::serialize(&(&meta, &bytes)).unwrap();
        db.put_cf(raft, b"snapshot", old).unwrap();
    });
    runtime().block_on(async {
        let (_log, mut store) = raft_store::open(dir.path()).unwrap();
        let mut current = store.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, meta);
        assert_eq!(bytes_of(&mut current).await, bytes);
    });
    with_raft_family(dir.path(), |db, raft| {
        assert_eq!(
            db.get_cf(raft, b"snapshot").unwrap(),
            None,
            "the old record is dropped"
        );
    });
}

/// An install records the snapshot, then swaps the state for it. A node stopped between the
/// two finds at open a snapshot newer than its state, and finishes the install.
#[test]
fn an_install_interrupted_after_its_record_is_finished_at_open() {
    let source_dir = tempfile::tempdir().unwrap();
    let target_dir = tempfile::tempdir().unwrap();
    let entries: Vec<Entry> = proposals()
        .into_iter()
        .enumerate()
        .map(|(i, p)| entry(i as u64 + 1, p))
        .collect();
    let meta = runtime().block_on(async {
        let (_store, mut snapshot) = applied_and_snapshot(source_dir.path(), entries).await;
        let (_log, _target) = raft_store::open(target_dir.path()).unwrap();
        let name = "snapshot-9-1";
        std::fs::write(
            target_dir.path().join(raft_store::snapshot::DIR).join(name),
            bytes_of(&mut snapshot).await,
        )
        .unwrap();
        (snapshot.meta.clone(), name)
    });
    with_raft_family(target_dir.path(), |db, raft| {
        let record = bincode::serialize(&(&meta.0, meta.1)).unwrap();
        db.put_cf(raft, b"snapshot_file", record).unwrap();
    });
    runtime().block_on(async {
        let (_log, mut target) = raft_store::open(target_dir.path()).unwrap();
        let (_log, source) = raft_store::open(source_dir.path()).unwrap();
        assert_eq!(target.applied_state().await.unwrap().0, meta.0.last_log_id);
        assert_eq!(contents(&target.reader()), contents(&source.reader()));
    });
}

/// A received snapshot cut short, or with keys out of order, is refused and changes nothing.
#[test]
fn a_malformed_snapshot_is_refused_and_changes_nothing() {
    let source_dir = tempfile::tempdir().unwrap();
    let target_dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (_source, mut snapshot) =
            applied_and_snapshot(source_dir.path(), vec![entry(1, proposals().remove(0))]).await;
        let bytes = bytes_of(&mut snapshot).await;
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = bincode::deserialize(&bytes).unwrap();
        pairs.reverse();
        let reversed = bincode::serialize(&pairs).unwrap();

        let (_log, mut target) = raft_store::open(target_dir.path()).unwrap();
        target
            .apply(vec![entry(1, proposals().remove(1))])
            .await
            .unwrap();
        let before = contents(&target.reader());
        for (data, why) in [
            (&bytes[..bytes.len() - 3], "ends in the middle"),
            (&reversed[..], "out of order"),
        ] {
            let file = received(&mut target, data).await;
            let refused = target
                .install_snapshot(&snapshot.meta, file)
                .await
                .expect_err("a malformed snapshot is refused");
            assert!(refused.to_string().contains(why), "{refused}");
            assert_eq!(contents(&target.reader()), before);
            assert!(target.get_current_snapshot().await.unwrap().is_none());
        }
        assert!(snapshot_files(target_dir.path()).is_empty(), "nothing kept");
    });
}
