//! The checker: the final state of every node checked against the history.
//!
//! Everything here is a pure function of the history and the nodes' states (no clock, no IO):
//! [`crate::final_state`] reads those states from the cluster. [`check`] checks each invariant
//! separately:
//!
//! 1. no oversell: `sold <= initial_stock + restocked` and conservation with what is held
//!    (`initial_stock + restocked == stock + held + sold`), on every node and in every view
//!    seen during the run;
//! 2. no lost confirmed purchase: every confirmed order (a purchase, a cart, a confirmed hold)
//!    is on every node, identical, with its lines;
//! 3. no double apply: a key is in at most one order, every confirmation of a key (first
//!    send, its twin, retries, re-sends) names the same order, and no key is answered both
//!    confirmed and rejected;
//! 4. definite rejections are not applied: no order (or hold) carries a key whose sends all
//!    ended `Rejected` or `Unavailable`, and every order matches a request that was sent;
//! 5. replicas agree: every node holds the same products, orders and holds, terms included;
//! 6. restocks add up: the confirmed restocks of a product make up its `restocked` (exactly,
//!    unless some restocks ended unknown, which may or may not be in it);
//! 7. views consistent: a linearizable view shows every purchase and restock confirmed before
//!    it started, and no view shows more sold or restocked than had been sent by its end;
//! 8. views as fresh as they say: a view counts every order of the final state placed at or
//!    before the applied index it reports (and never cancelled).
//!
//! The ninth, the archive exactly once (runs with the archive on), is checked by
//! [`crate::archive`] against PostgreSQL, the tenth by [`stale_views`]; they come after the
//! first [`CORE_INVARIANTS`]. Then checkout's, in [`checkout`]: orders add up to sold, holds add
//! up, holds end once and in time, carts all or nothing, limits never exceeded, cancellations
//! once.
//!
//! The seventeenth, no cart half bought across Raft groups, is [`carts_across`]'s; the others
//! see each such cart as one order ([`carts_across::merge`]).
//!
//! Unknown outcomes may be in the state or not; [`UnknownStats`] says how many there were and
//! how many ended up applied.

pub mod carts_across;
pub mod checkout;
pub mod stale_views;

use std::collections::BTreeMap;

use flashstock_api::{
    Hold, HoldId, Order, OrderId, OrderWithTerms, ProductDetails, ProductWithTerms,
};
use serde::Serialize;

use crate::history::{is_committed_rejection, History, OpKind, OpRecord, OpResult};
use crate::workload::ProductSpec;

/// Most detail lines kept per invariant; the count of the rest is reported.
pub const DETAILS_MAX: usize = 12;

/// The state one node holds at the end, as its internal read API serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeState {
    pub id: u64,
    pub applied_index: u64,
    /// Every product with its terms (held, limit, cancelled).
    pub products: BTreeMap<String, ProductWithTerms>,
    /// Every order with its terms (lines, hold, cancellation), in log order.
    pub orders: Vec<OrderWithTerms>,
    /// Every hold, held or finished, in log order (empty in runs without checkout).
    pub holds: Vec<Hold>,
}

impl NodeState {
    /// Its orders by id.
    pub fn orders_by_id(&self) -> BTreeMap<OrderId, &OrderWithTerms> {
        self.orders.iter().map(|o| (o.order.id, o)).collect()
    }

    /// Its holds by id.
    pub fn holds_by_id(&self) -> BTreeMap<HoldId, &Hold> {
        self.holds.iter().map(|h| (h.id, h)).collect()
    }
}

/// How many invariants [`check`] puts first; the archive's and the cut-off gateways' go after
/// them, then checkout's.
pub const CORE_INVARIANTS: usize = 8;

/// One invariant's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Invariant {
    pub name: &'static str,
    pub passed: bool,
    /// What was checked, in numbers.
    pub summary: String,
    /// The violations (at most [`DETAILS_MAX`]), then how many more there were.
    pub details: Vec<String>,
}

/// Collects violations for one invariant.
pub(crate) struct Verdict {
    name: &'static str,
    violations: usize,
    details: Vec<String>,
}

impl Verdict {
    pub(crate) fn new(name: &'static str) -> Verdict {
        Verdict {
            name,
            violations: 0,
            details: Vec::new(),
        }
    }

    pub(crate) fn fail(&mut self, detail: String) {
        self.violations += 1;
        if self.details.len() < DETAILS_MAX {
            self.details.push(detail);
        }
    }

    pub(crate) fn finish(mut self, summary: String) -> Invariant {
        if self.violations > self.details.len() {
            let more = self.violations - self.details.len();
            self.details.push(format!("... and {more} more"));
        }
        Invariant {
            name: self.name,
            passed: self.violations == 0,
            summary,
            details: self.details,
        }
    }
}

/// What became of the writes whose outcome stayed unknown.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnknownStats {
    pub purchases: usize,
    /// Of those, how many are in the final state.
    pub purchases_applied: usize,
    /// Purchases that had an unknown attempt but learned a definite outcome by retrying.
    pub purchases_resolved_by_retry: usize,
    pub restocks: usize,
    /// Items of unknown restocks, and how many items the state shows were applied from them
    /// (summed over products).
    pub restock_items: u64,
    pub restock_items_applied: u64,
    /// Re-sends that could not tell (unavailable, unknown, or refused for the request alone,
    /// such as `rate_limited`): inconclusive, not violations.
    pub resends_inconclusive: usize,
    /// Checkout writes whose outcome stayed unknown, per kind, and how many of them show in the
    /// final state.
    pub checkout: Vec<checkout::UnknownCheckout>,
}

/// The checker's verdict on a run.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub invariants: Vec<Invariant>,
    pub unknown: UnknownStats,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.invariants.iter().all(|i| i.passed)
    }
}

/// Check every invariant over the history and the nodes' final states: the
/// [`CORE_INVARIANTS`], then checkout's.
pub fn check(
    history: &History,
    setup: &[ProductSpec],
    raw: &[NodeState],
    groups: u16,
) -> CheckReport {
    // Each cart across groups as one order; the raw states where what counts is each order's
    // own place in its group's log.
    let (carts_across, merged) = carts_across::merge(history, raw, groups);
    let nodes = &merged[..];
    let mut unknown = unknown_stats(history, nodes);
    unknown.checkout = checkout::unknown_checkout(history, nodes);
    CheckReport {
        invariants: vec![
            no_oversell(history, setup, nodes),
            no_lost_confirmed(history, nodes),
            no_double_apply(history, nodes),
            definite_not_applied(history, nodes),
            replicas_agree(nodes),
            restocks_add_up(history, nodes),
            views_consistent(history),
            views_match_the_log(history, raw),
            checkout::orders_add_up(nodes),
            checkout::holds_add_up(history, nodes),
            checkout::holds_end_once_in_time(history, nodes),
            checkout::carts_all_or_nothing(history, nodes),
            checkout::limits_never_exceeded(setup, nodes),
            checkout::cancellations_once(history, nodes),
            carts_across,
        ],
        unknown,
    }
}

/// The order an operation placed, when the cluster confirmed it.
fn confirmed_order(op: &OpRecord) -> Option<&Order> {
    op.placed_order()
}

/// `(product, quantity)` of every line of an order.
pub(crate) fn line_items(order: &OrderWithTerms) -> Vec<(String, u64)> {
    order
        .lines()
        .into_iter()
        .map(|line| (line.product, u64::from(line.quantity)))
        .collect()
}

/// What is wrong with one product record, if anything: oversold, or not conserved counting
/// what is held.
fn product_problem(product: &ProductDetails) -> Option<String> {
    let supply = product.initial_stock.checked_add(product.restocked);
    if supply.is_some_and(|supply| product.sold > supply) {
        return Some(format!(
            "oversold: sold {} > initial {} + restocked {}",
            product.sold, product.initial_stock, product.restocked
        ));
    }
    if !product.is_conserved() {
        return Some(format!(
            "not conserved: initial {} + restocked {} != stock {} + held {} + sold {}",
            product.initial_stock, product.restocked, product.stock, product.held, product.sold
        ));
    }
    None
}

fn no_oversell(history: &History, setup: &[ProductSpec], nodes: &[NodeState]) -> Invariant {
    let mut verdict = Verdict::new("no oversell");
    for node in nodes {
        check_node_stock(&mut verdict, setup, node);
    }
    let mut views = 0;
    for op in history.views() {
        if let OpResult::Viewed { product, .. } = &op.result {
            views += 1;
            if let Some(problem) = product_problem(product) {
                let at = op.invoked_ms;
                verdict.fail(format!("view of {} at {at} ms: {problem}", product.id));
            }
        }
    }
    let sold: u64 = nodes
        .first()
        .map_or(0, |n| n.products.values().map(|p| p.product.sold).sum());
    verdict.finish(format!(
        "{} products on {} nodes, {sold} items sold, {views} views checked",
        setup.len(),
        nodes.len()
    ))
}

/// Stock laws of one node: each product conserved with what is held and not oversold, its
/// initial stock as created; no product the run did not create, no order of one. (That its
/// orders add up to `sold` is [`checkout::orders_add_up`].)
fn check_node_stock(verdict: &mut Verdict, setup: &[ProductSpec], node: &NodeState) {
    for spec in setup {
        let Some(record) = node.products.get(&spec.id) else {
            verdict.fail(format!("node {}: product {} is missing", node.id, spec.id));
            continue;
        };
        if let Some(problem) = product_problem(&record.details()) {
            verdict.fail(format!("node {}: {}: {problem}", node.id, spec.id));
        }
        let product = &record.product;
        if product.initial_stock != spec.stock {
            verdict.fail(format!(
                "node {}: {}: initial stock {} instead of {}",
                node.id, spec.id, product.initial_stock, spec.stock
            ));
        }
    }
    for id in node.products.keys() {
        if !setup.iter().any(|s| &s.id == id) {
            verdict.fail(format!("node {}: unexpected product {id}", node.id));
        }
    }
    let ordered: std::collections::BTreeSet<String> = node
        .orders
        .iter()
        .flat_map(|order| line_items(order).into_iter().map(|(product, _)| product))
        .collect();
    for product in ordered {
        if !node.products.contains_key(&product) {
            verdict.fail(format!(
                "node {}: orders for unknown product {product}",
                node.id
            ));
        }
    }
}

fn no_lost_confirmed(history: &History, nodes: &[NodeState]) -> Invariant {
    let mut verdict = Verdict::new("no lost confirmed purchase");
    let by_id: Vec<BTreeMap<OrderId, &OrderWithTerms>> =
        nodes.iter().map(NodeState::orders_by_id).collect();
    let (mut confirmed, mut with_lines) = (0, 0);
    for op in history.ops.iter() {
        let Some(order) = confirmed_order(op) else {
            continue;
        };
        confirmed += 1;
        let key = op.key.as_deref().unwrap_or_default();
        let lines = op.placed_lines().unwrap_or_default();
        if order.key != key || lines != op.lines() {
            verdict.fail(format!(
                "key {key}: confirmed order {order:?} with lines {lines:?} does not match the \
                 request {:?}",
                op.lines()
            ));
        }
        // The lines with their prices, as the answer showed them (carts and confirmed holds).
        let shown: Option<Vec<(String, u32, u64)>> = match &op.result {
            OpResult::Placed { lines, .. } => Some(
                lines
                    .iter()
                    .map(|l| (l.product.clone(), l.quantity, l.price_cents))
                    .collect(),
            ),
            _ => None,
        };
        with_lines += usize::from(shown.is_some());
        for (node, held) in nodes.iter().zip(&by_id) {
            match held.get(&order.id) {
                None => verdict.fail(format!(
                    "node {}: confirmed order {} (key {key}, {} confirmed at {} ms) is missing",
                    node.id,
                    order.id,
                    op.kind.name(),
                    op.completed_ms
                )),
                Some(held) if held.order != *order => verdict.fail(format!(
                    "node {}: order {} differs: holds {:?}, confirmed {order:?}",
                    node.id, order.id, held.order
                )),
                Some(held) => {
                    let on_node: Vec<(String, u32, u64)> = held
                        .lines()
                        .into_iter()
                        .map(|l| (l.product, l.quantity, l.price_cents))
                        .collect();
                    if shown.as_ref().is_some_and(|shown| *shown != on_node) {
                        verdict.fail(format!(
                            "node {}: order {} (key {key}) has lines {on_node:?}, the \
                             confirmation showed {shown:?}",
                            node.id, order.id
                        ));
                    }
                }
            }
        }
    }
    verdict.finish(format!(
        "{confirmed} confirmations (purchases, re-sends, carts, confirmed holds; {with_lines} of \
         them with their lines) checked on {} nodes",
        nodes.len()
    ))
}

fn no_double_apply(history: &History, nodes: &[NodeState]) -> Invariant {
    let mut verdict = Verdict::new("no double apply");
    for node in nodes {
        let mut per_key: BTreeMap<&str, Vec<OrderId>> = BTreeMap::new();
        for order in &node.orders {
            per_key
                .entry(&order.order.key)
                .or_default()
                .push(order.order.id);
        }
        for (key, ids) in per_key.iter().filter(|(_, ids)| ids.len() > 1) {
            verdict.fail(format!(
                "node {}: key {key} applied {} times: orders {ids:?}",
                node.id,
                ids.len()
            ));
        }
        let mut holds_per_key: BTreeMap<&str, Vec<HoldId>> = BTreeMap::new();
        for hold in &node.holds {
            holds_per_key.entry(&hold.key).or_default().push(hold.id);
        }
        for (key, ids) in holds_per_key.iter().filter(|(_, ids)| ids.len() > 1) {
            verdict.fail(format!(
                "node {}: key {key} placed {} holds: {ids:?}",
                node.id,
                ids.len()
            ));
        }
    }
    let mut first: BTreeMap<&str, &Order> = BTreeMap::new();
    for op in &history.ops {
        let (Some(key), Some(order)) = (op.key.as_deref(), confirmed_order(op)) else {
            continue;
        };
        match first.get(key) {
            Some(earlier) if *earlier != order => verdict.fail(format!(
                "key {key} confirmed as two different orders: {earlier:?} and {order:?}"
            )),
            Some(_) => {}
            None => {
                first.insert(key, order);
            }
        }
    }
    let mut first_hold: BTreeMap<&str, HoldId> = BTreeMap::new();
    for op in history.of_kind(OpKind::Hold) {
        let (Some(key), OpResult::Held { hold, .. }) = (op.key.as_deref(), &op.result) else {
            continue;
        };
        match first_hold.insert(key, hold.id) {
            Some(earlier) if earlier != hold.id => verdict.fail(format!(
                "key {key} placed two different holds: {earlier} and {}",
                hold.id
            )),
            _ => {}
        }
    }
    for (key, sends) in history.order_sends() {
        let confirmed = sends.iter().find_map(|op| confirmed_order(op));
        let rejected = sends.iter().find_map(|op| match &op.result {
            OpResult::Rejected { code, .. } if is_committed_rejection(code) => Some(code),
            _ => None,
        });
        if let (Some(order), Some(code)) = (confirmed, rejected) {
            verdict.fail(format!(
                "key {key} was answered both {code} and confirmed (order {})",
                order.id
            ));
        }
    }
    let mut resends = 0;
    for op in history.of_kind(OpKind::Resend) {
        let key = op.key.as_deref().unwrap_or_default();
        match (&op.result, &op.expected) {
            (OpResult::Confirmed { order, .. }, Some(expected)) => {
                resends += 1;
                if order != expected {
                    verdict.fail(format!(
                        "re-send of key {key} returned {order:?}, first confirmed {expected:?}"
                    ));
                }
            }
            // The key's own outcome is a confirmation: a committed rejection of it is a
            // second, different outcome. A refusal of this request alone (`rate_limited` for a
            // customer, before the key is even read) says nothing of the key.
            (OpResult::Rejected { code, message }, _) if is_committed_rejection(code) => verdict
                .fail(format!(
                    "re-send of confirmed key {key} was rejected: {code}: {message}"
                )),
            _ => {}
        }
    }
    verdict.finish(format!(
        "{} keys confirmed, {} holds placed, {resends} re-sends of confirmed keys answered",
        first.len(),
        first_hold.len()
    ))
}

/// Whether a key was definitely not applied: a send learned the key's committed rejection, or
/// every send was refused before it could apply.
fn all_definitely_not_applied(sends: &[&OpRecord]) -> bool {
    let committed_rejection = sends.iter().any(|op| op.result.is_committed_rejection());
    committed_rejection || sends.iter().all(|op| op.result.is_definitely_not_applied())
}

fn definite_not_applied(history: &History, nodes: &[NodeState]) -> Invariant {
    let mut verdict = Verdict::new("definite rejections not applied");
    let sends = history.order_sends();
    let mut hold_sends: BTreeMap<&str, Vec<&OpRecord>> = BTreeMap::new();
    for op in history.of_kind(OpKind::Hold) {
        if let Some(key) = op.key.as_deref() {
            hold_sends.entry(key).or_default().push(op);
        }
    }
    let definite = sends
        .values()
        .chain(hold_sends.values())
        .filter(|sends| all_definitely_not_applied(sends))
        .count();
    let told = |sends: &[&OpRecord]| -> String {
        let told: Vec<String> = sends
            .iter()
            .map(|op| format!("{} at {} ms", op.result.label(), op.completed_ms))
            .collect();
        told.join(" and ")
    };
    for node in nodes {
        for record in &node.orders {
            let order = &record.order;
            let Some(sends) = sends.get(order.key.as_str()) else {
                verdict.fail(format!(
                    "node {}: order {} has key {} that no client sent",
                    node.id, order.id, order.key
                ));
                continue;
            };
            if all_definitely_not_applied(sends) {
                verdict.fail(format!(
                    "node {}: order {} (key {}, {}) was applied, but the client was told {}",
                    node.id,
                    order.id,
                    order.key,
                    sends[0].kind.name(),
                    told(sends)
                ));
            }
            // The first line; every line is checked by "carts all or nothing".
            let requested = sends[0].lines();
            let first = requested.first().cloned().unwrap_or_default();
            if order.product != first.0 || u64::from(order.quantity) != first.1 {
                verdict.fail(format!(
                    "node {}: order {} (key {}) is {} x{}, the request was {} x{}",
                    node.id, order.id, order.key, order.product, order.quantity, first.0, first.1
                ));
            }
        }
        for hold in &node.holds {
            let Some(sends) = hold_sends.get(hold.key.as_str()) else {
                verdict.fail(format!(
                    "node {}: hold {} has key {} that no client sent",
                    node.id, hold.id, hold.key
                ));
                continue;
            };
            if all_definitely_not_applied(sends) {
                verdict.fail(format!(
                    "node {}: hold {} (key {}) was placed, but the client was told {}",
                    node.id,
                    hold.id,
                    hold.key,
                    told(sends)
                ));
            }
            let placed: Vec<(String, u64)> = hold
                .lines
                .iter()
                .map(|l| (l.product.clone(), u64::from(l.quantity)))
                .collect();
            if placed != sends[0].lines() || hold.customer != sends[0].target.customer {
                verdict.fail(format!(
                    "node {}: hold {} (key {}) holds {placed:?} for {:?}, the request was {:?} \
                     for {:?}",
                    node.id,
                    hold.id,
                    hold.key,
                    hold.customer,
                    sends[0].lines(),
                    sends[0].target.customer
                ));
            }
        }
    }
    let first = nodes.first();
    verdict.finish(format!(
        "{definite} orders and holds ended rejected or unavailable; {} orders and {} holds per \
         node matched to requests",
        first.map_or(0, |n| n.orders.len()),
        first.map_or(0, |n| n.holds.len())
    ))
}

fn replicas_agree(nodes: &[NodeState]) -> Invariant {
    let mut verdict = Verdict::new("replicas agree");
    let Some(reference) = nodes.first() else {
        verdict.fail("no node was read".into());
        return verdict.finish(String::new());
    };
    for node in &nodes[1..] {
        for (id, product) in &reference.products {
            if node.products.get(id) != Some(product) {
                verdict.fail(format!(
                    "node {} has {id} = {:?}, node {} has {product:?}",
                    node.id,
                    node.products.get(id),
                    reference.id
                ));
            }
        }
        if node.products.len() != reference.products.len() {
            verdict.fail(format!(
                "node {} has {} products, node {} has {}",
                node.id,
                node.products.len(),
                reference.id,
                reference.products.len()
            ));
        }
        if node.orders != reference.orders {
            verdict.fail(difference(
                "orders",
                &reference.orders,
                &node.orders,
                reference.id,
                node.id,
            ));
        }
        if node.holds != reference.holds {
            verdict.fail(difference(
                "holds",
                &reference.holds,
                &node.holds,
                reference.id,
                node.id,
            ));
        }
    }
    verdict.finish(format!(
        "{} nodes compared with their terms: {} products, {} orders, {} holds each",
        nodes.len(),
        reference.products.len(),
        reference.orders.len(),
        reference.holds.len()
    ))
}

/// The first difference between two nodes' lists of records.
fn difference<T: PartialEq + std::fmt::Debug>(
    what: &str,
    a: &[T],
    b: &[T],
    a_id: u64,
    b_id: u64,
) -> String {
    let first = a.iter().zip(b).position(|(x, y)| x != y);
    match first {
        Some(i) => format!(
            "{what} differ at position {i}: node {a_id} has {:?}, node {b_id} has {:?}",
            a[i], b[i]
        ),
        None => format!(
            "node {a_id} has {} {what}, node {b_id} has {}",
            a.len(),
            b.len()
        ),
    }
}

/// Per product: items of confirmed restocks, and of restocks whose outcome is unknown.
fn restock_sums(history: &History) -> BTreeMap<&str, (u64, u64)> {
    let mut sums: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for op in history.of_kind(OpKind::Restock) {
        let entry = sums.entry(op.product.as_str()).or_default();
        match op.result {
            OpResult::Restocked { .. } => entry.0 += op.quantity,
            OpResult::Unknown { .. } => entry.1 += op.quantity,
            _ => {}
        }
    }
    sums
}

fn restocks_add_up(history: &History, nodes: &[NodeState]) -> Invariant {
    let mut verdict = Verdict::new("restocks add up");
    let sums = restock_sums(history);
    for node in nodes {
        for product in node.products.values() {
            let product = &product.product;
            let (confirmed, unknown) = sums.get(product.id.as_str()).copied().unwrap_or_default();
            let restocked = product.restocked;
            if restocked < confirmed || restocked > confirmed + unknown {
                verdict.fail(format!(
                    "node {}: {}: restocked {restocked}, confirmed restocks {confirmed}, \
                     unknown {unknown}",
                    node.id, product.id
                ));
            }
        }
    }
    let confirmed: u64 = sums.values().map(|s| s.0).sum();
    let unknown: u64 = sums.values().map(|s| s.1).sum();
    verdict.finish(format!(
        "{confirmed} items in confirmed restocks, {unknown} in unknown ones"
    ))
}

/// Quantities at points in time, summed over a time range.
#[derive(Debug)]
struct Timeline {
    /// `(ms, quantity)`, sorted by time.
    points: Vec<(u64, u64)>,
    /// `prefix[i]`: the sum of the first `i` quantities.
    prefix: Vec<u64>,
}

impl Default for Timeline {
    fn default() -> Timeline {
        Timeline::new(Vec::new())
    }
}

impl Timeline {
    fn new(mut points: Vec<(u64, u64)>) -> Timeline {
        points.sort_unstable();
        let mut prefix = vec![0];
        for (_, quantity) in &points {
            prefix.push(prefix.last().copied().unwrap_or(0) + quantity);
        }
        Timeline { points, prefix }
    }

    /// The sum of quantities at times strictly before `ms`.
    fn before(&self, ms: u64) -> u64 {
        self.prefix[self.points.partition_point(|(t, _)| *t < ms)]
    }

    /// The sum of quantities at times up to `ms`, included.
    fn up_to(&self, ms: u64) -> u64 {
        self.prefix[self.points.partition_point(|(t, _)| *t <= ms)]
    }
}

/// Per product: when sales, cancellations and restocks were surely applied, and when they may
/// have been.
#[derive(Default)]
struct Bounds {
    /// Items of orders (purchases, carts, confirmed holds) by the time their first
    /// confirmation came back.
    sold_surely: Timeline,
    /// Items of orders not definitely refused, by the time they were first sent.
    sold_maybe: Timeline,
    /// Items of cancellations not definitely refused, by the time they were sent: a view may
    /// show that much less sold than was confirmed.
    cancelled_maybe: Timeline,
    restocked_surely: Timeline,
    restocked_maybe: Timeline,
}

fn bounds(history: &History) -> BTreeMap<String, Bounds> {
    let mut raw: BTreeMap<String, [Vec<(u64, u64)>; 5]> = BTreeMap::new();
    let confirmed_at = confirmation_times(history);
    for (key, sends) in history.order_sends() {
        let maybe = !all_definitely_not_applied(&sends);
        let invoked = sends.iter().map(|op| op.invoked_ms).min().unwrap_or(0);
        for (product, quantity) in sends[0].lines() {
            let entry = raw.entry(product).or_default();
            if let Some(at) = confirmed_at.get(key) {
                entry[0].push((*at, quantity));
            }
            if maybe {
                entry[1].push((invoked, quantity));
            }
        }
    }
    let cancels = history.ops.iter().filter(|op| op.kind.cancels());
    for op in cancels.filter(|op| !op.result.is_definitely_not_applied()) {
        for (product, quantity) in op.lines() {
            raw.entry(product).or_default()[2].push((op.invoked_ms, quantity));
        }
    }
    for op in history.of_kind(OpKind::Restock) {
        let entry = raw.entry(op.product.clone()).or_default();
        if matches!(op.result, OpResult::Restocked { .. }) {
            entry[3].push((op.completed_ms, op.quantity));
        }
        if !op.result.is_definitely_not_applied() {
            entry[4].push((op.invoked_ms, op.quantity));
        }
    }
    raw.into_iter()
        .map(|(product, [a, b, c, d, e])| {
            let bounds = Bounds {
                sold_surely: Timeline::new(a),
                sold_maybe: Timeline::new(b),
                cancelled_maybe: Timeline::new(c),
                restocked_surely: Timeline::new(d),
                restocked_maybe: Timeline::new(e),
            };
            (product, bounds)
        })
        .collect()
}

/// The earliest time each order key's confirmation came back to a client.
fn confirmation_times(history: &History) -> BTreeMap<&str, u64> {
    let mut times: BTreeMap<&str, u64> = BTreeMap::new();
    for op in &history.ops {
        if let (Some(key), Some(_)) = (op.key.as_deref(), confirmed_order(op)) {
            let at = times.entry(key).or_insert(op.completed_ms);
            *at = (*at).min(op.completed_ms);
        }
    }
    times
}

/// What is wrong with one view, if anything: a linearizable view must show every order and
/// restock confirmed before it started (less what cancellations sent by its end may have taken
/// back); no view may show more than was sent before it ended.
fn view_problem(
    op: &OpRecord,
    product: &ProductDetails,
    bounds: Option<&Bounds>,
) -> Option<String> {
    let empty = Bounds::default();
    let b = bounds.unwrap_or(&empty);
    let (start, end) = (op.invoked_ms, op.completed_ms);
    let (sold, restocked) = (product.sold, product.restocked);
    let at = format!(
        "{} view of {} at {start}-{end} ms",
        op.kind.name(),
        product.id
    );
    if op.kind == OpKind::LinearView {
        let cancelled = b.cancelled_maybe.up_to(end);
        let sold_min = b.sold_surely.before(start).saturating_sub(cancelled);
        let restocked_min = b.restocked_surely.before(start);
        if sold < sold_min || restocked < restocked_min {
            return Some(format!(
                "{at}: stale: sold {sold}, restocked {restocked}, but {sold_min} sold (less \
                 {cancelled} maybe cancelled) and {restocked_min} restocked were confirmed \
                 before it started"
            ));
        }
    }
    let (sold_max, restocked_max) = (b.sold_maybe.up_to(end), b.restocked_maybe.up_to(end));
    if sold > sold_max || restocked > restocked_max {
        return Some(format!(
            "{at}: shows sold {sold}, restocked {restocked}, but at most {sold_max} and \
             {restocked_max} had been sent by its end"
        ));
    }
    None
}

/// Every view is at least as fresh as the applied index it reports: its `sold` includes every
/// line of that product of the orders placed at or before that index (in the final state:
/// orders are never dropped during a run: the harness sets their retention past its end). A
/// gateway reads its applied index just before the product, so a view may be fresher than its
/// index, never staler: a replica that claimed an index it had not applied would fail here.
/// Orders cancelled by the end are left out: the state does not say at which index they were
/// cancelled, so the bound is looser by what cancellations took back, never wrong.
fn views_match_the_log(history: &History, nodes: &[NodeState]) -> Invariant {
    let mut verdict = Verdict::new("views as fresh as they say");
    let Some(node) = nodes.first() else {
        return verdict.finish("no node state".into());
    };
    // Per product, (log index, quantity) of every line of an order not cancelled, in log
    // order.
    let mut orders: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for order in node.orders.iter().filter(|o| !o.is_cancelled()) {
        for (product, quantity) in line_items(order) {
            orders
                .entry(product)
                .or_default()
                .push((order.order.id.log_index(), quantity));
        }
    }
    let mut checked = 0;
    for op in history.views() {
        let OpResult::Viewed {
            product,
            applied_index: Some(index),
            ..
        } = &op.result
        else {
            continue;
        };
        checked += 1;
        let sold_by_then: u64 = orders
            .get(product.id.as_str())
            .map(|placed| {
                placed
                    .iter()
                    .take_while(|(at, _)| at <= index)
                    .map(|(_, quantity)| quantity)
                    .sum()
            })
            .unwrap_or(0);
        if product.sold < sold_by_then {
            verdict.fail(format!(
                "view of {} at {} ms, applied index {index}: sold {}, but the orders up to that \
                 index add up to {sold_by_then}",
                product.id, op.invoked_ms, product.sold
            ));
        }
    }
    verdict.finish(format!(
        "{checked} views each counted every order (not cancelled since) placed up to the \
         applied index they reported"
    ))
}

fn views_consistent(history: &History) -> Invariant {
    let mut verdict = Verdict::new("views consistent");
    let bounds = bounds(history);
    let (mut local, mut linear) = (0, 0);
    for op in history.views() {
        let OpResult::Viewed { product, .. } = &op.result else {
            continue;
        };
        match op.kind {
            OpKind::LinearView => linear += 1,
            _ => local += 1,
        }
        if let Some(problem) = view_problem(op, product, bounds.get(&product.id)) {
            verdict.fail(problem);
        }
    }
    verdict.finish(format!(
        "{linear} linearizable views saw everything confirmed before them; {local} local and \
         {linear} linearizable views saw nothing that was not sent"
    ))
}

fn unknown_stats(history: &History, nodes: &[NodeState]) -> UnknownStats {
    let applied: BTreeMap<&str, &Order> = nodes
        .first()
        .map(|n| {
            n.orders
                .iter()
                .map(|o| (o.order.key.as_str(), &o.order))
                .collect()
        })
        .unwrap_or_default();
    let mut stats = UnknownStats::default();
    for (key, sends) in history.sends_by_key() {
        let confirmed = sends.iter().any(|op| confirmed_order(op).is_some());
        let unknown = !confirmed && !all_definitely_not_applied(&sends);
        if unknown {
            stats.purchases += 1;
            stats.purchases_applied += usize::from(applied.contains_key(key));
        } else if sends.iter().any(|op| op.unknown_attempts > 0) {
            stats.purchases_resolved_by_retry += 1;
        }
    }
    stats.resends_inconclusive = history
        .of_kind(OpKind::Resend)
        .filter(|op| {
            matches!(
                op.result,
                OpResult::Unknown { .. } | OpResult::Unavailable { .. }
            ) || (op.result.rejection().is_some() && !op.result.is_committed_rejection())
        })
        .count();
    let sums = restock_sums(history);
    stats.restocks = history
        .of_kind(OpKind::Restock)
        .filter(|op| op.result.is_unknown())
        .count();
    stats.restock_items = sums.values().map(|s| s.1).sum();
    if let Some(node) = nodes.first() {
        stats.restock_items_applied = node
            .products
            .values()
            .map(|p| &p.product)
            .map(|p| {
                let confirmed = sums.get(p.id.as_str()).map_or(0, |s| s.0);
                p.restocked.saturating_sub(confirmed)
            })
            .sum();
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashstock_api::Product;

    fn spec() -> Vec<ProductSpec> {
        vec![ProductSpec {
            id: "p".into(),
            stock: 10,
            weight: 1,
            limit_per_customer: None,
        }]
    }

    fn order(id: u64, key: &str, quantity: u32) -> Order {
        Order {
            id: OrderId(id << 16),
            key: key.into(),
            product: "p".into(),
            quantity,
            customer: None,
            price_cents: 1000,
            remaining: 0,
            placed_at_ms: 0,
            token: None,
        }
    }

    fn product(sold: u64, restocked: u64) -> Product {
        Product {
            id: "p".into(),
            name: "P".into(),
            price_cents: 1000,
            stock: 10 + restocked - sold,
            initial_stock: 10,
            restocked,
            sold,
        }
    }

    fn op(kind: OpKind, key: &str, quantity: u64, result: OpResult) -> OpRecord {
        OpRecord {
            client: 0,
            kind,
            key: Some(key.into()),
            product: "p".into(),
            quantity,
            invoked_ms: 0,
            completed_ms: 1,
            attempts: 1,
            unknown_attempts: 0,
            expected: None,
            target: Default::default(),
            result,
        }
    }

    fn confirmed(o: &Order) -> OpResult {
        OpResult::Confirmed {
            order: o.clone(),
            replayed: false,
        }
    }

    fn node(id: u64, product: Product, orders: Vec<Order>) -> NodeState {
        NodeState {
            id,
            applied_index: 9,
            products: [("p".to_string(), with_terms(product))]
                .into_iter()
                .collect(),
            orders: orders.into_iter().map(plain).collect(),
            holds: Vec::new(),
        }
    }

    fn with_terms(product: Product) -> ProductWithTerms {
        ProductWithTerms {
            product,
            terms: Default::default(),
        }
    }

    fn plain(order: Order) -> OrderWithTerms {
        OrderWithTerms {
            order,
            terms: Default::default(),
        }
    }

    fn verdicts(history: &History, nodes: &[NodeState]) -> Vec<(&'static str, bool)> {
        check(history, &spec(), nodes, 1)
            .invariants
            .iter()
            .map(|i| (i.name, i.passed))
            .collect()
    }

    fn failed(history: &History, nodes: &[NodeState]) -> Vec<&'static str> {
        verdicts(history, nodes)
            .into_iter()
            .filter(|(_, passed)| !passed)
            .map(|(name, _)| name)
            .collect()
    }

    fn good() -> (History, Vec<NodeState>) {
        let a = order(5, "a", 2);
        let b = order(6, "b", 1);
        let mut history = History::default();
        history.extend(vec![
            op(OpKind::Purchase, "a", 2, confirmed(&a)),
            op(
                OpKind::Purchase,
                "b",
                1,
                OpResult::Unknown { message: "".into() },
            ),
            op(
                OpKind::Purchase,
                "c",
                3,
                OpResult::Rejected {
                    code: "insufficient_stock".into(),
                    message: "".into(),
                },
            ),
            op(
                OpKind::Restock,
                "r",
                4,
                OpResult::Restocked {
                    product: Some(product(0, 4).into()),
                },
            ),
        ]);
        let state = node(1, product(3, 4), vec![a, b]);
        (history, vec![state.clone(), NodeState { id: 2, ..state }])
    }

    #[test]
    fn a_clean_run_passes_and_counts_unknowns() {
        let (history, nodes) = good();
        assert!(failed(&history, &nodes).is_empty());
        let report = check(&history, &spec(), &nodes, 1);
        assert_eq!(report.unknown.purchases, 1);
        assert_eq!(report.unknown.purchases_applied, 1);
    }

    #[test]
    fn an_oversell_fails() {
        let (history, mut nodes) = good();
        for node in &mut nodes {
            node.products.get_mut("p").unwrap().product.sold = 20;
        }
        assert!(failed(&history, &nodes).contains(&"no oversell"));
    }

    #[test]
    fn a_lost_confirmed_order_fails() {
        let (history, mut nodes) = good();
        nodes[1].orders.remove(0);
        nodes[1].products.get_mut("p").unwrap().product.sold = 1;
        nodes[1].products.get_mut("p").unwrap().product.stock = 13;
        let failed = failed(&history, &nodes);
        assert!(failed.contains(&"no lost confirmed purchase"));
        assert!(failed.contains(&"replicas agree"));
    }

    #[test]
    fn a_key_applied_twice_fails() {
        let (history, mut nodes) = good();
        for node in &mut nodes {
            node.orders.push(plain(order(7, "a", 2)));
            let p = &mut node.products.get_mut("p").unwrap().product;
            (p.sold, p.stock) = (5, 9);
        }
        assert_eq!(failed(&history, &nodes), vec!["no double apply"]);
    }

    #[test]
    fn a_resend_with_another_order_fails() {
        let (mut history, nodes) = good();
        let a = nodes[0].orders[0].order.clone();
        let mut resend = op(OpKind::Resend, "a", 2, confirmed(&order(9, "a", 2)));
        resend.expected = Some(a);
        history.extend(vec![resend]);
        let failed = failed(&history, &nodes);
        assert!(failed.contains(&"no double apply"));
    }

    #[test]
    fn a_resend_refused_for_itself_is_inconclusive_but_a_committed_rejection_fails() {
        let (mut history, nodes) = good();
        let a = nodes[0].orders[0].order.clone();
        let rejected = |code: &str| OpResult::Rejected {
            code: code.into(),
            message: String::new(),
        };
        let mut limited = op(OpKind::Resend, "a", 2, rejected("rate_limited"));
        limited.expected = Some(a.clone());
        history.extend(vec![limited]);
        assert!(failed(&history, &nodes).is_empty());
        assert_eq!(
            check(&history, &spec(), &nodes, 1)
                .unknown
                .resends_inconclusive,
            1
        );
        let mut refused = op(OpKind::Resend, "a", 2, rejected("insufficient_stock"));
        refused.expected = Some(a);
        history.extend(vec![refused]);
        assert!(failed(&history, &nodes).contains(&"no double apply"));
    }

    #[test]
    fn an_applied_rejection_fails() {
        let (history, mut nodes) = good();
        for node in &mut nodes {
            node.orders.push(plain(order(8, "c", 3)));
            let p = &mut node.products.get_mut("p").unwrap().product;
            (p.sold, p.stock) = (6, 8);
        }
        assert_eq!(
            failed(&history, &nodes),
            vec!["definite rejections not applied"]
        );
    }

    #[test]
    fn restocks_must_add_up() {
        let (history, mut nodes) = good();
        for node in &mut nodes {
            let p = &mut node.products.get_mut("p").unwrap().product;
            (p.restocked, p.stock) = (8, 15);
        }
        assert_eq!(failed(&history, &nodes), vec!["restocks add up"]);
    }

    fn view(kind: OpKind, at_ms: u64, product: Product) -> OpRecord {
        OpRecord {
            key: None,
            invoked_ms: at_ms,
            completed_ms: at_ms + 1,
            ..op(
                kind,
                "",
                0,
                OpResult::Viewed {
                    product: product.into(),
                    applied_index: None,
                    served_by: None,
                },
            )
        }
    }

    #[test]
    fn a_view_must_be_as_fresh_as_its_applied_index() {
        let (mut history, nodes) = good();
        // Order "a" (2 items) is at log index 5, "b" (1 item) at 6.
        let at = |index: u64, sold: u64| OpRecord {
            result: OpResult::Viewed {
                product: product(sold, 0).into(),
                applied_index: Some(index),
                served_by: None,
            },
            ..view(OpKind::View, 3, product(0, 0))
        };
        // Exactly the state at the index, or fresher (read just after the index), pass.
        history.extend(vec![at(4, 0), at(5, 2), at(6, 3), at(5, 3)]);
        assert!(!failed(&history, &nodes).contains(&"views as fresh as they say"));
        // Missing order "a" while claiming index 5: a stale read passed off as fresh.
        history.extend(vec![at(5, 1)]);
        assert_eq!(failed(&history, &nodes), vec!["views as fresh as they say"]);
    }

    #[test]
    fn a_stale_linearizable_view_fails() {
        let (mut history, nodes) = good();
        // Purchase "a" (2 items) and the restock were confirmed at 1 ms.
        history.extend(vec![view(OpKind::LinearView, 5, product(0, 4))]);
        assert_eq!(failed(&history, &nodes), vec!["views consistent"]);
    }

    #[test]
    fn a_local_view_may_lag_but_not_lead() {
        let (mut history, nodes) = good();
        history.extend(vec![view(OpKind::View, 5, product(0, 0))]);
        assert!(failed(&history, &nodes).is_empty());
        // At most 3 items (a and b; c was refused) were ever sent.
        history.extend(vec![view(OpKind::View, 6, product(4, 4))]);
        assert_eq!(failed(&history, &nodes), vec!["views consistent"]);
    }

    #[test]
    fn twins_answered_differently_fail() {
        let (mut history, nodes) = good();
        let rejected = OpResult::Rejected {
            code: "insufficient_stock".into(),
            message: String::new(),
        };
        history.extend(vec![op(OpKind::Twin, "a", 2, rejected)]);
        assert!(failed(&history, &nodes).contains(&"no double apply"));
    }
}
