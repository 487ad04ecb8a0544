//! Several Raft groups in one store: each group's log, state and snapshots are its own, in one
//! RocksDB; group 0 is the store a one-group cluster always had; a store is not opened with
//! fewer groups than it holds; order ids name their group.

use flashstock_api::placement::GROUP_SLOTS;
use flashstock_api::{Command, Op, Outcome, Proposal};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder, Vote};
use raft_store::{Entry, Group, LogStore, StateMachine};

fn create(key: &str, product: &str, stock: u64) -> Command {
    Command {
        key: key.into(),
        op: Op::CreateProduct {
            product: product.into(),
            name: product.into(),
            price_cents: 100,
            stock,
        },
    }
}

fn purchase(key: &str, product: &str) -> Command {
    Command {
        key: key.into(),
        op: Op::Purchase {
            product: product.into(),
            quantity: 1,
            customer: None,
            token: None,
        },
    }
}

fn entry(index: u64, commands: Vec<Command>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal {
            proposed_at_ms: 1_000 + index,
            forget_keys_before_ms: 0,
            drop_archived_before_ms: 0,
            commands,
        }),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// The order id of the one purchase among `outcomes`.
fn order_of(outcomes: &[Outcome]) -> flashstock_api::OrderId {
    outcomes
        .iter()
        .find_map(|outcome| match outcome {
            Outcome::Purchased(order) => Some(order.id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("a purchase among {outcomes:?}"))
}

/// A group's vote and the last log id it purged: its own Raft records.
async fn raft_records(log: &mut LogStore) -> (Option<Vote<u64>>, Option<u64>) {
    let purged = log.get_log_state().await.unwrap().last_purged_log_id;
    (log.read_vote().await.unwrap(), purged.map(|id| id.index))
}

/// Create product "tee" with `stock` at index 1, buy one at index 2: the order's id.
async fn create_then_buy(sm: &mut StateMachine, stock: u64) -> flashstock_api::OrderId {
    sm.apply(vec![entry(1, vec![create("c", "tee", stock)])])
        .await
        .unwrap();
    let outcomes = sm
        .apply(vec![entry(2, vec![purchase("p", "tee")])])
        .await
        .unwrap();
    order_of(&outcomes[0])
}

#[test]
fn each_group_keeps_its_own_log_state_and_snapshots_in_one_store() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let mut groups = raft_store::open_groups(dir.path(), 3).unwrap();
        assert_eq!(groups.len(), 3);
        // The same log index and product id in two groups: two independent histories.
        let (log1, sm1) = &mut groups[1];
        log1.save_vote(&Vote::new(3, 1)).await.unwrap();
        let order1 = create_then_buy(sm1, 5).await;
        let (log2, sm2) = &mut groups[2];
        log2.purge(LogId::new(CommittedLeaderId::new(1, 1), 7))
            .await
            .unwrap();
        let order2 = create_then_buy(sm2, 9).await;

        // The same position in two groups placed two orders, each naming its group.
        assert_eq!((order1.group(), order2.group()), (1, 2));
        assert_eq!(order1.log_index(), order2.log_index());
        assert_ne!(order1, order2);

        let stock = |sm: &StateMachine| sm.reader().product("tee").unwrap().map(|p| p.stock);
        assert_eq!(stock(&groups[0].1), None, "group 0 saw nothing");
        assert_eq!(stock(&groups[1].1), Some(4));
        assert_eq!(stock(&groups[2].1), Some(8));
        assert_eq!(raft_records(&mut groups[0].0).await, (None, None));
        assert_eq!(
            raft_records(&mut groups[1].0).await,
            (Some(Vote::new(3, 1)), None)
        );
        assert_eq!(raft_records(&mut groups[2].0).await, (None, Some(7)));

        // A snapshot of group 2 is its state alone, in its own directory.
        let snapshot = groups[2]
            .1
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snapshot.meta.last_log_id.map(|id| id.index), Some(2));
        let files = |name: &str| {
            std::fs::read_dir(dir.path().join(name))
                .map(|entries| entries.count())
                .unwrap_or(0)
        };
        assert_eq!(
            (
                files("snapshots"),
                files("snapshots-g1"),
                files("snapshots-g2")
            ),
            (0, 0, 1)
        );
    });

    // Reopened with the same number of groups: each comes back as it was.
    runtime().block_on(async {
        let mut groups = raft_store::open_groups(dir.path(), 3).unwrap();
        let (applied, _) = groups[2].1.applied_state().await.unwrap();
        assert_eq!(applied.map(|id| id.index), Some(2));
        let (applied, _) = groups[0].1.applied_state().await.unwrap();
        assert_eq!(applied, None);
        assert_eq!(
            raft_records(&mut groups[1].0).await,
            (Some(Vote::new(3, 1)), None)
        );
        let product = groups[1].1.reader().product("tee").unwrap().unwrap();
        assert_eq!(product.stock, 4);
        assert!(groups[2].1.get_current_snapshot().await.unwrap().is_some());
        assert!(groups[1].1.get_current_snapshot().await.unwrap().is_none());
    });

    // Fewer groups than the store holds: refused, saying why, and nothing is dropped.
    let refused = raft_store::open(dir.path())
        .err()
        .expect("refused")
        .to_string();
    assert!(refused.contains("more groups"), "{refused}");
    assert!(refused.contains("state-g2"), "{refused}");
    // More groups than it holds: refused too, naming what is missing.
    let refused = raft_store::open_groups(dir.path(), 4)
        .err()
        .expect("refused")
        .to_string();
    assert!(refused.contains("fewer groups"), "{refused}");
    assert!(refused.contains("state-g3"), "{refused}");
    let groups = raft_store::open_groups(dir.path(), 3).unwrap();
    assert_eq!(
        groups[2].1.reader().product("tee").unwrap().unwrap().stock,
        8
    );
}

#[test]
fn group_0_of_one_group_is_the_store_of_before_groups() {
    assert_eq!(Group::only().families(), raft_store::keys::COLUMN_FAMILIES);
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (_log, mut sm) = raft_store::open(dir.path()).unwrap();
        let outcomes = sm
            .apply(vec![
                entry(1, vec![create("c", "tee", 5)]),
                entry(2, vec![create("d", "mug", 5), purchase("p", "tee")]),
            ])
            .await
            .unwrap();
        // The id a one-group cluster always gave: log index and slot alone.
        assert_eq!(order_of(&outcomes[1]).0, 2 << 16 | 1);
    });
    let mut groups = raft_store::open_groups(dir.path(), 1).unwrap();
    assert_eq!(groups.len(), 1);
    let (_log, sm) = groups.remove(0);
    assert_eq!(sm.reader().product("tee").unwrap().unwrap().stock, 4);
}

#[test]
fn an_entry_of_several_groups_holds_no_more_commands_than_an_order_id_has_slots() {
    let commands = |count: usize| -> Vec<Command> {
        (0..count)
            .map(|n| create(&format!("c{n}"), &format!("p{n}"), 1))
            .collect()
    };
    let created = |outcomes: &[Outcome]| {
        outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Outcome::ProductCreated(_)))
            .count()
    };
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let mut groups = raft_store::open_groups(dir.path(), 2).unwrap();
        let sm = &mut groups[1].1;
        let outcomes = sm
            .apply(vec![entry(1, commands(GROUP_SLOTS + 1))])
            .await
            .unwrap();
        assert_eq!(outcomes[0].len(), GROUP_SLOTS + 1, "every command answered");
        assert_eq!(created(&outcomes[0]), 0, "and none applied");
        assert_eq!(sm.reader().product("p0").unwrap(), None);
        let outcomes = sm
            .apply(vec![entry(2, commands(GROUP_SLOTS))])
            .await
            .unwrap();
        assert_eq!(created(&outcomes[0]), GROUP_SLOTS);
    });
    // One group: the slot has the whole field, as before.
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (_log, mut sm) = raft_store::open(dir.path()).unwrap();
        let outcomes = sm
            .apply(vec![entry(1, commands(GROUP_SLOTS + 1))])
            .await
            .unwrap();
        assert_eq!(created(&outcomes[0]), GROUP_SLOTS + 1);
    });
}
