//! The pages' markup, as maud templates: checked at compile time, and every interpolated value
//! (product names, customer references, ids) is HTML-escaped. The scripts find what they update
//! by id and `data-` attributes; the stylesheet by class.

use flashstock_api::RaftState;
use maud::{html, Markup, DOCTYPE};

use super::assets::URLS;
use crate::gateway::ops::ClusterView;

/// A product as the pages show it.
pub struct ProductCard {
    pub id: String,
    pub name: String,
    pub price: String,
    /// Available.
    pub stock: u64,
    /// Held by holds not confirmed, released or expired yet.
    pub held: u64,
    pub limit_per_customer: Option<u32>,
}

/// One line of an order as its page shows it.
pub struct OrderLineSheet {
    pub product_id: String,
    /// The product's name, if it is still in the catalog.
    pub product_name: Option<String>,
    pub quantity: u32,
    pub unit_price: String,
    pub total: String,
}

/// A time as the pages show it: for people (`2026-11-25 20:14:03 UTC`) and for `<time datetime>`.
pub struct Shown {
    pub text: String,
    pub iso: String,
}

/// An order as its page shows it.
pub struct OrderSheet {
    pub id: u64,
    /// Every line, in the cart's order; at least one.
    pub lines: Vec<OrderLineSheet>,
    /// Items over every line.
    pub items: u64,
    pub total: String,
    pub placed_at: Shown,
    pub customer: Option<String>,
    /// When it was cancelled; `None` while it stands.
    pub cancelled_at: Option<Shown>,
    /// Until when its owner may cancel it, if that is still ahead (by this gateway's clock).
    pub cancellable_until: Option<Shown>,
}

/// What the shop's script is told on its pages, as `data-` attributes of `<body>`: where else
/// it may go when this gateway stops answering, how long it waits, and how big a cart may be.
pub struct ScriptConfig<'a> {
    /// Every gateway's public origin, space-separated (`gateway.public_origins`); empty: only
    /// the gateway that served the page.
    pub origins: &'a str,
    /// `gateway.page_request_timeout_ms`.
    pub request_timeout_ms: u64,
    /// `limits.client_retry_horizon_ms`: the page gives a write's key up after this long.
    pub retry_horizon_ms: u64,
    /// `checkout.cart_lines_max`: most products in the cart kept in the browser.
    pub cart_lines_max: usize,
    /// `limits.purchase_quantity_max`: most items of one product on one line.
    pub quantity_max: u32,
}

/// Every page: header, navigation, a skip link, and the page's own script if it has one.
fn layout(title: &str, script: Option<&str>, main: Markup) -> Markup {
    layout_with(title, script, None, main)
}

fn layout_with(
    title: &str,
    script: Option<&str>,
    config: Option<&ScriptConfig>,
    main: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · flashstock" }
                link rel="stylesheet" href=(URLS.css);
                @if let Some(src) = script {
                    script src=(src) defer {}
                }
            }
            body data-gateways=[config.map(|c| c.origins).filter(|o| !o.is_empty())]
                data-request-timeout-ms=[config.map(|c| c.request_timeout_ms)]
                data-retry-horizon-ms=[config.map(|c| c.retry_horizon_ms)]
                data-cart-lines-max=[config.map(|c| c.cart_lines_max)]
                data-quantity-max=[config.map(|c| c.quantity_max)] {
                a.skip href="#main" { "Skip to content" }
                header.site {
                    a.brand href="/" { "flashstock" }
                    nav aria-label="Site" {
                        a href="/" { "Products" }
                        // The script adds how many products the cart holds.
                        a href="/cart" { "Cart" span #cart-count .count {} }
                        a href="/ops" { "Operations" }
                    }
                }
                main #main tabindex="-1" { (main) }
            }
        }
    }
}

/// The stock figures and the sold-out label; the stylesheet shows one of the first two. What
/// is held in carts follows, only when some is (`hidden` otherwise). Each figure comes last in
/// its phrase, so that a change of its width moves nothing before it.
fn availability(stock: u64, held: u64, ids: bool) -> Markup {
    html! {
        span.in-stock { "In stock: " span.num.stock id=[ids.then_some("stock")] { (stock) } }
        span.sold-out-label { "Sold out" }
        span.held-note id=[ids.then_some("held-note")] hidden[held == 0] {
            " · " span.num.held id=[ids.then_some("held")] { (held) } " held in carts"
        }
    }
}

/// The customer reference, kept in the browser and sent with holds and purchases. A demo shop
/// has no login; the field says what it stands for.
fn customer_field(hidden: bool) -> Markup {
    html! {
        form #customer-form .customer hidden[hidden] {
            label for="customer" { "Customer reference" }
            input #customer name="customer" type="text" maxlength="64" pattern="[!-~]{1,64}"
                autocomplete="off" spellcheck="false" aria-describedby="customer-hint";
            p #customer-hint .hint {
                "Stands for the account the shop's backend would authenticate: this demo shop "
                "has no login. Products with a limit per customer need it. Kept in this browser."
            }
        }
    }
}

pub fn catalog(
    config: &ScriptConfig,
    products: &[ProductCard],
    applied_index: u64,
    after: &str,
    limit: usize,
    next_after: Option<&str>,
) -> Markup {
    let main = html! {
        h1 { "Products" }
        p.hint { "Stock updates live as people buy and hold items in their carts." }
        p #stock-news .visually-hidden role="status" aria-live="polite" {}
        @if products.is_empty() {
            p { "Nothing for sale yet." }
        } @else {
            ul #catalog .catalog data-index=(applied_index) data-after=(after) data-limit=(limit) {
                @for product in products {
                    li.card.sold-out[product.stock == 0] data-product=(product.id) {
                        h2 { a href={ "/products/" (product.id) } { (product.name) } }
                        p.price { (product.price) }
                        p.availability {
                            (availability(product.stock, product.held, false))
                        }
                    }
                }
            }
        }
        @if let Some(next) = next_after {
            p.pager { a href={ "/?after=" (next) } { "More products" } }
        }
    };
    layout_with("Products", Some(&URLS.shop_js), Some(config), main)
}

pub fn product(config: &ScriptConfig, product: &ProductCard, applied_index: u64) -> Markup {
    let sold_out = product.stock == 0;
    let limit = product.limit_per_customer;
    let main = html! {
        p.crumbs { a href="/" { "All products" } }
        article #product .product.sold-out[sold_out] data-product=(product.id)
            data-index=(applied_index) data-name=(product.name) data-price=(product.price) {
            h1 { (product.name) }
            p.price { (product.price) }
            p #availability .availability aria-live="polite" aria-atomic="true" {
                (availability(product.stock, product.held, true))
            }
            p #limit .limit hidden[limit.is_none()] {
                "Limit: " span #limit-value .num { @if let Some(limit) = limit { (limit) } }
                " per customer"
            }
            form #buy-form .buy {
                label for="quantity" { "Quantity" }
                input #quantity name="quantity" type="number" inputmode="numeric" min="1"
                    max=(config.quantity_max) value="1" required;
                // Enabled by the script, which does the buying.
                button #buy type="submit" disabled { "Buy now" }
                button #add-to-cart .secondary type="button" disabled { "Add to cart" }
            }
            (customer_field(limit.is_none()))
            noscript { p.note { "Buying needs JavaScript; please turn it on for this shop." } }
            div #result .result role="status" aria-live="polite" {}
        }
    };
    layout_with(&product.name, Some(&URLS.shop_js), Some(config), main)
}

/// The cart, kept in the browser: the script fills the lines from the public API, places the
/// hold of the whole cart, counts it down, and pays (confirms) or cancels (releases) it.
pub fn cart(config: &ScriptConfig) -> Markup {
    let main = html! {
        h1 { "Your cart" }
        p #cart-news .visually-hidden role="status" aria-live="polite" {}
        section #cart .cart-page aria-labelledby="cart-title" {
            h2 #cart-title .visually-hidden { "Products in your cart" }
            p #cart-empty .note hidden {
                "Your cart is empty. " a href="/" { "Browse the products" } "."
            }
            div.table-scroll tabindex="0" role="region" aria-labelledby="cart-title" {
                table #cart-lines .lines hidden {
                    thead { tr {
                        th scope="col" { "Product" }
                        th.n scope="col" { "Unit price" }
                        th.n scope="col" { "Quantity" }
                        th.n scope="col" { "Subtotal" }
                        th scope="col" { "Availability" }
                        th scope="col" { span.visually-hidden { "Remove" } }
                    } }
                    tbody #cart-rows {}
                    tfoot { tr {
                        th scope="row" colspan="3" { "Total" }
                        td #cart-total .num.n {}
                        td colspan="2" {}
                    } }
                }
            }
            (customer_field(false))
            p.actions {
                // Enabled by the script once the cart has lines.
                button #checkout .primary type="button" disabled { "Check out" }
            }
        }
        section #hold .hold hidden aria-labelledby="hold-timer" {
            p #hold-timer .timer {
                "Held for you: " span #countdown .num role="timer" aria-live="off" {}
            }
            p.hint {
                "The items are set aside for you until the time runs out. "
                "Pay confirms the hold (this demo shop takes no real payment); "
                "Cancel puts the items back on sale."
            }
            ul #hold-lines .hold-lines {}
            p { "Total: " strong #hold-total .num {} }
            p.actions {
                button #pay .primary type="button" { "Pay" }
                button #release .secondary type="button" { "Cancel" }
            }
        }
        noscript { p.note { "The cart needs JavaScript; please turn it on for this shop." } }
        div #checkout-result .result role="status" aria-live="polite" {}
    };
    layout_with("Your cart", Some(&URLS.shop_js), Some(config), main)
}

pub fn order(config: &ScriptConfig, order: &OrderSheet) -> Markup {
    let cancelled = order.cancelled_at.is_some();
    let main = html! {
        h1 { "Order " span.num { "#" (order.id) } }
        @if let Some(at) = &order.cancelled_at {
            p #order-note .cancelled-note {
                "Cancelled on " time datetime=(at.iso) { (at.text) }
                ". Its items are back on sale."
            }
        } @else {
            p #order-note .confirmed-note { "Confirmed. Thank you for your purchase." }
        }
        table #order-lines .lines {
                thead { tr {
                    th scope="col" { "Product" }
                    th.n scope="col" { "Quantity" }
                    th.n scope="col" { "Unit price" }
                    th.n scope="col" { "Subtotal" }
                } }
                tbody {
                    @for line in &order.lines {
                        tr data-product=(line.product_id) {
                            th scope="row" {
                                a href={ "/products/" (line.product_id) } {
                                    (line.product_name.as_deref().unwrap_or(&line.product_id))
                                }
                            }
                            td.num.n { (line.quantity) }
                            td.num.n { (line.unit_price) }
                            td.num.n { (line.total) }
                        }
                    }
                }
        }
        dl.order {
            dt { "Items" }
            dd #order-quantity .num { (order.items) }
            dt { "Total" }
            dd #order-total .num { (order.total) }
            dt { "Placed" }
            dd { time datetime=(order.placed_at.iso) { (order.placed_at.text) } }
            dt { "Status" }
            dd #order-status data-status=(if cancelled { "cancelled" } else { "placed" }) {
                @if let Some(at) = &order.cancelled_at {
                    "Cancelled " time datetime=(at.iso) { (at.text) }
                } @else {
                    "Placed"
                }
            }
            @if let Some(customer) = &order.customer {
                dt { "Customer" }
                dd { (customer) }
            }
        }
        @if let Some(until) = order.cancellable_until.as_ref().filter(|_| !cancelled) {
            section #cancel .cancel aria-labelledby="cancel-title" data-order=(order.id) {
                h2 #cancel-title { "Changed your mind?" }
                p.hint {
                    "You can cancel this order until " time datetime=(until.iso) { (until.text) }
                    "; its items then go back on sale."
                }
                // Enabled by the script, which does the cancelling.
                button #cancel-order .secondary type="button" disabled { "Cancel order" }
            }
        }
        div #cancel-result .result role="status" aria-live="polite" {}
        p { a href="/" { "Back to all products" } }
    };
    layout_with(
        &format!("Order {}", order.id),
        Some(&URLS.shop_js),
        Some(config),
        main,
    )
}

pub fn not_found(title: &str, message: &str) -> Markup {
    let main = html! {
        h1 { (title) }
        p { (message) }
        p { a href="/" { "Browse all products" } }
    };
    layout(title, None, main)
}

/// A figure of the status table: `-` when unknown.
fn figure(value: Option<u64>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

pub fn ops(view: &ClusterView, probed_at: &str, history_minutes: usize) -> Markup {
    let archive = view.archive.as_ref().filter(|archive| archive.enabled);
    let main = html! {
        h1 { "Operations" }
        p.summary {
            "Leader: " strong #ops-leader .num { (figure(view.leader)) }
            " · answered by gateway " span #ops-gateway .num { (view.gateway) }
            " · " span #ops-refreshed { "probed at " (probed_at) }
        }
        p #ops-alert .alert role="status" aria-live="polite" {}
        section aria-labelledby="members-title" {
            h2 #members-title { "Cluster members" }
            div.table-scroll tabindex="0" aria-labelledby="members-title" {
                table #nodes .nodes {
                    thead { tr {
                        th scope="col" { "Node" }
                        th scope="col" { "Membership" }
                        th scope="col" { "Raft state" }
                        th scope="col" { "Health" }
                        th.n scope="col" { "Term" }
                        th.n scope="col" { "Last log" }
                        th.n scope="col" { "Committed" }
                        th.n scope="col" { "Applied" }
                        th.n scope="col" { "Lag" }
                    } }
                    tbody #node-rows {
                        @for node in &view.nodes {
                            tr.up[node.up].down[!node.up] data-node=(node.id) {
                                th.num scope="row" { (node.id) }
                                td { (node.membership.as_str()) }
                                td { (node.state.map_or("-", RaftState::as_str)) }
                                td.health title=[node.error.as_deref()] {
                                    span.badge { @if node.up { "up" } @else { "down" } }
                                }
                                td.num.n { (figure(node.term)) }
                                td.num.n { (figure(node.last_log_index)) }
                                td.num.n { (figure(node.committed_index)) }
                                td.num.n { (figure(node.applied_index)) }
                                td.num.n { (figure(node.lag)) }
                            }
                        }
                    }
                }
            }
        }
        section #archive aria-labelledby="archive-title" hidden[archive.is_none()] {
            h2 #archive-title { "Order archive" }
            p {
                "Backlog: "
                strong #archive-backlog .num { @if let Some(a) = archive { (a.backlog) } }
                " orders not archived yet · "
                span #archive-note {
                    @if let Some(a) = archive {
                        @if let Some(kind) = a.last_error_kind { "last error: " (kind.as_str()) }
                        @else { "archiving normally" }
                    }
                }
            }
        }
        section aria-labelledby="traffic-title" {
            h2 #traffic-title { "Purchases" }
            p.hint #history-span { "Up to the last " (history_minutes) " minutes, one bar per second." }
            figure.chart {
                figcaption {
                    "Confirmed purchases per second, whole cluster: now "
                    strong #purchases-now .num { "-" } ", peak " strong #purchases-peak .num { "-" }
                    span #purchases-scale .scale {}
                }
                svg #chart-purchases viewBox="0 0 600 120" preserveAspectRatio="none" role="img"
                    aria-label="Purchases per second over time" {}
            }
            figure.chart {
                figcaption {
                    "Purchase latency on this gateway: mean "
                    strong #latency-mean .num { "-" } ", p99 " strong #latency-p99 .num { "-" }
                    span #latency-scale .scale {}
                    span.legend { span.key.mean {} " mean " span.key.p99 {} " p99" }
                }
                svg #chart-latency viewBox="0 0 600 120" preserveAspectRatio="none" role="img"
                    aria-label="Purchase latency over time" {}
            }
        }
    };
    layout("Operations", Some(&URLS.ops_js), main)
}
