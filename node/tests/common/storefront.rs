//! Shared set-up of the storefront's browser tests (`t50_storefront.rs`,
//! `t51_storefront_checkout.rs`): a shop of six real nodes with products every gateway knows,
//! and what a test does on a page.

#![allow(dead_code)]

use std::path::PathBuf;

use flashstock_api::CreateProductRequest;
use flashstock_client::ShopClient;
use flashstock_deploy::local::LocalCluster;
use serde_json::json;

use crate::browser::Browser;
use crate::common::*;

/// Where the tests leave their screenshots.
pub fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join(name)
}

pub async fn save_screenshot(browser: &Browser, name: &str) {
    let path = screenshot_path(name);
    browser.screenshot(&path).await;
    println!("screenshot: {}", path.display());
}

/// A product of a test shop: `id`, name, price in cents, stock; no limit per customer.
pub fn item(id: &str, name: &str, price_cents: u64, stock: u64) -> CreateProductRequest {
    CreateProductRequest {
        id: id.into(),
        name: name.into(),
        price_cents,
        stock,
        limit_per_customer: None,
    }
}

/// Six nodes with these products (`id`, name, price in cents, stock), known to every gateway.
pub async fn shop(products: &[(&str, &str, u64, u64)]) -> LocalCluster {
    shop_with(|_| {}, products).await
}

/// [`shop`], with `tweak` applied to every node's config.
pub async fn shop_with(
    tweak: impl Fn(&mut cluster_config::Config),
    products: &[(&str, &str, u64, u64)],
) -> LocalCluster {
    let requests: Vec<CreateProductRequest> = products
        .iter()
        .map(|(id, name, price_cents, stock)| item(id, name, *price_cents, *stock))
        .collect();
    shop_of(tweak, &requests).await
}

/// Six nodes with these products, known to every gateway.
pub async fn shop_of(
    tweak: impl Fn(&mut cluster_config::Config),
    products: &[CreateProductRequest],
) -> LocalCluster {
    let cluster = six_nodes(tweak).await;
    create_everywhere(&cluster, products).await;
    cluster
}

/// Create these products, and wait until every gateway has them: pages are served from each
/// gateway's replica.
pub async fn create_everywhere(cluster: &LocalCluster, products: &[CreateProductRequest]) {
    let shop = cluster.shop_client();
    for request in products {
        shop.create_product(request)
            .await
            .expect("create a product");
    }
    for gateway in cluster.gateway_ids() {
        let client = ShopClient::new(vec![cluster.public_url(gateway)]);
        for request in products {
            let id = &request.id;
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
}

/// Open a product page and wait until its script is ready to buy (or shows it sold out).
pub async fn open_product(browser: &Browser, base: &str, id: &str) {
    browser.goto(&format!("{base}/products/{id}")).await;
    browser
        .wait_text("#buy", |label| label == "Buy now" || label == "Sold out")
        .await;
}

/// Type a quantity and press buy.
pub async fn buy(browser: &Browser, quantity: u32) {
    browser.type_into("#quantity", &quantity.to_string()).await;
    browser.click("#buy").await;
}

/// Wait until the element `css` (a result area) says `data-state` = `state`; its text.
pub async fn in_state(browser: &Browser, css: &str, state: &str) -> String {
    browser
        .wait_for(&format!("{css} in state {state:?}"), || async {
            let now = browser.attribute(css, "data-state").await;
            if now.as_deref() == Some(state) {
                browser.text(css).await
            } else {
                None
            }
        })
        .await
}

/// Wait until the purchase result is in `state`; its text.
pub async fn result_in_state(browser: &Browser, state: &str) -> String {
    in_state(browser, "#result", state).await
}

pub async fn is_disabled(browser: &Browser, css: &str) -> bool {
    browser
        .execute(
            "return document.querySelector(arguments[0]).disabled;",
            vec![json!(css)],
        )
        .await
        == json!(true)
}

/// Whether the first element matching `css` is hidden (by its `hidden` attribute or an
/// ancestor's; a missing element counts as hidden).
pub async fn is_hidden(browser: &Browser, css: &str) -> bool {
    browser
        .execute(
            "const e = document.querySelector(arguments[0]); \
             return !e || e.closest('[hidden]') !== null;",
            vec![json!(css)],
        )
        .await
        == json!(true)
}
