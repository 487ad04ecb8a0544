//! The public API's routes (`/v1`). Errors are [`ErrorBody`] JSON with a stable code:
//!
//! | status | code | meaning |
//! |---|---|---|
//! | 400 | `invalid_request` | malformed JSON, wrong types, bad quantity or id, missing key: nothing changed |
//! | 401 | `unauthorized` | admin call without the right bearer token: nothing changed |
//! | 404 | `unknown_product`, `unknown_order`, `not_found` | no such record or route |
//! | 409 | `insufficient_stock`, `product_exists` | committed rejection: nothing changed |
//! | 413 | `payload_too_large` | body over `limits.body_bytes_max`: nothing changed |
//! | 422 | `idempotency_key_reused` | the key was used for another request: nothing changed |
//! | 503 | `overloaded` (with `Retry-After`), `unavailable`, `not_ready` | definitely not applied |
//! | 504 | `outcome_unknown` | may have been applied: retry with the same key to learn the outcome |

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use flashstock_api::{
    validate_command, validate_product_id, Command, CreateProductRequest, Op, OrderId, OrderView,
    Outcome, ProductChanged, ProductList, ProductView, PurchaseRequest, PurchaseResponse,
    Rejection, RestockRequest, APPLIED_INDEX_HEADER, IDEMPOTENCY_KEY_HEADER,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{stream, ForwardError, Forwarded, Gateway, OPENAPI};
use crate::internal::{error, PAGE_LIMIT_MAX};

type AppState = Arc<Gateway>;

/// Seconds a client is asked to wait after `overloaded`.
const RETRY_AFTER_SECONDS: &str = "1";
/// Products per page unless the client asks for another size.
const PAGE_LIMIT_DEFAULT: usize = 100;

pub fn router(gateway: AppState) -> Router {
    let body_bytes_max = gateway.node.config.limits.body_bytes_max;
    Router::new()
        .route("/v1/products", get(list_products))
        .route("/v1/products/{id}", get(get_product))
        .route("/v1/products/{id}/purchase", post(purchase))
        .route("/v1/orders/{id}", get(get_order))
        .route("/v1/stream", get(stream::stock_events))
        .route("/v1/admin/products", post(create_product))
        .route("/v1/admin/products/{id}/restock", post(restock))
        .route("/v1/health", get(health))
        .route("/v1/ready", get(ready))
        .route("/v1/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_bytes_max))
        .layer(middleware::from_fn_with_state(
            gateway.metrics.clone(),
            crate::metrics::track,
        ))
        .with_state(gateway)
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

fn invalid(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request", message)
}

/// A JSON body, with every failure (too large, not JSON, wrong shape) in our error shape.
fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, Response> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                rejection.body_text(),
            )
        } else {
            invalid(rejection.body_text())
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| invalid(format!("invalid JSON body: {e}")))
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, Response> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Err(invalid(
            "the Idempotency-Key header is required on every write, so that a retry is safe",
        ));
    };
    let key = value
        .to_str()
        .map_err(|_| invalid("the Idempotency-Key header must be printable ASCII"))?;
    flashstock_api::validate_key(key).map_err(invalid)?;
    Ok(key.to_owned())
}

/// A JSON body with the replica's applied index in a header too.
fn fresh<T: serde::Serialize>(applied_index: u64, body: T) -> Response {
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(APPLIED_INDEX_HEADER, HeaderValue::from(applied_index));
    response
}

fn storage_error(e: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "storage_error", e.to_string())
}

#[derive(Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_products(
    State(gateway): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return invalid("limit must be a number");
    };
    let limit = query.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
    if limit == 0 || limit > PAGE_LIMIT_MAX {
        return invalid(format!("limit must be 1 to {PAGE_LIMIT_MAX}"));
    }
    let reader = &gateway.node.reader;
    let applied_index = reader.applied_index();
    match reader.products(query.after.as_deref(), limit) {
        Ok(products) => {
            let next_after = (products.len() == limit)
                .then(|| products.last().map(|p| p.id.clone()))
                .flatten();
            let list = ProductList {
                applied_index,
                products,
                next_after,
            };
            fresh(applied_index, list)
        }
        Err(e) => storage_error(e),
    }
}

#[derive(Deserialize)]
struct ReadQuery {
    consistency: Option<String>,
}

async fn get_product(
    State(gateway): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(message) = validate_product_id(&id) {
        return invalid(message);
    }
    let linearizable = match query.ok().and_then(|Query(q)| q.consistency).as_deref() {
        None | Some("local") => false,
        Some("linearizable") => true,
        Some(other) => {
            return invalid(format!(
                "consistency must be local or linearizable, not {other:?}"
            ))
        }
    };
    if linearizable {
        if let Err(response) = catch_up_with_leader(&gateway).await {
            return response;
        }
    }
    let reader = &gateway.node.reader;
    let applied_index = reader.applied_index();
    match reader.product(&id) {
        Ok(Some(product)) => fresh(
            applied_index,
            ProductView {
                applied_index,
                product,
            },
        ),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "unknown_product",
            format!("no product {id:?}"),
        ),
        Err(e) => storage_error(e),
    }
}

/// Wait until this replica has applied everything the leader had committed when asked.
async fn catch_up_with_leader(gateway: &Gateway) -> Result<(), Response> {
    let index = gateway.voters.read_index().await.map_err(|e| {
        error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string())
    })?;
    let wait = Duration::from_millis(gateway.node.config.limits.request_timeout_ms);
    let mut applied = gateway.node.reader.watch_applied();
    let caught_up = tokio::time::timeout(wait, applied.wait_for(|applied| *applied >= index))
        .await
        .is_ok_and(|waited| waited.is_ok());
    match caught_up {
        true => Ok(()),
        false => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("this replica did not reach index {index} within {wait:?}"),
        )),
    }
}

async fn purchase(
    State(gateway): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(response) => return response,
    };
    let request: PurchaseRequest = match json_body(body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let quantity_max = gateway.node.config.limits.purchase_quantity_max;
    if request.quantity == 0 || request.quantity > quantity_max {
        return invalid(format!("quantity must be 1 to {quantity_max}"));
    }
    let command = Command {
        key,
        op: Op::Purchase {
            product: id,
            quantity: request.quantity,
        },
    };
    match submit(&gateway, command).await {
        Ok(Forwarded {
            outcome: Outcome::Purchased(order),
            replayed,
        }) => Json(PurchaseResponse { order, replayed }).into_response(),
        Ok(other) => unexpected(other),
        Err(response) => response,
    }
}

/// Check the admin bearer token. Without one configured, admin calls are disabled.
fn check_admin(gateway: &Gateway, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = gateway.node.config.cluster.admin_token.as_deref() else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "admin calls are disabled: no cluster.admin_token is configured",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if crate::internal::constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        ))
    }
}

async fn create_product(
    State(gateway): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(response) = check_admin(&gateway, &headers) {
        return response;
    }
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(response) => return response,
    };
    let request: CreateProductRequest = match json_body(body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let command = Command {
        key,
        op: Op::CreateProduct {
            product: request.id,
            name: request.name,
            price_cents: request.price_cents,
            stock: request.stock,
        },
    };
    match submit(&gateway, command).await {
        Ok(Forwarded {
            outcome: Outcome::ProductCreated(product),
            replayed,
        }) => (StatusCode::CREATED, Json(ProductChanged { product, replayed })).into_response(),
        Ok(other) => unexpected(other),
        Err(response) => response,
    }
}

async fn restock(
    State(gateway): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(response) = check_admin(&gateway, &headers) {
        return response;
    }
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(response) => return response,
    };
    let request: RestockRequest = match json_body(body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let command = Command {
        key,
        op: Op::Restock {
            product: id,
            quantity: request.quantity,
        },
    };
    match submit(&gateway, command).await {
        Ok(Forwarded {
            outcome: Outcome::Restocked(product),
            replayed,
        }) => Json(ProductChanged { product, replayed }).into_response(),
        Ok(other) => unexpected(other),
        Err(response) => response,
    }
}

/// Validate a command at the edge, forward it, and turn rejections and failures into responses.
/// The state machine validates again; this only answers bad input without a round trip.
async fn submit(gateway: &Gateway, command: Command) -> Result<Forwarded, Response> {
    validate_command(&command).map_err(invalid)?;
    match gateway.forwarder.submit(command).await {
        Ok(Forwarded {
            outcome: Outcome::Rejected(rejection),
            ..
        }) => Err(rejected(&rejection)),
        Ok(forwarded) => Ok(forwarded),
        Err(ForwardError::Overloaded) => {
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many purchases in flight on this gateway; retry shortly",
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
            Err(response)
        }
        Err(ForwardError::Unavailable(message)) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("not applied: {message}"),
        )),
        Err(ForwardError::Unknown(message)) => Err(error(
            StatusCode::GATEWAY_TIMEOUT,
            "outcome_unknown",
            format!("the outcome is unknown; retry with the same Idempotency-Key to learn it: {message}"),
        )),
    }
}

/// A committed rejection: nothing changed.
fn rejected(rejection: &Rejection) -> Response {
    let status = match rejection {
        Rejection::InsufficientStock { .. } | Rejection::ProductExists { .. } => {
            StatusCode::CONFLICT
        }
        Rejection::UnknownProduct { .. } => StatusCode::NOT_FOUND,
        Rejection::KeyReused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Rejection::Invalid { .. } => StatusCode::BAD_REQUEST,
    };
    error(status, rejection.code(), rejection.to_string())
}

/// An outcome of another kind than the command's: only possible if the state machine broke its
/// contract, since a key reused for another operation is `KeyReused`.
fn unexpected(forwarded: Forwarded) -> Response {
    tracing::error!(outcome = ?forwarded.outcome, "an outcome that does not match its command");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "unexpected outcome",
    )
}

async fn get_order(State(gateway): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return invalid("an order id is a number");
    };
    let reader = &gateway.node.reader;
    let applied_index = reader.applied_index();
    match reader.order(OrderId(id)) {
        Ok(Some(order)) => fresh(
            applied_index,
            OrderView {
                applied_index,
                order,
            },
        ),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "unknown_order",
            format!("no order {id} on this replica (it may be archived, or not applied here yet)"),
        ),
        Err(e) => storage_error(e),
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Ready when this replica knows a leader and has applied the log up to somewhere.
async fn ready(State(gateway): State<AppState>) -> Response {
    let leader = gateway.node.raft.metrics().borrow().current_leader;
    let applied_index = gateway.node.reader.applied_index();
    match leader {
        Some(leader) if applied_index > 0 => Json(serde_json::json!({
            "status": "ready",
            "leader": leader,
            "applied_index": applied_index,
        }))
        .into_response(),
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!(
                "replica not ready: leader {leader:?}, applied index {applied_index}; \
                 is this gateway added as a learner?"
            ),
        ),
    }
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}
