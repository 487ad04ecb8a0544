//! Checkout's invariants (cluster version 2), after the core ones and the archive's: each a pure
//! function of the history and the nodes' final states, each its own verdict.
//!
//! 11. **orders add up to sold**: on every node, per product, the lines of the orders not
//!     cancelled add up to `sold`, and the lines of the cancelled ones to what cancellations
//!     gave back (`terms.cancelled`): a cancelled order counts zero, and its stock came back
//!     once;
//! 12. **holds add up**: on every node, per product, `held` is the sum of its lines in holds
//!     still held; a confirmed hold's order exists with the hold's lines and names the hold, and
//!     every order that names a hold is that hold's one order; every hold a client was told is
//!     placed is on every node as placed;
//! 13. **holds end once, in time**: no order from a hold whose deadline (`expires_at_ms`, the
//!     log's time) had passed at its confirmation's log time; no hold both confirmed and seen
//!     released or expired (or confirmed twice, or released and expired) in the history; every
//!     ending the history saw is the hold's state on every node; no hold released on a node that
//!     no release may have released;
//! 14. **carts all or nothing**: every order of a cart has exactly the cart's lines, every
//!     order of a hold exactly the hold's, on every node, whatever the client learned (a cart
//!     refused changed nothing: invariants 4, 1 and 6);
//! 15. **limits never exceeded**: on every node, per product with a limit and customer, the
//!     lines of orders not cancelled plus those of holds still held are within the limit, and
//!     every such line names a customer;
//! 16. **cancellations once**: no order cancelled by two cancellations (a second one must be
//!     refused `already_cancelled`); every cancellation confirmed, and every `already_cancelled`,
//!     shows as the order cancelled on every node (at the time confirmed); no order cancelled on
//!     a node that no cancellation may have cancelled.

use std::collections::{BTreeMap, BTreeSet};

use flashstock_api::{Hold, HoldId, HoldState, OrderId};
use serde::Serialize;

use super::{all_definitely_not_applied, line_items, Invariant, NodeState, Verdict};
use crate::history::{History, OpKind, OpRecord, OpResult};
use crate::workload::ProductSpec;

/// `(product, quantity)` of every line of a hold.
fn hold_items(hold: &Hold) -> Vec<(String, u64)> {
    hold.lines
        .iter()
        .map(|line| (line.product.clone(), u64::from(line.quantity)))
        .collect()
}

/// Whether an operation may have been applied: confirmed, or its outcome unknown.
fn maybe_applied(op: &OpRecord) -> bool {
    !op.result.is_definitely_not_applied()
}

pub fn orders_add_up(nodes: &[NodeState]) -> Invariant {
    let mut verdict = Verdict::new("orders add up to sold");
    for node in nodes {
        let mut live: BTreeMap<String, u64> = BTreeMap::new();
        let mut cancelled: BTreeMap<String, u64> = BTreeMap::new();
        for order in &node.orders {
            let sums = match order.is_cancelled() {
                true => &mut cancelled,
                false => &mut live,
            };
            for (product, quantity) in line_items(order) {
                *sums.entry(product).or_default() += quantity;
            }
        }
        for (id, record) in &node.products {
            let in_orders = live.get(id).copied().unwrap_or(0);
            if in_orders != record.product.sold {
                verdict.fail(format!(
                    "node {}: {id}: orders not cancelled hold {in_orders} items, sold is {}",
                    node.id, record.product.sold
                ));
            }
            let returned = cancelled.get(id).copied().unwrap_or(0);
            if returned != record.terms.cancelled {
                verdict.fail(format!(
                    "node {}: {id}: cancelled orders hold {returned} items, cancellations gave \
                     back {}",
                    node.id, record.terms.cancelled
                ));
            }
        }
    }
    let Some(node) = nodes.first() else {
        return verdict.finish("no node state".into());
    };
    let cancelled = node.orders.iter().filter(|o| o.is_cancelled()).count();
    let lines: usize = node.orders.iter().map(|o| o.lines().len()).sum();
    verdict.finish(format!(
        "{} orders ({lines} lines, {cancelled} cancelled) per node add up to sold and to what \
         cancellations gave back, on {} nodes",
        node.orders.len(),
        nodes.len()
    ))
}

pub fn holds_add_up(history: &History, nodes: &[NodeState]) -> Invariant {
    let mut verdict = Verdict::new("holds add up");
    for node in nodes {
        let orders = node.orders_by_id();
        let mut held: BTreeMap<String, u64> = BTreeMap::new();
        for hold in node.holds.iter().filter(|h| h.state == HoldState::Held) {
            for (product, quantity) in hold_items(hold) {
                *held.entry(product).or_default() += quantity;
            }
        }
        for (id, record) in &node.products {
            let in_holds = held.get(id).copied().unwrap_or(0);
            if in_holds != record.terms.held {
                verdict.fail(format!(
                    "node {}: {id}: holds still held hold {in_holds} items, held is {}",
                    node.id, record.terms.held
                ));
            }
        }
        let holds = node.holds_by_id();
        for hold in &node.holds {
            let HoldState::Confirmed { order: id } = hold.state else {
                continue;
            };
            let Some(order) = orders.get(&id) else {
                verdict.fail(format!(
                    "node {}: hold {} was confirmed as order {id}, which is missing",
                    node.id, hold.id
                ));
                continue;
            };
            let lines: Vec<(String, u32, u64)> = order
                .lines()
                .into_iter()
                .map(|l| (l.product, l.quantity, l.price_cents))
                .collect();
            let held: Vec<(String, u32, u64)> = hold
                .lines
                .iter()
                .map(|l| (l.product.clone(), l.quantity, l.price_cents))
                .collect();
            if order.terms.hold != Some(hold.id)
                || lines != held
                || order.order.customer != hold.customer
            {
                verdict.fail(format!(
                    "node {}: hold {} ({held:?} for {:?}) became order {id} of {lines:?} for \
                     {:?}, which names hold {:?}",
                    node.id, hold.id, hold.customer, order.order.customer, order.terms.hold
                ));
            }
        }
        for order in &node.orders {
            let Some(id) = order.terms.hold else {
                continue;
            };
            let became = holds.get(&id).map(|h| h.state);
            if became
                != Some(HoldState::Confirmed {
                    order: order.order.id,
                })
            {
                verdict.fail(format!(
                    "node {}: order {} names hold {id}, whose state is {became:?}",
                    node.id, order.order.id
                ));
            }
        }
    }
    let mut placed = 0;
    for op in history.of_kind(OpKind::Hold) {
        let OpResult::Held { hold, .. } = &op.result else {
            continue;
        };
        placed += 1;
        let key = op.key.as_deref().unwrap_or_default();
        for node in nodes {
            let found = node.holds.iter().find(|h| h.id == hold.id);
            match found {
                None => verdict.fail(format!(
                    "node {}: hold {} (key {key}, placed at {} ms) is missing",
                    node.id, hold.id, op.completed_ms
                )),
                Some(found) => {
                    let shown: Vec<(String, u64)> = hold
                        .lines
                        .iter()
                        .map(|l| (l.product.clone(), u64::from(l.quantity)))
                        .collect();
                    if found.key != key
                        || hold_items(found) != shown
                        || found.expires_at_ms != hold.expires_at_ms
                        || found.held_at_ms != hold.held_at_ms
                    {
                        verdict.fail(format!(
                            "node {}: hold {} differs: holds {found:?}, the client was told \
                             {hold:?}",
                            node.id, hold.id
                        ));
                    }
                }
            }
        }
    }
    let first = nodes.first();
    let still_held = first.map_or(0, |n| {
        n.holds
            .iter()
            .filter(|h| h.state == HoldState::Held)
            .count()
    });
    verdict.finish(format!(
        "{placed} holds placed and found on every node; {} holds per node, {still_held} still \
         held, add up to what each product holds",
        first.map_or(0, |n| n.holds.len())
    ))
}

/// What the history saw of one hold.
#[derive(Default)]
struct Seen<'a> {
    /// Orders confirmations of it returned.
    placed: BTreeSet<OrderId>,
    released: Vec<&'a OpRecord>,
    /// Answers `hold_expired`.
    expired: Vec<&'a OpRecord>,
    /// Answers `hold_finished`.
    finished: Vec<&'a OpRecord>,
    /// Releases that may have been applied.
    releases_maybe: usize,
}

pub fn holds_end_once_in_time(history: &History, nodes: &[NodeState]) -> Invariant {
    let mut verdict = Verdict::new("holds end once, in time");
    for node in nodes {
        let holds = node.holds_by_id();
        for order in &node.orders {
            let Some(id) = order.terms.hold else {
                continue;
            };
            let Some(hold) = holds.get(&id) else {
                continue; // "holds add up" reports it
            };
            if order.order.placed_at_ms >= hold.expires_at_ms {
                verdict.fail(format!(
                    "node {}: order {} was confirmed from hold {id} at {} (the log's time), \
                     when the hold had expired at {}",
                    node.id, order.order.id, order.order.placed_at_ms, hold.expires_at_ms
                ));
            }
        }
    }
    let mut seen: BTreeMap<HoldId, Seen> = BTreeMap::new();
    for op in history.ops.iter().filter(|op| op.kind.acts_on_hold()) {
        let Some(id) = op.target.hold else {
            continue;
        };
        let entry = seen.entry(id).or_default();
        match &op.result {
            OpResult::Placed { order, .. } => {
                entry.placed.insert(order.id);
            }
            OpResult::Released { .. } => entry.released.push(op),
            result => match result.rejection() {
                Some("hold_expired") => entry.expired.push(op),
                Some("hold_finished") => entry.finished.push(op),
                _ => {}
            },
        }
        if op.kind == OpKind::Release && maybe_applied(op) {
            entry.releases_maybe += 1;
        }
    }
    let at = |ops: &[&OpRecord]| -> String {
        let times: Vec<String> = ops
            .iter()
            .map(|op| format!("{} at {} ms", op.kind.name(), op.completed_ms))
            .collect();
        times.join(", ")
    };
    let (mut confirmed, mut released, mut expired) = (0, 0, 0);
    for (id, seen) in &seen {
        confirmed += usize::from(!seen.placed.is_empty());
        released += usize::from(!seen.released.is_empty());
        expired += usize::from(!seen.expired.is_empty());
        if seen.placed.len() > 1 {
            verdict.fail(format!(
                "hold {id} was confirmed as several orders: {:?}",
                seen.placed
            ));
        }
        if !seen.placed.is_empty() && !seen.released.is_empty() {
            verdict.fail(format!(
                "hold {id} was confirmed (order {:?}) and released ({})",
                seen.placed,
                at(&seen.released)
            ));
        }
        if !seen.placed.is_empty() && !seen.expired.is_empty() {
            verdict.fail(format!(
                "hold {id} was confirmed (order {:?}) and answered hold_expired ({})",
                seen.placed,
                at(&seen.expired)
            ));
        }
        if !seen.released.is_empty() && !seen.expired.is_empty() {
            verdict.fail(format!(
                "hold {id} was released ({}) and answered hold_expired ({})",
                at(&seen.released),
                at(&seen.expired)
            ));
        }
        let expected = match (seen.placed.first(), &seen.released[..], &seen.expired[..]) {
            (Some(order), _, _) => Some(HoldState::Confirmed { order: *order }),
            (None, [_, ..], _) => Some(HoldState::Released),
            (None, [], [_, ..]) => Some(HoldState::Expired),
            (None, [], []) => None,
        };
        for node in nodes {
            let state = node.holds.iter().find(|h| h.id == *id).map(|h| h.state);
            match (expected, state) {
                (Some(expected), Some(state)) if state != expected => verdict.fail(format!(
                    "node {}: hold {id} is {state:?}, the history saw it end {expected:?}",
                    node.id
                )),
                (_, Some(HoldState::Held | HoldState::Expired)) if !seen.finished.is_empty() => {
                    verdict.fail(format!(
                        "node {}: hold {id} is {:?}, but was answered hold_finished ({})",
                        node.id,
                        state,
                        at(&seen.finished)
                    ))
                }
                _ => {}
            }
        }
    }
    for node in nodes {
        for hold in node.holds.iter().filter(|h| h.state == HoldState::Released) {
            let releases = seen.get(&hold.id).map_or(0, |s| s.releases_maybe);
            if releases == 0 {
                verdict.fail(format!(
                    "node {}: hold {} is released, but no release of it may have been applied",
                    node.id, hold.id
                ));
            }
        }
    }
    verdict.finish(format!(
        "{} holds acted on: {confirmed} confirmed, {released} released, {expired} seen expired; \
         every order from a hold confirmed before its deadline, on {} nodes",
        seen.len(),
        nodes.len()
    ))
}

pub fn carts_all_or_nothing(history: &History, nodes: &[NodeState]) -> Invariant {
    let mut verdict = Verdict::new("carts all or nothing");
    let sends = history.order_sends();
    let mut checked = 0;
    for node in nodes {
        for order in &node.orders {
            let Some(sends) = sends.get(order.order.key.as_str()) else {
                continue; // "definite rejections not applied" reports it
            };
            let request = sends[0];
            if !matches!(
                request.kind,
                OpKind::Cart | OpKind::Confirm | OpKind::LateConfirm
            ) {
                continue;
            }
            checked += 1;
            let lines = line_items(order);
            let expected_hold = request.target.hold;
            if lines != request.lines() || order.terms.hold != expected_hold {
                verdict.fail(format!(
                    "node {}: order {} ({} key {}) has lines {lines:?} (hold {:?}), the {} was \
                     {:?} (hold {:?})",
                    node.id,
                    order.order.id,
                    request.kind.name(),
                    order.order.key,
                    order.terms.hold,
                    request.kind.name(),
                    request.lines(),
                    expected_hold
                ));
            }
            if order.order.customer != request.target.customer {
                verdict.fail(format!(
                    "node {}: order {} (key {}) is for {:?}, the request named {:?}",
                    node.id,
                    order.order.id,
                    order.order.key,
                    order.order.customer,
                    request.target.customer
                ));
            }
        }
    }
    let carts = history.of_kind(OpKind::Cart);
    let (mut confirmed, mut refused) = (0, 0);
    for op in carts {
        match &op.result {
            OpResult::Placed { .. } => confirmed += 1,
            result if result.is_definitely_not_applied() => refused += 1,
            _ => {}
        }
    }
    verdict.finish(format!(
        "{confirmed} carts confirmed, {refused} refused; {checked} orders of carts and holds \
         (over all nodes) hold exactly the lines asked for"
    ))
}

pub fn limits_never_exceeded(setup: &[ProductSpec], nodes: &[NodeState]) -> Invariant {
    let mut verdict = Verdict::new("limits never exceeded");
    let mut most: BTreeMap<&str, (u64, u32)> = BTreeMap::new();
    for node in nodes {
        for spec in setup {
            let limit = node
                .products
                .get(&spec.id)
                .and_then(|p| p.terms.limit_per_customer);
            if limit != spec.limit_per_customer {
                verdict.fail(format!(
                    "node {}: {}: limit per customer {limit:?}, created with {:?}",
                    node.id, spec.id, spec.limit_per_customer
                ));
            }
        }
        // (product, customer) -> items of orders not cancelled and holds still held.
        let mut taken: BTreeMap<(String, Option<String>), u64> = BTreeMap::new();
        for order in node.orders.iter().filter(|o| !o.is_cancelled()) {
            for (product, quantity) in line_items(order) {
                *taken
                    .entry((product, order.order.customer.clone()))
                    .or_default() += quantity;
            }
        }
        for hold in node.holds.iter().filter(|h| h.state == HoldState::Held) {
            for (product, quantity) in hold_items(hold) {
                *taken.entry((product, hold.customer.clone())).or_default() += quantity;
            }
        }
        for ((product, customer), taken) in &taken {
            let Some(record) = node.products.get(product) else {
                continue;
            };
            let Some(limit) = record.terms.limit_per_customer else {
                continue;
            };
            let Some(customer) = customer else {
                verdict.fail(format!(
                    "node {}: {product} has a limit per customer, but {taken} items of it were \
                     bought or held for no customer",
                    node.id
                ));
                continue;
            };
            if *taken > u64::from(limit) {
                verdict.fail(format!(
                    "node {}: {product}: customer {customer} bought and holds {taken} items, \
                     the limit is {limit}",
                    node.id
                ));
            }
            let entry = most.entry(product_name(setup, product)).or_default();
            *entry = (entry.0.max(*taken), limit);
        }
    }
    let limited = setup
        .iter()
        .filter(|s| s.limit_per_customer.is_some())
        .count();
    let most: Vec<String> = most
        .iter()
        .map(|(product, (taken, limit))| format!("{product}: {taken} of {limit}"))
        .collect();
    verdict.finish(format!(
        "{limited} products with a limit per customer on {} nodes; most one customer took: {}",
        nodes.len(),
        if most.is_empty() {
            "none".to_string()
        } else {
            most.join(", ")
        }
    ))
}

/// The setup's own spelling of a product id (to borrow from `setup`, not from one node).
fn product_name<'a>(setup: &'a [ProductSpec], id: &str) -> &'a str {
    setup
        .iter()
        .find(|s| s.id == id)
        .map_or("?", |s| s.id.as_str())
}

pub fn cancellations_once(history: &History, nodes: &[NodeState]) -> Invariant {
    let mut verdict = Verdict::new("cancellations once");
    // Per order: keys whose cancellation was confirmed (with the time it showed), refusals
    // `already_cancelled`, and how many cancellations may have been applied.
    let mut confirmed: BTreeMap<OrderId, BTreeMap<&str, Option<u64>>> = BTreeMap::new();
    let mut already: BTreeMap<OrderId, Vec<&OpRecord>> = BTreeMap::new();
    let mut maybe: BTreeMap<OrderId, usize> = BTreeMap::new();
    for op in history.ops.iter().filter(|op| op.kind.cancels()) {
        let Some(id) = op.target.order else {
            continue;
        };
        if maybe_applied(op) {
            *maybe.entry(id).or_default() += 1;
        }
        match &op.result {
            OpResult::Cancelled {
                cancelled_at_ms, ..
            } => {
                let key = op.key.as_deref().unwrap_or_default();
                confirmed
                    .entry(id)
                    .or_default()
                    .insert(key, *cancelled_at_ms);
            }
            result if result.rejection() == Some("already_cancelled") => {
                already.entry(id).or_default().push(op);
            }
            _ => {}
        }
    }
    for (id, keys) in &confirmed {
        if keys.len() > 1 {
            verdict.fail(format!(
                "order {id} was cancelled by {} cancellations: keys {:?}",
                keys.len(),
                keys.keys().collect::<Vec<_>>()
            ));
        }
    }
    for node in nodes {
        let orders = node.orders_by_id();
        for (id, keys) in &confirmed {
            let shown: BTreeSet<Option<u64>> = keys.values().copied().collect();
            match orders.get(id) {
                None => verdict.fail(format!("node {}: cancelled order {id} is missing", node.id)),
                Some(order) if !shown.contains(&order.terms.cancelled_at_ms) || shown.len() > 1 => {
                    verdict.fail(format!(
                        "node {}: order {id} has cancelled_at {:?}, its cancellation showed {:?}",
                        node.id, order.terms.cancelled_at_ms, shown
                    ))
                }
                Some(_) => {}
            }
        }
        for (id, refusals) in &already {
            if !orders.get(id).is_some_and(|o| o.is_cancelled()) {
                verdict.fail(format!(
                    "node {}: order {id} is not cancelled, but a cancellation of it was refused \
                     already_cancelled at {} ms",
                    node.id, refusals[0].completed_ms
                ));
            }
        }
        for order in node.orders.iter().filter(|o| o.is_cancelled()) {
            if maybe.get(&order.order.id).copied().unwrap_or(0) == 0 {
                verdict.fail(format!(
                    "node {}: order {} is cancelled, but no cancellation of it may have been \
                     applied",
                    node.id, order.order.id
                ));
            }
        }
    }
    let refused_again: usize = already.values().map(Vec::len).sum();
    let cancelled = nodes
        .first()
        .map_or(0, |n| n.orders.iter().filter(|o| o.is_cancelled()).count());
    verdict.finish(format!(
        "{} cancellations confirmed, {refused_again} refused already_cancelled; {cancelled} \
         orders cancelled per node, each by one cancellation",
        confirmed.len()
    ))
}

/// Checkout writes whose outcome stayed unknown, of one kind.
#[derive(Debug, Clone, Serialize)]
pub struct UnknownCheckout {
    pub kind: &'static str,
    pub unknown: usize,
    /// Of those, how many show their effect in the final state (the hold or order placed, the
    /// hold released, the order cancelled; for the last two, possibly by another request).
    pub applied: usize,
}

/// How many checkout writes ended unknown, per kind, and how many of them show in node 1's
/// state.
pub fn unknown_checkout(history: &History, nodes: &[NodeState]) -> Vec<UnknownCheckout> {
    let Some(node) = nodes.first() else {
        return Vec::new();
    };
    let sends = history.order_sends();
    let orders = node.orders_by_id();
    let order_keys: BTreeSet<&str> = node.orders.iter().map(|o| o.order.key.as_str()).collect();
    let hold_keys: BTreeSet<&str> = node.holds.iter().map(|h| h.key.as_str()).collect();
    let holds = node.holds_by_id();
    let kinds = [
        OpKind::Hold,
        OpKind::Confirm,
        OpKind::Release,
        OpKind::LateConfirm,
        OpKind::Cart,
        OpKind::Cancel,
        OpKind::Recancel,
    ];
    let mut stats = Vec::new();
    for kind in kinds {
        let (mut unknown, mut applied) = (0, 0);
        for op in history.of_kind(kind) {
            let key = op.key.as_deref().unwrap_or_default();
            let still_unknown = match kind.places_order() {
                // A confirmation is unknown only if no send of its key learned the outcome.
                true => sends.get(key).is_some_and(|sends| {
                    !sends.iter().any(|s| s.placed_order().is_some())
                        && !all_definitely_not_applied(sends)
                }),
                false => op.result.is_unknown(),
            };
            if !still_unknown {
                continue;
            }
            unknown += 1;
            let shows = match kind {
                OpKind::Hold => hold_keys.contains(key),
                OpKind::Release => op
                    .target
                    .hold
                    .and_then(|id| holds.get(&id))
                    .is_some_and(|h| h.state == HoldState::Released),
                OpKind::Cancel | OpKind::Recancel => op
                    .target
                    .order
                    .and_then(|id| orders.get(&id))
                    .is_some_and(|o| o.is_cancelled()),
                _ => order_keys.contains(key),
            };
            applied += usize::from(shows);
        }
        if unknown > 0 {
            stats.push(UnknownCheckout {
                kind: kind.name(),
                unknown,
                applied,
            });
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use flashstock_api::{
        HoldDetails, HoldLine, HoldStatus, Line, Order, OrderLine, OrderLineView, OrderTerms,
        OrderWithTerms, Product, ProductTerms, ProductWithTerms,
    };

    use super::*;
    use crate::checker::check;
    use crate::history::Target;

    /// Product `p` (10 items) and `c` (10 items, at most 3 per customer), as created.
    fn setup(limit: u32) -> Vec<ProductSpec> {
        let spec = |id: &str, limit_per_customer| ProductSpec {
            id: id.into(),
            stock: 10,
            weight: 1,
            limit_per_customer,
        };
        vec![spec("p", None), spec("c", Some(limit))]
    }

    fn lines(items: &[(&str, u32)]) -> Vec<Line> {
        items
            .iter()
            .map(|(product, quantity)| Line {
                product: (*product).into(),
                quantity: *quantity,
            })
            .collect()
    }

    fn order_lines(items: &[(&str, u32)]) -> Vec<OrderLine> {
        items
            .iter()
            .map(|(product, quantity)| OrderLine {
                product: (*product).into(),
                quantity: *quantity,
                price_cents: 1000,
                remaining: 0,
                limit_epoch: u32::from(*product == "c"),
            })
            .collect()
    }

    const HOLD_1: HoldId = HoldId(100 << 16);
    const HOLD_2: HoldId = HoldId(103 << 16);

    /// An order of `items` for customer `u`, placed at `at_ms` by key `key`.
    fn order(index: u64, key: &str, items: &[(&str, u32)], at_ms: u64) -> OrderWithTerms {
        let first = items[0];
        OrderWithTerms {
            order: Order {
                id: OrderId::new(index, 0),
                key: key.into(),
                product: first.0.into(),
                quantity: first.1,
                customer: Some("u".into()),
                price_cents: 1000,
                remaining: 0,
                placed_at_ms: at_ms,
                token: None,
            },
            terms: OrderTerms {
                lines: order_lines(items),
                hold: None,
                cancelled_at_ms: None,
            },
        }
    }

    fn hold(id: HoldId, key: &str, items: &[(&str, u32)], state: HoldState) -> Hold {
        Hold {
            id,
            key: key.into(),
            customer: Some("u".into()),
            lines: items
                .iter()
                .map(|(product, quantity)| HoldLine {
                    product: (*product).into(),
                    quantity: *quantity,
                    price_cents: 1000,
                    limit_epoch: u32::from(*product == "c"),
                })
                .collect(),
            held_at_ms: 1000,
            expires_at_ms: 3000,
            state,
            changed_at_ms: 1000,
            token: None,
        }
    }

    fn details(hold: &Hold) -> HoldDetails {
        HoldDetails::from(hold)
    }

    fn op(kind: OpKind, key: &str, at_ms: u64, target: Target, result: OpResult) -> OpRecord {
        OpRecord {
            client: 0,
            kind,
            key: Some(key.into()),
            product: target
                .lines
                .first()
                .map(|l| l.product.clone())
                .unwrap_or_default(),
            quantity: target.lines.iter().map(|l| u64::from(l.quantity)).sum(),
            invoked_ms: at_ms,
            completed_ms: at_ms + 10,
            attempts: 1,
            unknown_attempts: 0,
            expected: None,
            target,
            result,
        }
    }

    fn target(items: &[(&str, u32)], hold: Option<HoldId>, order: Option<OrderId>) -> Target {
        Target {
            lines: lines(items),
            customer: if order.is_some() {
                None
            } else {
                Some("u".into())
            },
            hold,
            order,
        }
    }

    fn placed(order: &OrderWithTerms) -> OpResult {
        OpResult::Placed {
            order: order.order.clone(),
            lines: order.lines().iter().map(OrderLineView::from).collect(),
            hold: order.terms.hold,
            replayed: false,
        }
    }

    fn product(
        id: &str,
        stock: u64,
        sold: u64,
        cancelled: u64,
        limit: Option<u32>,
    ) -> ProductWithTerms {
        ProductWithTerms {
            product: Product {
                id: id.into(),
                name: id.into(),
                price_cents: 1000,
                stock,
                initial_stock: 10,
                restocked: 0,
                sold,
            },
            terms: ProductTerms {
                held: 0,
                limit_per_customer: limit,
                limit_epoch: u32::from(limit.is_some()),
                cancelled,
            },
        }
    }

    /// A hold of 2 `p` and 2 `c` confirmed as an order; a cart of 1 `p` and 1 `c`, then
    /// cancelled; a hold of 1 `p` abandoned and confirmed too late (refused `hold_expired`).
    fn good() -> (History, Vec<NodeState>) {
        let hold_1 = hold(HOLD_1, "h1", &[("p", 2), ("c", 2)], HoldState::Held);
        let mut confirmed = order(101, "k1", &[("p", 2), ("c", 2)], 1500);
        confirmed.terms.hold = Some(HOLD_1);
        let mut cart = order(102, "k2", &[("p", 1), ("c", 1)], 1600);
        let hold_2 = hold(HOLD_2, "h2", &[("p", 1)], HoldState::Held);
        let mut history = History::default();
        history.extend(vec![
            op(
                OpKind::Hold,
                "h1",
                1000,
                target(&[("p", 2), ("c", 2)], None, None),
                OpResult::Held {
                    hold: details(&hold_1),
                    replayed: false,
                },
            ),
            op(
                OpKind::Confirm,
                "k1",
                1490,
                target(&[("p", 2), ("c", 2)], Some(HOLD_1), None),
                placed(&confirmed),
            ),
            op(
                OpKind::Cart,
                "k2",
                1590,
                target(&[("p", 1), ("c", 1)], None, None),
                placed(&cart),
            ),
            op(
                OpKind::Cancel,
                "x1",
                1990,
                target(&[("p", 1), ("c", 1)], None, Some(cart.order.id)),
                OpResult::Cancelled {
                    order: cart.order.id,
                    cancelled_at_ms: Some(2000),
                    lines: cart.lines().iter().map(OrderLineView::from).collect(),
                    replayed: false,
                },
            ),
            op(
                OpKind::Hold,
                "h2",
                1000,
                target(&[("p", 1)], None, None),
                OpResult::Held {
                    hold: details(&hold_2),
                    replayed: false,
                },
            ),
            op(
                OpKind::LateConfirm,
                "k3",
                4000,
                target(&[("p", 1)], Some(HOLD_2), None),
                OpResult::Rejected {
                    code: "hold_expired".into(),
                    message: String::new(),
                },
            ),
        ]);
        cart.terms.cancelled_at_ms = Some(2000);
        let confirmed_id = confirmed.order.id;
        let state = NodeState {
            id: 1,
            applied_index: 200,
            products: [
                ("p".to_string(), product("p", 8, 2, 1, None)),
                ("c".to_string(), product("c", 8, 2, 1, Some(3))),
            ]
            .into_iter()
            .collect(),
            orders: vec![confirmed, cart],
            holds: vec![
                Hold {
                    state: HoldState::Confirmed {
                        order: confirmed_id,
                    },
                    ..hold_1
                },
                Hold {
                    state: HoldState::Expired,
                    ..hold_2
                },
            ],
        };
        (history, vec![state.clone(), NodeState { id: 2, ..state }])
    }

    fn failed(history: &History, setup: &[ProductSpec], nodes: &[NodeState]) -> Vec<&'static str> {
        check(history, setup, nodes, 1)
            .invariants
            .iter()
            .filter(|i| !i.passed)
            .map(|i| i.name)
            .collect()
    }

    fn details_of(history: &History, nodes: &[NodeState], name: &str) -> String {
        let report = check(history, &setup(3), nodes, 1);
        let invariant = report.invariants.iter().find(|i| i.name == name).unwrap();
        invariant.details.join("\n")
    }

    #[test]
    fn a_clean_checkout_run_passes() {
        let (history, nodes) = good();
        let report = check(&history, &setup(3), &nodes, 1);
        let failed: Vec<_> = report.invariants.iter().filter(|i| !i.passed).collect();
        assert!(failed.is_empty(), "{failed:#?}");
        assert_eq!(
            HoldStatus::from(nodes[0].holds[1].state),
            HoldStatus::Expired
        );
    }

    #[test]
    fn a_hold_confirmed_after_its_deadline_fails() {
        let (mut history, mut nodes) = good();
        // The confirmation's log time is the hold's deadline: it was expired by then.
        for node in &mut nodes {
            node.orders[0].order.placed_at_ms = 3000;
        }
        for op in &mut history.ops {
            if let OpResult::Placed { order, .. } = &mut op.result {
                if order.key == "k1" {
                    order.placed_at_ms = 3000;
                }
            }
        }
        assert_eq!(
            failed(&history, &setup(3), &nodes),
            vec!["holds end once, in time"]
        );
        let text = details_of(&history, &nodes, "holds end once, in time");
        assert!(text.contains("when the hold had expired at 3000"), "{text}");
    }

    #[test]
    fn a_hold_confirmed_and_seen_expired_fails() {
        let (mut history, nodes) = good();
        history.extend(vec![op(
            OpKind::Release,
            "r1",
            2500,
            target(&[("p", 2), ("c", 2)], Some(HOLD_1), None),
            OpResult::Rejected {
                code: "hold_expired".into(),
                message: String::new(),
            },
        )]);
        assert_eq!(
            failed(&history, &setup(3), &nodes),
            vec!["holds end once, in time"]
        );
        let text = details_of(&history, &nodes, "holds end once, in time");
        assert!(text.contains("answered hold_expired"), "{text}");
    }

    #[test]
    fn a_cart_applied_in_part_fails() {
        let (history, mut nodes) = good();
        // The cart's `c` line never applied: `c` sold and gave back nothing of it.
        for node in &mut nodes {
            node.orders[1].terms.lines.truncate(1);
            node.products.get_mut("c").unwrap().terms.cancelled = 0;
        }
        let failed = failed(&history, &setup(3), &nodes);
        assert!(failed.contains(&"carts all or nothing"), "{failed:?}");
        let text = details_of(&history, &nodes, "carts all or nothing");
        assert!(text.contains("has lines"), "{text}");
    }

    #[test]
    fn a_limit_exceeded_fails() {
        let (history, mut nodes) = good();
        // Customer u holds an order of 2 `c`: over a limit of 1.
        for node in &mut nodes {
            node.products.get_mut("c").unwrap().terms.limit_per_customer = Some(1);
        }
        assert_eq!(
            failed(&history, &setup(1), &nodes),
            vec!["limits never exceeded"]
        );
    }

    #[test]
    fn a_second_cancellation_that_succeeds_fails() {
        let (mut history, nodes) = good();
        let cart = nodes[0].orders[1].clone();
        history.extend(vec![op(
            OpKind::Recancel,
            "x2",
            2100,
            target(&[("p", 1), ("c", 1)], None, Some(cart.order.id)),
            OpResult::Cancelled {
                order: cart.order.id,
                cancelled_at_ms: Some(2000),
                lines: cart.lines().iter().map(OrderLineView::from).collect(),
                replayed: false,
            },
        )]);
        assert_eq!(
            failed(&history, &setup(3), &nodes),
            vec!["cancellations once"]
        );
    }

    #[test]
    fn a_cancelled_order_still_counted_as_sold_fails() {
        let (history, mut nodes) = good();
        for node in &mut nodes {
            node.orders[0].terms.cancelled_at_ms = Some(2500);
        }
        let failed = failed(&history, &setup(3), &nodes);
        assert!(failed.contains(&"orders add up to sold"), "{failed:?}");
        assert!(failed.contains(&"cancellations once"), "{failed:?}");
    }

    #[test]
    fn stock_held_without_a_hold_fails() {
        let (history, mut nodes) = good();
        // Still conserved (7 + 1 + 2 = 10), but no hold holds that item.
        for node in &mut nodes {
            let p = node.products.get_mut("p").unwrap();
            (p.product.stock, p.terms.held) = (7, 1);
        }
        assert_eq!(failed(&history, &setup(3), &nodes), vec!["holds add up"]);
    }

    #[test]
    fn a_view_that_does_not_conserve_held_stock_fails() {
        let (mut history, nodes) = good();
        let mut view = product("p", 8, 2, 0, None).details();
        view.held = 1;
        history.extend(vec![OpRecord {
            key: None,
            kind: OpKind::View,
            result: OpResult::Viewed {
                product: view,
                applied_index: None,
                served_by: None,
            },
            ..op(
                OpKind::View,
                "",
                5000,
                Target::default(),
                OpResult::Unknown {
                    message: String::new(),
                },
            )
        }]);
        assert_eq!(failed(&history, &setup(3), &nodes), vec!["no oversell"]);
    }
}
