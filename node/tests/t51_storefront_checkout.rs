//! The storefront's checkout in a real headless Chromium against six real node processes: a
//! cart of two products held with a countdown while another browser sees the items held live,
//! then paid as one order of two lines; a hold left unpaid that expires on screen (and a payment
//! that meets an expired hold); a limit per customer asked for and enforced with its message;
//! an order cancelled from its page, cancelled elsewhere first, or too late. Screenshots are
//! saved under the build directory's test scratch space (printed by each test).

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/storefront.rs"]
mod storefront;

use browser::{Browser, ChromeDriver};
use common::*;
use flashstock_api::{CreateProductRequest, OrderStatus};
use flashstock_deploy::local::LocalCluster;
use serde_json::json;
use storefront::*;
// The page's buy button, not `common::buy` (a purchase through the internal API).
use storefront::buy;

/// A shop of six nodes running checkout (cluster version 2, which products with a limit per
/// customer need too) with these products, known to every gateway.
async fn checkout_shop(
    tweak: impl Fn(&mut cluster_config::Config),
    products: &[CreateProductRequest],
) -> LocalCluster {
    let cluster = six_nodes(tweak).await;
    wait_cluster_version(&cluster, 2, ELECTION_WAIT).await;
    create_everywhere(&cluster, products).await;
    cluster
}

/// `(available, held, sold)` of a product, as the leader has it.
async fn counters(cluster: &LocalCluster, id: &str) -> (u64, u64, u64) {
    let view = cluster
        .shop_client()
        .product_linearizable(id)
        .await
        .expect("a linearizable read");
    assert!(view.product.is_conserved(), "{:?}", view.product);
    (view.product.stock, view.product.held, view.product.sold)
}

/// Put `quantity` of product `id` in the cart from its page.
async fn add_to_cart(browser: &Browser, base: &str, id: &str, quantity: u32) {
    open_product(browser, base, id).await;
    browser.type_into("#quantity", &quantity.to_string()).await;
    browser.click("#add-to-cart").await;
    let added = result_in_state(browser, "added").await;
    assert!(added.starts_with("In your cart: "), "{added}");
}

/// Open the cart and wait until it shows `lines` lines with their prices and total.
async fn open_cart(browser: &Browser, base: &str, lines: usize) {
    browser.goto(&format!("{base}/cart")).await;
    browser
        .wait_for(
            &format!("a cart of {lines} lines with its total"),
            || async {
                let rows = browser
                    .execute(
                        "return document.querySelectorAll('#cart-rows tr').length;",
                        vec![],
                    )
                    .await;
                let total = browser.text("#cart-total").await.unwrap_or_default();
                let ready = rows == json!(lines) && total.starts_with('$');
                let enabled = !is_disabled(browser, "#checkout").await;
                (ready && enabled).then_some(())
            },
        )
        .await;
}

/// The text of `css` in the row of product `id` of the cart.
async fn cart_cell(browser: &Browser, id: &str, css: &str) -> Option<String> {
    browser
        .text(&format!("#cart-rows tr[data-product='{id}'] {css}"))
        .await
}

/// Check the cart out and wait until the hold is shown; the countdown's first figure.
async fn check_out(browser: &Browser) -> String {
    browser.click("#checkout").await;
    // The page says so once the hold's answer came, and shows the hold at the same time.
    let held = in_state(browser, "#checkout-result", "held").await;
    assert!(held.contains("set aside"), "{held}");
    assert!(!is_hidden(browser, "#hold").await);
    let timer = browser.text("#hold-timer").await.unwrap_or_default();
    let countdown = timer
        .strip_prefix("Held for you: ")
        .unwrap_or_else(|| panic!("the hold's countdown, not {timer:?}"));
    countdown.to_owned()
}

/// `m:ss` in seconds.
fn seconds(countdown: &str) -> u64 {
    let (minutes, seconds) = countdown
        .split_once(':')
        .unwrap_or_else(|| panic!("a countdown m:ss, not {countdown:?}"));
    assert_eq!(seconds.len(), 2, "{countdown}");
    minutes.parse::<u64>().expect("minutes") * 60 + seconds.parse::<u64>().expect("seconds")
}

/// The order id and token of the link in `css` (`.../orders/{id}?token=...`).
async fn order_link(browser: &Browser, css: &str) -> (u64, String) {
    let link = browser
        .attribute(css, "href")
        .await
        .expect("a link to the order");
    let path = link.rsplit_once("/orders/").expect("an order link").1;
    let (id, token) = path
        .split_once("?token=")
        .expect("the link carries the token");
    assert_eq!(token.len(), flashstock_api::ORDER_TOKEN_LEN, "{link}");
    (id.parse().expect("an order id"), token.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cart_of_two_products_is_held_with_a_countdown_seen_elsewhere_live_then_paid_as_one_order(
) {
    let cluster = checkout_shop(
        |_| {},
        &[
            item("sneaker-drop", "Limited sneaker drop", 14_900, 40),
            item("mug-white", "Logo mug, white", 1_200, 200),
        ],
    )
    .await;
    let gateways = cluster.gateway_ids();
    let (base_a, base_b) = (
        cluster.public_url(gateways[0]),
        cluster.public_url(gateways[1]),
    );
    let driver = ChromeDriver::start().await;
    let (buyer, watcher) = (driver.browser().await, driver.browser().await);
    open_product(&watcher, &base_b, "sneaker-drop").await;
    assert_eq!(
        watcher.text("#availability").await.as_deref(),
        Some("In stock: 40")
    );
    assert!(is_hidden(&watcher, "#held-note").await);
    // A mark that a reload would erase.
    watcher.execute("window.notReloaded = true;", vec![]).await;

    add_to_cart(&buyer, &base_a, "sneaker-drop", 3).await;
    add_to_cart(&buyer, &base_a, "mug-white", 2).await;
    let count = buyer.text("#cart-count").await.unwrap_or_default();
    assert_eq!(count.trim(), "(2)");
    open_cart(&buyer, &base_a, 2).await;
    assert_eq!(
        cart_cell(&buyer, "sneaker-drop", "th").await.as_deref(),
        Some("Limited sneaker drop")
    );
    assert_eq!(
        cart_cell(&buyer, "sneaker-drop", ".subtotal")
            .await
            .as_deref(),
        Some("$447.00")
    );
    assert_eq!(
        cart_cell(&buyer, "mug-white", ".availability")
            .await
            .as_deref(),
        Some("In stock: 200")
    );
    assert_eq!(buyer.text("#cart-total").await.as_deref(), Some("$471.00"));

    // Check out: the whole cart is held, with a countdown from the hold's ten minutes.
    let first = check_out(&buyer).await;
    assert!(
        (595..=600).contains(&seconds(&first)),
        "a fresh ten-minute hold shows {first}"
    );
    assert_eq!(counters(&cluster, "sneaker-drop").await, (37, 3, 0));
    assert_eq!(counters(&cluster, "mug-white").await, (198, 2, 0));
    // The other browser, on another gateway, sees the items held, without a reload.
    watcher
        .wait_text("#availability", |t| t == "In stock: 37 · 3 held in carts")
        .await;
    save_screenshot(&watcher, "product-held.png").await;
    assert_eq!(
        watcher
            .execute("return window.notReloaded === true;", vec![])
            .await,
        json!(true),
        "the watching page was reloaded"
    );
    // The countdown counts down; the cart cannot change under the hold.
    let later = buyer
        .wait_for("the countdown to go down", || async {
            buyer.text("#countdown").await.filter(|now| *now != first)
        })
        .await;
    assert!(seconds(&later) < seconds(&first), "{first} then {later}");
    assert!(is_disabled(&buyer, "#checkout").await);
    assert!(is_disabled(&buyer, "#cart-rows .remove").await);
    assert_eq!(
        buyer.text("#pay").await.as_deref(),
        Some("Pay $471.00"),
        "Pay shows the hold's total"
    );
    save_screenshot(&buyer, "cart-hold.png").await;
    // The same page on a phone's screen.
    buyer.set_window_size(390, 844).await;
    save_screenshot(&buyer, "cart-hold-phone.png").await;
    buyer.set_window_size(1280, 1000).await;

    // Pay: the hold becomes one order of both lines, and the cart is emptied.
    buyer.click("#pay").await;
    let paid = in_state(&buyer, "#checkout-result", "confirmed").await;
    assert!(paid.starts_with("Paid: order #"), "{paid}");
    assert!(paid.ends_with("for 5 items, $471.00."), "{paid}");
    assert!(is_hidden(&buyer, "#hold").await);
    assert!(!is_hidden(&buyer, "#cart-empty").await);
    assert_eq!(
        buyer.text("#cart-count").await.unwrap_or_default().trim(),
        ""
    );
    assert_eq!(
        buyer
            .execute(
                "return localStorage.getItem('flashstock.cart') === null \
                 && localStorage.getItem('flashstock.hold') === null;",
                vec![]
            )
            .await,
        json!(true),
        "the browser forgot the cart and the hold"
    );
    // Held became sold: the other page shows nothing held any more.
    watcher
        .wait_text("#availability", |t| t == "In stock: 37")
        .await;
    assert!(is_hidden(&watcher, "#held-note").await);
    assert_eq!(counters(&cluster, "sneaker-drop").await, (37, 0, 3));
    assert_eq!(counters(&cluster, "mug-white").await, (198, 0, 2));

    // The order's page, from the confirmation's link: two lines.
    let (order_id, token) = order_link(&buyer, "#checkout-result a").await;
    assert!(paid.contains(&order_id.to_string()));
    buyer.click("#checkout-result a").await;
    buyer
        .wait_text("h1", |t| t == format!("Order #{order_id}"))
        .await;
    let lines = buyer
        .execute(
            "return [...document.querySelectorAll('#order-lines tbody tr')]\
             .map((row) => [row.dataset.product, row.cells[0].innerText, row.cells[1].innerText]);",
            vec![],
        )
        .await;
    assert_eq!(
        lines,
        json!([
            ["sneaker-drop", "Limited sneaker drop", "3"],
            ["mug-white", "Logo mug, white", "2"]
        ])
    );
    assert_eq!(buyer.text("#order-quantity").await.as_deref(), Some("5"));
    assert_eq!(buyer.text("#order-total").await.as_deref(), Some("$471.00"));
    assert_eq!(buyer.text("#order-status").await.as_deref(), Some("Placed"));
    save_screenshot(&buyer, "order-lines.png").await;
    let view = cluster
        .shop_client()
        .order(order_id, &token)
        .await
        .expect("the order");
    assert_eq!(view.order.lines.len(), 2);
    assert!(view.order.hold.is_some(), "confirmed from a hold");
    buyer.close().await;
    watcher.close().await;
}

/// Two products of the shop's catalog whose ids lie in different groups of a cluster of
/// `groups`: the first in the lower group.
fn products_in_two_groups(groups: u16) -> (CreateProductRequest, CreateProductRequest) {
    use flashstock_api::placement::group_of;
    let names = [
        "tee-red",
        "mug-white",
        "cap-blue",
        "sock-pair",
        "bag-tote",
        "pin-set",
    ];
    let first = names[0];
    let second = names
        .iter()
        .find(|id| group_of(id, groups) != group_of(first, groups))
        .expect("the names cover two groups");
    let (low, high) = if group_of(first, groups) < group_of(second, groups) {
        (first, *second)
    } else {
        (*second, first)
    };
    (
        item(low, "First of two", 2_000, 30),
        item(high, "Second of two", 500, 50),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cart_across_raft_groups_is_held_and_paid_as_one_order_per_group() {
    const GROUPS: u16 = 3;
    let (low, high) = products_in_two_groups(GROUPS);
    let cluster = six_nodes(|config| config.cluster.groups = GROUPS).await;
    wait_cluster_version(
        &cluster,
        flashstock_api::cart::CART_CLUSTER_VERSION,
        ELECTION_WAIT,
    )
    .await;
    create_everywhere(&cluster, &[low.clone(), high.clone()]).await;
    let base = cluster.public_url(cluster.gateway_ids()[0]);
    let driver = ChromeDriver::start().await;
    let buyer = driver.browser().await;

    add_to_cart(&buyer, &base, &low.id, 2).await;
    add_to_cart(&buyer, &base, &high.id, 3).await;
    open_cart(&buyer, &base, 2).await;
    // $40.00 + $15.00.
    assert_eq!(buyer.text("#cart-total").await.as_deref(), Some("$55.00"));

    // Check out: held in both groups at once, with the hold's countdown.
    let first = check_out(&buyer).await;
    assert!((595..=600).contains(&seconds(&first)), "{first}");
    assert_eq!(counters(&cluster, &low.id).await, (28, 2, 0));
    assert_eq!(counters(&cluster, &high.id).await, (47, 3, 0));

    // Pay: one order per group, both linked.
    buyer.click("#pay").await;
    let paid = in_state(&buyer, "#checkout-result", "confirmed").await;
    assert!(paid.starts_with("Paid: order #"), "{paid}");
    assert!(paid.contains(" and order #"), "two orders: {paid}");
    assert!(paid.ends_with("for 5 items, $55.00."), "{paid}");
    save_screenshot(&buyer, "cart-across-groups-paid.png").await;
    assert_eq!(counters(&cluster, &low.id).await, (28, 0, 2));
    assert_eq!(counters(&cluster, &high.id).await, (47, 0, 3));
    let (first_order, token) = order_link(&buyer, "#checkout-result a:first-of-type").await;
    let (second_order, second_token) = order_link(&buyer, "#checkout-result a:last-of-type").await;
    assert_eq!(
        token, second_token,
        "the orders of one cart share its token"
    );
    let shop = cluster.shop_client();
    let mut bought = Vec::new();
    for id in [first_order, second_order] {
        let order = shop.order(id, &token).await.expect("the order").order;
        bought.push((order.product, order.quantity));
    }
    assert_eq!(bought, [(low.id.clone(), 2), (high.id.clone(), 3)]);
    buyer.close().await;
}

/// How long the holds of the expiry test last: long enough for the page to show the hold and
/// the test to act on it, short enough to watch it run out.
const SHORT_HOLD_MS: u64 = 4000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hold_left_unpaid_expires_on_screen_and_its_items_go_back_on_sale() {
    let cluster = checkout_shop(
        |config| config.checkout.hold_ttl_ms = SHORT_HOLD_MS,
        &[item("lamp", "Desk lamp", 3_000, 10)],
    )
    .await;
    let gateways = cluster.gateway_ids();
    let (base_a, base_b) = (
        cluster.public_url(gateways[0]),
        cluster.public_url(gateways[1]),
    );
    let driver = ChromeDriver::start().await;
    let (buyer, watcher) = (driver.browser().await, driver.browser().await);
    open_product(&watcher, &base_b, "lamp").await;
    add_to_cart(&buyer, &base_a, "lamp", 2).await;
    open_cart(&buyer, &base_a, 1).await;

    let first = check_out(&buyer).await;
    assert!(seconds(&first) <= SHORT_HOLD_MS / 1000, "{first}");
    watcher
        .wait_text("#availability", |t| t == "In stock: 8 · 2 held in carts")
        .await;
    // Nobody pays: the countdown runs out on screen, and the page says what that means.
    let expired = in_state(&buyer, "#checkout-result", "expired").await;
    assert!(expired.contains("went back on sale"), "{expired}");
    assert!(
        buyer
            .text("#hold-timer")
            .await
            .is_some_and(|t| t.starts_with("Hold expired")),
        "{:?}",
        buyer.text("#hold-timer").await
    );
    assert!(is_disabled(&buyer, "#pay").await);
    // The cluster expired it too: nothing held, everything available, on the other page live.
    watcher
        .wait_text("#availability", |t| t == "In stock: 10")
        .await;
    assert!(is_hidden(&watcher, "#held-note").await);
    assert_eq!(counters(&cluster, "lamp").await, (10, 0, 0));
    save_screenshot(&buyer, "cart-expired.png").await;

    // The cart is kept: hold it again. This time the page's clock runs a minute behind (a
    // countdown that trusts the wrong clock): Pay is still offered when the hold has expired,
    // and the payment meets `hold_expired`.
    assert!(!is_disabled(&buyer, "#checkout").await);
    check_out(&buyer).await;
    buyer
        .execute(
            "const now = Date.now.bind(Date); Date.now = () => now() - 60000;",
            vec![],
        )
        .await;
    watcher
        .wait_text("#availability", |t| t == "In stock: 8 · 2 held in carts")
        .await;
    watcher
        .wait_text("#availability", |t| t == "In stock: 10")
        .await;
    assert_eq!(counters(&cluster, "lamp").await, (10, 0, 0));
    assert!(
        !is_disabled(&buyer, "#pay").await,
        "the page's clock says time is left"
    );
    buyer.click("#pay").await;
    let refused = buyer
        .wait_text("#checkout-result", |t| t.contains("before the payment"))
        .await;
    assert!(refused.contains("nothing was paid"), "{refused}");
    assert_eq!(
        buyer
            .attribute("#checkout-result", "data-state")
            .await
            .as_deref(),
        Some("expired")
    );
    assert!(is_disabled(&buyer, "#pay").await);
    assert_eq!(counters(&cluster, "lamp").await, (10, 0, 0), "nothing sold");
    buyer.close().await;
    watcher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_per_customer_is_shown_asked_for_and_enforced_with_its_message() {
    let drop = CreateProductRequest {
        limit_per_customer: Some(2),
        ..item("drop", "Limited drop", 15_000, 10)
    };
    let cluster = checkout_shop(|_| {}, &[drop]).await;
    let base = cluster.public_url(cluster.gateway_ids()[0]);
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    open_product(&browser, &base, "drop").await;
    assert_eq!(
        browser.text("#limit").await.as_deref(),
        Some("Limit: 2 per customer")
    );
    assert!(!is_hidden(&browser, "#customer").await);

    // Without a customer reference the page asks for one; nothing is bought.
    buy(&browser, 1).await;
    let asked = result_in_state(&browser, "customer-required").await;
    assert!(asked.contains("enter your customer reference"), "{asked}");
    assert_eq!(counters(&cluster, "drop").await, (10, 0, 0));

    // Alice buys her two, then tries one more.
    browser.type_into("#customer", "alice").await;
    buy(&browser, 2).await;
    result_in_state(&browser, "confirmed").await;
    buy(&browser, 1).await;
    let limited = result_in_state(&browser, "limit").await;
    assert_eq!(
        limited,
        "Limit of 2 per customer: you already have 2. Nothing was bought."
    );
    assert_eq!(counters(&cluster, "drop").await, (8, 0, 2));

    // The same through the cart, where the reference this browser keeps is filled in.
    browser.type_into("#quantity", "1").await;
    browser.click("#add-to-cart").await;
    result_in_state(&browser, "added").await;
    open_cart(&browser, &base, 1).await;
    assert_eq!(
        browser
            .execute("return document.getElementById('customer').value;", vec![])
            .await,
        json!("alice")
    );
    browser.click("#checkout").await;
    let limited = in_state(&browser, "#checkout-result", "limit").await;
    assert_eq!(
        limited,
        "Limit of 2 per customer for Limited drop: you already have 2. Nothing was held; \
         lower the quantity."
    );
    assert_eq!(
        browser
            .attribute("#cart-rows tr[data-product='drop']", "data-problem")
            .await
            .as_deref(),
        Some("limit_reached"),
        "the refused line is marked"
    );
    assert!(is_hidden(&browser, "#hold").await);
    save_screenshot(&browser, "cart-limit.png").await;
    assert_eq!(counters(&cluster, "drop").await, (8, 0, 2), "nothing held");
    browser.close().await;
}

/// A cart kept by an earlier visit, with garbage among its lines: what is not a line of a
/// product id and a whole quantity is ignored, and a product's second line too.
const STORED_CART: &str = r#"{"lines": [
    {"product": "kettle", "quantity": 2},
    {"product": "<img src=x onerror=alert(1)>", "quantity": 1},
    {"product": "tea", "quantity": "3"},
    "junk", null, 7,
    {"product": "tea", "quantity": 3},
    {"product": "kettle", "quantity": 5}
]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_is_cancelled_from_its_page_and_its_stock_goes_back() {
    let cluster = checkout_shop(
        |_| {},
        &[
            item("kettle", "Electric kettle", 3_900, 10),
            item("tea", "Green tea, 100 g", 850, 50),
        ],
    )
    .await;
    let base = cluster.public_url(cluster.gateway_ids()[2]);
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    browser.goto(&format!("{base}/cart")).await;
    browser
        .execute(
            "localStorage.setItem('flashstock.cart', arguments[0]);",
            vec![json!(STORED_CART)],
        )
        .await;
    open_cart(&browser, &base, 2).await;
    let quantities = browser
        .execute(
            "return [...document.querySelectorAll('#cart-rows tr')]\
             .map((row) => [row.dataset.product, row.querySelector('input').value]);",
            vec![],
        )
        .await;
    assert_eq!(quantities, json!([["kettle", "2"], ["tea", "3"]]));

    check_out(&browser).await;
    browser.click("#pay").await;
    in_state(&browser, "#checkout-result", "confirmed").await;
    assert_eq!(counters(&cluster, "kettle").await, (8, 0, 2));
    assert_eq!(counters(&cluster, "tea").await, (47, 0, 3));
    let (order_id, token) = order_link(&browser, "#checkout-result a").await;
    browser.click("#checkout-result a").await;
    browser
        .wait_text("h1", |t| t == format!("Order #{order_id}"))
        .await;
    assert_eq!(
        browser.text("#order-status").await.as_deref(),
        Some("Placed")
    );
    browser
        .wait_for("the cancel button enabled", || async {
            (!is_disabled(&browser, "#cancel-order").await).then_some(())
        })
        .await;

    browser.click("#cancel-order").await;
    let cancelled = in_state(&browser, "#cancel-result", "cancelled").await;
    assert!(cancelled.contains("back on sale"), "{cancelled}");
    let status = browser.text("#order-status").await.unwrap_or_default();
    assert!(status.starts_with("Cancelled 20"), "{status}");
    assert!(status.ends_with(" UTC"), "{status}");
    assert!(is_hidden(&browser, "#cancel-order").await);
    assert_eq!(counters(&cluster, "kettle").await, (10, 0, 0));
    assert_eq!(counters(&cluster, "tea").await, (50, 0, 0));
    save_screenshot(&browser, "order-cancelled.png").await;
    // The server renders it cancelled, with no button.
    browser
        .goto(&format!("{base}/orders/{order_id}?token={token}"))
        .await;
    assert_eq!(
        browser
            .attribute("#order-status", "data-status")
            .await
            .as_deref(),
        Some("cancelled")
    );
    assert_eq!(browser.text("#order-status").await, Some(status));
    assert!(is_hidden(&browser, "#cancel-order").await);

    // An order cancelled elsewhere while its page is open: the page says so.
    open_product(&browser, &base, "kettle").await;
    buy(&browser, 1).await;
    result_in_state(&browser, "confirmed").await;
    let (second, second_token) = order_link(&browser, "#result a").await;
    browser.click("#result a").await;
    browser
        .wait_text("h1", |t| t == format!("Order #{second}"))
        .await;
    browser
        .wait_for("the cancel button enabled", || async {
            (!is_disabled(&browser, "#cancel-order").await).then_some(())
        })
        .await;
    let elsewhere = cluster
        .shop_client()
        .cancel_order(second, &second_token)
        .await
        .expect("cancel through the API");
    assert_eq!(elsewhere.order.status, OrderStatus::Cancelled);
    browser.click("#cancel-order").await;
    let already = in_state(&browser, "#cancel-result", "error").await;
    assert_eq!(
        already,
        "This order was cancelled already; nothing more changed."
    );
    browser
        .wait_text("#order-status", |t| t.starts_with("Cancelled 20"))
        .await;
    assert_eq!(
        counters(&cluster, "kettle").await,
        (10, 0, 0),
        "given back once"
    );
    browser.close().await;
}

/// The cancellation window of the too-late test.
const SHORT_WINDOW_MS: u64 = 5000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_after_the_window_says_it_is_too_late_and_the_order_stands() {
    let cluster = checkout_shop(
        |config| config.checkout.cancel_window_ms = SHORT_WINDOW_MS,
        &[item("kettle", "Electric kettle", 3_900, 10)],
    )
    .await;
    let base = cluster.public_url(cluster.gateway_ids()[0]);
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    open_product(&browser, &base, "kettle").await;
    buy(&browser, 1).await;
    result_in_state(&browser, "confirmed").await;
    let (order_id, token) = order_link(&browser, "#result a").await;
    browser.click("#result a").await;
    browser
        .wait_text("h1", |t| t == format!("Order #{order_id}"))
        .await;
    assert!(
        !is_hidden(&browser, "#cancel-order").await,
        "the page was rendered within the window"
    );
    // The window passes (by the clock, which is what it is about) with the page open.
    let placed_at_ms = cluster
        .shop_client()
        .order(order_id, &token)
        .await
        .expect("the order")
        .order
        .placed_at_ms;
    let passed_at_ms = placed_at_ms + SHORT_WINDOW_MS + 200;
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_millis() as u64
    };
    if passed_at_ms > now_ms() {
        tokio::time::sleep(std::time::Duration::from_millis(passed_at_ms - now_ms())).await;
    }

    browser.click("#cancel-order").await;
    let late = in_state(&browser, "#cancel-result", "error").await;
    assert_eq!(
        late,
        "Too late to cancel: an order can be cancelled within 5 seconds of being placed. \
         Your order stands."
    );
    assert!(is_hidden(&browser, "#cancel-order").await);
    assert_eq!(
        browser.text("#order-status").await.as_deref(),
        Some("Placed")
    );
    let view = cluster
        .shop_client()
        .order(order_id, &token)
        .await
        .expect("the order");
    assert_eq!(view.order.status, OrderStatus::Placed);
    assert_eq!(counters(&cluster, "kettle").await, (9, 0, 1));
    browser.close().await;
}
