//! The storefront in a real headless Chromium against six real node processes: buying on a
//! product page, stock that follows other buyers live across gateways, not-enough-stock and
//! sold-out answers, an unknown outcome resolved by retrying the same key, the operations
//! page noticing a killed node, and failover: a purchase whose gateway freezes or dies is
//! answered by another gateway and applied once, the stock stream carries on from another
//! gateway, CORS grants exactly the configured gateway origins, and a gateway configured with no
//! origins keeps its pages to itself. Screenshots of each page
//! are saved under the build directory's test scratch space (printed by each test).

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/storefront.rs"]
mod storefront;

use browser::{Browser, ChromeDriver};
use common::*;
use flashstock_deploy::local::LocalCluster;
use serde_json::json;
use storefront::*;
// The page's buy button, not `common::buy` (a purchase through the internal API).
use storefront::buy;

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

/// The page gives up on a silent gateway after this long (the default is 6 s): above the
/// gateways' `forward_timeout_ms` (3 s), as the config requires.
const PAGE_REQUEST_TIMEOUT_MS: u64 = 4000;

fn quick_page_timeout(config: &mut cluster_config::Config) {
    config.gateway.page_request_timeout_ms = PAGE_REQUEST_TIMEOUT_MS;
}

/// The gateway whose public URL is `url`.
fn gateway_at(cluster: &LocalCluster, url: &str) -> u64 {
    *cluster
        .gateway_ids()
        .iter()
        .find(|id| cluster.public_url(**id) == url)
        .unwrap_or_else(|| panic!("no gateway at {url}"))
}

/// Buy on the open product page and wait for the outcome: the confirmation's order id and the
/// gateway that confirmed. The page must still be waiting right after the click (`pending`).
async fn buy_and_confirm(browser: &Browser, quantity: u32) -> (u64, String) {
    buy(browser, quantity).await;
    assert_eq!(
        browser.attribute("#result", "data-state").await.as_deref(),
        Some("pending"),
        "answered at once"
    );
    let confirmed = result_in_state(browser, "confirmed").await;
    let order_id = confirmed
        .trim_start_matches("Confirmed: order #")
        .split_once(' ')
        .and_then(|(id, _)| id.parse().ok())
        .unwrap_or_else(|| panic!("an order number in {confirmed:?}"));
    let gateway = browser
        .attribute("#result", "data-gateway")
        .await
        .expect("the gateway that confirmed");
    (order_id, gateway)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purchase_whose_gateway_freezes_or_dies_is_confirmed_by_another_and_applied_once() {
    let mut cluster = shop_with(
        quick_page_timeout,
        &[("kettle", "Electric kettle", 3_900, 10)],
    )
    .await;
    let urls = cluster.gateway_urls();
    let first = cluster.gateway_ids()[0];
    let base = cluster.public_url(first);
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    open_product(&browser, &base, "kettle").await;
    // The page was told every gateway's origin.
    let listed = browser.attribute("body", "data-gateways").await;
    assert_eq!(listed, Some(urls.join(" ")));

    // Its gateway freezes just before the click: the purchase hangs there until the page's
    // timeout, then goes to another gateway with the same key. Then the frozen one is killed.
    cluster.pause(first, true).unwrap();
    let started = std::time::Instant::now();
    let (order_a, confirmed_by) = buy_and_confirm(&browser, 2).await;
    let waited = started.elapsed();
    cluster.kill(first).unwrap();
    println!("a purchase on a frozen gateway confirmed by {confirmed_by} after {waited:?}");
    assert_ne!(confirmed_by, base);
    assert!(
        waited >= std::time::Duration::from_millis(PAGE_REQUEST_TIMEOUT_MS),
        "confirmed before the page gave the frozen gateway up: {waited:?}"
    );
    save_screenshot(&browser, "product-failover.png").await;

    // The gateway that answered is now the page's; it is frozen and killed while the second
    // purchase is in flight to it: the page learns at once and asks the last gateway.
    let second = gateway_at(&cluster, &confirmed_by);
    cluster.pause(second, true).unwrap();
    buy(&browser, 3).await;
    assert_eq!(
        browser.attribute("#result", "data-state").await.as_deref(),
        Some("pending")
    );
    let started = std::time::Instant::now();
    cluster.kill(second).unwrap();
    let confirmed = result_in_state(&browser, "confirmed").await;
    println!(
        "a purchase on a killed gateway confirmed {:?} after the kill",
        started.elapsed()
    );
    let order_b: u64 = confirmed
        .trim_start_matches("Confirmed: order #")
        .split_once(' ')
        .and_then(|(id, _)| id.parse().ok())
        .expect("an order number");
    let last = browser
        .attribute("#result", "data-gateway")
        .await
        .expect("the gateway that confirmed");
    assert!(![base.as_str(), confirmed_by.as_str()].contains(&last.as_str()));
    browser.wait_text("#stock", |stock| stock == "5").await;
    // The link to the order leads to the gateway that confirmed it.
    let link = browser
        .attribute("#result a", "href")
        .await
        .expect("a link");
    assert!(
        link.starts_with(&format!("{last}/orders/{order_b}?token=")),
        "{link}"
    );

    // Exactly one order per purchase, whatever the gateways saw.
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await.unwrap();
    let orders: Vec<_> = cluster
        .voter_client()
        .all_orders(&cluster.addr(leader))
        .await
        .expect("the orders")
        .into_iter()
        .filter(|order| order.product == "kettle")
        .collect();
    let mut placed: Vec<(u64, u32)> = orders.iter().map(|o| (o.id.0, o.quantity)).collect();
    placed.sort();
    assert_eq!(placed, vec![(order_a, 2), (order_b, 3)], "{orders:?}");
    let view = cluster
        .shop_client()
        .product_linearizable("kettle")
        .await
        .expect("a linearizable read");
    assert_eq!(view.product.sold, 5, "each purchase applied once");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stock_stream_carries_on_from_another_gateway_after_the_pages_gateway_is_killed() {
    let mut cluster = shop_with(
        quick_page_timeout,
        &[("hoodie", "Hoodie, heather grey, size L", 5_900, 100)],
    )
    .await;
    let first = cluster.gateway_ids()[0];
    let base = cluster.public_url(first);
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    open_product(&browser, &base, "hoodie").await;
    let stream_on = || async {
        let gateway = browser.attribute("body", "data-stream-gateway").await;
        let state = browser.attribute("body", "data-stream-state").await;
        (state.as_deref() == Some("open"))
            .then_some(gateway)
            .flatten()
    };
    browser
        .wait_for("the stream open on the page's gateway", || async {
            stream_on().await.filter(|on| *on == base)
        })
        .await;
    browser.execute("window.notReloaded = true;", vec![]).await;

    cluster.kill(first).unwrap();
    let killed_at = std::time::Instant::now();
    let now_on = browser
        .wait_for("the stream open on another gateway", || async {
            stream_on().await.filter(|on| *on != base)
        })
        .await;
    println!(
        "stream moved to {now_on} {:?} after the kill",
        killed_at.elapsed()
    );
    // A purchase after the move reaches the page through the new stream.
    cluster
        .shop_client()
        .purchase("hoodie", 3)
        .await
        .expect("a purchase");
    browser.wait_text("#stock", |stock| stock == "97").await;
    assert_eq!(
        browser
            .execute("return window.notReloaded === true;", vec![])
            .await,
        json!(true),
        "the page was reloaded"
    );
    browser.close().await;
}

/// CORS on the public API: each gateway grants every configured gateway origin what the page
/// uses (preflight included), and nothing to any other origin or for anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_public_api_grants_cors_to_the_configured_gateway_origins_only() {
    let cluster = shop(&[("lamp", "Desk lamp", 3_000, 4)]).await;
    let urls = cluster.gateway_urls();
    let http = reqwest::Client::new();
    let preflight = |base: &str, origin: &str, method: &str, headers: &str| {
        http.request(
            reqwest::Method::OPTIONS,
            format!("{base}/v1/products/lamp/purchase"),
        )
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
    };
    let allow_origin = |response: &reqwest::Response| {
        response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    for base in &urls {
        for origin in &urls {
            let answer = preflight(base, origin, "POST", "content-type,idempotency-key")
                .await
                .unwrap();
            assert_eq!(answer.status(), 204, "{base} for {origin}");
            assert_eq!(allow_origin(&answer).as_deref(), Some(origin.as_str()));
            let header = |name: &str| answer.headers()[name].to_str().unwrap().to_owned();
            assert_eq!(header("access-control-allow-methods"), "GET, POST");
            assert_eq!(
                header("access-control-allow-headers"),
                "content-type, idempotency-key"
            );
            let read = http
                .get(format!("{base}/v1/products/lamp"))
                .header("origin", origin)
                .send()
                .await
                .unwrap();
            assert_eq!(read.status(), 200);
            assert_eq!(allow_origin(&read).as_deref(), Some(origin.as_str()));
            assert!(read.headers()["vary"].to_str().unwrap().contains("origin"));
        }
        // Anything else asked by a listed origin: no grant.
        let origin = &urls[1];
        for (method, headers) in [
            ("DELETE", "content-type"),
            ("PUT", ""),
            ("POST", "content-type, authorization"),
        ] {
            let answer = preflight(base, origin, method, headers).await.unwrap();
            assert_eq!(allow_origin(&answer), None, "{method} {headers}");
        }
        // Any other origin: no grant, neither to a preflight nor to a read.
        let port = base.rsplit(':').next().unwrap();
        for stranger in [
            "http://evil.example".to_owned(),
            "null".to_owned(),
            format!("{origin}/"),
            origin.replace("http://", "https://"),
            format!("http://localhost:{port}"),
        ] {
            let answer = preflight(base, &stranger, "POST", "content-type")
                .await
                .unwrap();
            assert_ne!(answer.status(), 204, "{stranger}");
            assert_eq!(allow_origin(&answer), None, "{stranger}");
            let read = http
                .get(format!("{base}/v1/products/lamp"))
                .header("origin", &stranger)
                .send()
                .await
                .unwrap();
            assert_eq!(read.status(), 200);
            assert_eq!(allow_origin(&read), None, "{stranger}");
        }
        // Pages are not granted, and may connect to every gateway.
        let page = http
            .get(format!("{base}/products/lamp"))
            .header("origin", &urls[1])
            .send()
            .await
            .unwrap();
        assert_eq!(allow_origin(&page), None);
        let csp = page.headers()["content-security-policy"].to_str().unwrap();
        assert!(
            csp.ends_with(&format!("connect-src 'self' {}", urls.join(" "))),
            "{csp}"
        );
    }
}

/// With no `gateway.public_origins` a page talks to the gateway that served it only: it is told
/// no other gateway, may connect to its own origin only, buys there, and no origin gets CORS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_origins_a_page_buys_through_its_own_gateway_and_nobody_gets_cors() {
    let cluster = shop_with(
        |config| config.gateway.public_origins.clear(),
        &[("mug-white", "Logo mug, white", 1_200, 20)],
    )
    .await;
    let urls = cluster.gateway_urls();
    let base = &urls[0];
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    open_product(&browser, base, "mug-white").await;
    assert_eq!(browser.attribute("body", "data-gateways").await, None);
    buy(&browser, 1).await;
    result_in_state(&browser, "confirmed").await;
    assert_eq!(
        browser
            .attribute("#result", "data-gateway")
            .await
            .as_deref(),
        Some(base.as_str())
    );
    browser.close().await;

    let http = reqwest::Client::new();
    let page = http
        .get(format!("{base}/products/mug-white"))
        .send()
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.ends_with("connect-src 'self'"), "{csp}");
    let preflight = http
        .request(
            reqwest::Method::OPTIONS,
            format!("{base}/v1/products/mug-white/purchase"),
        )
        .header("origin", &urls[1])
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(preflight
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}
