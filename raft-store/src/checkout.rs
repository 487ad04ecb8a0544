//! The checkout commands of the state machine (cluster version 2): holds, confirmations,
//! releases, expiry, carts, limits per customer and cancellations.
//!
//! Like the rest of [`crate::inventory`], deterministic: the only time is the log's
//! ([`InventoryMeta::clock_ms`]). Stock moves between three counters of a product, always with
//! `initial_stock + restocked == stock + held + sold` (asserted on every write):
//! - hold: available → held, every line or none;
//! - confirm: held → sold (an order);
//! - release, expiry: held → available;
//! - checkout: available → sold, every line or none;
//! - cancel: sold → available, once;
//! - a part of a cart across groups (cluster version 3): held like a hold, then settled as the
//!   cart's decision says, held → sold or held → available (see [`hold`]).

use flashstock_api::{
    Hold, HoldId, HoldLine, HoldState, Line, Order, OrderId, OrderLine, OrderTerms, Outcome,
    Rejection,
};

use crate::inventory::{
    put_checked_product, unknown_product, Cancellation, Fault, InventoryMeta, InventoryState,
    OrderRecord, ProductRecord,
};

/// Most held holds expired while applying one entry, beyond one per command. Bounds the work of
/// one apply; a backlog is worked off over the following entries (and a hold past its deadline
/// is never confirmed, whether or not it was expired yet).
pub const HOLDS_EXPIRED_PER_ENTRY_MIN: usize = 64;
/// Most finished holds forgotten while applying one entry, beyond one per command.
pub const HOLDS_FORGOTTEN_PER_ENTRY_MIN: usize = 64;

/// Forget finished holds older than the idempotency horizon, then expire held holds whose
/// deadline has passed; each bounded per entry. Both read their index from the database before
/// this entry writes any hold (a hold expired here finishes at the clock, which the horizon
/// never passes, so it could not be forgotten in the same entry anyway).
pub(crate) fn expire_holds(
    state: &mut impl InventoryState,
    meta: &InventoryMeta,
    commands: usize,
) -> Result<(), Fault> {
    let finished = state.holds_finished_before(
        meta.forget_keys_before_ms,
        HOLDS_FORGOTTEN_PER_ENTRY_MIN + commands,
    )?;
    // `expires_at_ms <= clock`: expired.
    let due = state.holds_due(
        meta.clock_ms.saturating_add(1),
        HOLDS_EXPIRED_PER_ENTRY_MIN + commands,
    )?;
    for (_, id) in finished {
        let hold = state
            .hold(id)?
            .ok_or_else(|| Fault(format!("hold {id} is indexed as finished but absent")))?;
        state.forget_hold(&hold);
    }
    for (_, id) in due {
        let hold = state
            .hold(id)?
            .ok_or_else(|| Fault(format!("hold {id} is indexed by deadline but absent")))?;
        give_back(state, &hold)?;
        if state.part_of(id)?.is_some() {
            // A cart's primary part: its expiry is the cart's decision, abort.
            state.delete_part(id);
        }
        finish(state, hold, HoldState::Expired, meta.clock_ms);
    }
    Ok(())
}

/// Whether `customer` may take `quantity` more of the product: `Ok(epoch)` with the limit epoch
/// to count it in (0: the product has no limit, nothing to count), or the rejection.
pub(crate) fn take_within_limit(
    state: &impl InventoryState,
    record: &ProductRecord,
    customer: Option<&str>,
    quantity: u32,
) -> Result<Result<u32, Rejection>, Fault> {
    let Some(limit) = record.terms.limit_per_customer else {
        return Ok(Ok(0));
    };
    let product = &record.product.id;
    let Some(customer) = customer else {
        return Ok(Err(Rejection::CustomerRequired {
            product: product.clone(),
        }));
    };
    let taken = state.customer_taken(product, customer)?;
    if taken + u64::from(quantity) > u64::from(limit) {
        return Ok(Err(Rejection::LimitReached {
            product: product.clone(),
            limit,
            taken,
            requested: quantity,
        }));
    }
    Ok(Ok(record.terms.limit_epoch))
}

/// Count `quantity` more taken by `customer` of `product`.
pub(crate) fn count_taken(
    state: &mut impl InventoryState,
    product: &str,
    customer: &str,
    quantity: u32,
) -> Result<(), Fault> {
    let taken = state.customer_taken(product, customer)?;
    state.put_customer_taken(product, customer, taken + u64::from(quantity));
    Ok(())
}

/// Give `customer` back `quantity` of `product` counted in `epoch`, if that is still the
/// product's epoch (a limit removed since forgot the counts; one set again counts afresh).
fn uncount_taken(
    state: &mut impl InventoryState,
    record: &ProductRecord,
    customer: Option<&str>,
    quantity: u32,
    epoch: u32,
) -> Result<(), Fault> {
    let (Some(customer), true) = (customer, epoch != 0) else {
        return Ok(());
    };
    if record.terms.limit_per_customer.is_none() || record.terms.limit_epoch != epoch {
        return Ok(());
    }
    let product = &record.product.id;
    let taken = state.customer_taken(product, customer)?;
    state.put_customer_taken(product, customer, taken.saturating_sub(u64::from(quantity)));
    Ok(())
}

/// The products of `lines`, each checked for the customer's limit and for `quantity` available:
/// all of them with the epoch each line counts in, or the first line's refusal.
fn check_lines(
    state: &impl InventoryState,
    lines: &[Line],
    customer: Option<&str>,
) -> Result<Result<Vec<(ProductRecord, u32)>, Rejection>, Fault> {
    let mut checked = Vec::with_capacity(lines.len());
    for line in lines {
        let Some(record) = state.product(&line.product)? else {
            return Ok(Err(Rejection::UnknownProduct {
                product: line.product.clone(),
            }));
        };
        let epoch = match take_within_limit(state, &record, customer, line.quantity)? {
            Ok(epoch) => epoch,
            Err(rejection) => return Ok(Err(rejection)),
        };
        if record.product.stock < u64::from(line.quantity) {
            return Ok(Err(Rejection::InsufficientStock {
                product: line.product.clone(),
                requested: line.quantity,
                available: record.product.stock,
            }));
        }
        checked.push((record, epoch));
    }
    Ok(Ok(checked))
}

/// Where the lines of a hold or a cart go from available.
enum Taken {
    Held,
    Sold,
}

/// Move every line of `checked` ([`check_lines`]) from available to held or sold, and count it
/// for `customer` under its product's limit: each product as written, with the epoch its line
/// counts in.
fn take_lines(
    state: &mut impl InventoryState,
    checked: Vec<(ProductRecord, u32)>,
    lines: &[Line],
    customer: Option<&str>,
    to: Taken,
) -> Result<Vec<(ProductRecord, u32)>, Fault> {
    let mut taken = Vec::with_capacity(lines.len());
    for ((mut record, epoch), line) in checked.into_iter().zip(lines) {
        let quantity = u64::from(line.quantity);
        record.product.stock -= quantity;
        match to {
            Taken::Held => record.terms.held += quantity,
            Taken::Sold => record.product.sold += quantity,
        }
        put_checked_product(state, &record);
        if let (Some(customer), true) = (customer, epoch != 0) {
            count_taken(state, &line.product, customer, line.quantity)?;
        }
        taken.push((record, epoch));
    }
    Ok(taken)
}

/// What [`hold`] places: a hold, or a part of a cart across groups ([`Op::HoldPart`]), the
/// primary part (`primary: None`) or a secondary one naming its primary.
///
/// [`Op::HoldPart`]: flashstock_api::Op::HoldPart
#[derive(Debug, Clone, Copy)]
pub(crate) enum Placing {
    Hold,
    Part { primary: Option<HoldId> },
}

/// Hold every line of `lines` as the hold `id`, or nothing. A part of a cart across groups is
/// a hold that only [`settle_part`] finishes: the primary part is the cart's decision and
/// expires like a hold; a secondary part never expires on its own, since its group cannot see
/// the decision: it waits to be settled as its primary was.
#[allow(clippy::too_many_arguments)]
pub(crate) fn hold(
    state: &mut impl InventoryState,
    meta: &InventoryMeta,
    id: HoldId,
    key: &str,
    lines: &[Line],
    customer: Option<&str>,
    ttl_ms: u64,
    token: Option<&str>,
    placing: Placing,
) -> Result<Outcome, Fault> {
    let checked = match check_lines(state, lines, customer)? {
        Ok(checked) => checked,
        Err(rejection) => return Ok(Outcome::Rejected(rejection)),
    };
    let taken = take_lines(state, checked, lines, customer, Taken::Held)?;
    let held = taken
        .into_iter()
        .zip(lines)
        .map(|((record, epoch), line)| HoldLine {
            product: line.product.clone(),
            quantity: line.quantity,
            price_cents: record.product.price_cents,
            limit_epoch: epoch,
        })
        .collect();
    let hold = Hold {
        id,
        key: key.to_owned(),
        customer: customer.map(str::to_owned),
        lines: held,
        held_at_ms: meta.clock_ms,
        expires_at_ms: meta.clock_ms.saturating_add(ttl_ms),
        state: HoldState::Held,
        changed_at_ms: meta.clock_ms,
        token: token.map(str::to_owned),
    };
    match placing {
        Placing::Hold => state.put_hold(&hold),
        Placing::Part { primary } => state.put_part(&hold, primary.unwrap_or(id)),
    }
    Ok(Outcome::Held(hold))
}

/// Settle part `id` of a cart across groups ([`Op::SettlePart`]): `commit` makes its order
/// (the command's position, key and the part's token), otherwise its stock goes back. A
/// primary part past its deadline is expired instead of committed (the cart's decision is
/// then abort): refused `hold_expired`. A part settled before is refused `hold_finished` or
/// `hold_expired`, with its state; a hold that is no cart's part is refused as invalid.
///
/// [`Op::SettlePart`]: flashstock_api::Op::SettlePart
pub(crate) fn settle_part(
    state: &mut impl InventoryState,
    meta: &mut InventoryMeta,
    order_id: OrderId,
    key: &str,
    id: HoldId,
    commit: bool,
) -> Result<Outcome, Fault> {
    let Some(hold) = state.hold(id)? else {
        return Ok(Outcome::Rejected(Rejection::UnknownHold { hold: id }));
    };
    let Some(primary) = state.part_of(id)? else {
        return Ok(Outcome::Rejected(match hold.state {
            HoldState::Held => Rejection::Invalid {
                reason: format!("hold {id} is not a part of a cart across groups"),
            },
            HoldState::Expired => Rejection::HoldExpired { hold: id },
            finished => Rejection::HoldFinished {
                hold: id,
                state: finished,
            },
        }));
    };
    let is_primary = primary == id;
    if is_primary {
        if let Some(rejection) = not_held(state, meta, &hold)? {
            // Expired just now, by its deadline: the cart's decision is abort.
            state.delete_part(id);
            return Ok(Outcome::Rejected(rejection));
        }
    }
    state.delete_part(id);
    if commit {
        Ok(sell_held(state, meta, order_id, key, hold)?)
    } else {
        give_back(state, &hold)?;
        let hold = finish(state, hold, HoldState::Released, meta.clock_ms);
        Ok(Outcome::Released(hold))
    }
}

/// The refusal of a confirmation or release through the hold routes of a part of a cart
/// across groups: only its cart's decision settles it.
fn part_refusal(state: &impl InventoryState, hold: &Hold) -> Result<Option<Rejection>, Fault> {
    if hold.state != HoldState::Held || state.part_of(hold.id)?.is_none() {
        return Ok(None);
    }
    Ok(Some(Rejection::Invalid {
        reason: format!(
            "hold {} is a part of a cart across groups: the cart settles it, not a \
             confirmation or release",
            hold.id
        ),
    }))
}

/// The hold `id` if `token` may act on it (its own token, or `None`: an admin).
fn hold_for(
    state: &impl InventoryState,
    id: HoldId,
    token: Option<&str>,
) -> Result<Option<Hold>, Fault> {
    let hold = state.hold(id)?;
    Ok(hold.filter(|hold| token.is_none() || hold.token.as_deref() == token))
}

/// A hold that cannot be confirmed or released any more: why, as a rejection. A held hold past
/// its deadline that the sweep has not reached yet is expired here first.
fn not_held(
    state: &mut impl InventoryState,
    meta: &InventoryMeta,
    hold: &Hold,
) -> Result<Option<Rejection>, Fault> {
    match hold.state {
        HoldState::Held if meta.clock_ms >= hold.expires_at_ms => {
            give_back(state, hold)?;
            finish(state, hold.clone(), HoldState::Expired, meta.clock_ms);
            Ok(Some(Rejection::HoldExpired { hold: hold.id }))
        }
        HoldState::Held => Ok(None),
        HoldState::Expired => Ok(Some(Rejection::HoldExpired { hold: hold.id })),
        state @ (HoldState::Confirmed { .. } | HoldState::Released) => {
            Ok(Some(Rejection::HoldFinished {
                hold: hold.id,
                state,
            }))
        }
    }
}

pub(crate) fn confirm(
    state: &mut impl InventoryState,
    meta: &mut InventoryMeta,
    order_id: OrderId,
    key: &str,
    id: HoldId,
    token: Option<&str>,
) -> Result<Outcome, Fault> {
    let Some(hold) = hold_for(state, id, token)? else {
        return Ok(Outcome::Rejected(Rejection::UnknownHold { hold: id }));
    };
    if let Some(rejection) = part_refusal(state, &hold)? {
        return Ok(Outcome::Rejected(rejection));
    }
    if let Some(rejection) = not_held(state, meta, &hold)? {
        return Ok(Outcome::Rejected(rejection));
    }
    sell_held(state, meta, order_id, key, hold)
}

/// Move a held hold's stock to sold as the order `order_id` placed by `key`, and finish it
/// confirmed.
fn sell_held(
    state: &mut impl InventoryState,
    meta: &mut InventoryMeta,
    order_id: OrderId,
    key: &str,
    hold: Hold,
) -> Result<Outcome, Fault> {
    let id = hold.id;
    let mut lines = Vec::with_capacity(hold.lines.len());
    for line in &hold.lines {
        let mut record = held_product(state, &hold, &line.product)?;
        let quantity = u64::from(line.quantity);
        record.terms.held -= quantity;
        record.product.sold += quantity;
        put_checked_product(state, &record);
        lines.push(OrderLine {
            product: line.product.clone(),
            quantity: line.quantity,
            price_cents: line.price_cents,
            remaining: record.product.stock,
            limit_epoch: line.limit_epoch,
        });
    }
    let (order, terms) = place(
        state,
        meta,
        order_id,
        key,
        lines,
        hold.customer.as_deref(),
        hold.token.as_deref(),
        Some(id),
    );
    finish(
        state,
        hold,
        HoldState::Confirmed { order: order_id },
        meta.clock_ms,
    );
    Ok(Outcome::Placed { order, terms })
}

pub(crate) fn release(
    state: &mut impl InventoryState,
    meta: &InventoryMeta,
    id: HoldId,
    token: Option<&str>,
) -> Result<Outcome, Fault> {
    let Some(hold) = hold_for(state, id, token)? else {
        return Ok(Outcome::Rejected(Rejection::UnknownHold { hold: id }));
    };
    if let Some(rejection) = part_refusal(state, &hold)? {
        return Ok(Outcome::Rejected(rejection));
    }
    if let Some(rejection) = not_held(state, meta, &hold)? {
        return Ok(Outcome::Rejected(rejection));
    }
    give_back(state, &hold)?;
    let hold = finish(state, hold, HoldState::Released, meta.clock_ms);
    Ok(Outcome::Released(hold))
}

/// The product of a line of a held hold. Products are never deleted, and the hold keeps its
/// stock held, so it is there and holds at least the line: anything else is a broken state.
fn held_product(
    state: &impl InventoryState,
    hold: &Hold,
    product: &str,
) -> Result<ProductRecord, Fault> {
    state.product(product)?.ok_or_else(|| {
        Fault(format!(
            "hold {} holds unknown product {product:?}",
            hold.id
        ))
    })
}

/// Move a held hold's stock back to available, and give its customer back what it counted.
fn give_back(state: &mut impl InventoryState, hold: &Hold) -> Result<(), Fault> {
    for line in &hold.lines {
        let mut record = held_product(state, hold, &line.product)?;
        let quantity = u64::from(line.quantity);
        record.terms.held -= quantity;
        record.product.stock += quantity;
        put_checked_product(state, &record);
        uncount_taken(
            state,
            &record,
            hold.customer.as_deref(),
            line.quantity,
            line.limit_epoch,
        )?;
    }
    Ok(())
}

fn finish(state: &mut impl InventoryState, mut hold: Hold, to: HoldState, at_ms: u64) -> Hold {
    hold.state = to;
    hold.changed_at_ms = at_ms;
    state.put_hold(&hold);
    hold
}

/// Write an order of `lines` (at least one) placed at `order_id`.
#[allow(clippy::too_many_arguments)]
fn place(
    state: &mut impl InventoryState,
    meta: &mut InventoryMeta,
    order_id: OrderId,
    key: &str,
    lines: Vec<OrderLine>,
    customer: Option<&str>,
    token: Option<&str>,
    hold: Option<HoldId>,
) -> (Order, OrderTerms) {
    let first = &lines[0];
    let order = Order {
        id: order_id,
        key: key.to_owned(),
        product: first.product.clone(),
        quantity: first.quantity,
        customer: customer.map(str::to_owned),
        price_cents: first.price_cents,
        remaining: first.remaining,
        placed_at_ms: meta.clock_ms,
        token: token.map(str::to_owned),
    };
    let terms = OrderTerms {
        lines,
        hold,
        cancelled_at_ms: None,
    };
    state.put_order(&OrderRecord {
        order: order.clone(),
        terms: terms.clone(),
    });
    meta.orders_placed += 1;
    (order, terms)
}

pub(crate) fn checkout(
    state: &mut impl InventoryState,
    meta: &mut InventoryMeta,
    order_id: OrderId,
    key: &str,
    lines: &[Line],
    customer: Option<&str>,
    token: Option<&str>,
) -> Result<Outcome, Fault> {
    let checked = match check_lines(state, lines, customer)? {
        Ok(checked) => checked,
        Err(rejection) => return Ok(Outcome::Rejected(rejection)),
    };
    let taken = take_lines(state, checked, lines, customer, Taken::Sold)?;
    let sold = taken
        .into_iter()
        .zip(lines)
        .map(|((record, epoch), line)| OrderLine {
            product: line.product.clone(),
            quantity: line.quantity,
            price_cents: record.product.price_cents,
            remaining: record.product.stock,
            limit_epoch: epoch,
        })
        .collect();
    let (order, terms) = place(state, meta, order_id, key, sold, customer, token, None);
    Ok(Outcome::Placed { order, terms })
}

pub(crate) fn cancel(
    state: &mut impl InventoryState,
    meta: &InventoryMeta,
    position: OrderId,
    id: OrderId,
    token: Option<&str>,
    within_ms: Option<u64>,
) -> Result<Outcome, Fault> {
    let record = state
        .order(id)?
        .filter(|record| token.is_none() || record.order.token.as_deref() == token);
    let Some(mut record) = record else {
        return Ok(Outcome::Rejected(Rejection::OrderNotFound { order: id }));
    };
    if record.terms.cancelled_at_ms.is_some() {
        return Ok(Outcome::Rejected(Rejection::AlreadyCancelled { order: id }));
    }
    if let Some(within_ms) = within_ms {
        if meta.clock_ms > record.order.placed_at_ms.saturating_add(within_ms) {
            return Ok(Outcome::Rejected(Rejection::CancelWindowPassed {
                order: id,
                within_ms,
            }));
        }
    }
    for line in record.terms.lines_of(&record.order) {
        let mut product = state.product(&line.product)?.ok_or_else(|| {
            Fault(format!(
                "order {id} sold unknown product {:?}",
                line.product
            ))
        })?;
        let quantity = u64::from(line.quantity);
        product.product.sold = product.product.sold.checked_sub(quantity).ok_or_else(|| {
            Fault(format!(
                "order {id} sold more {:?} than is sold",
                line.product
            ))
        })?;
        product.product.stock += quantity;
        product.terms.cancelled += quantity;
        put_checked_product(state, &product);
        uncount_taken(
            state,
            &product,
            record.order.customer.as_deref(),
            line.quantity,
            line.limit_epoch,
        )?;
    }
    record.terms.cancelled_at_ms = Some(meta.clock_ms);
    state.put_order(&record);
    state.put_cancellation(
        position,
        &Cancellation {
            order: id,
            cancelled_at_ms: meta.clock_ms,
        },
    );
    Ok(Outcome::Cancelled {
        order: record.order,
        terms: record.terms,
    })
}

pub(crate) fn set_limit(
    state: &mut impl InventoryState,
    id: &str,
    limit: Option<u32>,
) -> Result<Outcome, Fault> {
    let Some(mut record) = state.product(id)? else {
        return Ok(unknown_product(id));
    };
    match (record.terms.limit_per_customer, limit) {
        (None, Some(_)) => record.terms.limit_epoch += 1,
        (Some(_), None) => state.forget_customers_taken(id),
        _ => {}
    }
    record.terms.limit_per_customer = limit;
    put_checked_product(state, &record);
    Ok(Outcome::ProductWithTerms {
        created: false,
        product: record.product,
        terms: record.terms,
    })
}
