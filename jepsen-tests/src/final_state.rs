//! Reading the final state of a run from the cluster: the IO half of the checker, whose
//! invariants ([`crate::checker`]) are pure functions of the history and what is read here.
//!
//! [`holds_finished`] waits until no stock is held any more (the last holds expire within the
//! run's short time-to-live, each by an entry of its own); [`settle`] waits until every node
//! has applied the leader's last log index (and the index no longer moves); [`collect`] reads
//! every product, order and hold, with their terms, from every node, voters and gateways alike,
//! through the internal read API.

use std::collections::BTreeMap;
use std::time::Duration;

use flashstock_deploy::local::LocalCluster;

use crate::checker::NodeState;

/// Products read per page.
const PAGE: usize = 1000;

/// Wait until every node has applied the leader's last index, and that index stays put.
/// Returns it.
pub async fn settle(cluster: &LocalCluster, timeout: Duration) -> Result<u64, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut previous = None;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let last = crate::nemesis::wait_recovered(cluster, left).await?;
        if previous == Some(last) {
            return Ok(last);
        }
        previous = Some(last);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait until the leader's products hold nothing any more: every hold of the run confirmed,
/// released or expired, so that no expiry entry lands while the nodes are read. Gives up after
/// `timeout` without an error: stock held with no hold to expire it is the checker's to report
/// ("holds add up"). Returns what is still held at the last reading, `None` if no reading
/// succeeded (a group had no leader, or its leader did not answer, all along).
pub async fn holds_finished(cluster: &LocalCluster, timeout: Duration) -> Option<u64> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut held = None;
    while tokio::time::Instant::now() < deadline {
        if let Some(now) = held_now(cluster, deadline).await {
            held = Some(now);
            if now == 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    held
}

/// What every group's leader says is held, summed; `None` if a group did not answer.
async fn held_now(cluster: &LocalCluster, deadline: tokio::time::Instant) -> Option<u64> {
    let voters = cluster.voter_ids();
    let mut held = 0;
    for group in 0..cluster.groups {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let leader = cluster
            .wait_for_group_leader_among(group, &voters, left)
            .await
            .ok()?;
        let client = cluster.voter_client().for_group(group);
        let page = client
            .products_with_terms(&cluster.addr(leader), None, PAGE)
            .await
            .ok()?;
        held += page.items.iter().map(|p| p.terms.held).sum::<u64>();
    }
    Some(held)
}

/// Read every product, order and hold, with their terms, from every node. `with_holds`: read
/// the holds too (a node of a release before checkout has no route for them). With several
/// groups, a node's state is every group's: products by id, orders and holds by id.
pub async fn collect(cluster: &LocalCluster, with_holds: bool) -> Result<Vec<NodeState>, String> {
    let mut states = Vec::new();
    for id in cluster.nodes.keys().copied() {
        let mut state = NodeState {
            id,
            applied_index: u64::MAX,
            products: BTreeMap::new(),
            orders: Vec::new(),
            holds: Vec::new(),
        };
        for group in 0..cluster.groups {
            collect_group(cluster, group, with_holds, &mut state).await?;
        }
        if cluster.groups > 1 {
            state.orders.sort_by_key(|order| order.order.id);
            state.holds.sort_by_key(|hold| hold.id);
        }
        states.push(state);
    }
    Ok(states)
}

/// Add what node `state.id` holds in Raft group `group` to `state`.
async fn collect_group(
    cluster: &LocalCluster,
    group: u16,
    with_holds: bool,
    state: &mut NodeState,
) -> Result<(), String> {
    let client = cluster.voter_client().for_group(group);
    let id = state.id;
    let addr = cluster.addr(id);
    let failed =
        |what: &str, e: flashstock_client::Error| format!("node {id}, group {group}: {what}: {e}");
    let mut after: Option<String> = None;
    loop {
        let page = client
            .products_with_terms(&addr, after.as_deref(), PAGE)
            .await
            .map_err(|e| failed("products", e))?;
        state.applied_index = state.applied_index.min(page.applied_index);
        let full = page.items.len() == PAGE;
        after = page.items.last().map(|p| p.product.id.clone());
        let products = page.items.into_iter().map(|p| (p.product.id.clone(), p));
        state.products.extend(products);
        if !full {
            break;
        }
    }
    let orders = client
        .all_orders_with_terms(&addr)
        .await
        .map_err(|e| failed("orders", e))?;
    state.orders.extend(orders);
    if with_holds {
        let holds = client
            .all_holds(&addr)
            .await
            .map_err(|e| failed("holds", e))?;
        state.holds.extend(holds);
    }
    Ok(())
}
