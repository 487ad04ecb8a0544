//! The shop's web pages, served by every gateway from its own replica.
//!
//! - `/`: the catalog (name, price, what is available and what is held in carts, sold-out
//!   state), kept live from the gateway's event stream (`/v1/stream`).
//! - `/products/{id}`: one product with its available and held counts (live), its limit per
//!   customer if it has one, a quantity field, a "Buy now" button (a purchase of that product
//!   alone) and an "Add to cart" button. The page buys through the public JSON API with an
//!   idempotency key made in the browser, one per purchase attempt, and resolves an unknown
//!   outcome by retrying the same attempt with the same key.
//! - `/cart`: the cart, which the browser keeps (`localStorage`: product ids and quantities, at
//!   most `checkout.cart_lines_max` lines), with live availability, prices and total, and a
//!   customer reference field (it stands for the account a real shop's backend would
//!   authenticate; sent as `customer` with holds and purchases). "Check out" holds the whole
//!   cart (`POST /v1/holds`), counts the hold down from its time-to-live, and offers "Pay" (the
//!   demo's payment: it confirms the hold into an order) and "Cancel" (releases it). A refusal
//!   names the line it is about: not enough left, unknown product, limit per customer reached,
//!   customer required.
//! - `/orders/{id}?token=...`: one order with its lines and status, for whoever holds its
//!   token, with a "Cancel order" button while `checkout.cancel_window_ms` has not passed; the
//!   same friendly 404 page when there is no such order or the token is missing or wrong.
//! - `/ops`: the operators' view of the cluster and of purchases per second, drawn from the
//!   gateway's operations service ([`super::ops`]).
//! - `/assets/{version}/{name}`: the CSS and JavaScript, embedded at build time (`assets.rs`).
//!
//! Pages are rendered on the server with maud templates (`views.rs`: checked at compile time, every
//! value HTML-escaped, product names included) and read as plain HTML; the scripts add live
//! stock, the cart, buying, holds, cancelling and the live operations view. Every page is sent
//! with a Content-Security-Policy that allows only this origin's own files, so no inline script
//! or style ever runs; its scripts may connect to this origin and to the other gateways'
//! (`gateway.public_origins`) only.
//!
//! Failover: the shop's pages are told every gateway's public origin and the page's request
//! timeout ([`Storefront`], on `<body>`). The script reads and streams from one gateway, its
//! own first; when that one stops answering (a network error, or no answer within
//! `gateway.page_request_timeout_ms`) it moves on to another, and a write (a purchase, a hold,
//! a payment, a release, a cancellation) is retried there with the same idempotency key, so it
//! is applied at most once. The other gateways answer it because the public API grants CORS to
//! exactly those origins ([`super::cors`]); tokens travel in the query (`?token=`), which needs
//! no header the grant does not cover.

mod assets;
mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use flashstock_api::{validate_product_id, OrderId};
use maud::Markup;
use raft_store::records::{OrderRecord, ProductRecord};
use serde::Deserialize;

use super::misses::applied_up_to;
use super::routes::product_confirmed;
use super::Gateway;
use views::{OrderLineSheet, OrderSheet, ProductCard, Shown};

type AppState = Arc<Gateway>;

/// Products per catalog page.
const CATALOG_PAGE: usize = 60;
/// Longest wait of an order page for this replica to apply the order's entry: a buyer follows
/// the confirmation link to the gateway that answered, whose replica may be a few milliseconds
/// behind the leader that confirmed.
const ORDER_CATCH_UP: Duration = Duration::from_secs(2);
/// Only this origin's files; no inline script or style, no framing, no plugins. Scripts may
/// connect to this origin and to the origins that follow (the other gateways).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'; connect-src 'self'";

/// What every page of this gateway is sent with and what the shop's script is told, computed
/// once from the config.
pub struct Storefront {
    /// The Content-Security-Policy, `connect-src` naming every gateway's origin.
    csp: HeaderValue,
    /// `gateway.public_origins`, space-separated.
    origins: String,
    request_timeout_ms: u64,
    retry_horizon_ms: u64,
    cart_lines_max: usize,
    quantity_max: u32,
    /// `checkout.cancel_window_ms`: the order page offers to cancel within it.
    cancel_window_ms: u64,
}

impl Storefront {
    pub fn new(config: &cluster_config::Config) -> Storefront {
        let origins = config.gateway.public_origins.join(" ");
        let mut csp = CONTENT_SECURITY_POLICY.to_owned();
        if !origins.is_empty() {
            csp.push(' ');
            csp.push_str(&origins);
        }
        Storefront {
            // The config checks that an origin holds only letters, digits and `:/.-[]`.
            csp: HeaderValue::try_from(csp).expect("validated origins make a header value"),
            origins,
            request_timeout_ms: config.gateway.page_request_timeout_ms,
            retry_horizon_ms: config.limits.client_retry_horizon_ms,
            cart_lines_max: config.checkout.cart_lines_max,
            quantity_max: config.limits.purchase_quantity_max,
            cancel_window_ms: config.checkout.cancel_window_ms,
        }
    }

    fn script(&self) -> views::ScriptConfig<'_> {
        views::ScriptConfig {
            origins: &self.origins,
            request_timeout_ms: self.request_timeout_ms,
            retry_horizon_ms: self.retry_horizon_ms,
            cart_lines_max: self.cart_lines_max,
            quantity_max: self.quantity_max,
        }
    }
}

/// The pages' routes; the public router merges them.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(catalog))
        .route("/products/{id}", get(product))
        .route("/cart", get(cart))
        .route("/orders/{id}", get(order))
        .route("/ops", get(operations))
        .route("/assets/{version}/{name}", get(assets::serve))
}

/// An HTML answer with the pages' headers. HTML is never cached: stock changes.
fn html(gateway: &Gateway, status: StatusCode, page: Markup) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                gateway.storefront.csp.clone(),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            ),
        ],
        page.into_string(),
    )
        .into_response()
}

/// A price in cents as shown to shoppers.
fn price(cents: u64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

impl From<ProductRecord> for ProductCard {
    fn from(ProductRecord { product, terms }: ProductRecord) -> ProductCard {
        ProductCard {
            price: price(product.price_cents),
            id: product.id,
            name: product.name,
            stock: product.stock,
            held: terms.held,
            limit_per_customer: terms.limit_per_customer,
        }
    }
}

fn not_found(gateway: &Gateway, title: &str, message: &str) -> Response {
    html(
        gateway,
        StatusCode::NOT_FOUND,
        views::not_found(title, message),
    )
}

fn storage_failed(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "a page could not read the replica");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "this server could not read its data; try again",
    )
        .into_response()
}

#[derive(Deserialize)]
struct CatalogQuery {
    after: Option<String>,
}

async fn catalog(
    State(gateway): State<AppState>,
    query: Result<Query<CatalogQuery>, QueryRejection>,
) -> Response {
    let after = query.ok().and_then(|Query(q)| q.after);
    let after = after.filter(|after| validate_product_id(after).is_ok());
    let applied_index = super::routes::list_applied_index(&gateway);
    // One more than shown tells whether another page follows.
    let mut products = match gateway
        .node
        .product_records(after.as_deref(), CATALOG_PAGE + 1)
    {
        Ok(products) => products,
        Err(e) => return storage_failed(e),
    };
    let next_after = (products.len() > CATALOG_PAGE).then(|| {
        products.truncate(CATALOG_PAGE);
        products.last().map(|p| p.product.id.clone())
    });
    let cards: Vec<ProductCard> = products.into_iter().map(ProductCard::from).collect();
    let page = views::catalog(
        &gateway.storefront.script(),
        &cards,
        applied_index,
        after.as_deref().unwrap_or_default(),
        CATALOG_PAGE,
        next_after.flatten().as_deref(),
    );
    html(&gateway, StatusCode::OK, page)
}

async fn product(State(gateway): State<AppState>, Path(id): Path<String>) -> Response {
    let no_such = || {
        not_found(
            &gateway,
            "No such product",
            "This shop does not sell that product.",
        )
    };
    if validate_product_id(&id).is_err() {
        return no_such();
    }
    let group = gateway.node.group_of(&id);
    let (applied_index, record) = product_confirmed(&gateway, group, &id).await;
    match record {
        Ok(Some(record)) => {
            let script = gateway.storefront.script();
            let page = views::product(&script, &record.into(), applied_index);
            html(&gateway, StatusCode::OK, page)
        }
        Ok(None) => no_such(),
        Err(e) => storage_failed(e),
    }
}

/// The cart: the browser keeps its lines; the page's script shows and checks them out.
async fn cart(State(gateway): State<AppState>) -> Response {
    let page = views::cart(&gateway.storefront.script());
    html(&gateway, StatusCode::OK, page)
}

#[derive(serde::Deserialize)]
struct OrderQuery {
    token: Option<String>,
}

/// An order's page, for whoever holds its token (`?token=`, in the link the purchase answer
/// leads to); anyone else gets the page of an order that does not exist.
async fn order(
    State(gateway): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<OrderQuery>, QueryRejection>,
) -> Response {
    // A query that does not parse holds no token.
    let token = query.ok().and_then(|Query(query)| query.token);
    let no_such = || {
        not_found(
            &gateway,
            "No such order",
            "We have no order with that number. Check the number in your confirmation; \
             orders from long ago may have moved to the archive.",
        )
    };
    let Ok(id) = id.parse::<u64>().map(OrderId) else {
        return no_such();
    };
    let Some(group) = gateway.node.group_of_order(id) else {
        return no_such();
    };
    let reader = &group.reader;
    // The order id says which entry placed it: wait, briefly, for this replica to apply it.
    let deadline = tokio::time::Instant::now() + ORDER_CATCH_UP;
    let caught_up = applied_up_to(&mut reader.watch_applied(), id.log_index(), deadline).await;
    let record = match reader.order_record(id) {
        Ok(Some(record)) if super::routes::holds_order_token(&record.order, token.as_deref()) => {
            record
        }
        Ok(Some(_)) => return no_such(),
        Ok(None) if !caught_up => {
            return not_found(
                &gateway,
                "Order not here yet",
                "This server has not received that order yet. Reload in a moment.",
            )
        }
        Ok(None) => return no_such(),
        Err(e) => return storage_failed(e),
    };
    let product_name = |id: &str| reader.product(id).ok().flatten().map(|p| p.name);
    let sheet = order_sheet(
        record,
        product_name,
        gateway.storefront.cancel_window_ms,
        crate::now_ms(),
    );
    let page = views::order(&gateway.storefront.script(), &sheet);
    html(&gateway, StatusCode::OK, page)
}

/// An order as its page shows it: its lines with their products' names (`name_of`, `None` for
/// a product no longer in the catalog), and until when it may be cancelled, if that is after
/// `now_ms` (this gateway's clock; the state machine decides by the log's).
fn order_sheet(
    record: OrderRecord,
    name_of: impl Fn(&str) -> Option<String>,
    cancel_window_ms: u64,
    now_ms: u64,
) -> OrderSheet {
    let OrderRecord { order, terms } = record;
    let mut total: u64 = 0;
    let mut items: u64 = 0;
    let lines = terms
        .lines_of(&order)
        .into_iter()
        .map(|line| {
            let line_total = line.price_cents.saturating_mul(u64::from(line.quantity));
            total = total.saturating_add(line_total);
            items = items.saturating_add(u64::from(line.quantity));
            OrderLineSheet {
                product_name: name_of(&line.product),
                product_id: line.product,
                quantity: line.quantity,
                unit_price: price(line.price_cents),
                total: price(line_total),
            }
        })
        .collect();
    let until = order.placed_at_ms.saturating_add(cancel_window_ms);
    OrderSheet {
        id: order.id.0,
        lines,
        items,
        total: price(total),
        placed_at: shown(order.placed_at_ms),
        customer: order.customer,
        cancelled_at: terms.cancelled_at_ms.map(shown),
        cancellable_until: (until > now_ms).then(|| shown(until)),
    }
}

fn shown(ms: u64) -> Shown {
    Shown {
        text: utc_time(ms),
        iso: iso_time(ms),
    }
}

async fn operations(State(gateway): State<AppState>) -> Response {
    let view = gateway.ops.view(&gateway.node, 0).await;
    let probed_at = utc_time(view.probed_at_ms);
    let page = views::ops(&view, &probed_at, super::ops::HISTORY_SECONDS / 60);
    html(&gateway, StatusCode::OK, page)
}

/// A Unix time in milliseconds as people read it, in UTC: `2026-11-25 20:14:03 UTC`.
fn utc_time(ms: u64) -> String {
    let iso = iso_time(ms);
    format!("{} {} UTC", &iso[..10], &iso[11..19])
}

/// The last millisecond `humantime` formats (end of year 9999). A real clock sets every time
/// shown; a later one shows as this one instead of panicking the page.
const TIME_SHOWN_MAX_MS: u64 = 253_402_300_799_999;

/// A Unix time in milliseconds for `<time datetime>`: `2026-11-25T20:14:03Z`.
fn iso_time(ms: u64) -> String {
    let ms = ms.min(TIME_SHOWN_MAX_MS);
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        // 2000-02-29 is a leap day; 2024-03-01 follows one.
        assert_eq!(utc_time(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(iso_time(1_709_251_199_000), "2024-02-29T23:59:59Z");
        assert_eq!(iso_time(1_709_251_200_000), "2024-03-01T00:00:00Z");
    }

    #[test]
    fn prices_show_cents() {
        assert_eq!(price(14_900), "$149.00");
        assert_eq!(price(5), "$0.05");
    }

    fn script() -> views::ScriptConfig<'static> {
        views::ScriptConfig {
            origins: "",
            request_timeout_ms: 1,
            retry_horizon_ms: 1,
            cart_lines_max: 7,
            quantity_max: 10,
        }
    }

    fn card(name: &str, stock: u64, held: u64, limit: Option<u32>) -> ProductCard {
        ProductCard {
            id: "x".into(),
            name: name.into(),
            price: price(100),
            stock,
            held,
            limit_per_customer: limit,
        }
    }

    #[test]
    fn product_names_are_escaped() {
        let card = card("<script>alert(1)</script> & \"co\"", 3, 0, None);
        let body = views::product(&script(), &card, 1).into_string();
        assert!(!body.contains("<script>alert"));
        // In text and in the data-name attribute alike.
        let escaped = "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;co&quot;";
        assert_eq!(body.matches(escaped).count(), 3, "{body}");
    }

    /// What is held shows only when some is; the limit only when there is one; the script is
    /// told the cart's bounds.
    #[test]
    fn product_pages_show_held_items_and_the_limit_when_there_are_some() {
        let plain = views::product(&script(), &card("Mug", 40, 0, None), 1).into_string();
        assert!(plain.contains(r#"id="held-note" hidden"#), "{plain}");
        assert!(plain.contains(r#"id="limit" hidden"#), "{plain}");
        assert!(plain.contains(r#"data-cart-lines-max="7""#), "{plain}");
        assert!(plain.contains(r#"data-quantity-max="10""#), "{plain}");
        let held = views::product(&script(), &card("Mug", 40, 3, Some(2)), 1).into_string();
        assert!(
            held.contains(r#"<span class="held-note" id="held-note"> · <span class="num held" id="held">3</span> held in carts</span>"#),
            "{held}"
        );
        assert!(
            held.contains(r#"<p class="limit" id="limit">Limit: "#),
            "{held}"
        );
        assert!(
            held.contains(r#"id="limit-value">2</span> per customer"#),
            "{held}"
        );
        let cart = views::cart(&script()).into_string();
        assert!(cart.contains(r#"data-cart-lines-max="7""#), "{cart}");
        assert!(cart.contains("backend would authenticate"), "{cart}");
    }

    fn line(product: &str, quantity: u32, price_cents: u64) -> flashstock_api::OrderLine {
        flashstock_api::OrderLine {
            product: product.into(),
            quantity,
            price_cents,
            remaining: 0,
            limit_epoch: 0,
        }
    }

    fn record(lines: Vec<flashstock_api::OrderLine>, cancelled_at_ms: Option<u64>) -> OrderRecord {
        let first = lines[0].clone();
        OrderRecord {
            order: flashstock_api::Order {
                id: OrderId::new(9, 1),
                key: "k".into(),
                product: first.product,
                quantity: first.quantity,
                customer: Some("<alice>".into()),
                price_cents: first.price_cents,
                remaining: 0,
                placed_at_ms: 1_000_000,
                token: Some("ab".repeat(16)),
            },
            terms: flashstock_api::OrderTerms {
                lines,
                hold: None,
                cancelled_at_ms,
            },
        }
    }

    #[test]
    fn an_order_of_several_lines_shows_each_with_the_total_and_the_cancel_button_in_time() {
        let name_of = |id: &str| (id == "mug").then(|| "Mug <white>".to_owned());
        let lines = vec![line("mug", 2, 1_200), line("gone", 1, 500)];
        let sheet = order_sheet(record(lines.clone(), None), name_of, 60_000, 1_030_000);
        assert_eq!((sheet.items, sheet.total.as_str()), (3, "$29.00"));
        assert_eq!(sheet.lines[1].total, "$5.00");
        assert!(sheet.cancellable_until.is_some());
        let body = views::order(&script(), &sheet).into_string();
        assert!(body.contains("Mug &lt;white&gt;"), "{body}");
        assert!(body.contains("&lt;alice&gt;"), "{body}");
        // A product no longer sold shows its id.
        assert!(
            body.contains(r#"<a href="/products/gone">gone</a>"#),
            "{body}"
        );
        assert!(body.contains(r#"id="cancel-order""#), "{body}");
        assert!(body.contains(r#"data-status="placed""#), "{body}");

        // After the window: no button. Cancelled: the time, no button.
        let late = order_sheet(record(lines.clone(), None), name_of, 60_000, 1_060_000);
        assert!(late.cancellable_until.is_none());
        assert!(!views::order(&script(), &late)
            .into_string()
            .contains("cancel-order"));
        let cancelled = order_sheet(record(lines, Some(1_010_000)), name_of, 60_000, 1_020_000);
        let body = views::order(&script(), &cancelled).into_string();
        assert!(!body.contains("cancel-order"), "{body}");
        assert!(body.contains(r#"data-status="cancelled""#), "{body}");
        assert!(
            body.contains("Cancelled <time datetime=\"1970-01-01T00:16:50Z\">"),
            "{body}"
        );
    }
}
