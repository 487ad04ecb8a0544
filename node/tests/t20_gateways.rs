//! Six real processes (three voters, three gateways) driven through the public API and the
//! client library: replicas agree, purchases on every gateway sell exactly the stock, retries
//! return the first order, and a killed gateway or leader loses nothing confirmed.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use flashstock_api::{ErrorCode, Order, OrderId, StockEvent};
use flashstock_client::{ShopClient, ShopError};
use flashstock_deploy::local::LocalCluster;
use tokio::task::JoinSet;

/// A client of one gateway only.
fn gateway_client(cluster: &LocalCluster, id: u64) -> ShopClient {
    ShopClient::new(vec![cluster.public_url(id)])
}

/// Poll a gateway's local view until it shows at least `index` applied.
async fn view_at_least(client: &ShopClient, id: &str, index: u64) -> flashstock_api::ProductView {
    let deadline = Instant::now() + ELECTION_WAIT;
    loop {
        let view = client.product(id).await.expect("read a product");
        if view.applied_index >= index {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "replica stuck at {}",
            view.applied_index
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateways_serve_views_that_agree_with_the_leader() {
    let cluster = six_nodes(|_| {}).await;
    let shop = cluster.shop_client();
    shop.create_product(&product("lamp", 40))
        .await
        .expect("create");
    let mut last = 0;
    for _ in 0..5 {
        last = shop
            .purchase("lamp", 2)
            .await
            .expect("buy")
            .order
            .id
            .log_index();
    }
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await.unwrap();
    let at_leader = cluster
        .voter_client()
        .product(&cluster.addr(leader), "lamp")
        .await
        .unwrap()
        .items
        .remove(0);
    for id in cluster.gateway_ids() {
        let client = gateway_client(&cluster, id);
        // A linearizable read waits for what the leader committed.
        let linear = client
            .product_linearizable("lamp")
            .await
            .expect("linearizable read");
        assert!(linear.applied_index >= last);
        assert_eq!(linear.product, at_leader.clone().into(), "gateway {id}");
        // A local read catches up on its own, within a bounded lag.
        let local = view_at_least(&client, "lamp", last).await;
        assert_eq!(local.product.stock, 30, "gateway {id}");
        let page = client.products(None, 10).await.expect("list");
        assert_eq!(page.products.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buyers_on_all_gateways_sell_exactly_the_stock() {
    const STOCK: u64 = 120;
    const BUYERS: usize = 300;
    let cluster = six_nodes(|_| {}).await;
    cluster
        .shop_client()
        .create_product(&product("drop", STOCK))
        .await
        .unwrap();
    let gateways = cluster.gateway_ids();
    let mut buyers = JoinSet::new();
    for i in 0..BUYERS {
        let client = gateway_client(&cluster, gateways[i % gateways.len()]);
        buyers.spawn(async move { client.purchase("drop", 1).await });
    }
    let mut confirmed: BTreeMap<OrderId, Order> = BTreeMap::new();
    let mut sold_out = 0;
    while let Some(result) = buyers.join_next().await {
        match result.unwrap() {
            Ok(bought) => {
                assert!(!bought.replayed);
                confirmed.insert(bought.order.id, bought.order);
            }
            Err(ShopError::Rejected { code, status, .. }) => {
                assert_eq!((status, code.as_str()), (409, "insufficient_stock"));
                sold_out += 1;
            }
            Err(other) => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(confirmed.len() as u64, STOCK);
    assert_eq!(sold_out, BUYERS - STOCK as usize);
    let last = confirmed.keys().map(|id| id.log_index()).max().unwrap();
    for id in gateways {
        let view = view_at_least(&gateway_client(&cluster, id), "drop", last).await;
        assert_eq!((view.product.stock, view.product.sold), (0, STOCK));
        // Every confirmed order is readable on every gateway.
        for order in confirmed.values().step_by(17) {
            let token = order
                .token
                .as_deref()
                .expect("a public purchase has a token");
            let seen = gateway_client(&cluster, id)
                .order(order.id.0, token)
                .await
                .unwrap();
            assert_eq!(seen.order, order.clone().into());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_with_the_same_key_returns_the_same_order() {
    let cluster = six_nodes(|_| {}).await;
    let shop = cluster.shop_client();
    shop.create_product(&product("kettle", 10)).await.unwrap();
    let first = shop
        .purchase_with_key("order-42", "kettle", 3)
        .await
        .unwrap();
    assert!(!first.replayed);
    // Through another gateway: the same order, marked as a replay, and stock taken once.
    for id in cluster.gateway_ids() {
        let again = gateway_client(&cluster, id)
            .purchase_with_key("order-42", "kettle", 3)
            .await
            .unwrap();
        assert_eq!(again.order, first.order);
        assert!(again.replayed);
    }
    let view = shop.product_linearizable("kettle").await.unwrap();
    assert_eq!(view.product.stock, 7);
    // The same key with another body is refused, and changes nothing.
    let reused = shop
        .purchase_with_key("order-42", "kettle", 1)
        .await
        .unwrap_err();
    assert_eq!(reused.code(), ErrorCode::IdempotencyKeyReused);
    assert_eq!(
        shop.product_linearizable("kettle")
            .await
            .unwrap()
            .product
            .stock,
        7
    );
}

/// Buyers keep buying while one gateway, then the leader, is SIGKILLed. Every confirmed order
/// survives; the client fails over; purchases resume under the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_gateway_or_leader_loses_nothing_confirmed() {
    const BUYERS: usize = 30;
    const EACH: usize = 30;
    let mut cluster = six_nodes(|_| {}).await;
    cluster
        .shop_client()
        .create_product(&product("book", 1_000_000))
        .await
        .unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut buyers = JoinSet::new();
    for i in 0..BUYERS {
        let mut urls: Vec<String> = cluster.gateway_urls();
        urls.rotate_left(i % 3);
        let client = ShopClient::new(urls).with_retry(flashstock_client::RetryPolicy {
            attempts: 60,
            ..Default::default()
        });
        let done = done.clone();
        buyers.spawn(async move {
            let mut orders = Vec::new();
            for j in 0..EACH {
                let key = format!("b{i}-{j}");
                // Retried with the same key until the outcome is known, backing off, for as
                // long as a failover may take.
                let deadline = Instant::now() + ELECTION_WAIT;
                let mut backoff = Duration::from_millis(10);
                let mut result = client.purchase_with_key(&key, "book", 1).await;
                while let Err(ShopError::OutcomeUnknown { .. }) = result {
                    assert!(
                        Instant::now() < deadline,
                        "{key}: outcome still unknown after {ELECTION_WAIT:?}: {result:?}"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                    result = client.purchase_with_key(&key, "book", 1).await;
                }
                orders.push((key, result.expect("a purchase in stock is confirmed").order));
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            orders
        });
    }
    let total = BUYERS * EACH;
    let wait_for = |fraction: usize| {
        let done = done.clone();
        async move {
            let deadline = Instant::now() + ELECTION_WAIT;
            loop {
                let now_done = done.load(std::sync::atomic::Ordering::Relaxed);
                if now_done >= total * fraction / 4 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "purchases stalled: {now_done} of {total} confirmed after {ELECTION_WAIT:?}, \
                     waiting for {fraction}/4 of them"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for(1).await;
    let gateway = cluster.gateway_ids()[0];
    cluster.kill(gateway).unwrap();
    wait_for(2).await;
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await.unwrap();
    cluster.kill(leader).unwrap();
    let mut confirmed = BTreeMap::new();
    while let Some(orders) = buyers.join_next().await {
        for (key, order) in orders.unwrap() {
            assert_eq!(order.key, key);
            assert!(
                confirmed.insert(order.id, order).is_none(),
                "one order per key"
            );
        }
    }
    assert_eq!(confirmed.len(), total);
    let new_leader = cluster.wait_for_leader(ELECTION_WAIT).await.unwrap();
    assert_ne!(new_leader, leader);

    // Bring both back; every replica holds exactly the confirmed orders.
    cluster.start(leader).await.unwrap();
    cluster.start(gateway).await.unwrap();
    let last = confirmed.keys().map(|id| id.log_index()).max().unwrap();
    let voters = cluster.voter_client();
    for id in cluster.nodes.keys().copied().collect::<Vec<_>>() {
        cluster.wait_applied(id, last, ELECTION_WAIT).await.unwrap();
        let orders = voters.all_orders(&cluster.addr(id)).await.unwrap();
        let held: BTreeMap<OrderId, Order> = orders.into_iter().map(|o| (o.id, o)).collect();
        assert_eq!(
            held, confirmed,
            "node {id} holds exactly the confirmed orders"
        );
        let product = voters
            .product(&cluster.addr(id), "book")
            .await
            .unwrap()
            .items
            .remove(0);
        assert_eq!(product.sold, total as u64, "node {id}");
        assert!(product.is_conserved());
    }
}

async fn shop_wait_known(client: &ShopClient, id: &str) {
    let deadline = Instant::now() + ELECTION_WAIT;
    while client.product(id).await.is_err() {
        assert!(Instant::now() < deadline, "{id} never reached the replica");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stock_stream_pushes_changes() {
    let cluster = six_nodes(|_| {}).await;
    let shop = cluster.shop_client();
    let created = shop.create_product(&product("cap", 5)).await.unwrap();
    assert!(!created.replayed);
    let gateway = cluster.gateway_ids()[1];
    // The stream answers from this gateway's replica: wait until it knows the product.
    shop_wait_known(&gateway_client(&cluster, gateway), "cap").await;
    let url = format!("{}/v1/stream?product=cap", cluster.public_url(gateway));
    let mut response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut events = Vec::new();
    let mut buffer = String::new();
    let mut bought = false;
    while events.len() < 2 {
        let chunk = tokio::time::timeout(ELECTION_WAIT, response.chunk())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                events.push(serde_json::from_str::<StockEvent>(data).unwrap());
            }
        }
        if !events.is_empty() && !bought {
            // The first event is the current state; now change it.
            bought = true;
            shop.purchase("cap", 2).await.unwrap();
        }
    }
    assert_eq!((events[0].product.as_str(), events[0].stock), ("cap", 5));
    assert_eq!((events[1].stock, events[1].sold), (3, 2));
    assert!(events[1].log_index > events[0].log_index);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_exposes_metrics() {
    let cluster = six_nodes(|_| {}).await;
    cluster
        .shop_client()
        .create_product(&product("pen", 3))
        .await
        .unwrap();
    cluster.shop_client().purchase("pen", 1).await.unwrap();
    for id in cluster.nodes.keys() {
        let text = reqwest::get(format!("http://{}/metrics", cluster.addr(*id)))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for name in [
            "flashstock_raft_term",
            "flashstock_raft_applied_index",
            "flashstock_http_requests_total",
        ] {
            assert!(text.contains(name), "node {id} lacks {name}");
        }
    }
    let gateway = cluster.gateway_ids()[0];
    let text = reqwest::get(format!("http://{}/metrics", cluster.addr(gateway)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("flashstock_gateway_batch_commands"));

    // The purchase's stages were timed where they ran: its gateway queued and forwarded it
    // (the shop client starts at the first gateway), and every voter appended and applied it.
    let count = |text: &str, stage: &str| -> u64 {
        let series = "flashstock_stage_duration_seconds_count{";
        text.lines()
            .filter(|line| line.starts_with(series) && line.contains(&format!("stage=\"{stage}\"")))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    for stage in ["gateway_queue", "gateway_forward"] {
        assert!(count(&text, stage) >= 1, "gateway {gateway}: no {stage}");
    }
    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    for id in cluster.voter_ids() {
        let text = reqwest::get(format!("http://{}/metrics", cluster.addr(id)))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for stage in ["log_append", "apply"] {
            assert!(count(&text, stage) >= 1, "voter {id}: no {stage}");
        }
        let leading = ["leader_propose", "append_rpc"].map(|stage| count(&text, stage) >= 1);
        assert_eq!(leading, [id == leader; 2], "voter {id}, leader {leader}");
    }
}
