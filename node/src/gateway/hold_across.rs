//! Holds whose products lie in several Raft groups (cluster version 3): `POST /v1/holds` of such
//! a cart, and the reads and writes of the hold it answers with.
//!
//! A hold across groups is a cart across groups (`cart.rs`) whose decision waits for the buyer
//! to pay:
//! - **Placing** holds the primary part and every secondary part as a checkout across groups
//!   does, with the hold's time-to-live (`checkout.hold_ttl_ms`) as the parts' deadline, and
//!   answers 201 with one hold: the primary part's id and token, every part's lines (in group
//!   order), the primary part's times. A part refused releases what was held, and the refusal
//!   is the answer, as for a hold of one group (recorded under the part's key, it answers every
//!   retry too). A part not placed, or whose outcome is unknown, leaves the hold as it is and
//!   answers 504 `outcome_unknown`: a retry under the same key finishes placing it, and a hold
//!   nobody finishes expires at its deadline. So no attempt of a request can be told its hold
//!   is held while another attempt's release of it is still on its way.
//! - **Confirming** (`POST /v1/holds/{id}/confirm` with its token) commits the primary part,
//!   which is the decision, then every secondary part: 201 with one order per group, `order`
//!   the primary group's and the others in `other_orders`, as a checkout across groups answers.
//! - **Releasing** aborts the primary part, then every secondary part.
//! - **Expiry**: the primary group expires the primary part at its deadline, which decides
//!   abort; each secondary group's leader then releases its part ([`crate::cart_parts`]).
//! - **Reading** (`GET /v1/holds/{id}`) shows the primary part's status with every part's lines
//!   and, once confirmed, the other groups' orders.
//!
//! The decision is proposed under the key of the buyer's request that makes it, the
//! confirmation's or the release's, so that it answers as a hold of one group does: a retry of
//! that request gets the same answer (`replayed`), another confirmation or release is refused
//! `hold_finished`, and the primary group's order carries the confirmation's key. Every other
//! command is keyed from the placing request's key (`K#g<group>`, then `#c` or `#a`), as the
//! cart's protocol wants: the gateway that settles a part and the leader that finishes it name
//! the same command, which applies once.
//!
//! **No hold half bought.** The primary part is committed only by a confirmation, which needs
//! the hold's token, and the token is handed out only once every part is held: a confirmation
//! never races the placing of a part. Before committing, the gateway catches up with every
//! group's leader (a read index each), so it sees every part placed before the hold was
//! answered and settles each. The admin hold routes still refuse a part (only its cart settles
//! it): an operator cannot confirm such a hold without its token, and one left alone expires.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use flashstock_api::cart::{is_part_or_settle_key, part_key};
use flashstock_api::{
    ErrorCode, Hold, HoldDetails, HoldReleased, HoldResponse, HoldState, Line, Op, OrderWithLines,
    Outcome, Rejection,
};
use futures::future::join_all;
use raft_store::inventory::{KeyRecord, CART_KEY_PREFIX};

use super::cart::{decision_unknown, Cart, Cause, Placed};
use super::forwarder::ForwardError;
use super::routes::{catch_up_with_leader, forward_failed, invalid, rejected, unexpected, Answer};
use super::{Client, Forwarded, Gateway};
use crate::api_error::ApiError;

/// Hold `lines`, whose products lie in more than one group, for `customer` under the request's
/// idempotency `key`: every line or none.
pub(super) async fn place_across(
    gateway: &Gateway,
    client: Client,
    key: String,
    lines: Vec<Line>,
    customer: Option<String>,
) -> Answer {
    let cart = Cart {
        gateway,
        client,
        key: &key,
    };
    let ttl_ms = gateway.node.config.checkout.hold_ttl_ms;
    let Placed {
        primary_group,
        primary,
        replayed,
        held,
        cause,
    } = cart.place(lines, customer, ttl_ms, "hold").await?;
    match cause {
        None => {}
        // Recorded under the part's key: every attempt of this request is refused alike, so
        // none can ever say the hold is held, and releasing what was held is safe.
        Some(cause @ Cause::Refused(_)) => {
            return cart.abort(primary_group, primary.id, held, cause).await
        }
        // A part not placed, or not known to be: the hold is left as it is, for a retry of
        // the request to finish, or to expire at its deadline. Releasing it here could let a
        // retry be told it is held while a release of this attempt is still on its way.
        Some(Cause::Failed(error)) => return Err(partly_placed(&error)),
        Some(Cause::Expired) => unreachable!("placing parts decides nothing"),
    }
    // The first request's token, on a replay too: every part has only that one.
    let Some(token) = primary.token.clone() else {
        return Err(unexpected(Forwarded {
            outcome: Outcome::Held(primary),
            replayed,
        }));
    };
    let answer = HoldResponse {
        hold: details(&primary, &held),
        token,
        replayed,
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// 504: a hold across groups whose parts were not all placed, for `error`.
fn partly_placed(error: &ApiError) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::OutcomeUnknown,
        format!(
            "the hold is not placed in every group yet ({}); retry with the same \
             Idempotency-Key to finish placing it; left alone, what it holds goes back on sale \
             at its deadline",
            error.message
        ),
    )
}

/// The primary part of a cart across groups, as this node's replica of its group holds it.
pub(super) struct Across {
    group: u16,
    hold: Hold,
    /// The placing request's key, from which every part's is made.
    cart_key: String,
}

impl Across {
    /// The primary part's token, which opens the whole hold.
    pub(super) fn token(&self) -> Option<&str> {
        self.hold.token.as_deref()
    }
}

/// The primary part that `hold`, read in `group`, is, if it is one (placed by `POST
/// /v1/holds` or `POST /v1/checkout` of a cart across groups): told by the command that placed
/// it, whose record lives as long as the hold's.
pub(super) fn primary_part(group: &crate::Group, hold: Hold) -> Result<Option<Across>, ApiError> {
    let record = part_record(group, &hold.key)?;
    let is_primary = matches!(
        record.map(|record| record.op),
        Some(Op::HoldPart { primary: None, .. })
    );
    let suffix = format!("#g{}", group.number);
    let cart_key = match hold.key.strip_suffix(&suffix) {
        Some(cart_key) if is_primary => cart_key.to_owned(),
        _ => return Ok(None),
    };
    Ok(Some(Across {
        group: group.number,
        hold,
        cart_key,
    }))
}

/// The key a buyer's confirmation or release decides a hold across groups under: the
/// request's own, which must not have the form of a part's or settling key (the decision's
/// record lives beside theirs, and such a key could take one of their records first).
fn decision_key(key: String) -> Result<String, ApiError> {
    if is_part_or_settle_key(&key) {
        return Err(invalid(format!(
            "the Idempotency-Key of a confirmation or release of a hold across Raft groups may \
             not end in #g<group>, #g<group>#c or #g<group>#a, which name a cart's commands: \
             {key:?}"
        )));
    }
    Ok(key)
}

/// The idempotency record of the part placed under `key` in `group`: kept apart from the
/// clients' keys, behind [`CART_KEY_PREFIX`].
fn part_record(group: &crate::Group, key: &str) -> Result<Option<KeyRecord>, ApiError> {
    group
        .reader
        .key_record(&format!("{CART_KEY_PREFIX}{key}"))
        .map_err(ApiError::storage)
}

/// The secondary parts of `across`, as this node's replicas of the other groups hold them now,
/// in group order: each group's part placed under the cart's key and naming this primary part.
fn secondary_parts(gateway: &Gateway, across: &Across) -> Result<Vec<(u16, Hold)>, ApiError> {
    let mut parts = Vec::new();
    for group in &gateway.node.groups {
        if group.number == across.group {
            continue;
        }
        let key = part_key(&across.cart_key, group.number);
        let Some(record) = part_record(group, &key)? else {
            continue;
        };
        let (Op::HoldPart { primary, .. }, Outcome::Held(placed)) = (record.op, record.outcome)
        else {
            continue;
        };
        if primary != Some(across.hold.id) {
            continue;
        }
        // As it stands now; as placed if it was forgotten since.
        let part = group
            .reader
            .hold(placed.id)
            .map_err(ApiError::storage)?
            .unwrap_or(placed);
        parts.push((group.number, part));
    }
    Ok(parts)
}

/// One hold's details for the primary part `primary` and its other parts: the primary part's
/// status, order and times, every part's lines, and the other parts' orders.
fn details(primary: &Hold, parts: &[(u16, Hold)]) -> HoldDetails {
    let mut details = HoldDetails::from(primary);
    for (_, part) in parts {
        let part = HoldDetails::from(part);
        details.lines.extend(part.lines);
        details.other_orders.extend(part.order);
    }
    details
}

/// `GET /v1/holds/{id}` of a hold across groups, once its token matched.
pub(super) fn view(gateway: &Gateway, across: &Across) -> Result<HoldDetails, ApiError> {
    let parts = secondary_parts(gateway, across)?;
    Ok(details(&across.hold, &parts))
}

/// `POST /v1/holds/{id}/confirm` of a hold across groups, once its token matched: the decision
/// commit, then every part's order.
pub(super) async fn confirm(
    gateway: &Gateway,
    client: Client,
    key: String,
    across: Across,
) -> Answer {
    let key = decision_key(key)?;
    // Every part placed before the hold was answered is applied on its group's leader: after
    // these, this node's replicas hold each of them.
    let groups =
        (0..gateway.node.groups.len() as u16).map(|group| catch_up_with_leader(gateway, group));
    for caught_up in join_all(groups).await {
        caught_up?;
    }
    let parts = secondary_parts(gateway, &across)?;
    if parts.is_empty() {
        // Placed with a part in another group at least: not seen yet. Nothing proposed.
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            format!(
                "not applied: the other parts of hold {} are not visible on this gateway yet; \
                 retry shortly",
                across.hold.id
            ),
        ));
    }
    let cart = Cart {
        gateway,
        client,
        key: &across.cart_key,
    };
    match cart
        .decide_under(across.group, across.hold.id, true, key)
        .await
    {
        Ok(Forwarded {
            outcome: Outcome::Placed { order, terms },
            replayed,
        }) => {
            let first = OrderWithLines::new(order, &terms);
            cart.settle_committed(first, replayed, parts).await
        }
        Ok(Forwarded {
            outcome: Outcome::Rejected(rejection),
            ..
        }) => {
            if decided_abort(&rejection) {
                // Its leaders would release what is still held, later.
                release_parts(&cart, still_held(parts)).await;
            }
            Err(rejected(&rejection))
        }
        Ok(other) => Err(decision_unknown(&format!("{:?}", other.outcome))),
        Err(ForwardError::Unknown(message)) => Err(decision_unknown(&message)),
        Err(error) => Err(forward_failed(error)),
    }
}

/// `POST /v1/holds/{id}/release` of a hold across groups, once its token matched: the decision
/// abort, under the request's `key`, then every part released.
pub(super) async fn release(
    gateway: &Gateway,
    client: Client,
    key: String,
    across: Across,
) -> Answer {
    let key = decision_key(key)?;
    let parts = secondary_parts(gateway, &across)?;
    let cart = Cart {
        gateway,
        client,
        key: &across.cart_key,
    };
    let decided = cart
        .decide_under(across.group, across.hold.id, false, key)
        .await;
    let (primary, replayed) = match decided {
        Ok(Forwarded {
            outcome: Outcome::Released(primary),
            replayed,
        }) => (primary, replayed),
        Ok(Forwarded {
            outcome: Outcome::Rejected(rejection),
            ..
        }) => {
            if decided_abort(&rejection) {
                release_parts(&cart, still_held(parts)).await;
            }
            return Err(rejected(&rejection));
        }
        Ok(other) => return Err(unexpected(other)),
        Err(error) => return Err(forward_failed(error)),
    };
    let released = release_parts(&cart, parts).await;
    Ok(Json(HoldReleased {
        hold: details(&primary, &released),
        replayed,
    })
    .into_response())
}

/// Whether a refusal to settle a primary part says its cart was decided abort before.
fn decided_abort(rejection: &Rejection) -> bool {
    matches!(
        rejection,
        Rejection::HoldExpired { .. }
            | Rejection::HoldFinished {
                state: HoldState::Released | HoldState::Expired,
                ..
            }
    )
}

/// Release every part of `parts` whose cart was decided abort, all at once; best effort (each
/// group's leader releases what is left). Gives each part as it now stands, where known.
async fn release_parts(cart: &Cart<'_>, parts: Vec<(u16, Hold)>) -> Vec<(u16, Hold)> {
    let releasing = parts.into_iter().map(|(group, part)| async move {
        match cart.settle(group, part.id, false).await {
            Ok(Forwarded {
                outcome: Outcome::Released(released),
                ..
            }) => (group, released),
            _ => (group, part),
        }
    });
    join_all(releasing).await
}

fn still_held(parts: Vec<(u16, Hold)>) -> Vec<(u16, Hold)> {
    parts
        .into_iter()
        .filter(|(_, part)| part.state == HoldState::Held)
        .collect()
}
