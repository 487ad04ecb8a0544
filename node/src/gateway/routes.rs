//! The public API's routes (`/v1`). Errors are [`ErrorBody`] JSON with a stable code:
//!
//! | status | code | meaning |
//! |---|---|---|
//! | 400 | `invalid_request` | malformed JSON, wrong types, bad quantity or id, missing key: nothing changed |
//! | 401 | `unauthorized` | admin call without the right bearer token, refused before its body is read: nothing changed |
//! | 404 | `unknown_product`, `unknown_order`, `unknown_hold`, `not_found` | no such record or route; an order or a hold without its token |
//! | 409 | `insufficient_stock`, `product_exists`, `hold_expired`, `hold_finished`, `limit_reached`, `already_cancelled`, `cancel_window_passed` | committed rejection: nothing changed |
//! | 405 | `method_not_allowed` | the route exists, not with that method |
//! | 408 | `request_timeout` | the body did not arrive within `limits.body_read_timeout_ms` |
//! | 413 | `payload_too_large` | body over `limits.body_bytes_max`: nothing changed |
//! | 422 | `idempotency_key_reused`, `customer_required` | the key was used for another request; a limited product bought without a customer: nothing changed |
//! | 429 | `rate_limited` (with `Retry-After`) | over this client's rate or queue share: nothing changed |
//! | 500 | `storage_error`, `internal` | the node's own fault, on reads: retry elsewhere |
//! | 503 | `overloaded` (with `Retry-After`), `unavailable`, `not_ready` | definitely not applied (`unavailable` too for a checkout command while the cluster is mid-upgrade, before cluster version 2) |
//! | 504 | `outcome_unknown` | may have been applied: retry with the same key to learn the outcome |

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{
    DefaultBodyLimit, Extension, FromRequest, FromRequestParts, MatchedPath, Path, Query, Request,
    State,
};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put, MethodRouter};
use axum::{middleware, Json, Router};
use flashstock_api::{
    bulk_item_key, validate_command, validate_product_id, BulkItem, BulkItemResult, BulkRequest,
    BulkResponse, BulkStatus, Command, CreateProductRequest, ErrorBody, ErrorCode, ItemOutcome, Op,
    Order, OrderDetails, OrderId, OrderView, Outcome, ProductChanged, ProductDetails, ProductList,
    ProductView, PurchaseRequest, PurchaseResponse, Rejection, RestockRequest,
    APPLIED_INDEX_HEADER, BULK_KEY_LEN_MAX, IDEMPOTENCY_KEY_HEADER, STALENESS_HEADER,
    STALENESS_UNKNOWN,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::admission::{self, Source};
use super::misses::{self, CatchUpFailed};
use super::{checkout, ops, pages, stream, Client, ForwardError, Forwarded, Gateway, SpansGroups};
use crate::api_error::{error, ApiError};
use crate::internal::PAGE_LIMIT_MAX;

pub(super) type AppState = Arc<Gateway>;

/// Seconds a client is asked to wait after `overloaded`, or when its share of the queue is full.
const RETRY_AFTER_SECONDS: u32 = 1;
/// Products per page unless the client asks for another size.
const PAGE_LIMIT_DEFAULT: usize = 100;

/// Every public route, as `(method, path)`. The router is built from this list and a test checks
/// it against the OpenAPI document, so the document cannot drift from what is served.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/products"),
    ("GET", "/v1/products/{id}"),
    ("POST", "/v1/products/{id}/purchase"),
    ("GET", "/v1/orders/{id}"),
    ("GET", "/v1/stream"),
    ("POST", "/v1/admin/products"),
    ("POST", "/v1/admin/products/{id}/restock"),
    ("POST", "/v1/admin/products/bulk"),
    ("GET", "/v1/health"),
    ("GET", "/v1/ready"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/v1/ops/cluster"),
    ("POST", "/v1/holds"),
    ("GET", "/v1/holds/{id}"),
    ("POST", "/v1/holds/{id}/confirm"),
    ("POST", "/v1/holds/{id}/release"),
    ("POST", "/v1/checkout"),
    ("POST", "/v1/orders/{id}/cancel"),
    ("PUT", "/v1/admin/products/{id}/limit"),
    ("POST", "/v1/admin/orders/{id}/cancel"),
    ("POST", "/v1/admin/holds/{id}/confirm"),
    ("POST", "/v1/admin/holds/{id}/release"),
];

fn handler(method: &str, path: &str) -> MethodRouter<AppState> {
    match (method, path) {
        ("GET", "/v1/products") => get(list_products),
        ("GET", "/v1/products/{id}") => get(get_product),
        ("POST", "/v1/products/{id}/purchase") => post(purchase),
        ("GET", "/v1/orders/{id}") => get(get_order),
        ("GET", "/v1/stream") => get(stream::stock_events),
        ("POST", "/v1/admin/products") => post(create_product),
        ("POST", "/v1/admin/products/{id}/restock") => post(restock),
        ("POST", "/v1/admin/products/bulk") => post(bulk),
        ("GET", "/v1/health") => get(health),
        ("GET", "/v1/ready") => get(ready),
        ("GET", "/v1/openapi.json") => get(openapi),
        ("GET", "/v1/ops/cluster") => get(ops::cluster),
        ("POST", "/v1/holds") => post(checkout::place_hold),
        ("GET", "/v1/holds/{id}") => get(checkout::get_hold),
        ("POST", "/v1/holds/{id}/confirm") => post(checkout::confirm_hold),
        ("POST", "/v1/holds/{id}/release") => post(checkout::release_hold),
        ("POST", "/v1/checkout") => post(checkout::checkout),
        ("POST", "/v1/orders/{id}/cancel") => post(checkout::cancel_order),
        ("PUT", "/v1/admin/products/{id}/limit") => put(checkout::set_limit),
        ("POST", "/v1/admin/orders/{id}/cancel") => post(checkout::admin_cancel_order),
        ("POST", "/v1/admin/holds/{id}/confirm") => post(checkout::admin_confirm_hold),
        ("POST", "/v1/admin/holds/{id}/release") => post(checkout::admin_release_hold),
        _ => unreachable!("route {method} {path} has no handler"),
    }
}

pub fn router(gateway: AppState) -> Router {
    let body_bytes_max = gateway.node.config.limits.body_bytes_max;
    let mut router = pages::router();
    for (method, path) in ROUTES {
        router = router.route(path, handler(method, path));
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_bytes_max))
        .layer(middleware::from_fn_with_state(gateway.clone(), edge))
        .with_state(gateway)
}

/// What every request passes through around its handler, in one middleware (each `from_fn`
/// layer costs a boxed future and a clone of the route's stack per request):
///
/// 1. counted and timed by route template and method ([`crate::metrics::Answer`]);
/// 2. CORS ([`super::cors::Cors`]): a granted preflight is answered here;
/// 3. for a `GET` or `HEAD`, how stale the replica it is served from may be
///    ([`STALENESS_HEADER`]), measured before the handler reads: what it reads is at least
///    that fresh, so the header never claims more freshness than the view has;
/// 4. when it matched a route (a 404 did not), the client identified and admitted
///    ([`admission::admit`]): refused with 429 when over its limit.
async fn edge(State(gateway): State<AppState>, request: Request, next: Next) -> Response {
    let answer = crate::metrics::Answer::begin(&request);
    let response = served(&gateway, request, next).await;
    answer.end(&gateway.node.metrics, &response);
    response
}

/// Steps 2 to 4 of [`edge`], and the handler.
async fn served(gateway: &Gateway, mut request: Request, next: Next) -> Response {
    let cors = super::cors::Cors::of(gateway, &request);
    if let Some(preflight) = cors.preflight() {
        return preflight;
    }
    let is_view = request.method() == Method::GET || request.method() == Method::HEAD;
    let staleness = is_view.then(|| gateway.freshness().staleness);
    let admitted = match request.extensions().get::<MatchedPath>().cloned() {
        Some(route) => admission::admit(gateway, route.as_str(), &mut request),
        None => Ok(()),
    };
    let mut response = match admitted {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    };
    if let Some(staleness) = staleness {
        let value = match staleness {
            Some(age) => HeaderValue::from(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
            None => HeaderValue::from_static(STALENESS_UNKNOWN),
        };
        response.headers_mut().insert(STALENESS_HEADER, value);
    }
    cors.apply(&mut response);
    response
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}

pub(super) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid(message)
}

/// A JSON object body, read under the route's limits, with every failure in our error shape:
/// 413 `payload_too_large` at once when the announced length is over `limits.body_bytes_max`
/// (without reading it) or when the body grows past it, 408 `request_timeout` when it does not
/// arrive within `limits.body_read_timeout_ms`, 400 `invalid_request` when it is not a JSON object
/// of the expected shape. Nothing has been forwarded when any of these is answered.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, gateway: &AppState) -> Result<Self, ApiError> {
        let limits = &gateway.node.config.limits;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                format!("the body is over {} bytes", limits.body_bytes_max),
            )
        };
        let announced = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
        if announced.is_some_and(|length| length > limits.body_bytes_max) {
            return Err(too_large());
        }
        let wait = Duration::from_millis(limits.body_read_timeout_ms);
        let read = axum::body::to_bytes(request.into_body(), limits.body_bytes_max);
        let body = match tokio::time::timeout(wait, read).await {
            Ok(Ok(body)) => body,
            Ok(Err(_)) => return Err(too_large()),
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorCode::RequestTimeout,
                    format!("the body did not arrive within {wait:?}"),
                ))
            }
        };
        // serde also reads a struct from a JSON array (`[1]`): accept objects only.
        if body.trim_ascii_start().first() != Some(&b'{') {
            return Err(invalid("the body must be a JSON object"));
        }
        serde_json::from_slice(&body)
            .map(JsonBody)
            .map_err(|e| invalid(format!("invalid JSON body: {e}")))
    }
}

pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
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
pub(super) fn fresh<T: serde::Serialize>(applied_index: u64, body: T) -> Response {
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(APPLIED_INDEX_HEADER, HeaderValue::from(applied_index));
    response
}

pub(super) type Answer = Result<Response, ApiError>;

#[derive(Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
    consistency: Option<String>,
}

/// Whether a read asks to be linearizable (`?consistency=linearizable`; `local`, the default,
/// reads the replica as it is).
fn linearizable(consistency: Option<&str>) -> Result<bool, ApiError> {
    match consistency {
        None | Some("local") => Ok(false),
        Some("linearizable") => Ok(true),
        Some(other) => Err(invalid(format!(
            "consistency must be local or linearizable, not {other:?}"
        ))),
    }
}

async fn list_products(
    State(gateway): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Answer {
    let Query(query) = query.map_err(|e| invalid(e.body_text()))?;
    let limit = query.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
    if limit == 0 || limit > PAGE_LIMIT_MAX {
        return Err(invalid(format!("limit must be 1 to {PAGE_LIMIT_MAX}")));
    }
    if linearizable(query.consistency.as_deref())? {
        // Every group's leader, at once: the page may hold products of each.
        let groups =
            (0..gateway.forwarders.len() as u16).map(|group| catch_up_with_leader(&gateway, group));
        for caught_up in futures::future::join_all(groups).await {
            caught_up?;
        }
    }
    // One more than asked tells whether another page follows; in id order across groups.
    let records = gateway
        .node
        .product_records(query.after.as_deref(), limit + 1)
        .map_err(ApiError::storage)?;
    let applied_index = list_applied_index(&gateway);
    let mut products: Vec<ProductDetails> = records
        .into_iter()
        .map(|record| ProductDetails::new(record.product, record.terms))
        .collect();
    let next_after = (products.len() > limit).then(|| {
        products.truncate(limit);
        products.last().map(|p| p.id.clone())
    });
    let next_after = next_after.flatten();
    let list = ProductList {
        applied_index,
        products,
        next_after,
    };
    Ok(fresh(applied_index, list))
}

/// The applied index a list of several groups' records says it was read at: group 0's, the
/// only one of a one-group cluster. Each group has its own log, so no one index covers a list
/// of several; how fresh the list is says `x-staleness-ms`, from the least fresh group.
pub(super) fn list_applied_index(gateway: &Gateway) -> u64 {
    gateway.node.group0().reader.applied_index()
}

#[derive(Deserialize)]
struct ReadQuery {
    consistency: Option<String>,
}

async fn get_product(
    State(gateway): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Answer {
    validate_product_id(&id).map_err(invalid)?;
    let Query(query) = query.map_err(|e| invalid(e.body_text()))?;
    let group = gateway.node.group_of(&id);
    let (applied_index, record) = if linearizable(query.consistency.as_deref())? {
        // Caught up already: a miss is one as of the leader's commit.
        catch_up_with_leader(&gateway, group.number).await?;
        (
            group.reader.applied_index(),
            group.reader.product_record(&id),
        )
    } else {
        product_confirmed(&gateway, group, &id).await
    };
    match record.map_err(ApiError::storage)? {
        Some(record) => Ok(fresh(
            applied_index,
            ProductView {
                applied_index,
                product: ProductDetails::new(record.product, record.terms),
            },
        )),
        None => Err(ApiError::unknown_product(&id)),
    }
}

/// This replica's record of product `id`, of `group`, and the applied index it was read at. A
/// miss is read again once the replica has caught up with the group's leader
/// ([`super::misses`]), so that a product it has not applied yet is not denied; when no leader
/// answers in time, the miss stands as this replica has it.
pub(super) async fn product_confirmed(
    gateway: &Gateway,
    group: &crate::Group,
    id: &str,
) -> (
    u64,
    Result<Option<raft_store::records::ProductRecord>, openraft::StorageError<raft_store::NodeId>>,
) {
    let applied_index = group.reader.applied_index();
    let record = group.reader.product_record(id);
    if !matches!(record, Ok(None))
        || !gateway.misses[usize::from(group.number)]
            .caught_up_since()
            .await
    {
        return (applied_index, record);
    }
    (
        group.reader.applied_index(),
        group.reader.product_record(id),
    )
}

/// Wait until this replica has applied everything the leader of `group` had committed when
/// asked, all within `gateway.linearizable_read_timeout_ms` ([`super::misses::catch_up`]).
pub(super) async fn catch_up_with_leader(gateway: &Gateway, group: u16) -> Result<(), ApiError> {
    let wait = Duration::from_millis(gateway.node.config.gateway.linearizable_read_timeout_ms);
    let voters = &gateway.voters[usize::from(group)];
    let mut applied = gateway.node.groups[usize::from(group)]
        .reader
        .watch_applied();
    let message = match misses::catch_up(voters, &mut applied, wait).await {
        Ok(()) => return Ok(()),
        Err(CatchUpFailed::NoLeader(message)) => message,
        Err(CatchUpFailed::TimedOut) => format!("no leader confirmed a read within {wait:?}"),
        Err(CatchUpFailed::Behind(index)) => {
            format!("this replica did not reach index {index} within {wait:?}")
        }
    };
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        message,
    ))
}

async fn purchase(
    State(gateway): State<AppState>,
    Path(id): Path<String>,
    Extension(source): Extension<Source>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<PurchaseRequest>,
) -> Answer {
    let key = idempotency_key(&headers)?;
    let quantity_max = gateway.node.config.limits.purchase_quantity_max;
    if request.quantity == 0 || request.quantity > quantity_max {
        return Err(invalid(format!("quantity must be 1 to {quantity_max}")));
    }
    let client = gateway.admission.purchaser(
        source,
        request.customer.as_deref(),
        tokio::time::Instant::now(),
    )?;
    let command = Command {
        key,
        op: Op::Purchase {
            product: id,
            quantity: request.quantity,
            customer: request.customer,
            token: Some(new_order_token()?),
        },
    };
    match submit(&gateway, client, command).await? {
        Forwarded {
            outcome: Outcome::Purchased(order),
            replayed,
        } => Ok(Json(PurchaseResponse { order, replayed }).into_response()),
        other => Err(unexpected(other)),
    }
}

/// Proof that the request carries the admin bearer token. As an extractor placed before the
/// body, it refuses a request without the token with 401 before a byte of the body is read.
pub(super) struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        gateway: &AppState,
    ) -> Result<Admin, ApiError> {
        check_admin(gateway, &parts.headers).map(|()| Admin)
    }
}

/// A fresh order token: 128 bits from the operating system's random source, in lowercase hex.
/// Drawn here, at the edge, and carried in the command, so that the state machine stays
/// deterministic and every replica stores the same token.
pub(super) fn new_order_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; flashstock_api::ORDER_TOKEN_LEN / 2];
    getrandom::fill(&mut bytes).map_err(|e| {
        tracing::error!(error = %e, "no randomness for an order token");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "not applied: this gateway cannot draw an order token; retry",
        )
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `given` is `order`'s token, compared in time that does not depend on where they
/// differ. An order without a token (placed through the internal API) is nobody's.
pub(super) fn holds_order_token(order: &Order, given: Option<&str>) -> bool {
    match (&order.token, given) {
        (Some(token), Some(given)) => {
            crate::internal::constant_time_eq(token.as_bytes(), given.as_bytes())
        }
        _ => false,
    }
}

/// Check the admin bearer token. Without one configured, admin calls are disabled.
fn check_admin(gateway: &Gateway, headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthorized =
        |message| ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message);
    let Some(expected) = gateway.node.config.cluster.admin_token.as_deref() else {
        return Err(unauthorized(
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
        Err(unauthorized("missing or wrong bearer token"))
    }
}

/// Create a product; with `limit_per_customer`, one limited from the start
/// ([`Op::CreateLimitedProduct`], cluster version 2).
async fn create_product(
    State(gateway): State<AppState>,
    _: Admin,
    headers: HeaderMap,
    JsonBody(request): JsonBody<CreateProductRequest>,
) -> Answer {
    let key = idempotency_key(&headers)?;
    let op = match request.limit_per_customer {
        None => Op::CreateProduct {
            product: request.id,
            name: request.name,
            price_cents: request.price_cents,
            stock: request.stock,
        },
        Some(limit_per_customer) => Op::CreateLimitedProduct {
            product: request.id,
            name: request.name,
            price_cents: request.price_cents,
            stock: request.stock,
            limit_per_customer,
        },
    };
    let command = Command { key, op };
    let changed = product_changed(submit(&gateway, Client::OPERATOR, command).await?)?;
    Ok((StatusCode::CREATED, Json(changed)).into_response())
}

async fn restock(
    State(gateway): State<AppState>,
    Path(id): Path<String>,
    _: Admin,
    headers: HeaderMap,
    JsonBody(request): JsonBody<RestockRequest>,
) -> Answer {
    let key = idempotency_key(&headers)?;
    let command = Command {
        key,
        op: Op::Restock {
            product: id,
            quantity: request.quantity,
        },
    };
    let changed = product_changed(submit(&gateway, Client::OPERATOR, command).await?)?;
    Ok(Json(changed).into_response())
}

/// What a write that changed one product answers: a creation or a restock (with its terms, if
/// it has any), or a new limit.
pub(super) fn product_changed(forwarded: Forwarded) -> Result<ProductChanged, ApiError> {
    let Forwarded { outcome, replayed } = forwarded;
    let product = match outcome {
        Outcome::ProductCreated(product) | Outcome::Restocked(product) => product.into(),
        Outcome::ProductWithTerms { product, terms, .. } => ProductDetails::new(product, terms),
        outcome => return Err(unexpected(Forwarded { outcome, replayed })),
    };
    Ok(ProductChanged { product, replayed })
}

/// Validate a command at the edge (400), check that the cluster runs the version its kind needs
/// (503 while mid-upgrade), forward it, and turn rejections and failures into errors. The state
/// machine validates again; this only answers bad input without a round trip.
pub(super) async fn submit(
    gateway: &Gateway,
    client: Client,
    command: Command,
) -> Result<Forwarded, ApiError> {
    validate_command(&command).map_err(invalid)?;
    let group = gateway
        .group_for(&command.op)
        .map_err(|spans| spans_groups(gateway, spans))?;
    submit_in(gateway, group, client, command).await
}

/// [`submit`] to `group`, the one that applies `command` ([`Gateway::group_for`]), once the
/// command is valid.
pub(super) async fn submit_in(
    gateway: &Gateway,
    group: &crate::Group,
    client: Client,
    command: Command,
) -> Result<Forwarded, ApiError> {
    checkout::require_cluster_version(group, &command.op)?;
    match gateway.forwarder(group).submit(client, command).await {
        Ok(Forwarded {
            outcome: Outcome::Rejected(rejection),
            ..
        }) => Err(rejected(&rejection)),
        Ok(forwarded) => Ok(forwarded),
        Err(error) => Err(forward_failed(error)),
    }
}

/// 400 for a command whose products lie in different Raft groups, of a route that does not
/// split it (holds and checkouts are split: `hold_across.rs`, `cart.rs`). Nothing was proposed.
fn spans_groups(gateway: &Gateway, SpansGroups(first, second): SpansGroups) -> ApiError {
    invalid(format!(
        "the products of this request lie in different Raft groups ({first} and {second} of \
         this cluster's {}); send one request per group",
        gateway.forwarders.len()
    ))
}

/// A write that did not reach a definite outcome at the leader, as the client's error: 503 when
/// it was definitely not applied, 429 for this client's share, 504 when it may have been.
pub(super) fn forward_failed(error: ForwardError) -> ApiError {
    match error {
        ForwardError::Overloaded => ApiError {
            retry_after_seconds: Some(RETRY_AFTER_SECONDS),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Overloaded,
                "too many purchases in flight on this gateway; retry shortly",
            )
        },
        ForwardError::ClientShareFull(share) => ApiError {
            retry_after_seconds: Some(RETRY_AFTER_SECONDS),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                format!(
                    "{share} purchases of this client are waiting on this gateway already; \
                     retry once they are answered"
                ),
            )
        },
        ForwardError::Unavailable(message) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            format!("not applied: {message}"),
        ),
        ForwardError::Unknown(message) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::OutcomeUnknown,
            format!(
                "the outcome is unknown; retry with the same Idempotency-Key to learn it: {message}"
            ),
        ),
    }
}

/// Creates and restocks of many products as one Raft entry, each item with its own outcome (a
/// committed rejection of one does not undo another). Every item is checked first: one that
/// fails the checks refuses the whole request (400, naming the item), and nothing is proposed.
/// A failure of the write itself (unavailable, outcome unknown) is the whole request's answer,
/// as for a single write: a retry with the same key is safe.
async fn bulk(
    State(gateway): State<AppState>,
    _: Admin,
    headers: HeaderMap,
    JsonBody(request): JsonBody<BulkRequest>,
) -> Answer {
    let key = idempotency_key(&headers)?;
    if key.len() > BULK_KEY_LEN_MAX {
        return Err(invalid(format!(
            "a bulk request's Idempotency-Key is 1 to {BULK_KEY_LEN_MAX} characters: \
             its items' keys add '#' and the item's index"
        )));
    }
    let items_max = gateway.node.config.limits.commands_per_entry_max;
    if request.items.is_empty() || request.items.len() > items_max {
        return Err(invalid(format!(
            "a bulk request holds 1 to {items_max} items, not {}",
            request.items.len()
        )));
    }
    let mut results = Vec::with_capacity(request.items.len());
    let mut commands = Vec::with_capacity(request.items.len());
    for (index, item) in request.items.into_iter().enumerate() {
        let id = item.id().to_owned();
        let status = match item {
            BulkItem::Create { .. } => BulkStatus::Created,
            BulkItem::Restock { .. } => BulkStatus::Restocked,
        };
        let command = item.into_command(bulk_item_key(&key, index));
        validate_command(&command)
            .map_err(|message| invalid(format!("item {index} ({id:?}): {message}")))?;
        commands.push(command);
        results.push(BulkItemResult {
            id,
            status,
            replayed: false,
            error: None,
        });
    }
    // Each group's items go to that group, all groups at once; with one group, the whole
    // request is one part under its own key.
    let groups = gateway.forwarders.len() as u16;
    let mut parts: Vec<(u16, Vec<usize>, Vec<Command>)> = Vec::new();
    for (index, command) in commands.into_iter().enumerate() {
        // An item names one product: it never spans groups.
        let group = gateway
            .group_for(&command.op)
            .map_err(|spans| spans_groups(&gateway, spans))?
            .number;
        match parts.iter_mut().find(|(g, _, _)| *g == group) {
            Some((_, indexes, commands)) => {
                indexes.push(index);
                commands.push(command);
            }
            None => parts.push((group, vec![index], vec![command])),
        }
    }
    let sent = parts.into_iter().map(|(group, indexes, commands)| {
        let key = match groups {
            1 => key.clone(),
            _ => flashstock_api::bulk_group_key(&key, group),
        };
        let gateway = &gateway;
        async move {
            let outcomes = bulk_part(gateway, group, key, commands).await;
            outcomes.map(|outcomes| (indexes, outcomes))
        }
    });
    let mut answers: Vec<Option<ItemAnswer>> = vec![None; results.len()];
    for part in futures::future::join_all(sent).await {
        let (indexes, answered) = part?;
        for (index, answer) in indexes.into_iter().zip(answered) {
            answers[index] = Some(answer);
        }
    }
    for (result, answer) in results.iter_mut().zip(answers) {
        let answer = answer.expect("every part answers each of its items");
        result.replayed = answer.replayed;
        if let Some(rejection) = answer.refused {
            result.status = BulkStatus::Rejected;
            result.error = Some(ErrorBody {
                code: rejection.code(),
                message: rejection.to_string(),
            });
        }
    }
    Ok(Json(BulkResponse { results }).into_response())
}

/// What became of one item of a bulk request, as its group answered.
#[derive(Debug, Clone)]
struct ItemAnswer {
    /// The item had been applied before: this repeats that first outcome.
    replayed: bool,
    /// Refused on its own, and why; nothing changed for it.
    refused: Option<Rejection>,
}

impl ItemAnswer {
    /// From an item's own outcome: as sent one command per item (before cluster version 2), or
    /// in an [`Outcome::Bulk`] (cluster versions 2 and 3).
    fn from_outcome(forwarded: Forwarded) -> Result<ItemAnswer, ApiError> {
        let replayed = forwarded.replayed;
        match forwarded.outcome {
            Outcome::ProductCreated(_)
            | Outcome::Restocked(_)
            | Outcome::ProductWithTerms { created: false, .. } => Ok(ItemAnswer {
                replayed,
                refused: None,
            }),
            Outcome::Rejected(rejection) => Ok(ItemAnswer {
                replayed,
                refused: Some(rejection),
            }),
            outcome => Err(unexpected(Forwarded { outcome, replayed })),
        }
    }

    /// From an item of an [`Outcome::BulkDone`] (cluster version 4).
    fn from_item(item: ItemOutcome, replayed: bool) -> ItemAnswer {
        match item {
            ItemOutcome::Duplicate(first) => ItemAnswer::from_item(*first, true),
            ItemOutcome::Created | ItemOutcome::Restocked => ItemAnswer {
                replayed,
                refused: None,
            },
            ItemOutcome::Rejected(rejection) => ItemAnswer {
                replayed,
                refused: Some(rejection),
            },
        }
    }
}

/// Apply one group's part of a bulk request at that group's leader: what became of each
/// command, in order.
async fn bulk_part(
    gateway: &Gateway,
    group: u16,
    key: String,
    commands: Vec<Command>,
) -> Result<Vec<ItemAnswer>, ApiError> {
    let forwarder = &gateway.forwarders[usize::from(group)];
    // From cluster version 2 on, one command under the part's key: one idempotency record
    // instead of one per item. Read from this gateway's replica: one that lags sends the older
    // form, which the state machine answers the same way.
    let one_command = gateway.node.groups[usize::from(group)]
        .reader
        .cluster_version()
        .is_ok_and(|version| version >= 2);
    if !one_command {
        let forwarded = forwarder
            .submit_all(commands)
            .await
            .map_err(forward_failed)?;
        return forwarded
            .into_iter()
            .map(ItemAnswer::from_outcome)
            .collect();
    }
    let items = commands.len();
    let command = Command {
        key,
        op: Op::Bulk {
            ops: commands.into_iter().map(|command| command.op).collect(),
        },
    };
    let forwarded = forwarder
        .submit_all(vec![command])
        .await
        .map_err(forward_failed)?
        .pop()
        .expect("one outcome per command");
    let replayed = forwarded.replayed;
    match forwarded.outcome {
        Outcome::Bulk(outcomes) if outcomes.len() == items => outcomes
            .into_iter()
            .map(|item| match item {
                Outcome::Duplicate(first) => Forwarded {
                    outcome: *first,
                    replayed: true,
                },
                outcome => Forwarded { outcome, replayed },
            })
            .map(ItemAnswer::from_outcome)
            .collect(),
        Outcome::BulkDone(done) if done.len() == items => Ok(done
            .into_iter()
            .map(|item| ItemAnswer::from_item(item, replayed))
            .collect()),
        Outcome::Rejected(rejection) => Err(rejected(&rejection)),
        outcome => Err(unexpected(Forwarded { outcome, replayed })),
    }
}

/// A committed rejection: nothing changed.
pub(super) fn rejected(rejection: &Rejection) -> ApiError {
    let status = match rejection {
        Rejection::InsufficientStock { .. }
        | Rejection::ProductExists { .. }
        | Rejection::HoldExpired { .. }
        | Rejection::HoldFinished { .. }
        | Rejection::LimitReached { .. }
        | Rejection::AlreadyCancelled { .. }
        | Rejection::CancelWindowPassed { .. } => StatusCode::CONFLICT,
        Rejection::UnknownProduct { .. }
        | Rejection::UnknownHold { .. }
        | Rejection::OrderNotFound { .. } => StatusCode::NOT_FOUND,
        Rejection::KeyReused { .. } | Rejection::CustomerRequired { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        Rejection::Invalid { .. } => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, rejection.code(), rejection.to_string())
}

/// An outcome of another kind than the command's: only possible if the state machine broke its
/// contract, since a key reused for another operation is `KeyReused`.
pub(super) fn unexpected(forwarded: Forwarded) -> ApiError {
    tracing::error!(outcome = ?forwarded.outcome, "an outcome that does not match its command");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Internal,
        "unexpected outcome",
    )
}

/// The query of the routes that take an order's or a hold's token.
#[derive(Deserialize)]
pub(super) struct TokenQuery {
    token: Option<String>,
}

/// The token a request shows: `?token=`, else the `x-order-token` header.
pub(super) fn given_token<'a>(headers: &'a HeaderMap, query: &'a TokenQuery) -> Option<&'a str> {
    let header = headers
        .get(flashstock_api::ORDER_TOKEN_HEADER)
        .and_then(|value| value.to_str().ok());
    query.token.as_deref().or(header)
}

/// An order's or a hold's id in a path: the document's int64. Ids above it cannot exist (a log
/// index below 2^47), and a client generated from the document could not send them.
pub(super) fn record_id(id: &str, what: &str) -> Result<u64, ApiError> {
    id.parse()
        .ok()
        .filter(|id| *id <= i64::MAX as u64)
        .ok_or_else(|| invalid(format!("{what} id is a number from 0 to {}", i64::MAX)))
}

/// One order, to whoever shows its token (`?token=` or the `x-order-token` header), with its
/// lines, status and hold. A missing or wrong token is answered exactly like an order that does
/// not exist: same status, same body, so order ids, which are sequential, reveal nothing to a
/// stranger.
async fn get_order(
    State(gateway): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Answer {
    let id = record_id(&id, "an order")?;
    let Query(query) = query.map_err(|e| invalid(e.body_text()))?;
    let given = given_token(&headers, &query);
    let Some(group) = gateway.node.group_of_order(OrderId(id)) else {
        return Err(ApiError::unknown_order(id));
    };
    let reader = &group.reader;
    let mut applied_index = reader.applied_index();
    let mut record = reader
        .order_record(OrderId(id))
        .map_err(ApiError::storage)?;
    // The id names the entry that placed the order: a replica that has not applied it yet
    // waits for it, briefly, rather than deny an order its client saw confirmed.
    let placed_at = OrderId(id).log_index();
    if record.is_none() && applied_index < placed_at {
        let deadline = tokio::time::Instant::now() + misses::MISS_WAIT;
        if misses::applied_up_to(&mut reader.watch_applied(), placed_at, deadline).await {
            applied_index = reader.applied_index();
            record = reader
                .order_record(OrderId(id))
                .map_err(ApiError::storage)?;
        }
    }
    match record {
        Some(record) if holds_order_token(&record.order, given) => Ok(fresh(
            applied_index,
            OrderView {
                applied_index,
                order: OrderDetails::new(record.order, &record.terms),
            },
        )),
        _ => Err(ApiError::unknown_order(id)),
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Ready when this replica knows a leader, has applied at least one entry, has heard from a
/// leader within `gateway.ready_leader_silence_ms`, and trails the leader's commit index by at
/// most `gateway.ready_lag_entries_max` entries. Otherwise 503 `not_ready`, the message saying
/// which condition fails (the stable part is its first words: `no leader`, `no contact with a
/// leader`, `behind the leader`).
async fn ready(State(gateway): State<AppState>) -> Answer {
    // The stable code only: the error's own text names internals, and stays on the
    // authenticated `/admin/status`.
    if gateway.node.fatal.get().is_some() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::RaftStopped,
            "this gateway's replica stopped; the gateway is exiting",
        ));
    }
    // Every group must be ready: the first that is not answers.
    let mut ready = Vec::with_capacity(gateway.node.groups.len());
    for group in &gateway.node.groups {
        ready.push(group_ready(gateway.as_ref(), group)?);
    }
    let first = ready.swap_remove(0);
    Ok(Json(match gateway.node.groups.len() {
        1 => first,
        _ => {
            let mut all = first;
            all["groups"] = gateway.node.groups.len().into();
            all
        }
    })
    .into_response())
}

/// [`ready`]'s checks for one group; the answer's fields when they pass.
fn group_ready(gateway: &Gateway, group: &crate::Group) -> Result<serde_json::Value, ApiError> {
    let leader = group.raft.metrics().borrow().current_leader;
    let applied_index = group.reader.applied_index();
    let freshness = group
        .freshness
        .view(applied_index, std::time::Instant::now());
    let config = &gateway.node.config.gateway;
    // The stable part of each reason is its first words; with several groups, the group is
    // named at the end.
    let of_group = match gateway.node.groups.len() {
        1 => String::new(),
        _ => format!(" (Raft group {})", group.number),
    };
    let not_ready = |message: String| {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotReady,
            format!("{message}{of_group}"),
        ))
    };
    let leader = match leader {
        Some(leader) if applied_index > 0 => leader,
        _ => {
            return not_ready(format!(
                "no leader known, or nothing applied: leader {leader:?}, applied index \
                 {applied_index}; is this gateway added as a learner?"
            ))
        }
    };
    let silence_ms = freshness.silence.map(|silence| silence.as_millis());
    match silence_ms {
        Some(ms) if ms <= u128::from(config.ready_leader_silence_ms) => {}
        _ => {
            let heard = match silence_ms {
                Some(ms) => format!("for {ms} ms"),
                None => "since this gateway started".to_owned(),
            };
            return not_ready(format!(
                "no contact with a leader {heard} (gateway.ready_leader_silence_ms = {}): \
                 the views it serves may be stale",
                config.ready_leader_silence_ms
            ));
        }
    }
    if freshness.lag_entries > config.ready_lag_entries_max {
        return not_ready(format!(
            "behind the leader by {} entries (gateway.ready_lag_entries_max = {}): catching up",
            freshness.lag_entries, config.ready_lag_entries_max
        ));
    }
    Ok(serde_json::json!({
        "status": "ready",
        "leader": leader,
        "applied_index": applied_index,
        "lag_entries": freshness.lag_entries,
        "leader_silence_ms": silence_ms,
        "staleness_ms": freshness.staleness.map(|staleness| staleness.as_millis()),
    }))
}

async fn openapi(State(gateway): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        gateway.openapi.clone(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The OpenAPI document lists exactly the routes the router serves.
    #[test]
    fn openapi_documents_every_route_and_only_those() {
        let doc: serde_json::Value = serde_json::from_str(super::super::OPENAPI).expect("JSON");
        let mut documented = BTreeSet::new();
        for (path, operations) in doc["paths"].as_object().expect("paths") {
            for method in operations.as_object().expect("operations").keys() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(method, path)| (method.to_string(), path.to_string()))
            .collect();
        assert_eq!(documented, served);
        for (method, path) in ROUTES {
            let _ = handler(method, path);
        }
    }

    /// The document's bounds are the API crate's, which the server enforces.
    #[test]
    fn openapi_states_the_limits_the_server_enforces() {
        use flashstock_api::*;
        let doc: serde_json::Value = serde_json::from_str(super::super::OPENAPI).expect("JSON");
        let schemas = &doc["components"]["schemas"];
        let create = &schemas["CreateProductRequest"]["properties"];
        assert_eq!(create["name"]["x-utf8-bytes-max"], PRODUCT_NAME_LEN_MAX);
        assert_eq!(create["price_cents"]["maximum"], PRICE_CENTS_MAX);
        assert_eq!(create["stock"]["maximum"], STOCK_MAX);
        let restock = &schemas["RestockRequest"]["properties"]["quantity"];
        assert_eq!(restock["maximum"], STOCK_MAX);
        let customer = &schemas["PurchaseRequest"]["properties"]["customer"];
        assert_eq!(customer["maxLength"], CUSTOMER_LEN_MAX);
        let key = &doc["paths"]["/v1/products/{id}/purchase"]["post"]["parameters"][1];
        assert_eq!(key["name"], "Idempotency-Key");
        assert_eq!(key["schema"]["maxLength"], KEY_LEN_MAX);
        let id = &doc["paths"]["/v1/products/{id}"]["get"]["parameters"][0]["schema"];
        assert_eq!(
            id["pattern"],
            format!("^[A-Za-z0-9_-]{{1,{PRODUCT_ID_LEN_MAX}}}$")
        );
        assert_eq!(
            doc["paths"]["/v1/products"]["get"]["parameters"][1]["schema"]["maximum"],
            PAGE_LIMIT_MAX
        );
    }
}
