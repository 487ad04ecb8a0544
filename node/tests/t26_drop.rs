//! A limited drop bought by 2 000 buyers at once, against real node processes on loopback: 100
//! items, a limit of 2 per customer, and 1 500 customers (500 of them with two buyers, as a
//! household or a bot with two browsers would be). Every buyer holds 1 or 2 items at the same
//! moment; then most confirm, some release and some walk away, so their holds expire.
//!
//! What must hold, read back from the cluster itself:
//! - at the peak, exactly the 100 items are held and none is left or sold;
//! - no customer ever holds or buys more than 2, whichever of its buyers asked;
//! - a customer with 2 bought is refused a third (`limit_reached`), nothing changed;
//! - released and expired holds come back to available (the idle cluster expires them), and a
//!   second wave of buyers sells them again: in the end exactly 100 sold, 0 held, 0 left, and
//!   every node agrees.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use flashstock_api::{CreateProductRequest, ErrorCode, Line, ProductDetails};
use flashstock_client::{new_key, ShopClient, ShopError};
use tokio::sync::Barrier;

const ITEMS: u64 = 100;
const LIMIT: u32 = 2;
const BUYERS: usize = 2_000;
/// Buyer `i` is customer `i % CUSTOMERS`: buyers 1 500 to 1 999 share a customer with buyers 0
/// to 499.
const CUSTOMERS: usize = 1_500;
const HOLD_TTL_MS: u64 = 4_000;
/// The longest one buyer keeps asking with one key while the outcome is unknown or the cluster
/// is too busy to take it.
const BUYER_PATIENCE: Duration = Duration::from_secs(60);

fn customer(buyer: usize) -> String {
    format!("customer-{}", buyer % CUSTOMERS)
}

/// What a buyer does with its hold: confirm (paid), release (payment failed) or nothing (walked
/// away; the hold expires).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Confirm,
    Release,
    Abandon,
}

fn then(buyer: usize) -> Then {
    match buyer % 10 {
        0 => Then::Release,
        1 | 2 => Then::Abandon,
        _ => Then::Confirm,
    }
}

/// Send `write` with one key until the answer is definite: the client library already retries
/// an unknown outcome with the key; this goes on while the cluster is too busy to answer or the
/// outcome stays unknown, within [`BUYER_PATIENCE`].
async fn definite<T, F, Fut>(mut write: F) -> Result<T, ShopError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ShopError>>,
{
    let deadline = tokio::time::Instant::now() + BUYER_PATIENCE;
    loop {
        let answer = write().await;
        let retry = match &answer {
            Err(ShopError::OutcomeUnknown { .. } | ShopError::Unavailable { .. }) => true,
            Err(ShopError::Rejected { code, .. }) => {
                matches!(code, ErrorCode::RateLimited | ErrorCode::Overloaded)
            }
            Ok(_) => false,
        };
        if !retry || tokio::time::Instant::now() >= deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a buyer of the first wave ended with.
#[derive(Debug, Default)]
struct Wave {
    /// Quantity held per customer at the peak, from the holds granted.
    held_by: BTreeMap<String, u32>,
    /// Holds granted: (buyer, id, token, quantity).
    holds: Vec<(usize, u64, String, u32)>,
    /// Refusals by code.
    refused: BTreeMap<String, usize>,
}

async fn product(shop: &ShopClient) -> ProductDetails {
    let view = shop
        .product_linearizable("drop")
        .await
        .expect("read the drop");
    assert!(view.product.is_conserved(), "{:?}", view.product);
    view.product
}

/// Buyers `buyers` each buy up to `LIMIT` with a plain purchase (a second wave), until nothing is
/// left; returns the units each customer bought.
async fn second_wave(
    shop: &Arc<ShopClient>,
    buyers: std::ops::Range<usize>,
) -> BTreeMap<String, u32> {
    let mut tasks = tokio::task::JoinSet::new();
    for buyer in buyers {
        let shop = shop.clone();
        tasks.spawn(async move {
            let who = customer(buyer);
            let key = new_key();
            let answer = definite(|| shop.purchase_as_with_key(&key, "drop", 1, Some(&who))).await;
            (who, answer)
        });
    }
    let mut bought = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (who, answer) = done.expect("a buyer task");
        match answer {
            Ok(response) => *bought.entry(who).or_default() += response.order.quantity,
            Err(ShopError::Rejected {
                code: ErrorCode::InsufficientStock | ErrorCode::LimitReached,
                ..
            }) => {}
            Err(e) => panic!("{who}: an answer that is neither an order nor a refusal: {e}"),
        }
    }
    bought
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_buyers_never_take_a_customer_past_its_limit_and_expired_holds_sell_again() {
    // One connection per buyer, where a common soft default is 1 024 descriptors.
    flashstock_host::limits::raise_open_files_limit().expect("read the open-files limit");
    let cluster = formed(3, 3, |config| config.checkout.hold_ttl_ms = HOLD_TTL_MS).await;
    wait_cluster_version(&cluster, 2, ELECTION_WAIT).await;
    let shop = Arc::new(cluster.shop_client());
    shop.create_product(&CreateProductRequest {
        id: "drop".into(),
        name: "Limited drop".into(),
        price_cents: 19_900,
        stock: ITEMS,
        limit_per_customer: Some(LIMIT),
    })
    .await
    .expect("create the drop");

    // Wave 1: every buyer holds 1 or 2 at the same moment.
    let start = Arc::new(Barrier::new(BUYERS));
    let mut tasks = tokio::task::JoinSet::new();
    for buyer in 0..BUYERS {
        let shop = shop.clone();
        let start = start.clone();
        tasks.spawn(async move {
            let quantity = 1 + (buyer % 2) as u32;
            let lines = vec![Line {
                product: "drop".into(),
                quantity,
            }];
            let who = customer(buyer);
            let key = new_key();
            start.wait().await;
            let answer = definite(|| shop.hold_with_key(&key, lines.clone(), Some(&who))).await;
            (buyer, quantity, answer)
        });
    }
    let mut wave = Wave::default();
    while let Some(done) = tasks.join_next().await {
        let (buyer, quantity, answer) = done.expect("a buyer task");
        match answer {
            Ok(held) => {
                *wave.held_by.entry(customer(buyer)).or_default() += quantity;
                wave.holds
                    .push((buyer, held.hold.id.0, held.token, quantity));
            }
            Err(ShopError::Rejected { code, .. }) => {
                *wave.refused.entry(code.to_string()).or_default() += 1
            }
            Err(e) => panic!("buyer {buyer}: no definite answer to its hold: {e}"),
        }
    }
    let peak = product(&shop).await;
    println!(
        "wave 1: {} holds granted, refusals {:?}; product {peak:?}",
        wave.holds.len(),
        wave.refused
    );
    assert_eq!(
        (peak.stock, peak.held, peak.sold),
        (0, ITEMS, 0),
        "at the peak every item is held, none left or sold"
    );
    let granted: u32 = wave.holds.iter().map(|h| h.3).sum();
    assert_eq!(
        u64::from(granted),
        ITEMS,
        "the holds granted add up to the drop"
    );
    for (who, held) in &wave.held_by {
        assert!(
            *held <= LIMIT,
            "{who} holds {held}, past the limit of {LIMIT}"
        );
    }

    // Most pay, some fail to, some walk away.
    let mut tasks = tokio::task::JoinSet::new();
    for (buyer, id, token, quantity) in wave.holds.clone() {
        let shop = shop.clone();
        tasks.spawn(async move {
            let key = new_key();
            match then(buyer) {
                Then::Confirm => {
                    definite(|| shop.confirm_hold_with_key(&key, id, &token))
                        .await
                        .unwrap_or_else(|e| panic!("confirm hold {id}: {e}"));
                    (Then::Confirm, quantity)
                }
                Then::Release => {
                    definite(|| shop.release_hold_with_key(&key, id, &token))
                        .await
                        .unwrap_or_else(|e| panic!("release hold {id}: {e}"));
                    (Then::Release, quantity)
                }
                Then::Abandon => (Then::Abandon, quantity),
            }
        });
    }
    let mut units: BTreeMap<&'static str, u64> = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (then, quantity) = done.expect("a payer task");
        let name = match then {
            Then::Confirm => "confirmed",
            Then::Release => "released",
            Then::Abandon => "abandoned",
        };
        *units.entry(name).or_default() += u64::from(quantity);
    }
    println!("after payment: units {units:?}");
    let confirmed = units.get("confirmed").copied().unwrap_or(0);
    let abandoned = units.get("abandoned").copied().unwrap_or(0);
    assert!(abandoned > 0, "some holds are left to expire");

    // The abandoned holds expire on an idle cluster: the leader's tick proposes their expiry.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(HOLD_TTL_MS) * 5;
    let expired = loop {
        let now = product(&shop).await;
        if now.held == 0 {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "holds still held long past their time to live: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        expired.sold, confirmed,
        "only confirmed holds became orders"
    );
    assert_eq!(
        expired.stock,
        ITEMS - confirmed,
        "released and expired holds are available again"
    );

    // A customer that bought 2 is refused a third, and nothing changes.
    let full = wave
        .holds
        .iter()
        .filter(|h| then(h.0) == Then::Confirm)
        .map(|h| customer(h.0))
        .find(|who| wave.held_by[who] == LIMIT)
        .expect("some customer confirmed 2");
    match shop
        .purchase_as_with_key(&new_key(), "drop", 1, Some(&full))
        .await
    {
        Err(ShopError::Rejected { code, .. }) => assert_eq!(code, ErrorCode::LimitReached),
        other => panic!("{full} bought past its limit: {other:?}"),
    }
    assert_eq!(product(&shop).await, expired, "the refusal changed nothing");

    // Wave 2: every buyer tries once more; what came back sells out again.
    let bought = second_wave(&shop, 0..BUYERS).await;
    let end = product(&shop).await;
    println!("wave 2: {} customers bought; product {end:?}", bought.len());
    assert_eq!(
        (end.stock, end.held, end.sold),
        (0, 0, ITEMS),
        "what expired or was released sold again"
    );

    // The cluster's own orders: no customer past the limit, on every node alike.
    let client = cluster.voter_client();
    let mut per_node = Vec::new();
    let mut ids = cluster.voter_ids();
    ids.extend(cluster.gateway_ids());
    wait_applied_everywhere(&cluster).await;
    for id in ids {
        let orders = client
            .all_orders(&cluster.addr(id))
            .await
            .unwrap_or_else(|e| panic!("orders of node {id}: {e}"));
        let mut by_customer: BTreeMap<String, u32> = BTreeMap::new();
        let mut sold = 0u64;
        for order in &orders {
            let who = order
                .customer
                .clone()
                .expect("every order names its customer");
            *by_customer.entry(who).or_default() += order.quantity;
            sold += u64::from(order.quantity);
        }
        assert_eq!(sold, ITEMS, "node {id}: its orders add up to the drop");
        for (who, units) in &by_customer {
            assert!(
                *units <= LIMIT,
                "node {id}: {who} bought {units}, past the limit"
            );
        }
        per_node.push((id, orders));
    }
    for (id, orders) in &per_node[1..] {
        assert_eq!(
            orders, &per_node[0].1,
            "node {id} and node {} hold different orders",
            per_node[0].0
        );
    }
}

/// Wait until every node has applied what the leader has.
async fn wait_applied_everywhere(cluster: &flashstock_deploy::local::LocalCluster) {
    let client = cluster.voter_client();
    let leader = cluster
        .wait_for_leader(ELECTION_WAIT)
        .await
        .expect("a leader");
    let target = client
        .status(&cluster.addr(leader))
        .await
        .expect("the leader's status")
        .applied_index
        .unwrap_or(0);
    let mut ids = cluster.voter_ids();
    ids.extend(cluster.gateway_ids());
    let deadline = tokio::time::Instant::now() + ELECTION_WAIT;
    for id in ids {
        loop {
            let applied = client
                .status(&cluster.addr(id))
                .await
                .ok()
                .and_then(|s| s.applied_index)
                .unwrap_or(0);
            if applied >= target {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {id} has applied {applied}, not {target}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
