//! The storefront in a real headless Chromium against six real node processes: buying on a
//! product page, stock that follows other buyers live across gateways, not-enough-stock and
//! sold-out answers, an unknown outcome resolved by retrying the same key, and the operations
//! page noticing a killed node. Screenshots of each page
//! are saved under the build directory's test scratch space (printed by each test).

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::path::PathBuf;

use browser::{Browser, ChromeDriver};
use common::*;
use flashstock_api::CreateProductRequest;
use flashstock_client::ShopClient;
use flashstock_deploy::local::LocalCluster;
use serde_json::json;

/// Where the tests leave their screenshots.
fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join(name)
}

async fn save_screenshot(browser: &Browser, name: &str) {
    let path = screenshot_path(name);
    browser.screenshot(&path).await;
    println!("screenshot: {}", path.display());
}

/// Six nodes with these products (`id`, name, price in cents, stock), known to every gateway.
async fn shop(products: &[(&str, &str, u64, u64)]) -> LocalCluster {
    let cluster = six_nodes(|_| {}).await;
    let shop = cluster.shop_client();
    for (id, name, price_cents, stock) in products {
        let request = CreateProductRequest {
            id: (*id).into(),
            name: (*name).into(),
            price_cents: *price_cents,
            stock: *stock,
        };
        shop.create_product(&request)
            .await
            .expect("create a product");
    }
    // Pages are served from each gateway's replica: wait until every one has the products.
    for gateway in cluster.gateway_ids() {
        let client = ShopClient::new(vec![cluster.public_url(gateway)]);
        for (id, ..) in products {
            let deadline = std::time::Instant::now() + ELECTION_WAIT;
            while client.product(id).await.is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{id} never reached {gateway}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
    cluster
}

/// Open a product page and wait until its script is ready to buy (or shows it sold out).
async fn open_product(browser: &Browser, base: &str, id: &str) {
    browser.goto(&format!("{base}/products/{id}")).await;
    browser
        .wait_text("#buy", |label| label == "Buy now" || label == "Sold out")
        .await;
}

/// Type a quantity and press buy.
async fn buy(browser: &Browser, quantity: u32) {
    browser.type_into("#quantity", &quantity.to_string()).await;
    browser.click("#buy").await;
}

/// Wait until the purchase result is in `state`; its text.
async fn result_in_state(browser: &Browser, state: &str) -> String {
    browser
        .wait_for(&format!("a purchase result {state:?}"), || async {
            let now = browser.attribute("#result", "data-state").await;
            if now.as_deref() == Some(state) {
                browser.text("#result").await
            } else {
                None
            }
        })
        .await
}

async fn is_disabled(browser: &Browser, css: &str) -> bool {
    browser
        .execute(
            "return document.querySelector(arguments[0]).disabled;",
            vec![json!(css)],
        )
        .await
        == json!(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buying_on_a_product_page_confirms_with_the_order_number_and_lowers_the_stock() {
    let cluster = shop(&[
        (
            "sneaker-drop",
            "Limited sneaker drop, flash sale",
            14_900,
            50,
        ),
        ("mug-white", "Logo mug, white", 1_200, 200),
        ("cap-snapback", "Snapback cap", 2_200, 0),
    ])
    .await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    let base = cluster.public_url(cluster.gateway_ids()[0]);

    // The catalog lists every product, with stock and the sold-out one marked.
    browser.goto(&format!("{base}/")).await;
    let sneakers = "[data-product='sneaker-drop'] .availability";
    assert_eq!(
        browser.wait_text(sneakers, |t| !t.is_empty()).await,
        "In stock: 50"
    );
    let cap = "[data-product='cap-snapback'] .availability";
    assert_eq!(browser.text(cap).await.as_deref(), Some("Sold out"));
    save_screenshot(&browser, "catalog.png").await;

    open_product(&browser, &base, "sneaker-drop").await;
    assert_eq!(
        browser.text("h1").await.as_deref(),
        Some("Limited sneaker drop, flash sale")
    );
    buy(&browser, 2).await;
    let confirmed = result_in_state(&browser, "confirmed").await;
    assert!(confirmed.starts_with("Confirmed: order #"), "{confirmed}");
    browser.wait_text("#stock", |stock| stock == "48").await;
    save_screenshot(&browser, "product.png").await;
    // The same page on a phone's screen.
    browser.set_window_size(390, 844).await;
    save_screenshot(&browser, "product-phone.png").await;
    browser.set_window_size(1280, 1000).await;

    // The confirmation links to the order's page, with the order's token: the page is private.
    let link = browser
        .attribute("#result a", "href")
        .await
        .expect("a link to the order");
    let (order_id, token) = link
        .trim_start_matches("/orders/")
        .split_once("?token=")
        .expect("the link carries the order's token");
    assert_eq!(token.len(), flashstock_api::ORDER_TOKEN_LEN, "{link}");
    assert!(confirmed.contains(order_id));
    browser.click("#result a").await;
    let title = browser.wait_text("h1", |t| t.starts_with("Order")).await;
    assert_eq!(title, format!("Order #{order_id}"));
    assert_eq!(browser.text("#order-quantity").await.as_deref(), Some("2"));
    assert_eq!(
        browser.text("#order-total").await.as_deref(),
        Some("$298.00")
    );
    save_screenshot(&browser, "order.png").await;

    // An unknown order: a friendly page. The same for this order without its token.
    browser.goto(&format!("{base}/orders/4242")).await;
    browser.wait_text("h1", |t| t == "No such order").await;
    browser.goto(&format!("{base}/orders/{order_id}")).await;
    browser.wait_text("h1", |t| t == "No such order").await;
    browser.close().await;
}

/// Headers and statuses the browser tests cannot see: charset, CSP, asset caching, 404 pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_send_charset_csp_cacheable_assets_and_404_for_unknown_orders() {
    let cluster = shop(&[("lamp", "Desk lamp <b>&</b>", 3_000, 4)]).await;
    let base = cluster.public_url(cluster.gateway_ids()[1]);
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{base}/products/lamp"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let header = |name: &str| page.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert!(header("content-security-policy").contains("script-src 'self'"));
    assert_eq!(header("cache-control"), "no-cache");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Desk lamp &lt;b&gt;&amp;&lt;/b&gt;"),
        "{html}"
    );
    assert!(!html.contains("<b>&</b>"));
    // Assets come from versioned URLs and may be cached for good.
    let css = html
        .split('"')
        .find(|part| part.starts_with("/assets/") && part.ends_with("shop.css"))
        .expect("a stylesheet link");
    let asset = http.get(format!("{base}{css}")).send().await.unwrap();
    assert_eq!(asset.status(), 200);
    assert_eq!(asset.headers()["content-type"], "text/css; charset=utf-8");
    assert!(asset.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    for missing in ["/orders/99", "/orders/not-a-number", "/products/nope"] {
        let answer = http.get(format!("{base}{missing}")).send().await.unwrap();
        assert_eq!(answer.status(), 404, "{missing}");
        assert_eq!(answer.headers()["content-type"], "text/html; charset=utf-8");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purchase_in_one_browser_updates_the_stock_in_another_on_another_gateway_without_reload()
{
    let cluster = shop(&[("hoodie", "Hoodie, heather grey, size L", 5_900, 100)]).await;
    let gateways = cluster.gateway_ids();
    let (base_a, base_b) = (
        cluster.public_url(gateways[0]),
        cluster.public_url(gateways[1]),
    );
    let driver = ChromeDriver::start().await;
    let (buyer, watcher) = (driver.browser().await, driver.browser().await);
    open_product(&buyer, &base_a, "hoodie").await;
    open_product(&watcher, &base_b, "hoodie").await;
    assert_eq!(watcher.text("#stock").await.as_deref(), Some("100"));
    // A mark that a reload would erase.
    watcher.execute("window.notReloaded = true;", vec![]).await;

    buyer.type_into("#quantity", "3").await;
    let clicked_at_ms = buyer
        .execute(
            "const at = Date.now(); document.getElementById('buy').click(); return at;",
            vec![],
        )
        .await
        .as_u64()
        .expect("a time");
    watcher.wait_text("#stock", |stock| stock == "97").await;
    let shown_at_ms = watcher
        .attribute("#stock", "data-changed-at")
        .await
        .and_then(|at| at.parse::<u64>().ok())
        .expect("the time the figure changed");
    println!(
        "purchase on gateway {} shown by the browser on gateway {} {} ms after the click",
        gateways[0],
        gateways[1],
        shown_at_ms.saturating_sub(clicked_at_ms)
    );
    assert_eq!(
        watcher
            .execute("return window.notReloaded === true;", vec![])
            .await,
        json!(true),
        "the watching page was reloaded"
    );
    result_in_state(&buyer, "confirmed").await;
    buyer.close().await;
    watcher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buying_more_than_is_left_says_how_many_and_selling_out_disables_buying() {
    let cluster = shop(&[
        ("tee-black-m", "Logo T-shirt, black, size M", 2_500, 5),
        ("poster", "Signed poster", 4_000, 1),
    ])
    .await;
    let base = cluster.public_url(cluster.gateway_ids()[2]);
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    open_product(&browser, &base, "tee-black-m").await;

    buy(&browser, 8).await;
    let refused = result_in_state(&browser, "insufficient").await;
    assert!(refused.contains("only 5 left"), "{refused}");
    assert_eq!(browser.text("#stock").await.as_deref(), Some("5"));
    assert!(!is_disabled(&browser, "#buy").await);

    // Buying the rest sells out: the page says so and buying is disabled.
    buy(&browser, 5).await;
    result_in_state(&browser, "confirmed").await;
    browser
        .wait_text("#availability", |t| t == "Sold out")
        .await;
    assert!(is_disabled(&browser, "#buy").await);
    assert!(is_disabled(&browser, "#quantity").await);
    assert_eq!(browser.text("#buy").await.as_deref(), Some("Sold out"));
    save_screenshot(&browser, "product-sold-out.png").await;

    // Sold out by someone else while the page is open: the same, without a reload.
    open_product(&browser, &base, "poster").await;
    assert!(!is_disabled(&browser, "#buy").await);
    cluster
        .shop_client()
        .purchase("poster", 1)
        .await
        .expect("the last poster");
    browser
        .wait_text("#availability", |t| t == "Sold out")
        .await;
    browser.wait_text("#buy", |label| label == "Sold out").await;
    assert!(is_disabled(&browser, "#buy").await);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operations_page_shows_every_node_and_a_killed_one_as_down() {
    let mut cluster = shop(&[("pen", "Ballpoint pen", 150, 10_000)]).await;
    let gateways = cluster.gateway_ids();
    let base = cluster.public_url(gateways[0]);
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    browser.set_window_size(1280, 1400).await;
    browser.goto(&format!("{base}/ops")).await;
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    for id in &ids {
        let row = format!("tr[data-node='{id}']");
        browser
            .wait_for(&format!("node {id} shown up"), || async {
                let class = browser.attribute(&row, "class").await;
                (class.as_deref() == Some("up")).then_some(())
            })
            .await;
    }
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await.unwrap();
    browser
        .wait_text("#ops-leader", |shown| shown == leader.to_string())
        .await;

    // Traffic for the chart, through the kills below (the client fails over).
    let shop = cluster.shop_client();
    let traffic = tokio::spawn(async move {
        loop {
            let _ = shop.purchase("pen", 1).await;
        }
    });
    browser
        .wait_text("#purchases-peak", |peak| peak != "-" && peak != "0/s")
        .await;
    // A few seconds of it on the chart: one bar per second with purchases.
    let bars_with_purchases = "return [...document.querySelectorAll('#chart-purchases rect')]\
                               .filter((bar) => Number(bar.getAttribute('height')) > 0).length;";
    browser
        .wait_for("five seconds of purchases on the chart", || async {
            let bars = browser.execute(bars_with_purchases, vec![]).await;
            (bars.as_u64() >= Some(5)).then_some(())
        })
        .await;

    // Kill a voter that does not lead, and a gateway other than the one serving the page.
    let follower = *cluster
        .voter_ids()
        .iter()
        .find(|id| **id != leader)
        .expect("a follower");
    let gateway = gateways[2];
    cluster.kill(follower).unwrap();
    cluster.kill(gateway).unwrap();
    for id in [follower, gateway] {
        let row = format!("tr[data-node='{id}']");
        browser
            .wait_for(&format!("node {id} shown down"), || async {
                let class = browser.attribute(&row, "class").await;
                (class.as_deref() == Some("down")).then_some(())
            })
            .await;
        assert_eq!(
            browser.text(&format!("{row} .badge")).await.as_deref(),
            Some("down")
        );
    }
    let alert = browser.wait_text("#ops-alert", |t| !t.is_empty()).await;
    assert!(alert.contains("is down"), "{alert}");
    // The others stay up.
    for id in ids.iter().filter(|id| ![follower, gateway].contains(id)) {
        let class = browser
            .attribute(&format!("tr[data-node='{id}']"), "class")
            .await;
        assert_eq!(class.as_deref(), Some("up"), "node {id}");
    }
    save_screenshot(&browser, "operations.png").await;
    traffic.abort();
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_outcome_says_checking_and_resolves_by_retrying_the_same_key() {
    let mut cluster = shop(&[("kettle", "Electric kettle", 3_900, 10)]).await;
    let base = cluster.public_url(cluster.gateway_ids()[0]);
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    open_product(&browser, &base, "kettle").await;

    // Two of three voters paused: nothing commits, and the gateway cannot tell whether the
    // purchase it forwarded will (504 outcome_unknown).
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await.unwrap();
    let follower = *cluster
        .voter_ids()
        .iter()
        .find(|id| **id != leader)
        .expect("a follower");
    cluster.pause(leader, true).unwrap();
    cluster.pause(follower, true).unwrap();
    buy(&browser, 2).await;
    let checking = result_in_state(&browser, "checking").await;
    assert!(checking.contains("could not confirm"), "{checking}");
    assert!(is_disabled(&browser, "#buy").await);

    // Once the voters are back, the page's retries with the same key learn the outcome.
    cluster.pause(leader, false).unwrap();
    cluster.pause(follower, false).unwrap();
    let confirmed = result_in_state(&browser, "confirmed").await;
    assert!(confirmed.contains("for 2 × Electric kettle"), "{confirmed}");
    browser.wait_text("#stock", |stock| stock == "8").await;
    let view = cluster
        .shop_client()
        .product_linearizable("kettle")
        .await
        .expect("a linearizable read");
    assert_eq!(view.product.sold, 2, "bought exactly once");
    browser.close().await;
}
