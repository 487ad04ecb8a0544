//! Shared set-up of the end-to-end tests: real `flashstock-node` processes on loopback.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use cluster_config::Config;
use flashstock_api::{
    ArchiveStatus, Command, CreateProductRequest, Op, Order, OrderId, Outcome, Product,
};
use flashstock_client::VoterClient;
use flashstock_deploy::local::{Layout, LocalCluster};

pub const ELECTION_WAIT: Duration = Duration::from_secs(30);

/// How long an attack test holds its attack while honest buyers buy: `default` in CI, or
/// `FLASHSTOCK_ATTACK_HOLD_S` seconds when set (the longer mode, e.g. 60, run with
/// `--nocapture` to read the figures).
pub fn attack_hold(default: Duration) -> Duration {
    std::env::var("FLASHSTOCK_ATTACK_HOLD_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(default, Duration::from_secs)
}

pub fn node_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_flashstock-node"))
}

/// Three voters, started and initialized, with a leader elected.
pub async fn three_voters(tweak: impl Fn(&mut Config)) -> LocalCluster {
    let layout = Layout {
        voters: 3,
        gateways: 0,
    };
    let mut cluster = LocalCluster::temporary(node_binary(), layout, tweak).expect("lay out");
    cluster.start_all().await.expect("start voters");
    cluster.init().await.expect("initialize");
    cluster
        .wait_for_leader(ELECTION_WAIT)
        .await
        .expect("a leader is elected");
    cluster
}

/// Three voters and three gateways, formed: the gateways are learners that have caught up.
pub async fn six_nodes(tweak: impl Fn(&mut Config)) -> LocalCluster {
    formed(3, 3, tweak).await
}

/// `voters` voters and `gateways` gateways, formed: the gateways are learners that have caught
/// up.
pub async fn formed(voters: u64, gateways: u64, tweak: impl Fn(&mut Config)) -> LocalCluster {
    let layout = Layout { voters, gateways };
    let mut cluster = LocalCluster::temporary(node_binary(), layout, tweak).expect("lay out");
    cluster
        .start_and_form(ELECTION_WAIT)
        .await
        .expect("start and form the cluster");
    cluster
}

/// Wait until every node, voters and gateways, has applied cluster version `version` or a later
/// one (a fresh cluster's leader raises it within about a second); fail after `timeout`.
pub async fn wait_cluster_version(cluster: &LocalCluster, version: u32, timeout: Duration) {
    let client = cluster.voter_client();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut ids = cluster.voter_ids();
    ids.extend(cluster.gateway_ids());
    for id in ids {
        loop {
            let status = client.status(&cluster.addr(id)).await;
            let running = status.as_ref().ok().map(|s| s.applied_cluster_version());
            if running.is_some_and(|running| running >= version) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {id} did not apply cluster version {version} within {timeout:?}: {running:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The archive status of the current leader.
pub async fn leader_archive(cluster: &LocalCluster) -> Option<ArchiveStatus> {
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await.ok()?;
    let status = cluster
        .voter_client()
        .status(&cluster.addr(leader))
        .await
        .ok()?;
    status.archive
}

/// Poll the leader's archive status until `done` holds; fail after `timeout`.
pub async fn wait_archive(
    cluster: &LocalCluster,
    what: &str,
    timeout: Duration,
    done: impl Fn(&ArchiveStatus) -> bool,
) -> ArchiveStatus {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Some(status) = leader_archive(cluster).await {
            if done(&status) {
                return status;
            }
            last = Some(status);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {timeout:?}; last archive status {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Archive into `url` often and retry quickly: tests wait for the archive in milliseconds.
pub fn archive_often(config: &mut Config, url: &str) {
    config.archive.postgres_url = Some(url.to_owned());
    config.archive.interval_ms = 20;
    config.archive.batch_max = 200;
    config.archive.timeout_ms = 3000;
    config.archive.retry_min_ms = 50;
    config.archive.retry_max_ms = 300;
}

/// The public API's body creating product `id` with `stock` items.
pub fn product(id: &str, stock: u64) -> CreateProductRequest {
    CreateProductRequest {
        id: id.into(),
        name: format!("Product {id}"),
        price_cents: 2500,
        stock,
        limit_per_customer: None,
    }
}

pub fn create(key: &str, product: &str, stock: u64) -> Command {
    Command {
        key: key.into(),
        op: Op::CreateProduct {
            product: product.into(),
            name: format!("Product {product}"),
            price_cents: 1999,
            stock,
        },
    }
}

pub fn purchase(key: &str, product: &str, quantity: u32) -> Command {
    Command {
        key: key.into(),
        op: Op::Purchase {
            product: product.into(),
            quantity,
            customer: None,
            token: None,
        },
    }
}

/// A client whose endpoints start at a different voter for each `seed`, so that concurrent
/// buyers first hit different voters and must follow "not leader" answers.
pub fn client_starting_at(cluster: &LocalCluster, seed: usize) -> VoterClient {
    let mut endpoints: Vec<String> = cluster
        .voter_ids()
        .iter()
        .map(|id| cluster.addr(*id))
        .collect();
    let shift = seed % endpoints.len();
    endpoints.rotate_left(shift);
    VoterClient::new(endpoints, &cluster.operator_secret, Duration::from_secs(10))
}

/// What a buyer learned of one purchase.
#[derive(Debug, Clone, PartialEq)]
pub enum Bought {
    Confirmed(Order),
    /// A committed rejection (sold out, for these tests).
    Rejected(String),
    /// Never learned the outcome within the retry budget.
    Unknown,
}

/// Buy once, retrying with the same key while the outcome is unknown or no leader is reachable,
/// up to `attempts` times. A retry never buys twice: the key makes it answer the first outcome.
pub async fn buy(
    client: &VoterClient,
    key: &str,
    product: &str,
    quantity: u32,
    attempts: usize,
) -> Bought {
    for _ in 0..attempts {
        match client.write(vec![purchase(key, product, quantity)]).await {
            Ok(applied) => {
                return match applied.outcomes[0].first() {
                    Outcome::Purchased(order) => Bought::Confirmed(order.clone()),
                    Outcome::Rejected(rejection) => Bought::Rejected(rejection.code().to_string()),
                    other => panic!("unexpected outcome for a purchase: {other:?}"),
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    Bought::Unknown
}

/// Every voter's view of one product and of all orders, after waiting until each has applied
/// at least `index`.
pub async fn replica_views(
    cluster: &LocalCluster,
    product: &str,
    index: u64,
) -> BTreeMap<u64, (Product, Vec<Order>)> {
    let client = cluster.voter_client();
    let mut views = BTreeMap::new();
    for id in cluster.voter_ids() {
        cluster
            .wait_applied(id, index, ELECTION_WAIT)
            .await
            .expect("replica catches up");
        let addr = cluster.addr(id);
        let product = client
            .product(&addr, product)
            .await
            .expect("read product")
            .items
            .remove(0);
        let orders = client.all_orders(&addr).await.expect("read orders");
        views.insert(id, (product, orders));
    }
    views
}

/// Check one replica's state against what the buyers were told: exactly `stock` sold when demand
/// exceeded it, every confirmed order present, no key sold twice, conservation.
pub fn check_replica(
    id: u64,
    product: &Product,
    orders: &[Order],
    confirmed: &BTreeMap<OrderId, Order>,
    initial_stock: u64,
) {
    assert!(
        product.is_conserved(),
        "node {id}: conservation broken: {product:?}"
    );
    let sold_by_orders: u64 = orders.iter().map(|o| u64::from(o.quantity)).sum();
    assert_eq!(
        sold_by_orders, product.sold,
        "node {id}: orders do not add up to sold"
    );
    assert_eq!(product.initial_stock + product.restocked, initial_stock);
    for order in confirmed.values() {
        assert!(
            orders.contains(order),
            "node {id}: confirmed order {} is missing",
            order.id
        );
    }
    let mut keys: Vec<&str> = orders.iter().map(|o| o.key.as_str()).collect();
    keys.sort();
    let before = keys.len();
    keys.dedup();
    assert_eq!(before, keys.len(), "node {id}: a key bought twice");
}

/// Node `id`'s metrics, as its internal listener serves them.
pub async fn metrics_text(cluster: &LocalCluster, id: u64) -> String {
    reqwest::get(format!("http://{}/metrics", cluster.addr(id)))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// `flashstock_http_connections_closed_total` of one listener and reason, from node `id`'s
/// metrics on its internal listener.
pub async fn closed_by_server(
    cluster: &LocalCluster,
    id: u64,
    listener: &str,
    reason: &str,
) -> u64 {
    let text = metrics_text(cluster, id).await;
    let (listener, reason) = (
        format!(r#"listener="{listener}""#),
        format!(r#"reason="{reason}""#),
    );
    text.lines()
        .filter(|line| line.starts_with("flashstock_http_connections_closed_total"))
        .find(|line| line.contains(&listener) && line.contains(&reason))
        .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}
