//! The order archive against a real PostgreSQL (initdb into a temp dir, on a free loopback port):
//! every confirmed order reaches it exactly once, through PostgreSQL outages and a leader kill,
//! and purchases never wait for it.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    archive_often, buy, client_starting_at, create, node_binary, three_voters, wait_archive,
    Bought, ELECTION_WAIT,
};
use flashstock_api::{ArchiveErrorKind, Order, OrderId};
use flashstock_deploy::local::LocalCluster;
use flashstock_deploy::postgres::{Postgres, PostgresOptions};

/// Products the buyers spread over; stock far above what they can buy in a test.
const PRODUCTS: [&str; 3] = ["tee", "mug", "cap"];
const BUYERS: usize = 6;

async fn archived_cluster(postgres: &Postgres) -> LocalCluster {
    let url = postgres.url();
    let cluster = three_voters(|config| archive_often(config, &url)).await;
    let client = cluster.voter_client();
    for (i, product) in PRODUCTS.iter().enumerate() {
        client
            .write(vec![create(&format!("create-{i}"), product, 1_000_000)])
            .await
            .expect("create a product");
    }
    cluster
}

/// Buyers that keep buying until `stop`, each retrying an unknown outcome with the same key.
fn start_buyers(
    cluster: &LocalCluster,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<(String, Bought)>>> {
    (0..BUYERS)
        .map(|buyer| {
            let client = client_starting_at(cluster, buyer);
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut bought = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("buyer{buyer}-{n}");
                    let product = PRODUCTS[(buyer + n) % PRODUCTS.len()];
                    // Up to 30 s of retries: enough to ride out a leader election.
                    let outcome = buy(&client, &key, product, 1 + (n % 3) as u32, 600).await;
                    bought.push((key, outcome));
                    n += 1;
                }
                bought
            })
        })
        .collect()
}

async fn stop_buyers(
    stop: &Arc<AtomicBool>,
    buyers: Vec<tokio::task::JoinHandle<Vec<(String, Bought)>>>,
) -> BTreeMap<OrderId, Order> {
    stop.store(true, Ordering::Relaxed);
    let mut confirmed = BTreeMap::new();
    for buyer in buyers {
        for (key, outcome) in buyer.await.expect("buyer task") {
            match outcome {
                Bought::Confirmed(order) => {
                    confirmed.insert(order.id, order);
                }
                other => panic!("purchase {key} did not succeed: {other:?}"),
            }
        }
    }
    confirmed
}

/// One archived row, as the archive holds it.
#[derive(Debug, PartialEq)]
struct Row {
    product: String,
    quantity: u32,
    unit_price_cents: u64,
    customer: Option<String>,
    key: String,
    log_index: u64,
    slot: u16,
    committed_at_ms: u64,
}

async fn archived_rows(postgres: &Postgres) -> BTreeMap<OrderId, Row> {
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls)
        .await
        .expect("connect to the archive");
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT order_id, product, quantity, unit_price_cents, customer, idempotency_key,
                    log_index, slot,
                    (extract(epoch FROM committed_at) * 1000)::bigint
               FROM flashstock_orders ORDER BY order_id",
            &[],
        )
        .await
        .expect("read the archive");
    rows.iter()
        .map(|row| {
            let id = OrderId(row.get::<_, i64>(0) as u64);
            let archived = Row {
                product: row.get(1),
                quantity: row.get::<_, i32>(2) as u32,
                unit_price_cents: row.get::<_, i64>(3) as u64,
                customer: row.get(4),
                key: row.get(5),
                log_index: row.get::<_, i64>(6) as u64,
                slot: row.get::<_, i32>(7) as u16,
                committed_at_ms: row.get::<_, i64>(8) as u64,
            };
            (id, archived)
        })
        .collect()
}

fn row_of(order: &Order) -> Row {
    Row {
        product: order.product.clone(),
        quantity: order.quantity,
        unit_price_cents: order.price_cents,
        customer: order.customer.clone(),
        key: order.key.clone(),
        log_index: order.id.log_index(),
        slot: order.id.slot(),
        committed_at_ms: order.placed_at_ms,
    }
}

/// The archive holds exactly the state machine's orders (no gap, no duplicate, same fields),
/// every confirmed purchase among them, and the same units per product as the state machine.
async fn assert_archive_matches(
    cluster: &LocalCluster,
    postgres: &Postgres,
    confirmed: &BTreeMap<OrderId, Order>,
) -> usize {
    let leader = cluster
        .wait_for_leader(ELECTION_WAIT)
        .await
        .expect("leader");
    let client = cluster.voter_client();
    let state_orders = client
        .all_orders(&cluster.addr(leader))
        .await
        .expect("read the leader's orders");
    let archived = archived_rows(postgres).await;

    let expected: BTreeMap<OrderId, Row> = state_orders.iter().map(|o| (o.id, row_of(o))).collect();
    let missing: Vec<_> = expected
        .keys()
        .filter(|id| !archived.contains_key(id))
        .collect();
    let extra: Vec<_> = archived
        .keys()
        .filter(|id| !expected.contains_key(id))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "archive differs from the state: {} missing (first {:?}), {} extra (first {:?})",
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    assert_eq!(archived, expected, "archived rows differ from the orders");
    for id in confirmed.keys() {
        assert!(
            archived.contains_key(id),
            "confirmed order {id} not archived"
        );
    }
    for product in PRODUCTS {
        let sold = client
            .product(&cluster.addr(leader), product)
            .await
            .expect("read product")
            .items[0]
            .sold;
        let units: u64 = archived
            .values()
            .filter(|row| row.product == product)
            .map(|row| u64::from(row.quantity))
            .sum();
        assert_eq!(units, sold, "{product}: archived units differ from sold");
    }
    archived.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_purchases_reach_the_archive_exactly_once() {
    let postgres = Postgres::start(PostgresOptions::default()).expect("start PostgreSQL");
    let cluster = archived_cluster(&postgres).await;

    // One purchase names its customer: the reference must reach the archive.
    let client = cluster.voter_client();
    let mut with_customer = common::purchase("named-buyer", "tee", 2);
    if let flashstock_api::Op::Purchase { customer, .. } = &mut with_customer.op {
        *customer = Some("customer-42".into());
    }
    client
        .write(vec![with_customer])
        .await
        .expect("named purchase");

    let stop = Arc::new(AtomicBool::new(false));
    let buyers = start_buyers(&cluster, &stop);
    // Buyers buy for three seconds (a duration of load, not a wait for a state).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let confirmed = stop_buyers(&stop, buyers).await;
    assert!(confirmed.len() > 100, "only {} purchases", confirmed.len());

    let status = wait_archive(
        &cluster,
        "archive catches up",
        Duration::from_secs(30),
        |s| s.backlog == 0,
    )
    .await;
    assert!(status.enabled && status.active, "{status:?}");
    assert_eq!(status.last_error, None);
    let archived = assert_archive_matches(&cluster, &postgres, &confirmed).await;
    assert_eq!(archived as u64, status.orders_placed);
    let rows = archived_rows(&postgres).await;
    assert!(rows
        .values()
        .any(|row| row.key == "named-buyer" && row.customer.as_deref() == Some("customer-42")));

    // The report sums the same rows.
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await.unwrap();
    let report = client
        .archive_report(&cluster.addr(leader), 0, u64::MAX / 2)
        .await
        .expect("report");
    let units: u64 = report.products.iter().map(|row| row.units).sum();
    let sold: u64 = rows.values().map(|row| u64::from(row.quantity)).sum();
    assert_eq!(units, sold);

    // Operators see the same in the metrics.
    let metrics = reqwest::get(format!("http://{}/metrics", cluster.addr(leader)))
        .await
        .expect("scrape metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("flashstock_archive_backlog_orders{node=\"")
            && metrics
                .lines()
                .any(|line| line.starts_with("flashstock_archive_backlog_orders")
                    && line.ends_with(" 0")),
        "{metrics}"
    );
    assert!(metrics.contains("flashstock_archive_orders_written_total"));
    println!(
        "archived {archived} orders from {} confirmed purchases",
        confirmed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outages_do_not_fail_purchases_and_the_archive_catches_up() {
    let mut postgres = Postgres::start(PostgresOptions::default()).expect("start PostgreSQL");
    let cluster = archived_cluster(&postgres).await;
    let stop = Arc::new(AtomicBool::new(false));
    let buyers = start_buyers(&cluster, &stop);
    wait_archive(&cluster, "first batches", Duration::from_secs(20), |s| {
        s.cursor.is_some()
    })
    .await;

    // Fast shutdown: the archiver fails, the backlog grows, purchases go on.
    postgres.stop_fast().expect("stop PostgreSQL");
    let down = wait_archive(&cluster, "archiver notices", Duration::from_secs(20), |s| {
        s.last_error.is_some()
    })
    .await;
    let grown = wait_archive(&cluster, "backlog grows", Duration::from_secs(20), |s| {
        s.backlog > down.backlog + 50
    })
    .await;
    println!(
        "PostgreSQL stopped: backlog {} orders, error {:?} (public kind {:?})",
        grown.backlog, grown.last_error, grown.last_error_kind
    );
    // The message stays on /admin/status; the public operations view shows only its kind.
    assert!(
        grown.last_error.is_none() || grown.last_error_kind.is_some(),
        "{grown:?}"
    );
    assert!(down.last_error_kind.is_some(), "{down:?}");
    postgres.start_again().expect("start PostgreSQL again");
    wait_archive(
        &cluster,
        "catches up after the stop",
        Duration::from_secs(30),
        |s| s.last_error.is_none() && s.backlog < grown.backlog,
    )
    .await;

    // A crash (SIGKILL to every PostgreSQL process), mid-batch as likely as not.
    postgres.kill().expect("crash PostgreSQL");
    let crashed = wait_archive(
        &cluster,
        "archiver notices the crash",
        Duration::from_secs(20),
        |s| s.last_error.is_some(),
    )
    .await;
    println!(
        "PostgreSQL crashed: backlog {} orders, error {:?}",
        crashed.backlog, crashed.last_error
    );
    // Keep PostgreSQL down a little longer while purchases go on, so the backlog grows.
    tokio::time::sleep(Duration::from_millis(500)).await;
    postgres.start_again().expect("recover PostgreSQL");

    let confirmed = stop_buyers(&stop, buyers).await;
    wait_archive(
        &cluster,
        "archive catches up",
        Duration::from_secs(30),
        |s| s.backlog == 0 && s.last_error.is_none(),
    )
    .await;
    let archived = assert_archive_matches(&cluster, &postgres, &confirmed).await;
    println!(
        "{} purchases confirmed through two outages, {archived} orders archived exactly once",
        confirmed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_resumes_archiving_from_the_cursor() {
    let postgres = Postgres::start(PostgresOptions::default()).expect("start PostgreSQL");
    let mut cluster = archived_cluster(&postgres).await;
    let stop = Arc::new(AtomicBool::new(false));
    let buyers = start_buyers(&cluster, &stop);
    let before = wait_archive(
        &cluster,
        "archiving under way",
        Duration::from_secs(20),
        |s| s.cursor.is_some() && s.orders_placed > 200,
    )
    .await;

    let old = cluster.wait_for_leader(ELECTION_WAIT).await.unwrap();
    cluster.kill(old).expect("kill the leader");
    let new = cluster
        .wait_for_leader(ELECTION_WAIT)
        .await
        .expect("a new leader");
    assert_ne!(new, old);
    let resumed = wait_archive(
        &cluster,
        "new leader archives",
        Duration::from_secs(20),
        |s| s.active && s.cursor > before.cursor && s.last_batch_at_ms.is_some(),
    )
    .await;
    cluster.start(old).await.expect("restart the old leader");
    // Wait until the old leader has rejoined and caught up with the current leader, while the
    // buyers go on: the check below that only the leader archives then covers it too.
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await.unwrap();
    let leader_applied = cluster
        .voter_client()
        .status(&cluster.addr(leader))
        .await
        .expect("the leader's status")
        .applied_index
        .unwrap_or(0);
    cluster
        .wait_applied(old, leader_applied, ELECTION_WAIT)
        .await
        .expect("the old leader rejoins and catches up");

    let confirmed = stop_buyers(&stop, buyers).await;
    wait_archive(
        &cluster,
        "archive catches up",
        Duration::from_secs(30),
        |s| s.backlog == 0,
    )
    .await;
    let archived = assert_archive_matches(&cluster, &postgres, &confirmed).await;

    // Exactly one voter archives: the leader.
    let client = cluster.voter_client();
    let mut active = Vec::new();
    for id in cluster.voter_ids() {
        let status = client.status(&cluster.addr(id)).await.expect("status");
        if status.archive.as_ref().is_some_and(|a| a.active) {
            active.push(id);
        }
    }
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await.unwrap();
    assert_eq!(active, vec![leader], "only the leader archives");
    println!(
        "leader {old} killed at cursor {:?}; leader {new} resumed at {:?}; {archived} orders archived exactly once",
        before.cursor, resumed.cursor
    );
}

/// A row of the archive under the id of an order to archive, with other contents (what a
/// restored log placing new orders at used positions would meet): the archiver never skips the
/// order; it halts there and says so in every place an operator looks (leader status, the public
/// operations view, a metric, an error in the log) while purchases go on; once the row is
/// moved aside it resumes, and the archive is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_different_row_under_an_orders_id_halts_the_archive_loudly() {
    let postgres = Postgres::start(PostgresOptions::default()).expect("start PostgreSQL");
    let url = postgres.url();
    let cluster = common::formed(3, 1, |config| archive_often(config, &url)).await;
    let client = cluster.voter_client();
    for (i, product) in PRODUCTS.iter().enumerate() {
        client
            .write(vec![create(&format!("create-{i}"), product, 1_000)])
            .await
            .expect("create a product");
    }
    let confirmed_order = |bought: Bought| match bought {
        Bought::Confirmed(order) => order,
        other => panic!("a purchase in stock is confirmed: {other:?}"),
    };
    let mut confirmed = BTreeMap::new();
    let first = confirmed_order(buy(&client, "first", "tee", 1, 600).await);
    confirmed.insert(first.id, first.clone());
    wait_archive(
        &cluster,
        "the first order archived",
        Duration::from_secs(20),
        |s| s.backlog == 0 && s.cursor == Some(first.id),
    )
    .await;

    // Rows under the ids the next purchases will take (one command per entry: slot 0), with
    // contents no order has.
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await.unwrap();
    let applied = client
        .status(&cluster.addr(leader))
        .await
        .expect("leader status")
        .applied_index
        .unwrap_or(0);
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to the archive");
    tokio::spawn(connection);
    let planted: Vec<i64> = (applied + 1..=applied + 100)
        .map(|index| OrderId::new(index, 0).0 as i64)
        .collect();
    db.execute(
        "INSERT INTO flashstock_orders (order_id, product, quantity, unit_price_cents, customer,
                                        idempotency_key, log_index, slot, committed_at)
         SELECT id, 'planted', 1, 1, NULL, 'planted-' || id, id >> 16, 0, now()
           FROM UNNEST($1::bigint[]) AS id",
        &[&planted],
    )
    .await
    .expect("plant rows");
    let second = confirmed_order(buy(&client, "second", "mug", 2, 600).await);
    assert!(
        planted.contains(&(second.id.0 as i64)),
        "the test's premise: order {} takes a planted id (applied index was {applied})",
        second.id
    );
    confirmed.insert(second.id, second.clone());

    // Halted, and said: the leader's status, ...
    let halted = wait_archive(
        &cluster,
        "the archiver reports the conflict",
        Duration::from_secs(20),
        |s| s.last_error_kind == Some(ArchiveErrorKind::Conflict),
    )
    .await;
    assert_eq!(halted.cursor, Some(first.id), "the cursor stays before it");
    assert!(halted.backlog >= 1, "{halted:?}");
    let message = halted.last_error.clone().unwrap_or_default();
    assert!(message.contains(&second.id.to_string()), "{message}");
    // ... the public operations view, by its stable kind, ...
    let http = reqwest::Client::new();
    let gateway = cluster.gateway_ids()[0];
    let ops_url = format!("{}/v1/ops/cluster", cluster.public_url(gateway));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ops: serde_json::Value = http
            .get(&ops_url)
            .send()
            .await
            .expect("ops view")
            .json()
            .await
            .expect("JSON");
        if ops["archive"]["last_error_kind"] == "conflict" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the operations view does not show the conflict: {}",
            ops["archive"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ... a metric, and an error in the log.
    let metrics = http
        .get(format!("http://{}/metrics", cluster.addr(leader)))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let conflicts: u64 = metrics
        .lines()
        .find(|line| line.starts_with("flashstock_archive_conflicts_total"))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no conflicts metric:\n{metrics}"));
    assert!(conflicts >= 1, "{conflicts}");
    let log = cluster.log_tail(leader);
    assert!(
        log.contains("ERROR") && log.contains("ARCHIVE HALTED"),
        "the leader's log:\n{log}"
    );
    // Purchases go on, and the planted row was not overwritten.
    let third = confirmed_order(buy(&client, "third", "cap", 1, 600).await);
    confirmed.insert(third.id, third);
    let kept: String = db
        .query_one(
            "SELECT product FROM flashstock_orders WHERE order_id = $1",
            &[&(second.id.0 as i64)],
        )
        .await
        .expect("the planted row")
        .get(0);
    assert_eq!(kept, "planted");

    // The operator moves the planted rows aside (deploy/RUNBOOK.md): the archive resumes.
    db.batch_execute(
        "CREATE TABLE flashstock_orders_displaced (LIKE flashstock_orders);
         WITH moved AS (DELETE FROM flashstock_orders WHERE product = 'planted' RETURNING *)
         INSERT INTO flashstock_orders_displaced SELECT * FROM moved;",
    )
    .await
    .expect("move the planted rows aside");
    wait_archive(
        &cluster,
        "the archive resumes",
        Duration::from_secs(20),
        |s| s.backlog == 0 && s.last_error_kind.is_none(),
    )
    .await;
    let archived = assert_archive_matches(&cluster, &postgres, &confirmed).await;
    println!("halted at order {} ({conflicts} conflicting attempts); {archived} orders archived exactly once after the rows were moved aside", second.id);
}

#[test]
fn a_pool_above_the_connection_cap_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("voter.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[node]
id = 1
role = "voter"
listen = "127.0.0.1:1"
data_dir = "{}"

[cluster]
voter_secrets = ["a-voter-secret-of-enough-length"]
gateway_secrets = ["a-gateway-secret-of-enough-length"]
operator_secrets = ["an-operator-secret-of-enough-length"]

[archive]
postgres_url = "postgres://archiver@127.0.0.1:5432/shop"
pool_size = 43
"#,
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let output = std::process::Command::new(node_binary())
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run the node");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("archive.pool_size") && stderr.contains("300 connections"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing was created before refusing"
    );
}
