//! The order archive under faults: PostgreSQL runs beside the cluster, the nemesis may crash it
//! (`postgres` fault), and after the run the archive must hold exactly the orders of the final
//! state, each once, with the same fields.

use std::collections::BTreeMap;
use std::time::Duration;

use flashstock_api::{Order, OrderId};
use flashstock_deploy::local::LocalCluster;

use crate::checker::{Invariant, NodeState, Verdict};
use crate::history::{History, OpResult};

/// An archived order, as the archive's table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedOrder {
    pub key: String,
    pub product: String,
    pub quantity: u32,
    pub unit_price_cents: u64,
    pub customer: Option<String>,
    pub committed_at_ms: u64,
}

impl ArchivedOrder {
    pub fn of(order: &Order) -> ArchivedOrder {
        ArchivedOrder {
            key: order.key.clone(),
            product: order.product.clone(),
            quantity: order.quantity,
            unit_price_cents: order.price_cents,
            customer: order.customer.clone(),
            committed_at_ms: order.placed_at_ms,
        }
    }
}

/// Wait until the leader reports an empty archive backlog.
pub async fn wait_drained(cluster: &LocalCluster, timeout: Duration) -> Result<(), String> {
    let client = cluster.voter_client();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::from("no answer");
    loop {
        if let Ok(leader) = cluster.wait_for_leader(Duration::from_secs(5)).await {
            match client.status(&cluster.addr(leader)).await {
                Ok(status) => match status.archive {
                    Some(archive) if archive.backlog == 0 => return Ok(()),
                    Some(archive) => {
                        last = format!(
                            "backlog {}, last error {:?}",
                            archive.backlog, archive.last_error
                        )
                    }
                    None => return Err(format!("leader {leader} reports no archive")),
                },
                Err(e) => last = e.to_string(),
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("archive not drained within {timeout:?}: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every row of the archive, by order id.
pub async fn read(url: &str) -> Result<BTreeMap<OrderId, ArchivedOrder>, String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connecting to the archive: {e}"))?;
    let connection = tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT order_id, idempotency_key, product, quantity, unit_price_cents, customer,
                    (extract(epoch FROM committed_at) * 1000)::bigint
               FROM flashstock_orders",
            &[],
        )
        .await
        .map_err(|e| format!("reading the archive: {e}"));
    connection.abort();
    Ok(rows?
        .iter()
        .map(|row| {
            let id = OrderId(row.get::<_, i64>(0) as u64);
            let order = ArchivedOrder {
                key: row.get(1),
                product: row.get(2),
                quantity: row.get::<_, i32>(3) as u32,
                unit_price_cents: row.get::<_, i64>(4) as u64,
                customer: row.get(5),
                committed_at_ms: row.get::<_, i64>(6) as u64,
            };
            (id, order)
        })
        .collect())
}

/// Invariant 8: the archive holds exactly the orders of the final state (no gap, nothing extra,
/// same fields), and so every confirmed purchase exactly once.
pub fn archive_exactly_once(
    history: &History,
    nodes: &[NodeState],
    archived: &BTreeMap<OrderId, ArchivedOrder>,
) -> Invariant {
    let mut verdict = Verdict::new("archive exactly once");
    let Some(node) = nodes.first() else {
        verdict.fail("no node state to compare with".into());
        return verdict.finish(String::new());
    };
    let state: BTreeMap<OrderId, ArchivedOrder> = node
        .orders
        .iter()
        .map(|order| (order.id, ArchivedOrder::of(order)))
        .collect();
    for (id, order) in &state {
        match archived.get(id) {
            None => verdict.fail(format!("order {id} ({}) is not in the archive", order.key)),
            Some(row) if row != order => verdict.fail(format!(
                "order {id} differs: archive {row:?}, state {order:?}"
            )),
            Some(_) => {}
        }
    }
    for (id, row) in archived {
        if !state.contains_key(id) {
            verdict.fail(format!(
                "archived order {id} ({}) is in no node's state",
                row.key
            ));
        }
    }
    let mut confirmed = 0;
    for op in &history.ops {
        if let OpResult::Confirmed { order, .. } = &op.result {
            confirmed += 1;
            if !archived.contains_key(&order.id) {
                verdict.fail(format!(
                    "confirmed order {} ({}) is not in the archive",
                    order.id, order.key
                ));
            }
        }
    }
    verdict.finish(format!(
        "{} archived rows against {} orders of node {}; {confirmed} confirmations found",
        archived.len(),
        state.len(),
        node.id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(index: u64, key: &str) -> Order {
        Order {
            id: OrderId::new(index, 0),
            key: key.into(),
            product: "p".into(),
            quantity: 1,
            customer: None,
            price_cents: 100,
            remaining: 0,
            placed_at_ms: 5,
            token: None,
        }
    }

    fn node(orders: Vec<Order>) -> NodeState {
        NodeState {
            id: 1,
            applied_index: 10,
            products: BTreeMap::new(),
            orders,
        }
    }

    fn archive_of(orders: &[Order]) -> BTreeMap<OrderId, ArchivedOrder> {
        orders
            .iter()
            .map(|o| (o.id, ArchivedOrder::of(o)))
            .collect()
    }

    #[test]
    fn the_same_orders_pass() {
        let orders = vec![order(2, "a"), order(3, "b")];
        let verdict = archive_exactly_once(
            &History::default(),
            &[node(orders.clone())],
            &archive_of(&orders),
        );
        assert!(verdict.passed, "{verdict:?}");
    }

    #[test]
    fn a_gap_an_extra_row_and_a_changed_row_fail() {
        let orders = vec![order(2, "a"), order(3, "b"), order(4, "c")];
        let mut archived = archive_of(&orders[..2]);
        archived.insert(OrderId::new(9, 0), ArchivedOrder::of(&order(9, "ghost")));
        archived.get_mut(&OrderId::new(2, 0)).unwrap().quantity = 2;
        let verdict = archive_exactly_once(&History::default(), &[node(orders)], &archived);
        assert!(!verdict.passed);
        let text = verdict.details.join("\n");
        assert!(text.contains("(c) is not in the archive"), "{text}");
        assert!(text.contains("(ghost) is in no node's state"), "{text}");
        assert!(text.contains("differs"), "{text}");
    }
}
