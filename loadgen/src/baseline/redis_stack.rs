//! The Redis baseline: the flash-sale stack shop engineers reach for, an axum endpoint in front
//! of one Redis server, where a purchase is one Lua script.
//!
//! The script runs atomically on Redis's single thread, so it cannot oversell:
//!
//! ```lua
//! -- KEYS: the product's hash, the idempotency key's record, the order counter
//! -- ARGV: quantity, the time in ms
//! if the key has a record then return it (a replay)
//! if the product has no hash then refuse (unknown product)
//! if stock < quantity then refuse with the stock left
//! HINCRBY stock -quantity; HINCRBY sold quantity; INCR the order counter
//! SET the key's record to the order, for 24 hours
//! ```
//!
//! Views read the product's hash (`HGETALL`); the catalog is a sorted set of ids read in
//! lexical order, each product's hash then read in one pipeline. Routes and bodies are the
//! gateway's, so the load generator, its set-up and its final check run unchanged. Admin calls
//! take any bearer token: this is a baseline, not a shop.
//!
//! What it does not give, and flashstock does: durability (the server runs with no snapshot and
//! no append-only file, [`flashstock_deploy::redis`]; a crash loses every confirmed purchase),
//! replication and failover (one server, one process: its loss stops the shop).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flashstock_api::{
    CreateProductRequest, Order, OrderId, Product, ProductDetails, ProductList, ProductView,
    PurchaseRequest, PurchaseResponse,
};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use serde::Deserialize;

use super::error;

/// Multiplexed connections to Redis: each pipelines every request sent on it over one socket,
/// so a few carry thousands of concurrent buyers.
pub const CONNECTIONS_DEFAULT: usize = 8;
/// Products per page at most.
const PAGE_LIMIT_MAX: usize = 1000;
/// How long an idempotency key's record lives, seconds: the gateway's window.
const KEY_TTL_S: u64 = 24 * 3600;
/// The sorted set of every product id.
const CATALOG: &str = "catalog";
/// The order counter.
const ORDER_SEQ: &str = "order-seq";

/// The purchase, atomic on the server. Returns `{code, text}`: 0 confirmed (text: the order
/// record), 1 not enough stock (text: the stock left), 2 a replay (text: the first order's
/// record), 3 no such product. A record is `id price_cents remaining placed_at_ms quantity
/// product`.
const PURCHASE_SCRIPT: &str = r"
local prior = redis.call('GET', KEYS[2])
if prior then return {2, prior} end
local stock = redis.call('HGET', KEYS[1], 'stock')
if not stock then return {3, ''} end
local quantity = tonumber(ARGV[1])
if tonumber(stock) < quantity then return {1, stock} end
local remaining = redis.call('HINCRBY', KEYS[1], 'stock', -quantity)
redis.call('HINCRBY', KEYS[1], 'sold', quantity)
local price = redis.call('HGET', KEYS[1], 'price_cents')
local id = redis.call('INCR', KEYS[3])
local record = id .. ' ' .. price .. ' ' .. remaining .. ' ' .. ARGV[2] .. ' ' .. ARGV[1]
  .. ' ' .. ARGV[4]
redis.call('SET', KEYS[2], record, 'EX', ARGV[3])
return {0, record}
";

/// Product creation, atomic on the server: 1 created, 0 the id exists.
const CREATE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'name', ARGV[2], 'price_cents', ARGV[3],
  'stock', ARGV[4], 'initial_stock', ARGV[4], 'restocked', 0, 'sold', 0)
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
";

/// The shared state of the routes: the connections, used in turn, and the scripts.
pub struct Shop {
    connections: Vec<MultiplexedConnection>,
    next: AtomicUsize,
    purchase: redis::Script,
    create: redis::Script,
}

impl Shop {
    fn connection(&self) -> MultiplexedConnection {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[i].clone()
    }
}

/// How long one call to Redis may wait for its answer: the gateway's whole budget for a
/// forwarded purchase (`gateway.forward_timeout_ms`), so both stacks are judged by the same
/// rule. The client library's default (500 ms) turned the queueing of 6000 connections into
/// errors that flashstock, with its 3 s, would have answered.
const RESPONSE_TIMEOUT: Duration =
    Duration::from_millis(cluster_config::defaults::DEFAULT_FORWARD_TIMEOUT_MS);

/// Open `connections` multiplexed connections to `url` and check that the server answers.
pub async fn connect(url: &str, connections: usize) -> Result<Arc<Shop>, String> {
    let client = redis::Client::open(url).map_err(|e| format!("{url}: {e}"))?;
    let config = AsyncConnectionConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
    let mut opened = Vec::with_capacity(connections.max(1));
    for _ in 0..connections.max(1) {
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| format!("connect to {url}: {e}"))?;
        let pong: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(|e| format!("PING {url}: {e}"))?;
        if pong != "PONG" {
            return Err(format!("{url} answered PING with {pong:?}"));
        }
        opened.push(connection);
    }
    Ok(Arc::new(Shop {
        connections: opened,
        next: AtomicUsize::new(0),
        purchase: redis::Script::new(PURCHASE_SCRIPT),
        create: redis::Script::new(CREATE_SCRIPT),
    }))
}

/// The router over a connected shop.
pub fn router(shop: Arc<Shop>) -> Router {
    Router::new()
        .route("/v1/products", get(list))
        .route("/v1/products/{id}", get(view))
        .route("/v1/products/{id}/purchase", post(purchase))
        .route("/v1/admin/products", post(create))
        .with_state(shop)
}

type Db = State<Arc<Shop>>;

fn product_key(id: &str) -> String {
    format!("p:{id}")
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        e.to_string(),
    )
}

/// A product from its hash; `None` when the hash is missing or malformed.
fn product_of(fields: &HashMap<String, String>) -> Option<Product> {
    let n = |name: &str| fields.get(name)?.parse::<u64>().ok();
    Some(Product {
        id: fields.get("id")?.clone(),
        name: fields.get("name")?.clone(),
        price_cents: n("price_cents")?,
        stock: n("stock")?,
        initial_stock: n("initial_stock")?,
        restocked: n("restocked")?,
        sold: n("sold")?,
    })
}

async fn view(State(shop): Db, Path(id): Path<String>) -> Response {
    let fields: Result<HashMap<String, String>, _> = redis::cmd("HGETALL")
        .arg(product_key(&id))
        .query_async(&mut shop.connection())
        .await;
    match fields {
        Ok(fields) if fields.is_empty() => error(
            StatusCode::NOT_FOUND,
            "unknown_product",
            format!("no product {id:?}"),
        ),
        Ok(fields) => match product_of(&fields) {
            Some(product) => Json(ProductView {
                applied_index: 0,
                product: product.into(),
            })
            .into_response(),
            None => unavailable(format!("product {id:?} has a malformed hash")),
        },
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list(State(shop): Db, Query(query): Query<ListQuery>) -> Response {
    let limit = query.limit.unwrap_or(100).clamp(1, PAGE_LIMIT_MAX);
    let from = match &query.after {
        Some(after) if !after.is_empty() => format!("({after}"),
        _ => "-".to_owned(),
    };
    let mut connection = shop.connection();
    let ids: Vec<String> = match redis::cmd("ZRANGE")
        .arg(CATALOG)
        .arg(&from)
        .arg("+")
        .arg("BYLEX")
        .arg("LIMIT")
        .arg(0)
        .arg(limit + 1)
        .query_async(&mut connection)
        .await
    {
        Ok(ids) => ids,
        Err(e) => return unavailable(e),
    };
    let mut pipeline = redis::pipe();
    for id in ids.iter().take(limit) {
        pipeline.cmd("HGETALL").arg(product_key(id));
    }
    let hashes: Vec<HashMap<String, String>> = match pipeline.query_async(&mut connection).await {
        Ok(hashes) => hashes,
        Err(e) => return unavailable(e),
    };
    let products: Vec<ProductDetails> = hashes
        .iter()
        .filter_map(product_of)
        .map(ProductDetails::from)
        .collect();
    let next_after = (ids.len() > limit)
        .then(|| products.last().map(|p| p.id.clone()))
        .flatten();
    Json(ProductList {
        applied_index: 0,
        products,
        next_after,
    })
    .into_response()
}

async fn create(State(shop): Db, Json(request): Json<CreateProductRequest>) -> Response {
    let created: Result<i64, _> = shop
        .create
        .key(product_key(&request.id))
        .key(CATALOG)
        .arg(&request.id)
        .arg(&request.name)
        .arg(request.price_cents)
        .arg(request.stock)
        .invoke_async(&mut shop.connection())
        .await;
    match created {
        Ok(1) => super::created(Product {
            id: request.id,
            name: request.name,
            price_cents: request.price_cents,
            stock: request.stock,
            initial_stock: request.stock,
            restocked: 0,
            sold: 0,
        }),
        Ok(_) => super::product_exists(&request.id),
        Err(e) => unavailable(e),
    }
}

async fn purchase(
    State(shop): Db,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(request): Json<PurchaseRequest>,
) -> Response {
    let key = match super::purchase_key(&headers, &request) {
        Ok(key) => key,
        Err(refused) => return refused.into_response(),
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let answer: Result<(i64, String), _> = shop
        .purchase
        .key(product_key(&id))
        .key(format!("k:{key}"))
        .key(ORDER_SEQ)
        .arg(request.quantity)
        .arg(now_ms)
        .arg(KEY_TTL_S)
        .arg(&id)
        .invoke_async(&mut shop.connection())
        .await;
    let (code, text) = match answer {
        Ok(answer) => answer,
        // The script may have run before the connection failed: the outcome is unknown.
        Err(e) => {
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                "outcome_unknown",
                e.to_string(),
            )
        }
    };
    match code {
        0 | 2 => match order_of(&key, &text) {
            Some(order) => Json(PurchaseResponse {
                order,
                replayed: code == 2,
            })
            .into_response(),
            None => unavailable(format!("malformed order record {text:?}")),
        },
        1 => error(
            StatusCode::CONFLICT,
            "insufficient_stock",
            format!(
                "product {id:?} has {text} left, {} requested",
                request.quantity
            ),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "unknown_product",
            format!("no product {id:?}"),
        ),
    }
}

/// An order from its record, `id price_cents remaining placed_at_ms quantity product`.
fn order_of(key: &str, record: &str) -> Option<Order> {
    let mut fields = record.splitn(6, ' ');
    let mut n = || fields.next()?.parse::<u64>().ok();
    let (id, price_cents, remaining, placed_at_ms, quantity) = (n()?, n()?, n()?, n()?, n()?);
    let product = record.splitn(6, ' ').nth(5)?.to_owned();
    Some(Order {
        id: OrderId(id),
        key: key.to_owned(),
        product,
        quantity: u32::try_from(quantity).ok()?,
        customer: None,
        price_cents,
        remaining,
        placed_at_ms,
        token: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_record_reads_back_with_spaces_in_the_product_id() {
        let order = order_of("k1", "17 1000 41 1796020344011 3 odd id").expect("parses");
        assert_eq!(
            (
                order.id.0,
                order.price_cents,
                order.remaining,
                order.quantity
            ),
            (17, 1000, 41, 3)
        );
        assert_eq!(
            (order.placed_at_ms, order.product.as_str()),
            (1796020344011, "odd id")
        );
        assert!(order_of("k1", "17 1000 forty 1 3 p").is_none());
    }
}
