//! `POST /v1/checkout` of a cart whose products lie in several Raft groups: bought whole or not
//! at all (cluster version 3). A hold of such a cart (`hold_across.rs`) places the same parts
//! and leaves the decision to the buyer's confirmation or release.
//!
//! No one group can apply such a cart, so the gateway runs it as a commit in two phases whose
//! decision lives in one group, the cart's primary group (the lowest group of its products),
//! like Percolator's primary lock:
//!
//! 1. **Primary part.** Hold the primary group's lines ([`Op::HoldPart`] without a primary,
//!    key `K#g<p>`). It expires like a hold, `checkout.cart_decision_ms` after it is placed.
//! 2. **Secondary parts.** Hold every other group's lines, each naming the primary part, all
//!    at once. A secondary part never expires on its own: its group cannot see the decision.
//! 3. **Decision.** Every part held: commit the primary part ([`Op::SettlePart`], key
//!    `K#g<p>#c`). Once that is applied, the cart is bought. Anything else (a part refused, or
//!    its outcome unknown): release the primary part (`#a`). A primary part past its deadline
//!    cannot be committed: its group expires it, and that too decides abort.
//! 4. **Settle** every secondary part as decided (`#c` or `#a`). A gateway that stops before
//!    this leaves it to each secondary group's leader ([`crate::cart_parts`]), which reads the
//!    primary part's final state from its own replica of the primary group.
//!
//! Every command's key comes from the request's ([`flashstock_api::cart`]), so a retry of the
//! request, a second gateway and a leader finishing a cart name the same commands, and each is
//! applied once. The answer follows the decision: 201 with every group's order when it is
//! commit and every part is settled; the refusal that caused it (409, 404, ...) when it is
//! abort; 504 `outcome_unknown` when the decision is not known, or when the cart is bought but
//! one of its orders could not be learned yet: a retry with the same key answers from the
//! commands' records.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use flashstock_api::cart::{part_key, settle_key, CART_CLUSTER_VERSION, CART_KEY_LEN_MAX};
use flashstock_api::placement::group_of;
use flashstock_api::{
    Command, ErrorCode, Hold, HoldId, HoldState, Line, Op, OrderChanged, OrderWithLines, Outcome,
    Rejection,
};
use futures::future::join_all;

use super::checkout::require_version;
use super::forwarder::ForwardError;
use super::routes::{forward_failed, invalid, new_order_token, rejected, unexpected, Answer};
use super::{Client, Forwarded, Gateway};
use crate::api_error::ApiError;

/// Buy `lines`, whose products lie in more than one group, as one cart for `customer`, under
/// the request's idempotency `key`.
pub(super) async fn checkout_across(
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
    let ttl_ms = gateway.node.config.checkout.cart_decision_ms;
    let Placed {
        primary_group,
        primary,
        held,
        mut cause,
        ..
    } = cart.place(lines, customer, ttl_ms, "checkout").await?;

    // 3. The decision, in the primary group.
    if cause.is_none() {
        let committed = cart
            .settle(primary_group, primary.id, true)
            .await
            .map(|forwarded| (forwarded.replayed, forwarded.outcome));
        match committed {
            Ok((replayed, Outcome::Placed { order, terms })) => {
                let first = OrderWithLines::new(order, &terms);
                return cart.settle_committed(first, replayed, held).await;
            }
            Ok((_, Outcome::Rejected(rejection))) => match rejection {
                Rejection::HoldExpired { .. }
                | Rejection::HoldFinished {
                    state: HoldState::Released | HoldState::Expired,
                    ..
                } => cause = Some(Cause::Expired),
                // Committed by another attempt under another key: impossible for a correct
                // gateway, and nothing here can tell the orders. A retry reads the records.
                other => return Err(decision_unknown(&format!("{other}"))),
            },
            Ok((_, other)) => return Err(decision_unknown(&format!("{other:?}"))),
            Err(ForwardError::Unknown(message)) => return Err(decision_unknown(&message)),
            // Definitely not applied: the cart is not decided, and this gateway aborts it.
            Err(error) => cause = Some(Cause::Failed(forward_failed(error))),
        }
    }
    let cause = cause.expect("a cart not committed has a cause");
    cart.abort(primary_group, primary.id, held, cause).await
}

/// `lines` by the group of their products, in group order (the first is the cart's primary
/// group), once `key` leaves room for the suffixes of the parts' keys and every group of the
/// cart has applied the cluster version of carts across groups. `what`: the request, for
/// the refusal.
fn split_by_group(
    gateway: &Gateway,
    key: &str,
    lines: Vec<Line>,
    what: &str,
) -> Result<BTreeMap<u16, Vec<Line>>, ApiError> {
    if key.len() > CART_KEY_LEN_MAX {
        return Err(invalid(format!(
            "the products of this cart lie in several Raft groups, and such a {what}'s \
             Idempotency-Key is 1 to {CART_KEY_LEN_MAX} characters, not {}",
            key.len()
        )));
    }
    let groups = gateway.node.groups.len() as u16;
    let mut parts: BTreeMap<u16, Vec<Line>> = BTreeMap::new();
    for line in lines {
        parts
            .entry(group_of(&line.product, groups))
            .or_default()
            .push(line);
    }
    for group in parts.keys() {
        let group = &gateway.node.groups[usize::from(*group)];
        require_version(group, CART_CLUSTER_VERSION, "a cart across groups")?;
    }
    Ok(parts)
}

/// What placing a cart's parts left: the primary part, held, and every secondary part held,
/// or why one was not (the cart must then be aborted).
pub(super) struct Placed {
    pub primary_group: u16,
    pub primary: Hold,
    /// The primary part's placing was a replay of an earlier request's.
    pub replayed: bool,
    pub held: Vec<(u16, Hold)>,
    pub cause: Option<Cause>,
}

/// Why a cart is aborted.
pub(super) enum Cause {
    /// A part was refused by its group's state machine: definitely not held, and a retry of
    /// the same request is refused the same way (the refusal is recorded under the part's key).
    Refused(Rejection),
    /// The primary part expired before the commit reached it.
    Expired,
    /// A part could not be placed, or the decision not proposed: the answer that says how.
    Failed(ApiError),
}

/// One cart's commands, sent by this gateway.
pub(super) struct Cart<'a> {
    pub gateway: &'a Gateway,
    pub client: Client,
    /// The request's idempotency key, from which every part's is made.
    pub key: &'a str,
}

impl Cart<'_> {
    /// Phases 1 and 2: split `lines` by group ([`split_by_group`], `what` naming the request),
    /// hold the primary group's lines as the primary part, then every other group's as
    /// secondary parts naming it, all at once, each with a deadline `ttl_ms` after it is
    /// placed. `Err`: the primary part was not held, and the answer that says why.
    pub(super) async fn place(
        &self,
        lines: Vec<Line>,
        customer: Option<String>,
        ttl_ms: u64,
        what: &str,
    ) -> Result<Placed, ApiError> {
        let parts = split_by_group(self.gateway, self.key, lines, what)?;
        let mut parts = parts.into_iter();
        let (primary_group, primary_lines) = parts.next().expect("a cart has lines");

        // 1. The primary part, whose fate is the cart's.
        let placed = self
            .send(
                primary_group,
                Op::HoldPart {
                    lines: primary_lines,
                    customer: customer.clone(),
                    ttl_ms,
                    token: Some(new_order_token()?),
                    primary: None,
                },
                None,
            )
            .await;
        let (primary, replayed) = match placed {
            Ok(Forwarded {
                outcome: Outcome::Held(hold),
                replayed,
            }) => (hold, replayed),
            Ok(Forwarded {
                outcome: Outcome::Rejected(rejection),
                ..
            }) => return Err(rejected(&rejection)),
            Ok(other) => return Err(unexpected(other)),
            Err(error) => return Err(forward_failed(error)),
        };
        // A replay's part has the first request's token: every part and order shares it.
        let token = primary.token.clone();

        // 2. The secondary parts, all at once.
        let placing = parts.map(|(group, lines)| {
            let op = Op::HoldPart {
                lines,
                customer: customer.clone(),
                ttl_ms,
                token: token.clone(),
                primary: Some(primary.id),
            };
            async move { (group, self.send(group, op, None).await) }
        });
        let mut held: Vec<(u16, Hold)> = Vec::new();
        let mut cause: Option<Cause> = None;
        for (group, placed) in join_all(placing).await {
            match placed {
                Ok(Forwarded {
                    outcome: Outcome::Held(hold),
                    ..
                }) => held.push((group, hold)),
                // A refusal is recorded, and answers every retry alike: it says more than a
                // failure, whose outcome may change on a retry.
                Ok(Forwarded {
                    outcome: Outcome::Rejected(rejection),
                    ..
                }) => {
                    if !matches!(cause, Some(Cause::Refused(_))) {
                        cause = Some(Cause::Refused(rejection));
                    }
                }
                Ok(other) => {
                    cause.get_or_insert(Cause::Failed(unexpected(other)));
                }
                Err(error) => {
                    cause.get_or_insert(Cause::Failed(forward_failed(error)));
                }
            }
        }
        Ok(Placed {
            primary_group,
            primary,
            replayed,
            held,
            cause,
        })
    }

    /// Send `op` to `group` under the part's key (`settle`: its settling key).
    async fn send(
        &self,
        group: u16,
        op: Op,
        settle: Option<bool>,
    ) -> Result<Forwarded, ForwardError> {
        let part = part_key(self.key, group);
        let key = match settle {
            Some(commit) => settle_key(&part, commit),
            None => part,
        };
        self.send_under(group, key, op).await
    }

    /// Send `op` to `group` under `key`.
    async fn send_under(&self, group: u16, key: String, op: Op) -> Result<Forwarded, ForwardError> {
        let group = &self.gateway.node.groups[usize::from(group)];
        self.gateway
            .forwarder(group)
            .submit(self.client, Command { key, op })
            .await
    }

    /// Decide the cart whose primary part is `hold`, in `group`, under the key of the buyer's
    /// request that decides it (a hold across groups: its confirmation or release), so that
    /// the request's retries get its answer and another request gets the refusal a hold of one
    /// group would give.
    pub(super) async fn decide_under(
        &self,
        group: u16,
        hold: HoldId,
        commit: bool,
        key: String,
    ) -> Result<Forwarded, ForwardError> {
        let op = Op::SettlePart { hold, commit };
        self.send_under(group, key, op).await
    }

    /// Settle `hold`, the part in `group`: commit or abort.
    pub(super) async fn settle(
        &self,
        group: u16,
        hold: HoldId,
        commit: bool,
    ) -> Result<Forwarded, ForwardError> {
        let op = Op::SettlePart { hold, commit };
        self.send(group, op, Some(commit)).await
    }

    /// The cart is bought: settle every secondary part `held` commit, and answer with every
    /// order (201), `first` the primary group's.
    pub(super) async fn settle_committed(
        &self,
        first: OrderWithLines,
        replayed: bool,
        held: Vec<(u16, Hold)>,
    ) -> Answer {
        let settling = held
            .into_iter()
            .map(|(group, hold)| async move { (group, self.settle(group, hold.id, true).await) });
        let mut other_orders = Vec::new();
        let mut missing = Vec::new();
        for (group, settled) in join_all(settling).await {
            match settled {
                Ok(Forwarded {
                    outcome: Outcome::Placed { order, terms },
                    ..
                }) => other_orders.push(OrderWithLines::new(order, &terms)),
                other => {
                    tracing::info!(
                        cart = self.key,
                        group,
                        ?other,
                        "a part of a bought cart is not settled yet; its leader settles it"
                    );
                    missing.push(group);
                }
            }
        }
        if !missing.is_empty() {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::OutcomeUnknown,
                format!(
                    "the cart is bought, but the orders of groups {missing:?} could not be \
                     read yet; retry with the same Idempotency-Key to get every order"
                ),
            ));
        }
        let answer = OrderChanged {
            order: first,
            replayed,
            other_orders,
        };
        Ok((StatusCode::CREATED, Json(answer)).into_response())
    }

    /// The cart is not bought: release the primary part (the decision), then every secondary
    /// part `held`, and answer with why.
    pub(super) async fn abort(
        &self,
        primary_group: u16,
        primary: HoldId,
        held: Vec<(u16, Hold)>,
        cause: Cause,
    ) -> Answer {
        let decided = match &cause {
            // The group expired it: the decision is recorded already.
            Cause::Expired => true,
            _ => match self.settle(primary_group, primary, false).await {
                Ok(Forwarded {
                    outcome: Outcome::Released(_),
                    ..
                }) => true,
                Ok(Forwarded {
                    outcome:
                        Outcome::Rejected(
                            Rejection::HoldExpired { .. }
                            | Rejection::HoldFinished {
                                state: HoldState::Released | HoldState::Expired,
                                ..
                            },
                        ),
                    ..
                }) => true,
                other => {
                    tracing::info!(cart = self.key, ?other, "a cart's abort is not recorded");
                    false
                }
            },
        };
        if decided {
            // Best effort: the secondary groups' leaders release what this leaves.
            let releasing = held
                .iter()
                .map(|(group, hold)| self.settle(*group, hold.id, false));
            join_all(releasing).await;
        }
        match cause {
            // Recorded under the part's key: every retry of this request is refused alike,
            // so nothing can commit the cart, whether or not the release went through.
            Cause::Refused(rejection) => Err(rejected(&rejection)),
            Cause::Expired => Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::HoldExpired,
                format!(
                    "the cart was not decided within checkout.cart_decision_ms ({} ms): \
                     nothing was bought; retry with a new Idempotency-Key",
                    self.gateway.node.config.checkout.cart_decision_ms
                ),
            )),
            Cause::Failed(error) if decided => Err(released(error)),
            Cause::Failed(_) => Err(decision_unknown("the cart could not be released")),
        }
    }
}

/// The answer of a cart released after `error`: a part whose outcome was unknown (504) no
/// longer matters, since the released primary part decided abort. Definitely not bought.
fn released(error: ApiError) -> ApiError {
    if error.status != StatusCode::GATEWAY_TIMEOUT {
        return error;
    }
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        format!(
            "not applied: a part of the cart could not be held in time ({}); the cart was \
             released and nothing was bought",
            error.message
        ),
    )
}

/// 504: whether the cart is bought is not known here.
pub(super) fn decision_unknown(detail: &str) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::OutcomeUnknown,
        format!(
            "the outcome is unknown; retry with the same Idempotency-Key to learn it: {detail}"
        ),
    )
}
