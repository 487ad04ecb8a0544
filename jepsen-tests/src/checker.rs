//! The checker: the final state of every node checked against the history.
//!
//! Everything here is a pure function of the history and the nodes' states (no clock, no IO):
//! [`crate::final_state`] reads those states from the cluster. [`check`] checks each invariant
//! separately:
//!
//! 1. no oversell: `sold <= initial_stock + restocked`, conservation, and the orders of a
//!    product add up to its `sold`, on every node and in every view seen during the run;
//! 2. no lost confirmed purchase: every confirmed order is on every node, identical;
//! 3. no double apply: a key is in at most one order, every confirmation of a key (first
//!    send, its twin, retries, re-sends) names the same order, and no key is answered both
//!    confirmed and rejected;
//! 4. definite rejections are not applied: no order carries a key whose purchase ended
//!    `Rejected` or `Unavailable`, and every order matches a purchase that was sent;
//! 5. replicas agree: every node holds the same products and orders;
//! 6. restocks add up: the confirmed restocks of a product make up its `restocked` (exactly,
//!    unless some restocks ended unknown, which may or may not be in it);
//! 7. views consistent: a linearizable view shows every purchase and restock confirmed before
//!    it started, and no view shows more sold or restocked than had been sent by its end;
//! 8. views as fresh as they say: a view counts every order of the final state placed at or
//!    before the applied index it reports.
//!
//! The ninth, the archive exactly once (runs with the archive on), is checked by
//! [`crate::archive`] against PostgreSQL.
//!
//! Unknown outcomes may be in the state or not; [`UnknownStats`] says how many there were and
//! how many ended up applied.

pub mod stale_views;

use std::collections::BTreeMap;

use flashstock_api::{Order, OrderId, Product, ProductDetails};
use serde::Serialize;

use crate::history::{is_committed_rejection, History, OpKind, OpRecord, OpResult};
use crate::workload::ProductSpec;

/// Most detail lines kept per invariant; the count of the rest is reported.
pub const DETAILS_MAX: usize = 12;

/// The state one node holds at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeState {
    pub id: u64,
    pub applied_index: u64,
    pub products: BTreeMap<String, Product>,
    pub orders: Vec<Order>,
}

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
    /// Re-sends that could not tell (unavailable or unknown): inconclusive, not violations.
    pub resends_inconclusive: usize,
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

/// Check every invariant over the history and the nodes' final states.
pub fn check(history: &History, setup: &[ProductSpec], nodes: &[NodeState]) -> CheckReport {
    CheckReport {
        invariants: vec![
            no_oversell(history, setup, nodes),
            no_lost_confirmed(history, nodes),
            no_double_apply(history, nodes),
            definite_not_applied(history, nodes),
            replicas_agree(nodes),
            restocks_add_up(history, nodes),
            views_consistent(history),
            views_match_the_log(history, nodes),
        ],
        unknown: unknown_stats(history, nodes),
    }
}

/// The confirmed order of a purchase or re-send.
fn confirmed_order(op: &OpRecord) -> Option<&Order> {
    match &op.result {
        OpResult::Confirmed { order, .. } => Some(order),
        _ => None,
    }
}

/// What is wrong with one product record, if anything. A node's record comes through the
/// voters' internal API without its terms ([`ProductDetails::from`]: nothing held), which is
/// what it holds while the workload places no hold.
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
        .map_or(0, |n| n.products.values().map(|p| p.sold).sum());
    verdict.finish(format!(
        "{} products on {} nodes, {sold} items sold, {views} views checked",
        setup.len(),
        nodes.len()
    ))
}

/// Stock laws of one node: each product conserved, not oversold, its orders add up to `sold`,
/// its initial stock as created; no product the run did not create.
fn check_node_stock(verdict: &mut Verdict, setup: &[ProductSpec], node: &NodeState) {
    let mut ordered: BTreeMap<&str, u64> = BTreeMap::new();
    for order in &node.orders {
        *ordered.entry(order.product.as_str()).or_default() += u64::from(order.quantity);
    }
    for spec in setup {
        let Some(product) = node.products.get(&spec.id) else {
            verdict.fail(format!("node {}: product {} is missing", node.id, spec.id));
            continue;
        };
        if let Some(problem) = product_problem(&product.clone().into()) {
            verdict.fail(format!("node {}: {}: {problem}", node.id, spec.id));
        }
        let in_orders = ordered.get(spec.id.as_str()).copied().unwrap_or(0);
        if in_orders != product.sold {
            verdict.fail(format!(
                "node {}: {}: orders hold {in_orders} items, sold is {}",
                node.id, spec.id, product.sold
            ));
        }
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
    for product in ordered.keys() {
        if !node.products.contains_key(*product) {
            verdict.fail(format!(
                "node {}: orders for unknown product {product}",
                node.id
            ));
        }
    }
}

fn no_lost_confirmed(history: &History, nodes: &[NodeState]) -> Invariant {
    let mut verdict = Verdict::new("no lost confirmed purchase");
    let by_id: Vec<BTreeMap<OrderId, &Order>> = nodes
        .iter()
        .map(|n| n.orders.iter().map(|o| (o.id, o)).collect())
        .collect();
    let mut confirmed = 0;
    for op in history.ops.iter() {
        let Some(order) = confirmed_order(op) else {
            continue;
        };
        confirmed += 1;
        let key = op.key.as_deref().unwrap_or_default();
        if order.key != key
            || order.product != op.product
            || u64::from(order.quantity) != op.quantity
        {
            verdict.fail(format!(
                "key {key}: confirmed order {order:?} does not match the request \
                 ({} x{})",
                op.product, op.quantity
            ));
        }
        for (node, held) in nodes.iter().zip(&by_id) {
            match held.get(&order.id) {
                None => verdict.fail(format!(
                    "node {}: confirmed order {} (key {key}, confirmed at {} ms) is missing",
                    node.id, order.id, op.completed_ms
                )),
                Some(held) if *held != order => verdict.fail(format!(
                    "node {}: order {} differs: holds {held:?}, confirmed {order:?}",
                    node.id, order.id
                )),
                Some(_) => {}
            }
        }
    }
    verdict.finish(format!(
        "{confirmed} confirmations (purchases and re-sends) checked on {} nodes",
        nodes.len()
    ))
}

fn no_double_apply(history: &History, nodes: &[NodeState]) -> Invariant {
    let mut verdict = Verdict::new("no double apply");
    for node in nodes {
        let mut per_key: BTreeMap<&str, Vec<OrderId>> = BTreeMap::new();
        for order in &node.orders {
            per_key.entry(&order.key).or_default().push(order.id);
        }
        for (key, ids) in per_key.iter().filter(|(_, ids)| ids.len() > 1) {
            verdict.fail(format!(
                "node {}: key {key} applied {} times: orders {ids:?}",
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
    for (key, sends) in history.sends_by_key() {
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
            (OpResult::Rejected { code, message }, _) => verdict.fail(format!(
                "re-send of confirmed key {key} was rejected: {code}: {message}"
            )),
            _ => {}
        }
    }
    verdict.finish(format!(
        "{} keys confirmed, {resends} re-sends of confirmed keys answered",
        first.len()
    ))
}

/// Whether a purchase key was definitely not applied: a send learned the key's committed
/// rejection, or every send was refused before it could apply.
fn all_definitely_not_applied(sends: &[&OpRecord]) -> bool {
    let committed_rejection = sends.iter().any(
        |op| matches!(&op.result, OpResult::Rejected { code, .. } if is_committed_rejection(code)),
    );
    committed_rejection || sends.iter().all(|op| op.result.is_definitely_not_applied())
}

fn definite_not_applied(history: &History, nodes: &[NodeState]) -> Invariant {
    let mut verdict = Verdict::new("definite rejections not applied");
    let sends = history.sends_by_key();
    let definite = sends
        .values()
        .filter(|sends| all_definitely_not_applied(sends))
        .count();
    for node in nodes {
        for order in &node.orders {
            let Some(sends) = sends.get(order.key.as_str()) else {
                verdict.fail(format!(
                    "node {}: order {} has key {} that no client sent",
                    node.id, order.id, order.key
                ));
                continue;
            };
            if all_definitely_not_applied(sends) {
                let told: Vec<String> = sends
                    .iter()
                    .map(|op| format!("{} at {} ms", op.result.label(), op.completed_ms))
                    .collect();
                verdict.fail(format!(
                    "node {}: order {} (key {}) was applied, but the client was told {}",
                    node.id,
                    order.id,
                    order.key,
                    told.join(" and ")
                ));
            }
            let op = sends[0];
            if order.product != op.product || u64::from(order.quantity) != op.quantity {
                verdict.fail(format!(
                    "node {}: order {} (key {}) is {} x{}, the request was {} x{}",
                    node.id,
                    order.id,
                    order.key,
                    order.product,
                    order.quantity,
                    op.product,
                    op.quantity
                ));
            }
        }
    }
    verdict.finish(format!(
        "{definite} purchases ended rejected or unavailable; {} orders per node matched \
         to requests",
        nodes.first().map_or(0, |n| n.orders.len())
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
            verdict.fail(orders_difference(reference, node));
        }
    }
    verdict.finish(format!(
        "{} nodes compared: {} products, {} orders each",
        nodes.len(),
        reference.products.len(),
        reference.orders.len()
    ))
}

/// The first difference between two nodes' orders.
fn orders_difference(a: &NodeState, b: &NodeState) -> String {
    let first = a.orders.iter().zip(&b.orders).position(|(x, y)| x != y);
    match first {
        Some(i) => format!(
            "orders differ at position {i}: node {} has {:?}, node {} has {:?}",
            a.id, a.orders[i], b.id, b.orders[i]
        ),
        None => format!(
            "node {} has {} orders, node {} has {}",
            a.id,
            a.orders.len(),
            b.id,
            b.orders.len()
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
#[derive(Debug, Default)]
struct Timeline {
    /// `(ms, quantity)`, sorted by time.
    points: Vec<(u64, u64)>,
    /// `prefix[i]`: the sum of the first `i` quantities.
    prefix: Vec<u64>,
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

/// Per product: when sales and restocks were surely applied, and when they may have been.
struct Bounds {
    /// Purchases by the time their first confirmation came back.
    sold_surely: Timeline,
    /// Purchases not definitely refused, by the time they were first sent.
    sold_maybe: Timeline,
    restocked_surely: Timeline,
    restocked_maybe: Timeline,
}

fn bounds(history: &History) -> BTreeMap<&str, Bounds> {
    let mut raw: BTreeMap<&str, [Vec<(u64, u64)>; 4]> = BTreeMap::new();
    let confirmed_at = confirmation_times(history);
    for (key, sends) in history.sends_by_key() {
        let first = sends[0];
        let entry = raw.entry(first.product.as_str()).or_default();
        if let Some(at) = confirmed_at.get(key) {
            entry[0].push((*at, first.quantity));
        }
        if !all_definitely_not_applied(&sends) {
            let invoked = sends.iter().map(|op| op.invoked_ms).min().unwrap_or(0);
            entry[1].push((invoked, first.quantity));
        }
    }
    for op in history.of_kind(OpKind::Restock) {
        let entry = raw.entry(op.product.as_str()).or_default();
        if matches!(op.result, OpResult::Restocked { .. }) {
            entry[2].push((op.completed_ms, op.quantity));
        }
        if !op.result.is_definitely_not_applied() {
            entry[3].push((op.invoked_ms, op.quantity));
        }
    }
    raw.into_iter()
        .map(|(product, [a, b, c, d])| {
            let bounds = Bounds {
                sold_surely: Timeline::new(a),
                sold_maybe: Timeline::new(b),
                restocked_surely: Timeline::new(c),
                restocked_maybe: Timeline::new(d),
            };
            (product, bounds)
        })
        .collect()
}

/// The earliest time each purchase key's confirmation came back to a client.
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

/// What is wrong with one view, if anything: a linearizable view must show every purchase and
/// restock confirmed before it started; no view may show more than was sent before it ended.
fn view_problem(
    op: &OpRecord,
    product: &ProductDetails,
    bounds: Option<&Bounds>,
) -> Option<String> {
    let empty = Bounds {
        sold_surely: Timeline::new(Vec::new()),
        sold_maybe: Timeline::new(Vec::new()),
        restocked_surely: Timeline::new(Vec::new()),
        restocked_maybe: Timeline::new(Vec::new()),
    };
    let b = bounds.unwrap_or(&empty);
    let (start, end) = (op.invoked_ms, op.completed_ms);
    let (sold, restocked) = (product.sold, product.restocked);
    let at = format!(
        "{} view of {} at {start}-{end} ms",
        op.kind.name(),
        product.id
    );
    if op.kind == OpKind::LinearView {
        let (sold_min, restocked_min) = (
            b.sold_surely.before(start),
            b.restocked_surely.before(start),
        );
        if sold < sold_min || restocked < restocked_min {
            return Some(format!(
                "{at}: stale: sold {sold}, restocked {restocked}, but {sold_min} sold and \
                 {restocked_min} restocked were confirmed before it started"
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
/// order of that product placed at or before that index (in the final state: orders are never
/// dropped during a run: the harness sets their retention past its end). A gateway reads its applied index just
/// before the product, so a view may be fresher than its index, never staler: a replica that
/// claimed an index it had not applied would fail here.
fn views_match_the_log(history: &History, nodes: &[NodeState]) -> Invariant {
    let mut verdict = Verdict::new("views as fresh as they say");
    let Some(node) = nodes.first() else {
        return verdict.finish("no node state".into());
    };
    // Per product, (log index, quantity) of every order, in log order.
    let mut orders: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for order in &node.orders {
        orders
            .entry(order.product.as_str())
            .or_default()
            .push((order.id.log_index(), u64::from(order.quantity)));
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
        "{checked} views each counted every order placed up to the applied index they reported"
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
        if let Some(problem) = view_problem(op, product, bounds.get(product.id.as_str())) {
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
        .map(|n| n.orders.iter().map(|o| (o.key.as_str(), o)).collect())
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
            )
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

    fn spec() -> Vec<ProductSpec> {
        vec![ProductSpec {
            id: "p".into(),
            stock: 10,
            weight: 1,
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
            products: [("p".to_string(), product)].into_iter().collect(),
            orders,
        }
    }

    fn verdicts(history: &History, nodes: &[NodeState]) -> Vec<(&'static str, bool)> {
        check(history, &spec(), nodes)
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
                    product: product(0, 4).into(),
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
        let report = check(&history, &spec(), &nodes);
        assert_eq!(report.unknown.purchases, 1);
        assert_eq!(report.unknown.purchases_applied, 1);
    }

    #[test]
    fn an_oversell_fails() {
        let (history, mut nodes) = good();
        for node in &mut nodes {
            node.products.get_mut("p").unwrap().sold = 20;
        }
        assert!(failed(&history, &nodes).contains(&"no oversell"));
    }

    #[test]
    fn a_lost_confirmed_order_fails() {
        let (history, mut nodes) = good();
        nodes[1].orders.remove(0);
        nodes[1].products.get_mut("p").unwrap().sold = 1;
        nodes[1].products.get_mut("p").unwrap().stock = 13;
        let failed = failed(&history, &nodes);
        assert!(failed.contains(&"no lost confirmed purchase"));
        assert!(failed.contains(&"replicas agree"));
    }

    #[test]
    fn a_key_applied_twice_fails() {
        let (history, mut nodes) = good();
        for node in &mut nodes {
            node.orders.push(order(7, "a", 2));
            let p = node.products.get_mut("p").unwrap();
            (p.sold, p.stock) = (5, 9);
        }
        assert_eq!(failed(&history, &nodes), vec!["no double apply"]);
    }

    #[test]
    fn a_resend_with_another_order_fails() {
        let (mut history, nodes) = good();
        let a = nodes[0].orders[0].clone();
        let mut resend = op(OpKind::Resend, "a", 2, confirmed(&order(9, "a", 2)));
        resend.expected = Some(a);
        history.extend(vec![resend]);
        let failed = failed(&history, &nodes);
        assert!(failed.contains(&"no double apply"));
    }

    #[test]
    fn an_applied_rejection_fails() {
        let (history, mut nodes) = good();
        for node in &mut nodes {
            node.orders.push(order(8, "c", 3));
            let p = node.products.get_mut("p").unwrap();
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
            let p = node.products.get_mut("p").unwrap();
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
