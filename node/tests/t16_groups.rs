//! A cluster of several Raft groups (`cluster.groups = 3`), end to end: real voter and gateway
//! processes on loopback. Products are placed by their id; each group has its own leader, log
//! and orders; the gateways route each write to its group's leader and merge the catalog.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use flashstock_api::placement::group_of;
use flashstock_api::{
    BulkItem, BulkRequest, BulkStatus, Command, CreateProductRequest, ErrorCode, HoldId, HoldState,
    Line, Op, OrderId, Outcome, RaftState, CLUSTER_VERSION,
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

/// Wait until every node has applied this release's cluster version in every group (carts
/// across groups need 3).
async fn wait_version_everywhere(cluster: &flashstock_deploy::local::LocalCluster) {
    let deadline = tokio::time::Instant::now() + ELECTION_WAIT;
    let mut ids = cluster.voter_ids();
    ids.extend(cluster.gateway_ids());
    for group in 0..GROUPS {
        let client = cluster.voter_client().for_group(group);
        for &id in &ids {
            loop {
                let status = client.status(&cluster.addr(id)).await;
                if status.is_ok_and(|s| s.applied_cluster_version() >= CLUSTER_VERSION) {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "node {id} never applied cluster version {CLUSTER_VERSION} in group {group}"
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

    // A cart within one group is bought whole, as one order.
    wait_version_everywhere(&cluster).await;
    let in_group = |group: u16| {
        ids.iter()
            .filter(move |id| group_of(id, GROUPS) == group)
            .cloned()
    };
    let pair: Vec<String> = in_group(0).take(2).collect();
    let line = |product: &String, quantity: u32| Line {
        product: product.clone(),
        quantity,
    };
    let cart = first
        .checkout(vec![line(&pair[0], 1), line(&pair[1], 1)], None)
        .await
        .unwrap();
    assert_eq!(cart.order.id.group(), 0);
    assert!(cart.other_orders.is_empty());
    // Linearizable: each count below follows a write, which this gateway may not have applied.
    let stock = |id: String| {
        let first = &first;
        async move { first.product_linearizable(&id).await.unwrap().product.stock }
    };

    // A cart across the three groups is bought whole too: one order per group, the primary
    // group's (the lowest) first, every one with the cart's token. A retry answers the same.
    let (one, two) = (in_group(1).next().unwrap(), in_group(2).next().unwrap());
    let across = vec![line(&two, 2), line(&pair[0], 1), line(&one, 3)];
    let bought = first
        .checkout_with_key("cart-across", across.clone(), None)
        .await
        .unwrap();
    assert!(!bought.replayed);
    assert_eq!(bought.order.id.group(), 0);
    assert_eq!(bought.order.product, pair[0]);
    let groups: Vec<u16> = bought.other_orders.iter().map(|o| o.id.group()).collect();
    assert_eq!(groups, [1, 2]);
    let sold: Vec<(String, u32)> = bought
        .other_orders
        .iter()
        .map(|o| (o.product.clone(), o.quantity))
        .collect();
    assert_eq!(sold, [(one.clone(), 3), (two.clone(), 2)]);
    for order in &bought.other_orders {
        assert_eq!(order.token, bought.order.token);
        assert_eq!(order.key, format!("cart-across#g{}#c", order.id.group()));
    }
    let again = first
        .checkout_with_key("cart-across", across, None)
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.order.id, bought.order.id);
    let ids_of = |c: &flashstock_api::OrderChanged| -> Vec<OrderId> {
        c.other_orders.iter().map(|o| o.id).collect()
    };
    assert_eq!(ids_of(&again), ids_of(&bought));
    // Bought once: 8 - 1 (the cart in group 0) - 1 for pair[0], 8 - 3 and 8 - 2.
    assert_eq!(stock(pair[0].clone()).await, 6);
    assert_eq!(stock(one.clone()).await, 5);
    assert_eq!(stock(two.clone()).await, 6);
    // The second gateway reads an order of another group with the same token.
    let token = bought.order.token.clone().unwrap();
    let secondary = &bought.other_orders[1];
    let deadline = tokio::time::Instant::now() + ELECTION_WAIT;
    loop {
        match second.order(secondary.id.0, &token).await {
            Ok(seen) => {
                assert_eq!(seen.order.product, two);
                break;
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                pause_before_reading_again(&e).await
            }
            Err(e) => panic!("the other gateway never served order {}: {e}", secondary.id),
        }
    }

    // A cart across groups that one group cannot hold is refused whole: nothing is bought and
    // nothing stays held, in any group.
    let refused = first
        .checkout(vec![line(&pair[1], 1), line(&one, 50)], None)
        .await;
    match refused {
        Err(ShopError::Rejected { status, code, .. }) => {
            assert_eq!((status, code), (409, ErrorCode::InsufficientStock));
        }
        other => panic!("a cart beyond the stock was not refused: {other:?}"),
    }
    let leader_of = |group: u16| {
        let cluster = &cluster;
        async move {
            cluster
                .wait_for_group_leader_among(group, &cluster.voter_ids(), ELECTION_WAIT)
                .await
                .expect("a leader")
        }
    };
    let product_on_leader = |product: String| {
        let cluster = &cluster;
        async move {
            let group = group_of(&product, GROUPS);
            let leader = leader_of(group).await;
            let page = cluster
                .voter_client()
                .for_group(group)
                .products_with_terms(&cluster.addr(leader), None, 1000)
                .await
                .unwrap();
            page.items
                .into_iter()
                .find(|p| p.product.id == product)
                .expect("the product")
        }
    };
    let untouched = product_on_leader(pair[1].clone()).await;
    assert_eq!((untouched.product.stock, untouched.terms.held), (7, 0));

    // A cart whose gateway stopped halfway is finished by the leaders of its parts' groups,
    // from the primary part's fate. Placed here through the internal API, with a short hold:
    // one cart whose primary part was committed and whose secondary part was left held, one
    // whose primary part nobody commits.
    let voters = cluster.voter_client();
    let part = |key: &str, group: u16, primary: Option<HoldId>, product: &String, ttl_ms: u64| {
        let voters = voters.for_group(group);
        let command = Command {
            key: flashstock_api::cart::part_key(key, group),
            op: Op::HoldPart {
                lines: vec![line(product, 1)],
                customer: None,
                ttl_ms,
                token: None,
                primary,
            },
        };
        async move {
            match voters
                .write(vec![command])
                .await
                .unwrap()
                .outcomes
                .remove(0)
            {
                Outcome::Held(hold) => hold.id,
                other => panic!("a part was not held: {other:?}"),
            }
        }
    };
    let short = flashstock_api::HOLD_TTL_MS_MIN;
    let bought_primary = part("left-bought", 0, None, &pair[1], 60_000).await;
    let bought_part = part("left-bought", 1, Some(bought_primary), &one, short).await;
    let settle = Command {
        key: flashstock_api::cart::settle_key(
            &flashstock_api::cart::part_key("left-bought", 0),
            true,
        ),
        op: Op::SettlePart {
            hold: bought_primary,
            commit: true,
        },
    };
    let decided = voters.for_group(0).write(vec![settle]).await.unwrap();
    assert!(matches!(decided.outcomes[0], Outcome::Placed { .. }));
    let dropped_primary = part("left-dropped", 0, None, &pair[1], short).await;
    let dropped_part = part("left-dropped", 2, Some(dropped_primary), &two, short).await;
    let settled = |group: u16, id: HoldId| {
        let cluster = &cluster;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let leader = leader_of(group).await;
                let holds = cluster
                    .voter_client()
                    .for_group(group)
                    .all_holds(&cluster.addr(leader))
                    .await
                    .unwrap();
                let state = holds.iter().find(|h| h.id == id).expect("the part").state;
                if state != HoldState::Held {
                    return state;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "part {id} of group {group} was never settled"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert!(matches!(
        settled(1, bought_part).await,
        HoldState::Confirmed { .. }
    ));
    assert_eq!(settled(2, dropped_part).await, HoldState::Released);
    let one_now = product_on_leader(one.clone()).await;
    let two_now = product_on_leader(two.clone()).await;
    assert_eq!(
        (one_now.product.stock, one_now.terms.held),
        (4, 0),
        "{one}: the bought part is sold"
    );
    assert_eq!(
        (two_now.product.stock, two_now.terms.held),
        (6, 0),
        "{two}: the dropped part is back"
    );
    // pair[1]: 7, minus the part bought; the dropped cart's primary part expired.
    let primary_now = product_on_leader(pair[1].clone()).await;
    assert_eq!((primary_now.product.stock, primary_now.terms.held), (6, 0));

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

/// Wait until `product`'s view on `shop`'s gateway shows `(stock, held)`.
async fn wait_stock(shop: &flashstock_client::ShopClient, product: &str, wanted: (u64, u64)) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen = shop.product(product).await.unwrap().product;
        if (seen.stock, seen.held) == wanted {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{product} shows (stock, held) = {:?}, not {wanted:?}",
            (seen.stock, seen.held)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A hold whose products lie in three groups is one hold for its buyer: placed whole or not at
/// all, read whole, confirmed into one order per group, released in every group, or expired in
/// every group when its time runs out.
#[tokio::test(flavor = "multi_thread")]
async fn a_hold_across_groups_is_held_confirmed_released_and_expired_whole() {
    const TTL_MS: u64 = 6_000;
    let cluster = formed(3, 2, |config| {
        config.cluster.groups = GROUPS;
        config.checkout.hold_ttl_ms = TTL_MS;
    })
    .await;
    wait_version_everywhere(&cluster).await;
    let shop = cluster.shop_client();
    let gateways = cluster.gateway_urls();
    let second = flashstock_client::ShopClient::new(vec![gateways[1].clone()]);
    // Enough products for four in each group.
    let ids: Vec<String> = (0..24).map(|n| format!("h-{n:02}")).collect();
    for id in &ids {
        shop.create_product(&create(id, 10)).await.unwrap();
    }
    let in_group = |group: u16| -> Vec<String> {
        ids.iter()
            .filter(|id| group_of(id, GROUPS) == group)
            .cloned()
            .collect()
    };
    let (zero, one, two) = (in_group(0), in_group(1), in_group(2));
    let line = |product: &String, quantity: u32| Line {
        product: product.clone(),
        quantity,
    };

    // Placed: one hold, the primary group's id, every line; a retry gives it back.
    let lines = vec![line(&two[0], 2), line(&zero[0], 1), line(&one[0], 3)];
    let held = shop
        .hold_with_key("hold-across", lines.clone(), Some("ann"))
        .await
        .unwrap();
    assert!(!held.replayed);
    assert_eq!(OrderId(held.hold.id.0).group(), 0);
    assert_eq!(held.hold.status, flashstock_api::HoldStatus::Held);
    assert_eq!(held.hold.expires_at_ms - held.hold.held_at_ms, TTL_MS);
    let shown: Vec<(String, u32)> = held
        .hold
        .lines
        .iter()
        .map(|l| (l.product.clone(), l.quantity))
        .collect();
    assert_eq!(
        shown,
        [
            (zero[0].clone(), 1),
            (one[0].clone(), 3),
            (two[0].clone(), 2)
        ]
    );
    let again = shop
        .hold_with_key("hold-across", lines, Some("ann"))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!((again.hold.id, &again.token), (held.hold.id, &held.token));
    for (product, held_now) in [(&zero[0], 1), (&one[0], 3), (&two[0], 2)] {
        wait_stock(&shop, product, (10 - held_now, held_now)).await;
    }

    // Read whole from the other gateway; a wrong token reads nothing.
    let id = held.hold.id.0;
    let deadline = tokio::time::Instant::now() + ELECTION_WAIT;
    let view = loop {
        match second.hold_status(id, &held.token).await {
            Ok(view) if view.hold.lines.len() == 3 => break view,
            Ok(_) | Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("the other gateway never showed the whole hold: {other:?}"),
        }
    };
    assert_eq!(view.hold.lines, held.hold.lines);
    assert!(matches!(
        second.hold_status(id, &"0".repeat(32)).await,
        Err(ShopError::Rejected { status: 404, .. })
    ));

    // Confirmed: one order per group, all with the hold's token, stock sold in each; the
    // primary group's order carries the confirmation's key. A retry of the confirmation gets
    // the same orders back; another confirmation, or a release, is refused as for a hold of
    // one group.
    // A confirmation may not be keyed like a cart's own commands: refused, nothing decided.
    match second
        .confirm_hold_with_key("pay-across#g1#c", id, &held.token)
        .await
    {
        Err(ShopError::Rejected { status, code, .. }) => {
            assert_eq!((status, code), (400, ErrorCode::InvalidRequest))
        }
        other => panic!("a confirmation keyed like a part was taken: {other:?}"),
    }
    let paid = second
        .confirm_hold_with_key("pay-across", id, &held.token)
        .await
        .unwrap();
    assert!(!paid.replayed);
    assert_eq!(paid.order.key, "pay-across");
    assert_eq!(paid.order.id.group(), 0);
    assert_eq!(paid.order.product, zero[0]);
    let others: Vec<(u16, String, u32)> = paid
        .other_orders
        .iter()
        .map(|o| (o.id.group(), o.product.clone(), o.quantity))
        .collect();
    assert_eq!(others, [(1, one[0].clone(), 3), (2, two[0].clone(), 2)]);
    assert!(paid
        .other_orders
        .iter()
        .all(|o| o.token.as_deref() == Some(held.token.as_str())));
    let paid_again = shop
        .confirm_hold_with_key("pay-across", id, &held.token)
        .await
        .unwrap();
    assert!(paid_again.replayed);
    assert_eq!(paid_again.order.id, paid.order.id);
    let again_ids: Vec<OrderId> = paid_again.other_orders.iter().map(|o| o.id).collect();
    let paid_ids: Vec<OrderId> = paid.other_orders.iter().map(|o| o.id).collect();
    assert_eq!(again_ids, paid_ids);
    match shop.confirm_hold(id, &held.token).await {
        Err(ShopError::Rejected { status, code, .. }) => {
            assert_eq!((status, code), (409, ErrorCode::HoldFinished))
        }
        other => panic!("a confirmed hold was confirmed again: {other:?}"),
    }
    match shop.release_hold(id, &held.token).await {
        Err(ShopError::Rejected { status, code, .. }) => {
            assert_eq!((status, code), (409, ErrorCode::HoldFinished))
        }
        other => panic!("a confirmed hold was released: {other:?}"),
    }
    for (product, bought) in [(&zero[0], 1), (&one[0], 3), (&two[0], 2)] {
        wait_stock(&shop, product, (10 - bought, 0)).await;
    }
    let confirmed = shop.hold_status(id, &held.token).await.unwrap().hold;
    assert_eq!(confirmed.status, flashstock_api::HoldStatus::Confirmed);
    assert_eq!(confirmed.order, Some(paid.order.id));
    let other_ids: Vec<OrderId> = paid.other_orders.iter().map(|o| o.id).collect();
    assert_eq!(confirmed.other_orders, other_ids);

    // Released: the stock is back in every group, and it cannot be confirmed any more.
    let lines = vec![line(&zero[1], 2), line(&two[1], 2)];
    let held = shop.hold(lines, None).await.unwrap();
    wait_stock(&shop, &two[1], (8, 2)).await;
    let released = shop
        .release_hold(held.hold.id.0, &held.token)
        .await
        .unwrap();
    assert_eq!(released.hold.status, flashstock_api::HoldStatus::Released);
    assert_eq!(released.hold.lines.len(), 2);
    wait_stock(&shop, &zero[1], (10, 0)).await;
    wait_stock(&shop, &two[1], (10, 0)).await;
    match shop.confirm_hold(held.hold.id.0, &held.token).await {
        Err(ShopError::Rejected { status, code, .. }) => {
            assert_eq!((status, code), (409, ErrorCode::HoldFinished))
        }
        other => panic!("a released hold was confirmed: {other:?}"),
    }

    // Refused whole when one group cannot hold its line: nothing stays held anywhere.
    let beyond = vec![line(&zero[2], 1), line(&one[1], 50)];
    match shop.hold(beyond, None).await {
        Err(ShopError::Rejected { status, code, .. }) => {
            assert_eq!((status, code), (409, ErrorCode::InsufficientStock))
        }
        other => panic!("a hold beyond the stock was placed: {other:?}"),
    }
    wait_stock(&shop, &zero[2], (10, 0)).await;
    wait_stock(&shop, &one[1], (10, 0)).await;

    // Left alone, it expires in every group: the primary part by its group's clock, the
    // others by their leaders, which read that decision.
    let lines = vec![line(&zero[3], 1), line(&one[2], 1), line(&two[2], 1)];
    let held = shop.hold(lines, None).await.unwrap();
    wait_stock(&shop, &two[2], (9, 1)).await;
    for product in [&zero[3], &one[2], &two[2]] {
        wait_stock(&shop, product, (10, 0)).await;
    }
    let expired = shop
        .hold_status(held.hold.id.0, &held.token)
        .await
        .unwrap()
        .hold;
    assert_eq!(expired.status, flashstock_api::HoldStatus::Expired);
    match shop.confirm_hold(held.hold.id.0, &held.token).await {
        Err(ShopError::Rejected { status, code, .. }) => {
            assert_eq!((status, code), (409, ErrorCode::HoldExpired))
        }
        other => panic!("an expired hold was confirmed: {other:?}"),
    }
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

/// One order of a cart: its group and its lines.
type GroupOrder = (u16, Vec<(String, u32)>);

/// What a buyer of [`carts_across_groups_are_never_half_bought_when_their_gateway_dies`] was
/// told about one cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Told {
    Bought,
    /// A definite refusal: nothing applied.
    Refused,
    /// Unavailable (definitely not applied) or outcome unknown.
    Cut,
}

/// Carts across the three groups, bought at once by many buyers through one gateway that is
/// killed while they buy, with carts in every phase of their commit: each cart ends bought in
/// every group or in none, whatever its buyer was told; a cart told bought is bought, one told
/// refused is not; and once the leaders have settled what the dead gateway left, no stock is
/// held and every product's sold count is its orders' lines, on every voter.
#[tokio::test(flavor = "multi_thread")]
async fn carts_across_groups_are_never_half_bought_when_their_gateway_dies() {
    let mut cluster = formed(3, 2, |config| {
        config.cluster.groups = GROUPS;
        config.checkout.cart_decision_ms = 2_000;
    })
    .await;
    wait_version_everywhere(&cluster).await;
    const STOCK: u64 = 10_000;
    let ids = products();
    let shop = cluster.shop_client();
    for id in &ids {
        shop.create_product(&create(id, STOCK)).await.unwrap();
    }
    let by_group: Vec<Vec<String>> = (0..GROUPS)
        .map(|g| {
            ids.iter()
                .filter(|id| group_of(id, GROUPS) == g)
                .cloned()
                .collect()
        })
        .collect();

    // Buyers on the first gateway only: when it dies, their carts die with it.
    let doomed = cluster.gateway_ids()[0];
    let url = cluster.public_url(doomed);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut buyers = Vec::new();
    for buyer in 0..24usize {
        let client = flashstock_client::ShopClient::new(vec![url.clone()]);
        let by_group = by_group.clone();
        let stop = stop.clone();
        buyers.push(tokio::spawn(async move {
            let mut told = Vec::new();
            for n in 0usize.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let key = format!("buyer{buyer}-{n}");
                let lines: Vec<Line> = by_group
                    .iter()
                    .enumerate()
                    .map(|(g, products)| Line {
                        product: products[(buyer + n + g) % products.len()].clone(),
                        quantity: 1 + ((buyer + n) % 2) as u32,
                    })
                    .collect();
                let answer = client.checkout_with_key(&key, lines.clone(), None).await;
                let gone = answer.is_err() && !matches!(answer, Err(ShopError::Rejected { .. }));
                told.push((
                    key,
                    lines,
                    match answer {
                        Ok(_) => Told::Bought,
                        Err(ShopError::Rejected { .. }) => Told::Refused,
                        Err(_) => Told::Cut,
                    },
                ));
                if gone {
                    break;
                }
            }
            told
        }));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    cluster.kill(doomed).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut told = Vec::new();
    for buyer in buyers {
        told.extend(buyer.await.unwrap());
    }
    let count = |what: Told| told.iter().filter(|(_, _, t)| *t == what).count();
    eprintln!(
        "carts: {} bought, {} refused, {} cut by the killed gateway",
        count(Told::Bought),
        count(Told::Refused),
        count(Told::Cut)
    );
    assert!(
        count(Told::Bought) > 0,
        "some carts were bought before the kill"
    );

    // The leaders settle what the dead gateway left: wait until no part is held anywhere.
    let voters = cluster.voter_ids();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut first_poll = true;
    loop {
        let mut held = 0;
        for group in 0..GROUPS {
            let client = cluster.voter_client().for_group(group);
            for &voter in &voters {
                let holds = client.all_holds(&cluster.addr(voter)).await.unwrap();
                held += holds.iter().filter(|h| h.state == HoldState::Held).count();
            }
        }
        if first_poll {
            eprintln!("parts held right after the kill, over every voter: {held}");
            first_poll = false;
        }
        if held == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{held} parts of carts are still held 30 s after the gateway died"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let settled_by_leaders: usize = voters
        .iter()
        .map(|&voter| {
            cluster
                .log_tail(voter)
                .matches("settled parts of carts their gateway left")
                .count()
        })
        .sum();
    eprintln!("entries of parts settled by the leaders: {settled_by_leaders}");
    for group in 0..GROUPS {
        let leader = cluster
            .wait_for_group_leader_among(group, &voters, ELECTION_WAIT)
            .await
            .unwrap();
        let index = cluster
            .voter_client()
            .for_group(group)
            .status(&cluster.addr(leader))
            .await
            .unwrap()
            .applied_index
            .unwrap_or(0);
        for &voter in &voters {
            cluster
                .wait_applied_in(group, voter, index, ELECTION_WAIT)
                .await
                .unwrap();
        }
    }

    for &voter in &voters {
        // Every group's orders on this voter, by cart.
        let mut carts: std::collections::BTreeMap<String, Vec<GroupOrder>> = Default::default();
        let mut sold: std::collections::BTreeMap<String, u64> = Default::default();
        let mut products = Vec::new();
        for group in 0..GROUPS {
            let client = cluster.voter_client().for_group(group);
            let addr = cluster.addr(voter);
            for order in client.all_orders_with_terms(&addr).await.unwrap() {
                let lines: Vec<(String, u32)> = order
                    .lines()
                    .into_iter()
                    .map(|l| (l.product, l.quantity))
                    .collect();
                for (product, quantity) in &lines {
                    *sold.entry(product.clone()).or_default() += u64::from(*quantity);
                }
                let (cart, in_group) = flashstock_api::cart::cart_of_order_key(&order.order.key)
                    .expect("every order here is a cart's");
                assert_eq!(in_group, group, "order {} of {cart}", order.order.id);
                carts
                    .entry(cart.to_owned())
                    .or_default()
                    .push((group, lines));
            }
            products.extend(
                client
                    .products_with_terms(&addr, None, 100)
                    .await
                    .unwrap()
                    .items,
            );
        }
        for (key, lines, what) in &told {
            let orders = carts.remove(key).unwrap_or_default();
            let expected: Vec<GroupOrder> = lines
                .iter()
                .map(|l| {
                    (
                        group_of(&l.product, GROUPS),
                        vec![(l.product.clone(), l.quantity)],
                    )
                })
                .collect();
            match (what, orders.is_empty()) {
                (_, false) => assert_eq!(
                    orders, expected,
                    "voter {voter}: cart {key} ({what:?}) is bought in part"
                ),
                (Told::Bought, true) => panic!("voter {voter}: cart {key} was told bought, is not"),
                (Told::Refused | Told::Cut, true) => {}
            }
            if *what == Told::Refused {
                assert!(
                    orders.is_empty(),
                    "voter {voter}: refused cart {key} bought"
                );
            }
        }
        assert!(
            carts.is_empty(),
            "voter {voter}: carts nobody sent: {carts:?}"
        );
        for product in products {
            let id = &product.product.id;
            assert_eq!(
                product.terms.held, 0,
                "voter {voter}: {id} still has stock held"
            );
            assert_eq!(
                product.product.sold,
                sold.get(id).copied().unwrap_or(0),
                "voter {voter}: {id}: sold is not its orders' lines"
            );
            assert_eq!(product.product.stock + product.product.sold, STOCK);
        }
    }
}
