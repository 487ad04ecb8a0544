//! A cluster of several Raft groups (`cluster.groups = 3`), end to end: real voter and gateway
//! processes on loopback. Products are placed by their id; each group has its own leader, log
//! and orders; the gateways route each write to its group's leader and merge the catalog.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use flashstock_api::placement::group_of;
use flashstock_api::{
    BulkItem, BulkRequest, BulkStatus, CreateProductRequest, ErrorCode, Line, OrderId, RaftState,
};
use flashstock_client::ShopError;

const GROUPS: u16 = 3;

/// Products whose ids land in every group: `g-00` to `g-11`.
fn products() -> Vec<String> {
    (0..12).map(|n| format!("g-{n:02}")).collect()
}

fn create(id: &str, stock: u64) -> CreateProductRequest {
    CreateProductRequest {
        id: id.into(),
        name: format!("product {id}"),
        price_cents: 100,
        stock,
        limit_per_customer: None,
    }
}

/// Wait until every node has applied cluster version 2 in every group (carts need it).
async fn wait_version_2_everywhere(cluster: &flashstock_deploy::local::LocalCluster) {
    let deadline = tokio::time::Instant::now() + ELECTION_WAIT;
    let mut ids = cluster.voter_ids();
    ids.extend(cluster.gateway_ids());
    for group in 0..GROUPS {
        let client = cluster.voter_client().for_group(group);
        for &id in &ids {
            loop {
                let status = client.status(&cluster.addr(id)).await;
                if status.is_ok_and(|s| s.applied_cluster_version() >= 2) {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "node {id} never applied cluster version 2 in group {group}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A short pause before reading again from a replica that has not applied a write yet.
async fn pause_before_reading_again(_error: &ShopError) {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_groups_route_writes_merge_pages_and_keep_orders_apart() {
    let cluster = formed(3, 2, |config| config.cluster.groups = GROUPS).await;
    let ids = products();
    let placed: BTreeSet<u16> = ids.iter().map(|id| group_of(id, GROUPS)).collect();
    assert_eq!(
        placed.len(),
        usize::from(GROUPS),
        "the ids cover every group"
    );

    // Every group has its leader, and every node says how many groups it runs.
    for group in 0..GROUPS {
        let client = cluster.voter_client().for_group(group);
        let leader = cluster
            .wait_for_group_leader_among(group, &cluster.voter_ids(), ELECTION_WAIT)
            .await
            .expect("each group elects a leader");
        let status = client.status(&cluster.addr(leader)).await.unwrap();
        assert_eq!(status.group, Some(group));
        assert_eq!(status.groups, Some(GROUPS));
        assert_eq!(status.state, RaftState::Leader);
        // The gateways are learners of every group.
        for gateway in cluster.gateway_ids() {
            assert!(
                status.members.iter().any(|member| member.id == gateway),
                "gateway {gateway} is a member of group {group}"
            );
        }
    }

    let gateways = cluster.gateway_urls();
    let first = cluster.shop_client();
    let second = flashstock_client::ShopClient::new(vec![gateways[1].clone()])
        .with_admin_token(&cluster.admin_token);
    for id in &ids {
        first.create_product(&create(id, 10)).await.unwrap();
    }

    // Each purchase is applied by its product's group: the order id names that group, and
    // the other gateway serves the order from its replica of that group.
    for id in &ids {
        let bought = first.purchase(id, 2).await.unwrap();
        let order = bought.order;
        assert_eq!(order.id.group(), group_of(id, GROUPS), "order of {id}");
        let token = order.token.clone().expect("a public purchase has a token");
        let deadline = tokio::time::Instant::now() + ELECTION_WAIT;
        let seen = loop {
            match second.order(order.id.0, &token).await {
                Ok(seen) => break seen,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    pause_before_reading_again(&e).await;
                }
                Err(e) => panic!("the other gateway never served order {}: {e}", order.id),
            }
        };
        assert_eq!(seen.order.product, *id);
    }

    // A linearizable page from the other gateway has caught up with every group's leader.
    let page: flashstock_api::ProductList = reqwest::get(format!(
        "{}/v1/products?limit=100&consistency=linearizable",
        gateways[1]
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let stocks: Vec<(String, u64)> = page
        .products
        .iter()
        .map(|p| (p.id.clone(), p.stock))
        .collect();
    let bought: Vec<(String, u64)> = ids.iter().map(|id| (id.clone(), 8)).collect();
    assert_eq!(stocks, bought);

    // Each group's replica holds its own products and nothing else.
    let voter = cluster.addr(cluster.voter_ids()[0]);
    for group in 0..GROUPS {
        let page = cluster
            .voter_client()
            .for_group(group)
            .products(&voter, None, 100)
            .await
            .unwrap();
        let held: Vec<&str> = page.items.iter().map(|p| p.id.as_str()).collect();
        let expected: Vec<&str> = ids
            .iter()
            .filter(|id| group_of(id, GROUPS) == group)
            .map(String::as_str)
            .collect();
        assert_eq!(held, expected, "group {group}'s products");
    }

    // The catalog, page by page, is every product once, in id order across groups.
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = first.products(after.as_deref(), 5).await.unwrap();
        listed.extend(page.products.iter().map(|p| (p.id.clone(), p.stock)));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let expected: Vec<(String, u64)> = ids.iter().map(|id| (id.clone(), 8)).collect();
    assert_eq!(listed, expected);

    // A cart within one group is bought whole; one across groups is refused, nothing held.
    wait_version_2_everywhere(&cluster).await;
    let in_group = |group: u16| {
        ids.iter()
            .filter(move |id| group_of(id, GROUPS) == group)
            .cloned()
    };
    let pair: Vec<String> = in_group(0).take(2).collect();
    let lines = |products: &[&String]| {
        products
            .iter()
            .map(|product| Line {
                product: (*product).clone(),
                quantity: 1,
            })
            .collect::<Vec<_>>()
    };
    let cart = first
        .checkout(lines(&[&pair[0], &pair[1]]), None)
        .await
        .unwrap();
    assert_eq!(cart.order.id.group(), 0);
    let other = in_group(1).next().unwrap();
    let refused = first.checkout(lines(&[&pair[0], &other]), None).await;
    match refused {
        Err(ShopError::Rejected { status, code, .. }) => {
            assert_eq!((status, code), (400, ErrorCode::InvalidRequest));
        }
        other => panic!("a cart across groups was not refused: {other:?}"),
    }
    let stock = |id: String| {
        let first = &first;
        async move { first.product(&id).await.unwrap().product.stock }
    };
    assert_eq!(stock(pair[0].clone()).await, 7);
    assert_eq!(stock(other.clone()).await, 8);

    // A bulk import across groups: each group applies its part, and a retry with the same key
    // applies nothing again.
    let items: Vec<BulkItem> = (0..30)
        .map(|n| BulkItem::Create {
            id: format!("bulk-{n:02}"),
            name: format!("bulk {n}"),
            price_cents: 5,
            stock: 3,
        })
        .collect();
    let request = BulkRequest { items };
    let done = first.bulk_with_key("import-1", &request).await.unwrap();
    assert!(done
        .results
        .iter()
        .all(|r| r.status == BulkStatus::Created && !r.replayed));
    let again = first.bulk_with_key("import-1", &request).await.unwrap();
    assert!(again
        .results
        .iter()
        .all(|r| r.status == BulkStatus::Created && r.replayed));
    for n in [0, 13, 29] {
        assert_eq!(stock(format!("bulk-{n:02}")).await, 3);
    }

    // An order id naming a group the cluster does not have is nobody's order.
    let stranger = OrderId::placed_in(GROUPS + 1, 0, 5, 0);
    assert!(matches!(
        first.order(stranger.0, &"0".repeat(32)).await,
        Err(ShopError::Rejected { status: 404, .. })
    ));
}

/// Each group's archiver, on that group's leader, copies the group's orders; every order
/// reaches the one table once, and the voters' shared pools stay within their bound.
#[tokio::test(flavor = "multi_thread")]
async fn three_groups_archive_every_order_once() {
    use flashstock_deploy::postgres::{Postgres, PostgresOptions};
    let postgres = Postgres::start(PostgresOptions::default()).expect("start PostgreSQL");
    let url = postgres.url();
    const POOL: usize = 2;
    let cluster = formed(3, 1, |config| {
        config.cluster.groups = GROUPS;
        common::archive_often(config, &url);
        config.archive.pool_size = POOL;
    })
    .await;
    let shop = cluster.shop_client();
    let ids = products();
    for id in &ids {
        shop.create_product(&create(id, 100)).await.unwrap();
    }
    let mut bought = BTreeSet::new();
    for round in 0..3 {
        for id in &ids {
            let order = shop.purchase(id, 1).await.unwrap().order;
            assert_eq!(
                order.id.group(),
                group_of(id, GROUPS),
                "round {round}, {id}"
            );
            bought.insert(order.id);
        }
    }

    // Each group's leader reports its own cursor, past its last order, with no backlog.
    for group in 0..GROUPS {
        let client = cluster.voter_client().for_group(group);
        let deadline = tokio::time::Instant::now() + ELECTION_WAIT;
        let last = bought
            .iter()
            .filter(|id| id.group() == group)
            .max()
            .copied();
        let last = last.expect("every group has orders");
        loop {
            let leader = cluster
                .wait_for_group_leader_among(group, &cluster.voter_ids(), ELECTION_WAIT)
                .await
                .unwrap();
            let status = client.status(&cluster.addr(leader)).await.unwrap();
            let archive = status.archive.expect("a voter reports its archive");
            if archive.backlog == 0 && archive.cursor >= Some(last) {
                assert!(archive.active, "group {group}'s leader archives it");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "group {group} never archived up to {last}: {archive:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to the archive");
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT order_id FROM flashstock_orders ORDER BY order_id",
            &[],
        )
        .await
        .unwrap();
    let archived: BTreeSet<OrderId> = rows
        .iter()
        .map(|row| OrderId(row.get::<_, i64>(0) as u64))
        .collect();
    assert_eq!(archived.len(), rows.len(), "no order archived twice");
    assert_eq!(archived, bought, "every order archived, and nothing else");
    let connections: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'flashstock-archiver'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        connections as usize <= POOL * cluster.voter_ids().len(),
        "{connections} archiver connections, pools of {POOL} on {} voters",
        cluster.voter_ids().len()
    );
}

/// The leader of each group, as voter `ask` sees it, once every running voter agrees.
async fn group_leaders(cluster: &flashstock_deploy::local::LocalCluster, ids: &[u64]) -> Vec<u64> {
    let mut leaders = Vec::new();
    for group in 0..GROUPS {
        let leader = cluster
            .wait_for_group_leader_among(group, ids, ELECTION_WAIT)
            .await
            .expect("each group has a leader");
        leaders.push(leader);
    }
    leaders
}

/// Wait until the groups' leaders are `expected` (by group), or fail after `timeout`.
async fn wait_leaders(
    cluster: &flashstock_deploy::local::LocalCluster,
    ids: &[u64],
    expected: &[u64],
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let leaders = group_leaders(cluster, ids).await;
        if leaders == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leaders by group {leaders:?}, expected {expected:?} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each voter leads the group that prefers it; a voter that fails loses its group to another,
/// and gets it back once it has returned and caught up, while purchases in every group go on.
#[tokio::test(flavor = "multi_thread")]
async fn leaders_spread_over_the_voters_and_return_after_a_failure() {
    let mut cluster = formed(3, 1, |config| config.cluster.groups = GROUPS).await;
    let voters = cluster.voter_ids();
    assert_eq!(voters, [1, 2, 3]);
    // Group g prefers voter g mod 3 in id order.
    let spread = [1, 2, 3];
    wait_leaders(&cluster, &voters, &spread, Duration::from_secs(30)).await;

    let shop = cluster.shop_client();
    let ids = products();
    for id in &ids {
        shop.create_product(&create(id, 100)).await.unwrap();
    }
    cluster.kill(2).expect("kill voter 2");
    let rest = [1, 3];
    let leaders = group_leaders(&cluster, &rest).await;
    assert!(!leaders.contains(&2), "{leaders:?}");
    for id in &ids {
        shop.purchase(id, 1).await.expect("every group still sells");
    }
    cluster.start(2).await.expect("restart voter 2");
    wait_leaders(&cluster, &voters, &spread, Duration::from_secs(30)).await;
    for id in &ids {
        shop.purchase(id, 1)
            .await
            .expect("every group sells after the move");
    }
    for id in &ids {
        let view = shop.product_linearizable(id).await.unwrap();
        assert_eq!(view.product.stock, 98, "{id}");
    }
}
