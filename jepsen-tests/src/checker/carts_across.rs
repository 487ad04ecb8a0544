//! Carts across Raft groups, in a cluster of several: the seventeenth invariant, and the view of
//! the nodes' states in which the others check such carts.
//!
//! A cart whose products lie in several groups is bought as one order per group, each under
//! the key `K#g<group>#c` of its request's key `K`, from a part held in each group under
//! `K#g<group>` (`flashstock_api::cart`). The other invariants match one order, and one hold,
//! to one request. [`merge`] gives them that view: on each node, the orders of such a cart
//! become one order under `K`, with every line in the request's order and, for its other
//! fields, the primary group's order (the lowest group: its id, customer, time and token) and
//! the first line; its parts leave the holds. The workload records the cluster's answer through
//! the same [`merged_order`], so that answer and state compare as for a cart of one group.
//!
//! 17. **no cart half bought**: on every node, every cart across groups has an order in each
//!     group its lines lie in, or in none; each of those orders holds exactly the request's
//!     lines of its group, for the request's customer; and no part of a cart is still held
//!     once the run has settled.

use std::collections::{BTreeMap, BTreeSet};

use flashstock_api::cart::cart_of_order_key;
use flashstock_api::placement::group_of;
use flashstock_api::{Hold, HoldState, Order, OrderId, OrderLine, OrderTerms, OrderWithTerms};

use super::{line_items, Invariant, NodeState, Verdict};
use crate::history::{History, OpKind, OpRecord, OpResult};

/// One order standing for a cart's orders `parts` (each with its lines), requested as
/// `requested` under `key`: every line, in the request's order; the id, customer, time and
/// token of the primary group's order (the lowest group); the first line's product, quantity,
/// price and remaining stock.
pub fn merged_order(
    key: &str,
    requested: &[(String, u64)],
    mut parts: Vec<(Order, Vec<OrderLine>)>,
) -> (Order, Vec<OrderLine>) {
    parts.sort_by_key(|(order, _)| order.id.group());
    let position = |product: &str| {
        requested
            .iter()
            .position(|(p, _)| p == product)
            .unwrap_or(usize::MAX)
    };
    let mut lines: Vec<OrderLine> = parts.iter().flat_map(|(_, lines)| lines.clone()).collect();
    lines.sort_by_key(|line| position(&line.product));
    let primary = &parts[0].0;
    let first = &lines[0];
    let order = Order {
        id: primary.id,
        key: key.to_owned(),
        product: first.product.clone(),
        quantity: first.quantity,
        customer: primary.customer.clone(),
        price_cents: first.price_cents,
        remaining: first.remaining,
        placed_at_ms: primary.placed_at_ms,
        token: primary.token.clone(),
    };
    (order, lines)
}

/// The request key of a cart's part held under `hold_key` (`K#g<group>`), if `K` is a request
/// of the history.
fn cart_of_part<'a>(hold_key: &'a str, requests: &BTreeSet<&str>) -> Option<&'a str> {
    let (cart, group) = hold_key.rsplit_once("#g")?;
    (group.parse::<u16>().is_ok() && requests.contains(cart)).then_some(cart)
}

/// Check invariant 17 on `nodes` of a cluster of `groups` groups, and give the nodes' states
/// with each cart across groups as one order and without its parts (see the module's text).
pub fn merge(history: &History, nodes: &[NodeState], groups: u16) -> (Invariant, Vec<NodeState>) {
    let mut verdict = Verdict::new("no cart half bought");
    let sends = history.order_sends();
    let requests: BTreeSet<&str> = sends.keys().copied().collect();
    let (mut bought, mut parts_seen) = (BTreeSet::new(), 0);
    let hold_requests: BTreeMap<&str, &OpRecord> = history
        .of_kind(OpKind::Hold)
        .filter_map(|op| Some((op.key.as_deref()?, op)))
        .collect();
    let mut holds_across = BTreeSet::new();
    let merged = nodes
        .iter()
        .map(|node| {
            let mut node = node.clone();
            let mut carts: BTreeMap<String, Vec<OrderWithTerms>> = BTreeMap::new();
            node.orders.retain(|order| {
                match cart_of_order_key(&order.order.key) {
                    Some((cart, _)) if requests.contains(cart) => {
                        carts
                            .entry(cart.to_owned())
                            .or_default()
                            .push(order.clone());
                        false
                    }
                    // "definite rejections not applied" reports an order nobody sent.
                    _ => true,
                }
            });
            for (key, orders) in carts {
                let request = sends[key.as_str()][0];
                let requested = request.lines();
                let wanted: BTreeSet<u16> =
                    requested.iter().map(|(p, _)| group_of(p, groups)).collect();
                let got: BTreeSet<u16> = orders.iter().map(|o| o.order.id.group()).collect();
                if got != wanted {
                    verdict.fail(format!(
                        "node {}: cart {key} is bought in groups {got:?}, its lines lie in \
                         {wanted:?}",
                        node.id
                    ));
                }
                for order in &orders {
                    let group = order.order.id.group();
                    let expected: Vec<(String, u64)> = requested
                        .iter()
                        .filter(|(p, _)| group_of(p, groups) == group)
                        .cloned()
                        .collect();
                    if line_items(order) != expected
                        || order.order.customer != request.target.customer
                    {
                        verdict.fail(format!(
                            "node {}: cart {key}'s order {} in group {group} holds {:?} for \
                             {:?}; the request's lines there were {expected:?} for {:?}",
                            node.id,
                            order.order.id,
                            line_items(order),
                            order.order.customer,
                            request.target.customer
                        ));
                    }
                }
                bought.insert(key.clone());
                let parts = orders
                    .iter()
                    .map(|o| (o.order.clone(), o.lines()))
                    .collect();
                let (order, lines) = merged_order(&key, &requested, parts);
                node.orders.push(OrderWithTerms {
                    order,
                    terms: OrderTerms {
                        lines,
                        hold: None,
                        cancelled_at_ms: None,
                    },
                });
            }
            merge_holds_across(&mut verdict, &mut node, &hold_requests, &mut holds_across);
            node.orders.sort_by_key(|o| o.order.id);
            node.holds.retain(|hold| {
                let Some(cart) = cart_of_part(&hold.key, &requests) else {
                    return true;
                };
                parts_seen += 1;
                if hold.state == HoldState::Held {
                    verdict.fail(format!(
                        "node {}: part {} of cart {cart} is still held at the end",
                        node.id, hold.id
                    ));
                }
                false
            });
            node
        })
        .collect();
    let invariant = verdict.finish(format!(
        "{} carts across groups bought, each in every group of its lines on every node; {} \
         parts (over all nodes) settled; {} holds across groups, each ended alike in every \
         group",
        bought.len(),
        parts_seen,
        holds_across.len()
    ));
    (invariant, merged)
}

/// On `node`, each hold across groups (placed by a hold request of the history, its parts under
/// `K#g<group>`) as the one hold its client was told of, and its orders as one order: the
/// primary part (the lowest group's) with every part's lines in the request's order (the
/// workload records the answer so), and the primary
/// group's order, which carries the confirmation's key and names the hold, with every group's
/// lines. Checks on the way that every part ended as the primary part did, that no group bought
/// what the others did not, and that a hold its client was never told of was not bought. A hold
/// its client was not told of that ended unbought (released by its gateway because a part was
/// refused, or expired) is dropped: its client was told it was not held, or does not know.
/// `seen` collects the keys of the holds found.
fn merge_holds_across(
    verdict: &mut Verdict,
    node: &mut NodeState,
    requests: &BTreeMap<&str, &OpRecord>,
    seen: &mut BTreeSet<String>,
) {
    let keys: BTreeSet<&str> = requests.keys().copied().collect();
    let mut holds: BTreeMap<String, Vec<Hold>> = BTreeMap::new();
    node.holds
        .retain(|hold| match cart_of_part(&hold.key, &keys) {
            Some(key) => {
                holds.entry(key.to_owned()).or_default().push(hold.clone());
                false
            }
            None => true,
        });
    for (key, mut parts) in holds {
        seen.insert(key.clone());
        parts.sort_by_key(|part| OrderId(part.id.0).group());
        let primary = parts[0].clone();
        let request = requests.get(key.as_str());
        let told_held = request.is_some_and(|op| matches!(op.result, OpResult::Held { .. }));
        // Every part's lines, in the request's order, as the workload records the answer.
        let position = |product: &str| {
            request
                .and_then(|op| op.target.lines.iter().position(|l| l.product == product))
                .unwrap_or(usize::MAX)
        };
        let mut lines: Vec<_> = parts.iter().flat_map(|part| part.lines.clone()).collect();
        lines.sort_by_key(|line| position(&line.product));
        for part in &parts[1..] {
            let alike = match primary.state {
                HoldState::Held => part.state == HoldState::Held,
                HoldState::Confirmed { .. } => matches!(part.state, HoldState::Confirmed { .. }),
                HoldState::Released | HoldState::Expired => part.state == HoldState::Released,
            };
            if !alike {
                verdict.fail(format!(
                    "node {}: hold across groups {key}: its primary part {} is {:?}, its part {} \\
                     in group {} is {:?}",
                    node.id,
                    primary.id,
                    primary.state,
                    part.id,
                    OrderId(part.id.0).group(),
                    part.state
                ));
            }
        }
        // The orders of its other groups, taken out of the node's orders.
        let part_ids: BTreeSet<_> = parts[1..].iter().map(|part| part.id).collect();
        let mut others = Vec::new();
        node.orders.retain(|order| match order.terms.hold {
            Some(hold) if part_ids.contains(&hold) => {
                others.push(order.clone());
                false
            }
            _ => true,
        });
        let HoldState::Confirmed { order: first } = primary.state else {
            if !others.is_empty() {
                verdict.fail(format!(
                    "node {}: hold across groups {key} is {:?} in its primary group, yet groups \\
                     {:?} bought their part",
                    node.id,
                    primary.state,
                    others
                        .iter()
                        .map(|o| o.order.id.group())
                        .collect::<Vec<_>>()
                ));
            }
            if !told_held && primary.state != HoldState::Held {
                // A part refused: its gateway released the primary part while it was placed,
                // or, when that release did not go through, the primary part expired. Never
                // its client's hold, and nothing of it was bought (checked above).
                continue;
            }
            let mut merged = primary;
            merged.key = key.clone();
            merged.lines = lines;
            node.holds.push(merged);
            continue;
        };
        if !told_held {
            verdict.fail(format!(
                "node {}: hold across groups {key} was bought, though its client was never told \\
                 it was held",
                node.id
            ));
        }
        if others.len() != parts.len() - 1 {
            verdict.fail(format!(
                "node {}: hold across groups {key} is bought in its primary group and in {} of \\
                 its {} other groups",
                node.id,
                others.len(),
                parts.len() - 1
            ));
        }
        let Some(position) = node.orders.iter().position(|o| o.order.id == first) else {
            verdict.fail(format!(
                "node {}: hold across groups {key} was confirmed as order {first}, which is \\
                 missing",
                node.id
            ));
            continue;
        };
        let first = node.orders.remove(position);
        let mut merged = primary;
        merged.key = key.clone();
        merged.lines = lines;
        let requested: Vec<(String, u64)> = merged
            .lines
            .iter()
            .map(|line| (line.product.clone(), u64::from(line.quantity)))
            .collect();
        let order_key = first.order.key.clone();
        let cancelled_at_ms = first.terms.cancelled_at_ms;
        let mut orders = vec![(first.order.clone(), first.lines())];
        orders.extend(others.iter().map(|o| (o.order.clone(), o.lines())));
        let (order, lines) = merged_order(&order_key, &requested, orders);
        node.orders.push(OrderWithTerms {
            order,
            terms: OrderTerms {
                lines,
                hold: Some(merged.id),
                cancelled_at_ms,
            },
        });
        node.holds.push(merged);
    }
    node.holds.sort_by_key(|hold| hold.id);
}
