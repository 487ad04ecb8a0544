//! Reading the final state of a run from the cluster: the IO half of the checker, whose
//! invariants ([`crate::checker`]) are pure functions of the history and what is read here.
//!
//! [`settle`] waits until every node has applied the leader's last log index (and the index no
//! longer moves); [`collect`] reads every product and every order from every node, voters and
//! gateways alike, through the internal read API.

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

/// Read every product and every order from every node.
pub async fn collect(cluster: &LocalCluster) -> Result<Vec<NodeState>, String> {
    let client = cluster.voter_client();
    let mut states = Vec::new();
    for id in cluster.nodes.keys().copied() {
        let addr = cluster.addr(id);
        let failed = |what: &str, e: flashstock_client::Error| format!("node {id}: {what}: {e}");
        let mut products = BTreeMap::new();
        let mut applied_index = u64::MAX;
        let mut after: Option<String> = None;
        loop {
            let page = client
                .products(&addr, after.as_deref(), PAGE)
                .await
                .map_err(|e| failed("products", e))?;
            applied_index = applied_index.min(page.applied_index);
            let full = page.items.len() == PAGE;
            after = page.items.last().map(|p| p.id.clone());
            products.extend(page.items.into_iter().map(|p| (p.id.clone(), p)));
            if !full {
                break;
            }
        }
        let orders = client
            .all_orders(&addr)
            .await
            .map_err(|e| failed("orders", e))?;
        states.push(NodeState {
            id,
            applied_index,
            products,
            orders,
        });
    }
    Ok(states)
}
