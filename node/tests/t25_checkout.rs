//! Checkout through the public API, against real node processes on loopback: holds that keep
//! stock while the buyer pays and end confirmed, released or expired (on an idle cluster too),
//! carts bought all or nothing, limits per customer across purchases and holds, cancellations
//! that give the stock back once. Every refusal has its status, stable code and a message.

mod common;

use std::time::Duration;

use common::*;
use flashstock_api::{
    CreateProductRequest, ErrorBody, ErrorCode, HoldState, HoldStatus, Line, OrderStatus,
    ProductDetails,
};
use flashstock_client::{ShopClient, ShopError};
use flashstock_deploy::local::LocalCluster;
use reqwest::StatusCode;

fn line(product: &str, quantity: u32) -> Line {
    Line {
        product: product.into(),
        quantity,
    }
}

async fn create(shop: &ShopClient, id: &str, stock: u64) {
    shop.create_product(&CreateProductRequest {
        id: id.into(),
        name: format!("Product {id}"),
        price_cents: 1000,
        stock,
        limit_per_customer: None,
    })
    .await
    .unwrap_or_else(|e| panic!("create {id}: {e}"));
}

/// The product as the leader has it (a linearizable read).
async fn product(shop: &ShopClient, id: &str) -> ProductDetails {
    let view = shop.product_linearizable(id).await.expect("read a product");
    assert!(view.product.is_conserved(), "{:?}", view.product);
    view.product
}

/// `(stock, held, sold)` of a product.
async fn counters(shop: &ShopClient, id: &str) -> (u64, u64, u64) {
    let p = product(shop, id).await;
    (p.stock, p.held, p.sold)
}

/// A refusal's status and code; its message must say something.
fn refusal<T: std::fmt::Debug>(answer: Result<T, ShopError>) -> (u16, ErrorCode) {
    match answer {
        Err(ShopError::Rejected {
            status,
            code,
            message,
        }) => {
            assert!(!message.trim().is_empty(), "{code}: an empty message");
            (status, code)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A refusal's status, code and message.
fn refusal_message<T: std::fmt::Debug>(answer: Result<T, ShopError>) -> (u16, ErrorCode, String) {
    match answer {
        Err(ShopError::Rejected {
            status,
            code,
            message,
        }) => (status, code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A raw public request (to send what the client library never sends); its status and error.
async fn raw(
    cluster: &LocalCluster,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (StatusCode, ErrorBody) {
    let base = cluster.public_url(cluster.gateway_ids()[0]);
    let mut request = reqwest::Client::new().request(method, format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("the gateway answers");
    let status = response.status();
    let body: ErrorBody = response.json().await.expect("an error body");
    assert!(
        !body.message.trim().is_empty(),
        "{}: an empty message",
        body.code
    );
    (status, body)
}

async fn checkout_cluster(tweak: impl Fn(&mut cluster_config::Config)) -> LocalCluster {
    let cluster = formed(3, 3, tweak).await;
    wait_cluster_version(&cluster, 2, ELECTION_WAIT).await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_are_confirmed_or_released_and_carts_are_all_or_nothing() {
    let cluster = checkout_cluster(|_| {}).await;
    let shop = cluster.shop_client();
    create(&shop, "mug", 10).await;
    create(&shop, "tee", 5).await;
    create(&shop, "cap", 1).await;

    // Hold, then confirm: available goes down and held up at the hold, then held becomes sold.
    let held = shop
        .hold(vec![line("mug", 2), line("tee", 1)], None)
        .await
        .expect("hold");
    let hold = held.hold.id.0;
    assert_eq!(held.hold.status, HoldStatus::Held);
    assert_eq!(held.hold.lines.len(), 2);
    assert!(!held.replayed);
    assert_eq!(held.token.len(), flashstock_api::ORDER_TOKEN_LEN);
    let ttl = cluster_config::defaults::DEFAULT_HOLD_TTL_MS;
    assert_eq!(held.hold.expires_at_ms, held.hold.held_at_ms + ttl);
    assert_eq!(counters(&shop, "mug").await, (8, 2, 0));
    assert_eq!(counters(&shop, "tee").await, (4, 1, 0));
    let status = shop.hold_status(hold, &held.token).await.expect("read");
    assert_eq!(status.hold.status, HoldStatus::Held);

    let placed = shop
        .confirm_hold_with_key("confirm-1", hold, &held.token)
        .await
        .expect("confirm");
    let order = placed.order.clone();
    assert!(!placed.replayed);
    assert_eq!(order.lines.len(), 2);
    assert_eq!(order.hold, Some(held.hold.id));
    assert_eq!(order.status, OrderStatus::Placed);
    assert_eq!(
        order.token.as_deref(),
        Some(held.token.as_str()),
        "the order inherits the hold's token"
    );
    assert_eq!(counters(&shop, "mug").await, (8, 0, 2));
    assert_eq!(counters(&shop, "tee").await, (4, 0, 1));
    let again = shop
        .confirm_hold_with_key("confirm-1", hold, &held.token)
        .await
        .expect("a retry with the same key");
    assert!(again.replayed);
    assert_eq!(again.order.id, order.id);
    assert_eq!(counters(&shop, "mug").await, (8, 0, 2), "confirmed once");
    let status = shop.hold_status(hold, &held.token).await.expect("read");
    assert_eq!(status.hold.status, HoldStatus::Confirmed);
    assert_eq!(status.hold.order, Some(order.id));
    let summary = shop
        .order(order.id.0, &held.token)
        .await
        .expect("read the order");
    assert_eq!(summary.order.lines.len(), 2);
    assert_eq!(summary.order.status, OrderStatus::Placed);
    assert_eq!(summary.order.hold, Some(held.hold.id));

    // Once confirmed, a hold is finished.
    assert_eq!(
        refusal(shop.release_hold(hold, &held.token).await),
        (409, ErrorCode::HoldFinished)
    );
    assert_eq!(
        refusal(shop.confirm_hold(hold, &held.token).await),
        (409, ErrorCode::HoldFinished)
    );

    // Hold, then release: the stock is available again.
    let second = shop.hold(vec![line("mug", 3)], None).await.expect("hold");
    assert_eq!(counters(&shop, "mug").await, (5, 3, 2));

    // The replica reads show what checkout adds (the fault harness reads every node's final
    // state through them): held stock, an order's lines and hold, the holds themselves; a
    // reader of the release before still reads the records it knew.
    let leader = cluster
        .wait_for_leader(ELECTION_WAIT)
        .await
        .expect("a leader");
    let (voters, addr) = (cluster.voter_client(), cluster.addr(leader));
    let products = voters
        .products_with_terms(&addr, None, 10)
        .await
        .expect("products with terms");
    let mug = products
        .items
        .iter()
        .find(|p| p.product.id == "mug")
        .unwrap();
    assert_eq!(
        (mug.product.stock, mug.terms.held, mug.product.sold),
        (5, 3, 2)
    );
    let orders = voters.all_orders_with_terms(&addr).await.expect("orders");
    let from_hold = orders.iter().find(|o| o.order.id == order.id).unwrap();
    assert_eq!(from_hold.lines().len(), 2);
    assert_eq!(from_hold.terms.hold, Some(held.hold.id));
    let holds: Vec<_> = voters
        .all_holds(&addr)
        .await
        .expect("holds")
        .into_iter()
        .map(|h| (h.id, h.state))
        .collect();
    assert_eq!(
        holds,
        vec![
            (held.hold.id, HoldState::Confirmed { order: order.id }),
            (second.hold.id, HoldState::Held)
        ]
    );
    let plain = voters.products(&addr, None, 10).await.expect("products");
    assert!(plain.items.iter().any(|p| p.id == "mug" && p.stock == 5));
    let plain = voters.all_orders(&addr).await.expect("orders");
    assert!(plain.iter().any(|o| o.id == order.id && o.quantity == 2));
    let released = shop
        .release_hold(second.hold.id.0, &second.token)
        .await
        .expect("release");
    assert_eq!(released.hold.status, HoldStatus::Released);
    assert_eq!(counters(&shop, "mug").await, (8, 0, 2));
    assert_eq!(
        refusal(shop.confirm_hold(second.hold.id.0, &second.token).await),
        (409, ErrorCode::HoldFinished)
    );

    // Without the hold's token, a hold does not exist: the same answer as an unknown one.
    let third = shop.hold(vec![line("tee", 1)], None).await.expect("hold");
    let id = third.hold.id.0;
    assert_eq!(counters(&shop, "tee").await, (3, 1, 1));
    let wrong = "0".repeat(flashstock_api::ORDER_TOKEN_LEN);
    for answer in [
        refusal(shop.hold_status(id, &wrong).await),
        refusal(shop.hold_status(id, "not-even-a-token").await),
        refusal(shop.confirm_hold(id, &wrong).await),
        refusal(shop.release_hold(id, &wrong).await),
        refusal(shop.hold_status(u64::from(u32::MAX), &third.token).await),
    ] {
        assert_eq!(answer, (404, ErrorCode::UnknownHold));
    }
    for path in [
        format!("/v1/holds/{id}/confirm"),
        format!("/v1/holds/{id}/release"),
    ] {
        let (status, body) = raw(
            &cluster,
            reqwest::Method::POST,
            &path,
            &[("idempotency-key", "no-token")],
            None,
        )
        .await;
        assert_eq!(
            (status, body.code),
            (StatusCode::NOT_FOUND, ErrorCode::UnknownHold)
        );
    }
    let (status, body) = raw(
        &cluster,
        reqwest::Method::GET,
        &format!("/v1/holds/{id}"),
        &[],
        None,
    )
    .await;
    assert_eq!(
        (status, body.code),
        (StatusCode::NOT_FOUND, ErrorCode::UnknownHold)
    );
    assert_eq!(counters(&shop, "tee").await, (3, 1, 1), "the hold stands");
    // An admin releases any hold without its token.
    let released = shop
        .admin_release_hold_with_key("admin-release-1", id)
        .await
        .expect("admin release");
    assert_eq!(released.hold.status, HoldStatus::Released);
    assert_eq!(counters(&shop, "tee").await, (4, 0, 1));

    // A cart with one line out of stock changes nothing, and the refusal names the product.
    let (status, code, message) = refusal_message(
        shop.checkout(vec![line("mug", 1), line("cap", 2)], None)
            .await,
    );
    assert_eq!((status, code), (409, ErrorCode::InsufficientStock));
    assert!(message.contains("cap"), "{message}");
    let (status, code, message) =
        refusal_message(shop.hold(vec![line("mug", 1), line("nope", 1)], None).await);
    assert_eq!((status, code), (404, ErrorCode::UnknownProduct));
    assert!(message.contains("nope"), "{message}");
    assert_eq!(counters(&shop, "mug").await, (8, 0, 2));
    assert_eq!(counters(&shop, "cap").await, (1, 0, 0));

    // A cart that fits: one order of every line.
    let bought = shop
        .checkout(vec![line("mug", 1), line("cap", 1)], None)
        .await
        .expect("checkout");
    assert_eq!(bought.order.lines.len(), 2);
    assert_eq!(bought.order.hold, None);
    assert_eq!(counters(&shop, "mug").await, (7, 0, 3));
    assert_eq!(counters(&shop, "cap").await, (0, 0, 1));

    // Cancel gives the stock back once; a second cancel is refused and changes nothing.
    let token = bought.order.token.clone().expect("a token");
    let (status, code) = refusal(shop.cancel_order(bought.order.id.0, &wrong).await);
    assert_eq!((status, code), (404, ErrorCode::UnknownOrder));
    let cancelled = shop
        .cancel_order(bought.order.id.0, &token)
        .await
        .expect("cancel");
    assert_eq!(cancelled.order.status, OrderStatus::Cancelled);
    assert!(cancelled.order.cancelled_at_ms.is_some());
    assert_eq!(counters(&shop, "mug").await, (8, 0, 2));
    assert_eq!(counters(&shop, "cap").await, (1, 0, 0));
    assert_eq!(
        refusal(shop.cancel_order(bought.order.id.0, &token).await),
        (409, ErrorCode::AlreadyCancelled)
    );
    assert_eq!(counters(&shop, "mug").await, (8, 0, 2), "given back once");
    let summary = shop
        .order(bought.order.id.0, &token)
        .await
        .expect("read the order");
    assert_eq!(summary.order.status, OrderStatus::Cancelled);

    // An admin cancels any order, without its token or a window.
    let cancelled = shop
        .admin_cancel_order(order.id.0)
        .await
        .expect("admin cancel");
    assert_eq!(cancelled.order.status, OrderStatus::Cancelled);
    assert_eq!(counters(&shop, "mug").await, (10, 0, 0));
    assert_eq!(counters(&shop, "tee").await, (5, 0, 0));
    assert_eq!(
        refusal(shop.admin_cancel_order(order.id.0).await),
        (409, ErrorCode::AlreadyCancelled)
    );
    assert_eq!(
        refusal(shop.admin_cancel_order(u64::from(u32::MAX)).await),
        (404, ErrorCode::UnknownOrder)
    );

    // Bad carts are refused before anything is proposed.
    let too_many: Vec<Line> = (0..=cluster_config::defaults::DEFAULT_CART_LINES_MAX)
        .map(|i| line(&format!("p{i}"), 1))
        .collect();
    for (lines, what) in [
        (too_many, "more lines than checkout.cart_lines_max"),
        (vec![line("mug", 1), line("mug", 1)], "one product twice"),
        (Vec::new(), "no lines"),
        (vec![line("mug", 0)], "a zero quantity"),
    ] {
        assert_eq!(
            refusal(shop.hold(lines.clone(), None).await),
            (400, ErrorCode::InvalidRequest),
            "{what}"
        );
        assert_eq!(
            refusal(shop.checkout(lines, None).await),
            (400, ErrorCode::InvalidRequest),
            "{what}"
        );
    }
    let (status, body) = raw(
        &cluster,
        reqwest::Method::POST,
        "/v1/holds",
        &[],
        Some(r#"{"lines":[{"product":"mug","quantity":1}]}"#),
    )
    .await;
    assert_eq!(
        (status, body.code),
        (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
        "every write needs an Idempotency-Key"
    );
    assert_eq!(counters(&shop, "mug").await, (10, 0, 0), "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_per_customer_count_purchases_and_holds() {
    let cluster = checkout_cluster(|_| {}).await;
    let shop = cluster.shop_client();
    let created = shop
        .create_product_with_key(
            "create-drop",
            &CreateProductRequest {
                id: "drop".into(),
                name: "Limited drop".into(),
                price_cents: 15000,
                stock: 10,
                limit_per_customer: Some(2),
            },
        )
        .await
        .expect("create with a limit");
    assert_eq!(created.product.limit_per_customer, Some(2));
    assert_eq!(
        product(&shop, "drop").await.limit_per_customer,
        Some(2),
        "views show the limit"
    );

    // A limited product needs the customer on every purchase, cart and hold.
    let (status, code, message) =
        refusal_message(shop.purchase_with_key("anonymous", "drop", 1).await);
    assert_eq!((status, code), (422, ErrorCode::CustomerRequired));
    assert!(message.contains("drop"), "{message}");
    assert_eq!(
        refusal(shop.hold(vec![line("drop", 1)], None).await),
        (422, ErrorCode::CustomerRequired)
    );

    // Two for alice, across a purchase and a hold; the third item is refused either way.
    shop.purchase_as_with_key("alice-1", "drop", 1, Some("alice"))
        .await
        .expect("first item");
    let alice_hold = shop
        .hold(vec![line("drop", 1)], Some("alice"))
        .await
        .expect("second item, held");
    assert_eq!(
        refusal(shop.hold(vec![line("drop", 1)], Some("alice")).await),
        (409, ErrorCode::LimitReached)
    );
    assert_eq!(
        refusal(
            shop.purchase_as_with_key("alice-3", "drop", 1, Some("alice"))
                .await
        ),
        (409, ErrorCode::LimitReached)
    );
    assert_eq!(
        refusal(shop.checkout(vec![line("drop", 1)], Some("alice")).await),
        (409, ErrorCode::LimitReached)
    );
    // Another customer has its own count.
    shop.checkout(vec![line("drop", 2)], Some("bob"))
        .await
        .expect("bob's two");
    assert_eq!(counters(&shop, "drop").await, (6, 1, 3));

    // Releasing the hold gives alice her item back.
    shop.release_hold(alice_hold.hold.id.0, &alice_hold.token)
        .await
        .expect("release");
    shop.purchase_as_with_key("alice-4", "drop", 1, Some("alice"))
        .await
        .expect("alice's second item again");

    // Removing the limit: anyone buys, customer or not.
    let changed = shop
        .set_limit("drop", None)
        .await
        .expect("remove the limit");
    assert_eq!(changed.product.limit_per_customer, None);
    shop.purchase_with_key("anonymous-2", "drop", 1)
        .await
        .expect("no limit any more");
    assert_eq!(counters(&shop, "drop").await, (5, 0, 5));
    let changed = shop.set_limit("drop", Some(1)).await.expect("a new limit");
    assert_eq!(changed.product.limit_per_customer, Some(1));
    assert_eq!(
        refusal(shop.set_limit("nope", Some(1)).await),
        (404, ErrorCode::UnknownProduct)
    );
    let (status, body) = raw(
        &cluster,
        reqwest::Method::PUT,
        "/v1/admin/products/drop/limit",
        &[("idempotency-key", "limit-no-admin")],
        Some(r#"{"limit_per_customer":3}"#),
    )
    .await;
    assert_eq!(
        (status, body.code),
        (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized)
    );
    assert_eq!(product(&shop, "drop").await.limit_per_customer, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abandoned_hold_expires_on_an_idle_cluster() {
    let ttl = Duration::from_millis(1500);
    let cluster = checkout_cluster(|config| {
        config.checkout.hold_ttl_ms = ttl.as_millis() as u64;
    })
    .await;
    let shop = cluster.shop_client();
    create(&shop, "mug", 5).await;
    let began = tokio::time::Instant::now();
    let held = match shop.hold(vec![line("mug", 2)], None).await {
        Ok(held) => held,
        Err(e) => {
            for id in cluster.gateway_ids().into_iter().chain(cluster.voter_ids()) {
                eprintln!("=== {id}\n{}", cluster.log_tail(id));
            }
            panic!("hold: {e}");
        }
    };
    assert_eq!(
        held.hold.expires_at_ms - held.hold.held_at_ms,
        ttl.as_millis() as u64
    );
    assert_eq!(counters(&shop, "mug").await, (3, 2, 0));

    // Nothing else is written: the leader's own entry expires the hold.
    let deadline = began + ttl + Duration::from_secs(10);
    loop {
        let now = counters(&shop, "mug").await;
        if now == (5, 0, 0) {
            break;
        }
        assert_eq!(now, (3, 2, 0), "held until it expires");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hold did not expire within {:?} of its deadline",
            deadline - began - ttl
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        began.elapsed() >= ttl - Duration::from_millis(100),
        "expired after {:?}, before its time-to-live",
        began.elapsed()
    );
    let status = shop
        .hold_status(held.hold.id.0, &held.token)
        .await
        .expect("read");
    assert_eq!(status.hold.status, HoldStatus::Expired);
    assert_eq!(
        refusal(shop.confirm_hold(held.hold.id.0, &held.token).await),
        (409, ErrorCode::HoldExpired)
    );
    assert_eq!(
        refusal(shop.release_hold(held.hold.id.0, &held.token).await),
        (409, ErrorCode::HoldExpired)
    );
    assert_eq!(counters(&shop, "mug").await, (5, 0, 0));
}
