//! openraft's storage conformance suite, run against the RocksDB store: one test per case of
//! `Suite::test_store`, so a failure names its case.

// The suite's cases return openraft's `StorageError`, large as it is.
#![allow(clippy::result_large_err)]

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use raft_store::{LogStore, NodeId, StateMachine, TypeConfig};
use tempfile::TempDir;

/// Opens a fresh store in a temporary directory for each case of the suite.
struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let (log_store, state_machine) = raft_store::open(dir.path())?;
        Ok((dir, log_store, state_machine))
    }
}

type RocksSuite = Suite<TypeConfig, LogStore, StateMachine, RocksBuilder, TempDir>;

fn run_case<F, Fut>(case: F) -> Result<(), StorageError<NodeId>>
where
    F: FnOnce(LogStore, StateMachine) -> Fut,
    Fut: std::future::Future<Output = Result<(), StorageError<NodeId>>>,
{
    let runtime = tokio::runtime::Runtime::new().expect("start a runtime");
    runtime.block_on(async {
        let (_dir, log_store, state_machine) = RocksBuilder.build().await?;
        case(log_store, state_machine).await
    })
}

macro_rules! suite_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() -> Result<(), StorageError<NodeId>> {
                run_case(RocksSuite::$case)
            }
        )*
    };
}

suite_cases!(
    last_membership_in_log_initial,
    last_membership_in_log,
    last_membership_in_log_multi_step,
    get_membership_initial,
    get_membership_from_log_and_empty_sm,
    get_membership_from_empty_log_and_sm,
    get_membership_from_log_le_sm_last_applied,
    get_membership_from_log_gt_sm_last_applied_1,
    get_membership_from_log_gt_sm_last_applied_2,
    get_initial_state_without_init,
    get_initial_state_membership_from_log_and_sm,
    get_initial_state_with_state,
    get_initial_state_last_log_gt_sm,
    get_initial_state_last_log_lt_sm,
    get_initial_state_log_ids,
    get_initial_state_re_apply_committed,
    save_vote,
    get_log_entries,
    limited_get_log_entries,
    try_get_log_entry,
    initial_logs,
    get_log_state,
    get_log_id,
    last_id_in_log,
    last_applied_state,
    purge_logs_upto_0,
    purge_logs_upto_5,
    purge_logs_upto_20,
    delete_logs_since_11,
    delete_logs_since_0,
    append_to_log,
    snapshot_meta,
    apply_single,
    apply_multiple,
);

#[test]
fn transfer_snapshot() -> Result<(), StorageError<NodeId>> {
    let runtime = tokio::runtime::Runtime::new().expect("start a runtime");
    runtime.block_on(RocksSuite::transfer_snapshot(&RocksBuilder))
}

/// The whole suite as openraft runs it, cases in its order.
#[test]
fn whole_suite() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(RocksBuilder)
}

/// Opens group 2 of a fresh store of three groups for each case: its appends are made durable
/// by the store's shared WAL sync, not by their own write.
struct GroupOfSeveralBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for GroupOfSeveralBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let (log_store, state_machine) = raft_store::open_groups(dir.path(), 3)?.remove(2);
        assert!(
            log_store.shared_syncs().is_some(),
            "a store of several groups"
        );
        Ok((dir, log_store, state_machine))
    }
}

/// The whole suite on one group of a store of several.
#[test]
fn whole_suite_on_a_group_of_several() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(GroupOfSeveralBuilder)
}
