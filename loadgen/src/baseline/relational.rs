//! The relational baseline: the shop as one PostgreSQL database behind an axum endpoint.
//!
//! A purchase is one transaction on a pooled connection (at most [`POOL_SIZE_DEFAULT`] = C = 300):
//!
//! ```sql
//! BEGIN;
//! UPDATE products SET stock = stock - $q, sold = sold + $q
//!     WHERE id = $id AND stock >= $q RETURNING stock, price_cents;
//! INSERT INTO orders (key, product, quantity, price_cents, remaining, placed_at_ms)
//!     VALUES (...) ON CONFLICT (key) DO NOTHING RETURNING id;
//! COMMIT;
//! ```
//!
//! The conditional `UPDATE` cannot oversell: concurrent buyers of one product queue on its row
//! lock, each holding it through its commit's fsync. The idempotency key is the order's unique
//! key: a retry finds the order, rolls its own attempt back and answers the first order with
//! `replayed: true`. Routes and bodies are the gateway's (`/v1/products/{id}`,
//! `/v1/products/{id}/purchase`, `/v1/products`, `/v1/admin/products`), so the load generator,
//! its set-up and its final check run unchanged. Admin calls take any bearer token: this is a
//! baseline, not a shop.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use flashstock_api::{
    CreateProductRequest, Order, OrderId, Product, ProductDetails, ProductList, ProductView,
    PurchaseRequest, PurchaseResponse,
};
use serde::Deserialize;
use tokio_postgres::NoTls;

use super::error;

/// Connections of the pool: the C = 300 cap of the brief.
pub const POOL_SIZE_DEFAULT: usize = 300;
/// Products per page at most.
const PAGE_LIMIT_MAX: i64 = 1000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS products (
    id text PRIMARY KEY,
    name text NOT NULL,
    price_cents bigint NOT NULL,
    stock bigint NOT NULL CHECK (stock >= 0),
    initial_stock bigint NOT NULL,
    restocked bigint NOT NULL DEFAULT 0,
    sold bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS orders (
    id bigserial PRIMARY KEY,
    key text NOT NULL UNIQUE,
    product text NOT NULL REFERENCES products (id),
    quantity integer NOT NULL,
    price_cents bigint NOT NULL,
    remaining bigint NOT NULL,
    placed_at_ms bigint NOT NULL
);";

const PRODUCT_COLUMNS: &str = "id, name, price_cents, stock, initial_stock, restocked, sold";

/// Connect a pool of `size` connections to `url`, create the schema, open every connection and
/// check that the server runs with `fsync` and `synchronous_commit` on.
pub async fn connect(url: &str, size: usize) -> Result<Pool, String> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| e.to_string())?;
    let client = pool.get().await.map_err(|e| format!("connect: {e}"))?;
    client
        .batch_execute(SCHEMA)
        .await
        .map_err(|e| format!("schema: {e}"))?;
    for setting in ["fsync", "synchronous_commit"] {
        let row = client
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .map_err(|e| e.to_string())?;
        let value: String = row.get(0);
        if value != "on" {
            return Err(format!("PostgreSQL runs with {setting} = {value}, not on"));
        }
    }
    drop(client);
    // Open every connection now, not during the measured phase.
    let mut held = Vec::with_capacity(size);
    for _ in 0..size {
        held.push(pool.get().await.map_err(|e| format!("connect: {e}"))?);
    }
    drop(held);
    Ok(pool)
}

/// The router over a connected pool.
pub fn router(pool: Pool) -> Router {
    Router::new()
        .route("/v1/products", get(list))
        .route("/v1/products/{id}", get(view))
        .route("/v1/products/{id}/purchase", post(purchase))
        .route("/v1/admin/products", post(create))
        .with_state(Arc::new(pool))
}

type Db = State<Arc<Pool>>;

fn unavailable(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        e.to_string(),
    )
}

fn product_of(row: &tokio_postgres::Row) -> Product {
    let n = |i: usize| row.get::<_, i64>(i) as u64;
    Product {
        id: row.get(0),
        name: row.get(1),
        price_cents: n(2),
        stock: n(3),
        initial_stock: n(4),
        restocked: n(5),
        sold: n(6),
    }
}

async fn view(State(pool): Db, Path(id): Path<String>) -> Response {
    let client = match pool.get().await {
        Ok(client) => client,
        Err(e) => return unavailable(e),
    };
    let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1");
    let statement = match client.prepare_cached(&sql).await {
        Ok(statement) => statement,
        Err(e) => return unavailable(e),
    };
    match client.query_opt(&statement, &[&id]).await {
        Ok(Some(row)) => Json(ProductView {
            applied_index: 0,
            product: product_of(&row).into(),
        })
        .into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "unknown_product",
            format!("no product {id:?}"),
        ),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<i64>,
}

async fn list(State(pool): Db, Query(query): Query<ListQuery>) -> Response {
    let limit = query.limit.unwrap_or(100).clamp(1, PAGE_LIMIT_MAX);
    let client = match pool.get().await {
        Ok(client) => client,
        Err(e) => return unavailable(e),
    };
    let after = query.after.unwrap_or_default();
    let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id > $1 ORDER BY id LIMIT $2");
    let rows = match client.query(&sql, &[&after, &(limit + 1)]).await {
        Ok(rows) => rows,
        Err(e) => return unavailable(e),
    };
    let mut products: Vec<ProductDetails> = rows.iter().map(|row| product_of(row).into()).collect();
    let next_after = (products.len() as i64 > limit).then(|| {
        products.truncate(limit as usize);
        products.last().map(|p| p.id.clone())
    });
    Json(ProductList {
        applied_index: 0,
        products,
        next_after: next_after.flatten(),
    })
    .into_response()
}

async fn create(State(pool): Db, Json(request): Json<CreateProductRequest>) -> Response {
    let client = match pool.get().await {
        Ok(client) => client,
        Err(e) => return unavailable(e),
    };
    let stock = request.stock as i64;
    let inserted = client
        .query_opt(
            "INSERT INTO products (id, name, price_cents, stock, initial_stock) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (id) DO NOTHING \
             RETURNING id, name, price_cents, stock, initial_stock, restocked, sold",
            &[
                &request.id,
                &request.name,
                &(request.price_cents as i64),
                &stock,
            ],
        )
        .await;
    match inserted {
        Ok(Some(row)) => super::created(product_of(&row)),
        Ok(None) => super::product_exists(&request.id),
        Err(e) => unavailable(e),
    }
}

async fn purchase(
    State(pool): Db,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(request): Json<PurchaseRequest>,
) -> Response {
    let key = match super::purchase_key(&headers, &request) {
        Ok(key) => key,
        Err(refused) => return refused.into_response(),
    };
    let mut client = match pool.get().await {
        Ok(client) => client,
        Err(e) => return unavailable(e),
    };
    match buy(&mut client, &id, &key, request.quantity).await {
        Ok(response) => response,
        // The transaction rolled back (dropped uncommitted): nothing was applied, unless the
        // connection broke during COMMIT, which a client sees as an unknown outcome.
        Err(e) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "outcome_unknown",
            e.to_string(),
        ),
    }
}

async fn buy(
    client: &mut deadpool_postgres::Object,
    id: &str,
    key: &str,
    quantity: u32,
) -> Result<Response, tokio_postgres::Error> {
    let q = i64::from(quantity);
    let transaction = client.transaction().await?;
    let take = transaction
        .prepare_cached(
            "UPDATE products SET stock = stock - $2, sold = sold + $2 \
             WHERE id = $1 AND stock >= $2 RETURNING stock, price_cents",
        )
        .await?;
    let Some(row) = transaction.query_opt(&take, &[&id, &q]).await? else {
        let left = transaction
            .query_opt("SELECT stock FROM products WHERE id = $1", &[&id])
            .await?;
        return Ok(match left {
            Some(row) => error(
                StatusCode::CONFLICT,
                "insufficient_stock",
                format!(
                    "product {id:?} has {} left, {quantity} requested",
                    row.get::<_, i64>(0)
                ),
            ),
            None => error(
                StatusCode::NOT_FOUND,
                "unknown_product",
                format!("no product {id:?}"),
            ),
        });
    };
    let remaining: i64 = row.get(0);
    let price_cents: i64 = row.get(1);
    let placed_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let record = transaction
        .prepare_cached(
            "INSERT INTO orders (key, product, quantity, price_cents, remaining, placed_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING RETURNING id",
        )
        .await?;
    let quantity_i32 = quantity as i32;
    let inserted = transaction
        .query_opt(
            &record,
            &[
                &key,
                &id,
                &quantity_i32,
                &price_cents,
                &remaining,
                &placed_at_ms,
            ],
        )
        .await?;
    let Some(inserted) = inserted else {
        // The key was used before: undo this attempt and answer the first order.
        transaction.rollback().await?;
        return replay(client, key).await;
    };
    transaction.commit().await?;
    let order = Order {
        id: OrderId(inserted.get::<_, i64>(0) as u64),
        key: key.to_owned(),
        product: id.to_owned(),
        quantity,
        customer: None,
        price_cents: price_cents as u64,
        remaining: remaining as u64,
        placed_at_ms: placed_at_ms as u64,
        token: None,
    };
    Ok(Json(PurchaseResponse {
        order,
        replayed: false,
    })
    .into_response())
}

async fn replay(
    client: &deadpool_postgres::Object,
    key: &str,
) -> Result<Response, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT id, product, quantity, price_cents, remaining, placed_at_ms \
             FROM orders WHERE key = $1",
            &[&key],
        )
        .await?;
    let order = Order {
        id: OrderId(row.get::<_, i64>(0) as u64),
        key: key.to_owned(),
        product: row.get(1),
        quantity: row.get::<_, i32>(2) as u32,
        customer: None,
        price_cents: row.get::<_, i64>(3) as u64,
        remaining: row.get::<_, i64>(4) as u64,
        placed_at_ms: row.get::<_, i64>(5) as u64,
        token: None,
    };
    Ok(Json(PurchaseResponse {
        order,
        replayed: true,
    })
    .into_response())
}
