//! Restoring every voter from a backup (RUNBOOK, "Backup and restore"), with a real PostgreSQL
//! archive: the backup is a follower's data directory copied while it was stopped; after it, the
//! group places orders that are archived and then lost with every voter; `flashstock-node
//! restore` prepares the backup, the other voters take a copy, and the restored group starts.
//! Orders it places carry a new incarnation, so none takes the id of an order the lost group
//! placed after the backup, and the archive ends with every order of both histories exactly once,
//! with no conflict. A second restore of the same backup claims yet another incarnation. A store
//! of three Raft groups is restored the same way, every group at once.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{archive_often, buy, create, node_binary, three_voters, wait_archive, Bought};
use flashstock_api::{Order, OrderId};
use flashstock_client::VoterClient;
use flashstock_deploy::local::LocalCluster;
use flashstock_deploy::postgres::{Postgres, PostgresOptions};

const ARCHIVE_WAIT: Duration = Duration::from_secs(60);
const LEADER_WAIT: Duration = Duration::from_secs(30);

async fn buy_some(client: &VoterClient, prefix: &str, count: usize) -> Vec<Order> {
    buy_some_of(client, prefix, "tee", count).await
}

async fn buy_some_of(
    client: &VoterClient,
    prefix: &str,
    product: &str,
    count: usize,
) -> Vec<Order> {
    let mut orders = Vec::new();
    for n in 0..count {
        match buy(client, &format!("{prefix}-{n}"), product, 1, 600).await {
            Bought::Confirmed(order) => orders.push(order),
            other => panic!("purchase {prefix}-{n}: {other:?}"),
        }
    }
    orders
}

/// Every voter stopped, the first one's data directory replaced by `backup` and prepared with
/// `flashstock-node restore` (and `args`), the others given a copy of it; returns what the tool
/// printed.
fn restore_every_voter(cluster: &mut LocalCluster, backup: &Path, args: &[&str]) -> String {
    let voters = cluster.voter_ids();
    for id in &voters {
        cluster.kill(*id).expect("stop a voter");
    }
    cluster
        .restore_from(voters[0], backup)
        .expect("unpack the backup");
    let first = &cluster.nodes[&voters[0]];
    let output = std::process::Command::new(node_binary())
        .arg("--config")
        .arg(&first.config_path)
        .arg("restore")
        .args(args)
        .output()
        .expect("run flashstock-node restore");
    let said = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "restore failed: {said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let prepared = first.data_dir.clone();
    for id in &voters[1..] {
        cluster
            .restore_from(*id, &prepared)
            .expect("copy the prepared directory");
    }
    said
}

async fn archived(postgres: &Postgres) -> BTreeMap<OrderId, String> {
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls)
        .await
        .expect("connect to the archive");
    tokio::spawn(connection);
    client
        .query(
            "SELECT order_id, idempotency_key FROM flashstock_orders",
            &[],
        )
        .await
        .expect("read the archive")
        .iter()
        .map(|row| (OrderId(row.get::<_, i64>(0) as u64), row.get(1)))
        .collect()
}

async fn everything_archived(cluster: &LocalCluster) {
    let status = wait_archive(cluster, "every order archived", ARCHIVE_WAIT, |status| {
        status.backlog == 0 && status.cursor.is_some()
    })
    .await;
    assert_eq!(status.last_error_kind, None, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_group_never_reuses_an_order_id_and_the_archive_stays_exact() {
    let postgres = Postgres::start(PostgresOptions::default()).expect("start PostgreSQL");
    let url = postgres.url();
    let mut cluster = three_voters(|config| archive_often(config, &url)).await;
    let client = cluster.voter_client();
    client
        .write(vec![create("create-tee", "tee", 1_000_000)])
        .await
        .expect("create a product");
    let before = buy_some(&client, "before", 20).await;

    // The backup: a follower that has every order so far, stopped, its directory copied.
    let leader = cluster
        .wait_for_leader(LEADER_WAIT)
        .await
        .expect("a leader");
    let follower = *cluster
        .voter_ids()
        .iter()
        .find(|id| **id != leader)
        .unwrap();
    let last = before.last().unwrap().id.log_index();
    cluster
        .wait_applied(follower, last, LEADER_WAIT)
        .await
        .expect("the follower applies every order");
    assert!(cluster.terminate(follower).expect("stop the follower"));
    let backup = tempfile::tempdir().expect("a backup directory");
    cluster
        .back_up(follower, &backup.path().join("data"))
        .expect("back the follower up");
    let backup = backup.path().join("data");
    cluster.start(follower).await.expect("restart the follower");

    // After the backup: archived, then lost with every voter.
    let lost = buy_some(&client, "lost", 30).await;
    everything_archived(&cluster).await;

    let said = restore_every_voter(&mut cluster, &backup, &[]);
    println!("{said}");
    assert!(said.contains("incarnation 1 "), "{said}");
    cluster
        .start_all()
        .await
        .expect("start the restored voters");
    cluster
        .wait_for_leader(LEADER_WAIT)
        .await
        .expect("the restored voters elect a leader");

    let restored = buy_some(&client, "restored", 30).await;
    for order in &restored {
        assert_eq!(order.id.incarnation(), 1, "{order:?}");
    }
    everything_archived(&cluster).await;

    // Every order of both histories is archived exactly once, under its own id, and no id of
    // the restored group was an id of the lost one.
    let rows = archived(&postgres).await;
    let expected: BTreeMap<OrderId, String> = before
        .iter()
        .chain(&lost)
        .chain(&restored)
        .map(|order| (order.id, order.key.clone()))
        .collect();
    assert_eq!(
        expected.len(),
        before.len() + lost.len() + restored.len(),
        "an order id was taken twice"
    );
    assert_eq!(rows, expected, "the archive holds exactly both histories");

    // The same backup restored again starts a third incarnation, never the second again.
    let said = restore_every_voter(&mut cluster, &backup, &[]);
    assert!(said.contains("incarnation 2 "), "{said}");
    cluster.start_all().await.expect("start the voters again");
    let again = buy_some(&client, "again", 5).await;
    assert!(
        again.iter().all(|order| order.id.incarnation() == 2),
        "{again:?}"
    );
    everything_archived(&cluster).await;
    assert_eq!(
        archived(&postgres).await.len(),
        expected.len() + again.len()
    );
}

/// A product of Raft group `group` among `groups`.
fn product_in(group: u16, groups: u16) -> String {
    (0..)
        .map(|n| format!("tee-{n}"))
        .find(|id| flashstock_api::placement::group_of(id, groups) == group)
        .expect("some id lands in every group")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_three_groups_is_restored_in_every_group() {
    const GROUPS: u16 = 3;
    let mut cluster = three_voters(|config| config.cluster.groups = GROUPS).await;
    let voters = cluster.voter_ids();
    let groups: Vec<(VoterClient, String)> = (0..GROUPS)
        .map(|group| {
            let client = cluster.voter_client().for_group(group);
            (client, product_in(group, GROUPS))
        })
        .collect();
    let mut before = Vec::new();
    for (group, (client, product)) in groups.iter().enumerate() {
        cluster
            .wait_for_group_leader_among(group as u16, &voters, LEADER_WAIT)
            .await
            .expect("every group elects a leader");
        client
            .write(vec![create(&format!("create-{product}"), product, 1_000)])
            .await
            .expect("create a product in its group");
        before.push(buy_in(client, product, "before").await);
    }

    // The backup: a voter stopped, its directory copied. It may lead some group: the restore
    // must hold anyway.
    let backed_up = voters[1];
    for (group, orders) in before.iter().enumerate() {
        let last = orders.last().unwrap().id.log_index();
        cluster
            .wait_applied_in(group as u16, backed_up, last, LEADER_WAIT)
            .await
            .expect("the voter applies every order");
    }
    assert!(cluster.terminate(backed_up).expect("stop the voter"));
    let backup = tempfile::tempdir().expect("a backup directory");
    cluster
        .back_up(backed_up, &backup.path().join("data"))
        .expect("back the voter up");
    cluster.start(backed_up).await.expect("restart the voter");
    let mut lost = Vec::new();
    for (client, product) in &groups {
        lost.push(buy_in(client, product, "lost").await);
    }

    // No archive here: the incarnation is given by hand.
    let said = restore_every_voter(
        &mut cluster,
        &backup.path().join("data"),
        &["--incarnation", "4"],
    );
    println!("{said}");
    for group in 0..GROUPS {
        assert!(
            said.contains(&format!(
                "group {group}: incarnation 4 (the backup's was 0)"
            )),
            "{said}"
        );
    }
    cluster
        .start_all()
        .await
        .expect("start the restored voters");
    for (group, (client, product)) in groups.iter().enumerate() {
        let group = group as u16;
        cluster
            .wait_for_group_leader_among(group, &voters, LEADER_WAIT)
            .await
            .expect("every restored group elects a leader");
        // Orders from before the backup are there: their keys answer the same orders.
        let first = &before[usize::from(group)][0];
        match buy(client, &first.key, product, 1, 600).await {
            Bought::Confirmed(order) => assert_eq!(order.id, first.id),
            other => panic!("replay of {}: {other:?}", first.key),
        }
        // New orders are the new incarnation's, in their group, and take no id handed out
        // before, not even one of the lost orders.
        let restored = buy_in(client, product, "restored").await;
        let taken: Vec<OrderId> = before
            .iter()
            .chain(&lost)
            .flatten()
            .map(|order| order.id)
            .collect();
        for order in &restored {
            assert_eq!(order.id.incarnation(), 4, "{order:?}");
            assert_eq!(order.id.group(), group, "{order:?}");
            assert!(!taken.contains(&order.id), "{order:?} reuses an id");
        }
    }
}

/// Five purchases of `product` through `client` (its group), keys `<prefix>-<product>-<n>`.
async fn buy_in(client: &VoterClient, product: &str, prefix: &str) -> Vec<Order> {
    buy_some_of(client, &format!("{prefix}-{product}"), product, 5).await
}
