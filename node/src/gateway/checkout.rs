//! The checkout routes of the public API (cluster version 2): holds, carts, cancellations and
//! limits per customer. Each write is forwarded like a purchase (`routes.rs`): an
//! `Idempotency-Key` on every one, the state machine's refusals as committed rejections with
//! their stable code, "definitely not applied" (503) kept apart from "outcome unknown" (504).
//!
//! - `POST /v1/holds` `{lines, customer?}`: hold every line for `checkout.hold_ttl_ms`, or
//!   nothing; 201 with the hold and its token, which the gateway draws like an order's. A cart
//!   whose products lie in several Raft groups is held the same way, as one hold over every
//!   group, confirmed or released whole (`hold_across.rs`).
//! - `GET /v1/holds/{id}` with the token (`?token=` or `x-order-token`): the hold.
//! - `POST /v1/holds/{id}/confirm` / `release` with the token: the order it becomes (201, with
//!   the hold's token) / the released hold.
//! - `POST /v1/checkout` `{lines, customer?}`: one order of every line, or nothing (201). A
//!   cart whose products lie in several Raft groups is bought the same way, all or nothing, as
//!   one order per group (`cart.rs`).
//! - `POST /v1/orders/{id}/cancel` with the order's token: within `checkout.cancel_window_ms`
//!   of its placing, its stock goes back, once.
//! - Admin (bearer token): `PUT /v1/admin/products/{id}/limit`, `POST
//!   /v1/admin/orders/{id}/cancel` (no window), `POST /v1/admin/holds/{id}/confirm|release`:
//!   without a token, which the state machine takes as an admin's.
//!
//! A token is never optional on the public routes: one that is missing or malformed cannot be a
//! record's, and is answered `unknown_hold` / `unknown_order` at once, like a wrong one, without
//! proposing anything (a command without a token would be an admin's).
//!
//! Until this gateway's replica has applied cluster version 2 (a cluster mid-upgrade), every
//! checkout write is answered 503 `unavailable` without proposing: an older replica could not
//! read the command.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use flashstock_api::{
    validate_order_token, CartRequest, Command, ErrorCode, HoldDetails, HoldId, HoldReleased,
    HoldResponse, HoldView, Line, Op, OrderChanged, OrderId, OrderWithLines, Outcome,
    SetLimitRequest, CLUSTER_VERSION_BASE,
};

use super::admission::Source;
use super::routes::{
    fresh, given_token, idempotency_key, invalid, new_order_token, record_id, submit, submit_in,
    unexpected, Admin, Answer, AppState, JsonBody, TokenQuery,
};
use super::{Client, Forwarded, Gateway};
use crate::api_error::ApiError;

// The configuration's bounds are the state machine's: checked here, where both crates meet.
const _: () = assert!(
    cluster_config::defaults::HOLD_TTL_MS_LOWEST == flashstock_api::HOLD_TTL_MS_MIN
        && cluster_config::defaults::HOLD_TTL_MS_HIGHEST == flashstock_api::HOLD_TTL_MS_MAX
        && cluster_config::defaults::CART_LINES_MAX_HIGHEST == flashstock_api::CART_LINES_LIMIT
);

/// 503 `unavailable`, nothing proposed, while this replica has not applied the cluster version
/// `op` needs: the cluster is mid-upgrade, and a replica of the release before could not read
/// the command. Read in `group`, the group that applies it: each group raises its own version.
/// Kinds of the first release (a purchase) read nothing here.
pub(super) fn require_cluster_version(group: &crate::Group, op: &Op) -> Result<(), ApiError> {
    require_version(group, op.since_cluster_version(), op.kind())
}

/// [`require_cluster_version`] for what needs cluster version `needed`, named `what`.
pub(super) fn require_version(
    group: &crate::Group,
    needed: u32,
    what: &str,
) -> Result<(), ApiError> {
    if needed <= CLUSTER_VERSION_BASE {
        return Ok(());
    }
    let running = group.reader.cluster_version().map_err(ApiError::storage)?;
    if running >= needed {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        format!(
            "not applied: the cluster is mid-upgrade (it runs cluster version {running}, and \
             {what} needs {needed}, which the leader switches to once every node runs a release \
             that supports it); retry later"
        ),
    ))
}

/// The lines of a cart, checked against this gateway's limits: 1 to `checkout.cart_lines_max`,
/// each quantity 1 to `limits.purchase_quantity_max`. The rest (ids, one line per product) is
/// [`flashstock_api::validate_lines`], checked with the command.
fn cart_lines(gateway: &Gateway, lines: Vec<Line>) -> Result<Vec<Line>, ApiError> {
    let config = &gateway.node.config;
    let lines_max = config.checkout.cart_lines_max;
    if lines.is_empty() || lines.len() > lines_max {
        return Err(invalid(format!(
            "a cart holds 1 to {lines_max} lines (checkout.cart_lines_max), not {}",
            lines.len()
        )));
    }
    let quantity_max = config.limits.purchase_quantity_max;
    if let Some((index, line)) = lines
        .iter()
        .enumerate()
        .find(|(_, line)| line.quantity == 0 || line.quantity > quantity_max)
    {
        return Err(invalid(format!(
            "line {index} ({:?}): quantity must be 1 to {quantity_max}",
            line.product
        )));
    }
    Ok(lines)
}

/// The token a public request shows, if it can be a record's at all. A missing or malformed one
/// gets the same answer as a wrong one, from the caller.
fn well_formed_token(headers: &HeaderMap, query: &TokenQuery) -> Option<String> {
    given_token(headers, query)
        .filter(|token| validate_order_token(token).is_ok())
        .map(str::to_owned)
}

fn token_query(query: Result<Query<TokenQuery>, QueryRejection>) -> Result<TokenQuery, ApiError> {
    query
        .map(|Query(query)| query)
        .map_err(|e| invalid(e.body_text()))
}

fn hold_id(id: &str) -> Result<u64, ApiError> {
    record_id(id, "a hold")
}

/// `POST /v1/holds`. A cart whose products lie in several Raft groups is held the same way,
/// every line or none, as one hold over every group (`hold_across.rs`).
pub(super) async fn place_hold(
    State(gateway): State<AppState>,
    Extension(source): Extension<Source>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<CartRequest>,
) -> Answer {
    let key = idempotency_key(&headers)?;
    let lines = cart_lines(&gateway, request.lines)?;
    let customer = request.customer;
    let op = Op::Hold {
        lines,
        customer: customer.clone(),
        ttl_ms: gateway.node.config.checkout.hold_ttl_ms,
        token: Some(new_order_token()?),
    };
    let command = Command { key, op };
    flashstock_api::validate_command(&command).map_err(invalid)?;
    let client =
        gateway
            .admission
            .purchaser(source, customer.as_deref(), tokio::time::Instant::now())?;
    let group = match gateway.group_for(&command.op) {
        Ok(group) => group,
        Err(_) => {
            let Command {
                key,
                op: Op::Hold { lines, .. },
            } = command
            else {
                unreachable!("built above")
            };
            return super::hold_across::place_across(&gateway, client, key, lines, customer).await;
        }
    };
    match submit_in(&gateway, group, client, command).await? {
        Forwarded {
            outcome: Outcome::Held(hold),
            replayed,
        } => {
            // The first request's token, on a replay too: the hold has only that one.
            let Some(token) = hold.token.clone() else {
                return Err(placed_without_token("hold"));
            };
            let answer = HoldResponse {
                hold: HoldDetails::from(&hold),
                token,
                replayed,
            };
            Ok((StatusCode::CREATED, Json(answer)).into_response())
        }
        other => Err(unexpected(other)),
    }
}

/// A record placed through the internal API without a token, met under the same key: the
/// public API cannot hand out a capability it does not have.
fn placed_without_token(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::IdempotencyKeyReused,
        format!(
            "this Idempotency-Key placed a {what} through the internal API, without a token; \
             use another key"
        ),
    )
}

/// `GET /v1/holds/{id}`: the hold, to whoever shows its token; a missing or wrong token is
/// answered exactly like a hold that does not exist.
pub(super) async fn get_hold(
    State(gateway): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Answer {
    let id = hold_id(&id)?;
    let query = token_query(query)?;
    let given = given_token(&headers, &query);
    let Some(group) = gateway.node.group_of_order(flashstock_api::OrderId(id)) else {
        return Err(ApiError::unknown_hold(id));
    };
    let reader = &group.reader;
    let applied_index = reader.applied_index();
    let hold = reader.hold(HoldId(id)).map_err(ApiError::storage)?;
    let shown = hold.filter(|hold| token_matches(hold.token.as_deref(), given));
    let Some(hold) = shown else {
        return Err(ApiError::unknown_hold(id));
    };
    let details = match super::hold_across::primary_part(group, hold.clone())? {
        Some(across) => super::hold_across::view(&gateway, &across)?,
        None => HoldDetails::from(&hold),
    };
    Ok(fresh(
        applied_index,
        HoldView {
            applied_index,
            hold: details,
        },
    ))
}

/// Whether a record's `token` is the one `given`; a record without one (placed through the
/// internal API) opens to no token.
fn token_matches(token: Option<&str>, given: Option<&str>) -> bool {
    match (token, given) {
        (Some(token), Some(given)) => {
            crate::internal::constant_time_eq(token.as_bytes(), given.as_bytes())
        }
        _ => false,
    }
}

/// Hold `id` as the primary part of a hold across groups, if it is one, once `token` matches
/// it; a wrong token is answered like a hold that does not exist. A hold this gateway's replica
/// does not hold yet, placed at an index past the one it applied (its client had it from
/// another gateway), is looked for again once the replica has caught up with its group's
/// leader: proposed as a hold of one group, a part would be refused. An id at an index the
/// replica has applied is absent for good: no read index is spent on it.
async fn across_for(
    gateway: &Gateway,
    id: u64,
    token: &str,
) -> Result<Option<super::hold_across::Across>, ApiError> {
    if gateway.node.groups.len() == 1 {
        return Ok(None);
    }
    let Some(group) = gateway.node.group_of_order(OrderId(id)) else {
        return Ok(None);
    };
    let read = || group.reader.hold(HoldId(id)).map_err(ApiError::storage);
    let mut hold = read()?;
    if hold.is_none() && OrderId(id).log_index() > group.reader.applied_index() {
        super::routes::catch_up_with_leader(gateway, group.number).await?;
        hold = read()?;
    }
    let Some(hold) = hold else {
        return Ok(None);
    };
    match super::hold_across::primary_part(group, hold)? {
        Some(across) if token_matches(across.token(), Some(token)) => Ok(Some(across)),
        Some(_) => Err(ApiError::unknown_hold(id)),
        None => Ok(None),
    }
}

/// Confirm hold `id` with `token` (`None`: an admin): 201 with the order it became.
async fn confirm(
    gateway: &Gateway,
    client: Client,
    key: String,
    id: u64,
    token: Option<String>,
) -> Answer {
    let op = Op::ConfirmHold {
        hold: HoldId(id),
        token,
    };
    let command = Command { key, op };
    placed(submit(gateway, client, command).await?)
}

/// 201 with the order a confirmation or a checkout placed.
fn placed(forwarded: Forwarded) -> Answer {
    match forwarded {
        Forwarded {
            outcome: Outcome::Placed { order, terms },
            replayed,
        } => {
            let answer = OrderChanged {
                order: OrderWithLines::new(order, &terms),
                replayed,
                other_orders: Vec::new(),
            };
            Ok((StatusCode::CREATED, Json(answer)).into_response())
        }
        other => Err(unexpected(other)),
    }
}

/// Release hold `id` with `token` (`None`: an admin).
async fn release(
    gateway: &Gateway,
    client: Client,
    key: String,
    id: u64,
    token: Option<String>,
) -> Answer {
    let op = Op::ReleaseHold {
        hold: HoldId(id),
        token,
    };
    let command = Command { key, op };
    match submit(gateway, client, command).await? {
        Forwarded {
            outcome: Outcome::Released(hold),
            replayed,
        } => Ok(Json(HoldReleased {
            hold: HoldDetails::from(&hold),
            replayed,
        })
        .into_response()),
        other => Err(unexpected(other)),
    }
}

/// What a write on a hold or an order by its owner needs: its idempotency key, the record's id,
/// the token it shows, and the client it counts against. A missing or malformed token cannot be
/// the record's: it is answered with `unknown` (as a wrong one is, by the state machine) before
/// anything is proposed, since a command without a token would be an admin's.
fn owner_write(
    gateway: &Gateway,
    source: Source,
    headers: &HeaderMap,
    id: &str,
    query: Result<Query<TokenQuery>, QueryRejection>,
    what: &str,
    unknown: fn(u64) -> ApiError,
) -> Result<(String, u64, String, Client), ApiError> {
    let key = idempotency_key(headers)?;
    let id = record_id(id, what)?;
    let query = token_query(query)?;
    let Some(token) = well_formed_token(headers, &query) else {
        return Err(unknown(id));
    };
    let client = gateway
        .admission
        .purchaser(source, None, tokio::time::Instant::now())?;
    Ok((key, id, token, client))
}

/// `POST /v1/holds/{id}/confirm`.
pub(super) async fn confirm_hold(
    State(gateway): State<AppState>,
    Path(id): Path<String>,
    Extension(source): Extension<Source>,
    headers: HeaderMap,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Answer {
    let (key, id, token, client) = owner_write(
        &gateway,
        source,
        &headers,
        &id,
        query,
        "a hold",
        ApiError::unknown_hold,
    )?;
    if let Some(across) = across_for(&gateway, id, &token).await? {
        return super::hold_across::confirm(&gateway, client, key, across).await;
    }
    confirm(&gateway, client, key, id, Some(token)).await
}

/// `POST /v1/holds/{id}/release`.
pub(super) async fn release_hold(
    State(gateway): State<AppState>,
    Path(id): Path<String>,
    Extension(source): Extension<Source>,
    headers: HeaderMap,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Answer {
    let (key, id, token, client) = owner_write(
        &gateway,
        source,
        &headers,
        &id,
        query,
        "a hold",
        ApiError::unknown_hold,
    )?;
    if let Some(across) = across_for(&gateway, id, &token).await? {
        return super::hold_across::release(&gateway, client, key, across).await;
    }
    release(&gateway, client, key, id, Some(token)).await
}

/// `POST /v1/admin/holds/{id}/confirm`: any hold, without its token.
pub(super) async fn admin_confirm_hold(
    State(gateway): State<AppState>,
    Path(id): Path<String>,
    _: Admin,
    headers: HeaderMap,
) -> Answer {
    let key = idempotency_key(&headers)?;
    let id = hold_id(&id)?;
    confirm(&gateway, Client::OPERATOR, key, id, None).await
}

/// `POST /v1/admin/holds/{id}/release`: any hold, without its token.
pub(super) async fn admin_release_hold(
    State(gateway): State<AppState>,
    Path(id): Path<String>,
    _: Admin,
    headers: HeaderMap,
) -> Answer {
    let key = idempotency_key(&headers)?;
    let id = hold_id(&id)?;
    release(&gateway, Client::OPERATOR, key, id, None).await
}

/// `POST /v1/checkout`: one order of every line, or nothing.
pub(super) async fn checkout(
    State(gateway): State<AppState>,
    Extension(source): Extension<Source>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<CartRequest>,
) -> Answer {
    let key = idempotency_key(&headers)?;
    let lines = cart_lines(&gateway, request.lines)?;
    let customer = request.customer;
    let op = Op::Checkout {
        lines,
        customer: customer.clone(),
        token: Some(new_order_token()?),
    };
    let client =
        gateway
            .admission
            .purchaser(source, customer.as_deref(), tokio::time::Instant::now())?;
    let command = Command { key, op };
    flashstock_api::validate_command(&command).map_err(invalid)?;
    match gateway.group_for(&command.op) {
        Ok(group) => placed(submit_in(&gateway, group, client, command).await?),
        Err(_) => {
            let Command {
                key,
                op: Op::Checkout { lines, .. },
            } = command
            else {
                unreachable!("built above")
            };
            super::cart::checkout_across(&gateway, client, key, lines, customer).await
        }
    }
}

/// Cancel order `id` with `token` within `within` (`None`, `None`: an admin, no window).
async fn cancel(
    gateway: &Gateway,
    client: Client,
    key: String,
    id: u64,
    token: Option<String>,
    within: Option<Duration>,
) -> Answer {
    let op = Op::CancelOrder {
        order: OrderId(id),
        token,
        within_ms: within.map(|within| within.as_millis() as u64),
    };
    let command = Command { key, op };
    match submit(gateway, client, command).await? {
        Forwarded {
            outcome: Outcome::Cancelled { order, terms },
            replayed,
        } => Ok(Json(OrderChanged {
            order: OrderWithLines::new(order, &terms),
            replayed,
            other_orders: Vec::new(),
        })
        .into_response()),
        other => Err(unexpected(other)),
    }
}

/// `POST /v1/orders/{id}/cancel`: by the order's owner, within `checkout.cancel_window_ms`.
pub(super) async fn cancel_order(
    State(gateway): State<AppState>,
    Path(id): Path<String>,
    Extension(source): Extension<Source>,
    headers: HeaderMap,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Answer {
    let (key, id, token, client) = owner_write(
        &gateway,
        source,
        &headers,
        &id,
        query,
        "an order",
        ApiError::unknown_order,
    )?;
    let window = Duration::from_millis(gateway.node.config.checkout.cancel_window_ms);
    cancel(&gateway, client, key, id, Some(token), Some(window)).await
}

/// `POST /v1/admin/orders/{id}/cancel`: any order, without its token or a window.
pub(super) async fn admin_cancel_order(
    State(gateway): State<AppState>,
    Path(id): Path<String>,
    _: Admin,
    headers: HeaderMap,
) -> Answer {
    let key = idempotency_key(&headers)?;
    let id = record_id(&id, "an order")?;
    cancel(&gateway, Client::OPERATOR, key, id, None, None).await
}

/// `PUT /v1/admin/products/{id}/limit` `{limit_per_customer: N | null}`.
pub(super) async fn set_limit(
    State(gateway): State<AppState>,
    Path(id): Path<String>,
    _: Admin,
    headers: HeaderMap,
    JsonBody(request): JsonBody<SetLimitRequest>,
) -> Answer {
    let key = idempotency_key(&headers)?;
    let op = Op::SetLimit {
        product: id,
        limit_per_customer: request.limit_per_customer,
    };
    let command = Command { key, op };
    let changed =
        super::routes::product_changed(submit(&gateway, Client::OPERATOR, command).await?)?;
    Ok(Json(changed).into_response())
}
