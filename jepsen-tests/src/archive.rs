//! The order archive under faults: PostgreSQL runs beside the cluster, the nemesis may crash it
//! (`postgres` fault), and after the run the archive must hold exactly the orders of the final
//! state, each once, with the same fields, the lines of every order of several lines
//! (`flashstock_order_lines`), and one cancellation event per cancelled order
//! (`flashstock_order_events`), at the time the order was cancelled.

use std::collections::BTreeMap;
use std::time::Duration;

use flashstock_api::{Order, OrderId, OrderWithTerms};
use flashstock_deploy::local::LocalCluster;

use crate::checker::{Invariant, NodeState, Verdict};
use crate::history::History;

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

/// One line of an archived order of several lines: `(product, quantity, unit price)`.
pub type ArchivedLine = (String, u32, u64);

/// What the archive holds: its orders, the lines of its orders of several lines, and its
/// cancellation events (the time of each, per order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Archived {
    pub orders: BTreeMap<OrderId, ArchivedOrder>,
    /// By order and line number.
    pub lines: BTreeMap<(OrderId, u32), ArchivedLine>,
    /// Per order, the times of its `cancelled` events (one, if any).
    pub cancellations: BTreeMap<OrderId, Vec<u64>>,
}

impl Archived {
    /// What the archive should hold for `orders`: each order, the lines of those of several,
    /// and an event per cancelled one.
    pub fn of(orders: &[OrderWithTerms]) -> Archived {
        let mut archived = Archived::default();
        for order in orders {
            let id = order.order.id;
            archived.orders.insert(id, ArchivedOrder::of(&order.order));
            if order.terms.lines.len() > 1 {
                for (at, line) in order.terms.lines.iter().enumerate() {
                    let line = (line.product.clone(), line.quantity, line.price_cents);
                    archived.lines.insert((id, at as u32), line);
                }
            }
            if let Some(at) = order.terms.cancelled_at_ms {
                archived.cancellations.insert(id, vec![at]);
            }
        }
        archived
    }
}

/// Wait until the leader of every group reports an empty archive backlog.
pub async fn wait_drained(cluster: &LocalCluster, timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    for group in 0..cluster.groups {
        wait_group_drained(cluster, group, deadline, timeout).await?;
    }
    Ok(())
}

/// [`wait_drained`] for Raft group `group`, by `deadline`.
async fn wait_group_drained(
    cluster: &LocalCluster,
    group: u16,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<(), String> {
    let client = cluster.voter_client().for_group(group);
    let voters = cluster.voter_ids();
    let mut last = String::from("no answer");
    loop {
        let leader = cluster
            .wait_for_group_leader_among(group, &voters, Duration::from_secs(5))
            .await;
        if let Ok(leader) = leader {
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
            return Err(format!(
                "archive of group {group} not drained within {timeout:?}: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every row of the archive: orders, lines, cancellation events.
pub async fn read(url: &str) -> Result<Archived, String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connecting to the archive: {e}"))?;
    let connection = tokio::spawn(connection);
    let read = read_tables(&client).await;
    connection.abort();
    read.map_err(|e| format!("reading the archive: {e}"))
}

async fn read_tables(client: &tokio_postgres::Client) -> Result<Archived, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT order_id, idempotency_key, product, quantity, unit_price_cents, customer,
                    (extract(epoch FROM committed_at) * 1000)::bigint
               FROM flashstock_orders",
            &[],
        )
        .await?;
    let orders = rows
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
        .collect();
    let rows = client
        .query(
            "SELECT order_id, line, product, quantity, unit_price_cents
               FROM flashstock_order_lines",
            &[],
        )
        .await?;
    let lines = rows
        .iter()
        .map(|row| {
            let at = (
                OrderId(row.get::<_, i64>(0) as u64),
                row.get::<_, i32>(1) as u32,
            );
            let line = (
                row.get(2),
                row.get::<_, i32>(3) as u32,
                row.get::<_, i64>(4) as u64,
            );
            (at, line)
        })
        .collect();
    let rows = client
        .query(
            "SELECT order_id, (extract(epoch FROM happened_at) * 1000)::bigint
               FROM flashstock_order_events WHERE kind = 'cancelled' ORDER BY position",
            &[],
        )
        .await?;
    let mut cancellations: BTreeMap<OrderId, Vec<u64>> = BTreeMap::new();
    for row in &rows {
        let id = OrderId(row.get::<_, i64>(0) as u64);
        cancellations
            .entry(id)
            .or_default()
            .push(row.get::<_, i64>(1) as u64);
    }
    Ok(Archived {
        orders,
        lines,
        cancellations,
    })
}

/// Read the archive until it holds an event for every cancellation of `orders` (or the
/// timeout passes), and return the last read. The leader's backlog counts orders only, so a
/// cancellation after the last order can still be on its way when the backlog reads 0.
pub async fn read_caught_up(
    url: &str,
    orders: &[OrderWithTerms],
    timeout: Duration,
) -> Result<Archived, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let cancelled = orders.iter().filter(|o| o.is_cancelled()).count();
    loop {
        let archived = read(url).await?;
        let events: usize = archived.cancellations.values().map(Vec::len).sum();
        if events >= cancelled || tokio::time::Instant::now() > deadline {
            return Ok(archived);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Invariant 9: the archive holds exactly the orders of the final state (no gap, nothing extra,
/// same fields), their lines and their cancellations, and so every confirmed order exactly once.
pub fn archive_exactly_once(
    history: &History,
    nodes: &[NodeState],
    archived: &Archived,
) -> Invariant {
    let mut verdict = Verdict::new("archive exactly once");
    let Some(node) = nodes.first() else {
        verdict.fail("no node state to compare with".into());
        return verdict.finish(String::new());
    };
    let expected = Archived::of(&node.orders);
    let state = &expected.orders;
    let archived_orders = &archived.orders;
    for (id, order) in state {
        match archived_orders.get(id) {
            None => verdict.fail(format!("order {id} ({}) is not in the archive", order.key)),
            Some(row) if row != order => verdict.fail(format!(
                "order {id} differs: archive {row:?}, state {order:?}"
            )),
            Some(_) => {}
        }
    }
    for (id, row) in archived_orders {
        if !state.contains_key(id) {
            verdict.fail(format!(
                "archived order {id} ({}) is in no node's state",
                row.key
            ));
        }
    }
    for (at, line) in &expected.lines {
        match archived.lines.get(at) {
            None => verdict.fail(format!(
                "line {} of order {} ({line:?}) is not in the archive",
                at.1, at.0
            )),
            Some(row) if row != line => verdict.fail(format!(
                "line {} of order {} differs: archive {row:?}, state {line:?}",
                at.1, at.0
            )),
            Some(_) => {}
        }
    }
    for (at, row) in &archived.lines {
        if !expected.lines.contains_key(at) {
            verdict.fail(format!(
                "archived line {} of order {} ({row:?}) is no line of an order of several \
                 lines in the state",
                at.1, at.0
            ));
        }
    }
    for (id, times) in &expected.cancellations {
        match archived.cancellations.get(id) {
            None => verdict.fail(format!(
                "the cancellation of order {id} (at {times:?}) is not in the archive"
            )),
            Some(rows) if rows != times => verdict.fail(format!(
                "order {id}: archived cancellations at {rows:?}, the state has it cancelled at \
                 {times:?}"
            )),
            Some(_) => {}
        }
    }
    for (id, rows) in &archived.cancellations {
        if !expected.cancellations.contains_key(id) {
            verdict.fail(format!(
                "the archive has order {id} cancelled at {rows:?}; the state has it standing"
            ));
        }
    }
    let mut confirmed = 0;
    for op in &history.ops {
        if let Some(order) = op.placed_order() {
            confirmed += 1;
            if !archived_orders.contains_key(&order.id) {
                verdict.fail(format!(
                    "confirmed order {} ({}) is not in the archive",
                    order.id, order.key
                ));
            }
        }
    }
    let events: usize = archived.cancellations.values().map(Vec::len).sum();
    verdict.finish(format!(
        "{} archived rows, {} lines and {events} cancellations against {} orders of node {}; \
         {confirmed} confirmations found",
        archived_orders.len(),
        archived.lines.len(),
        state.len(),
        node.id
    ))
}

#[cfg(test)]
mod tests {
    use flashstock_api::{OrderLine, OrderTerms};

    use super::*;

    fn order(index: u64, key: &str) -> OrderWithTerms {
        OrderWithTerms {
            order: Order {
                id: OrderId::new(index, 0),
                key: key.into(),
                product: "p".into(),
                quantity: 1,
                customer: None,
                price_cents: 100,
                remaining: 0,
                placed_at_ms: 5,
                token: None,
            },
            terms: OrderTerms::default(),
        }
    }

    /// An order of two lines (`p` x1, `q` x2), cancelled at `cancelled_at_ms` if given.
    fn cart(index: u64, key: &str, cancelled_at_ms: Option<u64>) -> OrderWithTerms {
        let line = |product: &str, quantity| OrderLine {
            product: product.into(),
            quantity,
            price_cents: 100,
            remaining: 0,
            limit_epoch: 0,
        };
        OrderWithTerms {
            terms: OrderTerms {
                lines: vec![line("p", 1), line("q", 2)],
                hold: None,
                cancelled_at_ms,
            },
            ..order(index, key)
        }
    }

    fn node(orders: Vec<OrderWithTerms>) -> NodeState {
        NodeState {
            id: 1,
            applied_index: 10,
            products: BTreeMap::new(),
            orders,
            holds: Vec::new(),
        }
    }

    #[test]
    fn the_same_orders_pass() {
        let orders = vec![order(2, "a"), cart(3, "b", Some(9)), cart(4, "c", None)];
        let verdict = archive_exactly_once(
            &History::default(),
            &[node(orders.clone())],
            &Archived::of(&orders),
        );
        assert!(verdict.passed, "{verdict:?}");
    }

    #[test]
    fn a_gap_an_extra_row_and_a_changed_row_fail() {
        let orders = vec![order(2, "a"), order(3, "b"), order(4, "c")];
        let mut archived = Archived::of(&orders[..2]);
        let ghost = order(9, "ghost");
        archived
            .orders
            .insert(ghost.order.id, ArchivedOrder::of(&ghost.order));
        archived
            .orders
            .get_mut(&OrderId::new(2, 0))
            .unwrap()
            .quantity = 2;
        let verdict = archive_exactly_once(&History::default(), &[node(orders)], &archived);
        assert!(!verdict.passed);
        let text = verdict.details.join("\n");
        assert!(text.contains("(c) is not in the archive"), "{text}");
        assert!(text.contains("(ghost) is in no node's state"), "{text}");
        assert!(text.contains("differs"), "{text}");
    }

    #[test]
    fn a_missing_line_and_a_missing_or_extra_cancellation_fail() {
        let orders = vec![cart(3, "b", Some(9)), cart(4, "c", None)];
        let mut archived = Archived::of(&orders);
        archived.lines.remove(&(OrderId::new(4, 0), 1));
        archived.cancellations.remove(&OrderId::new(3, 0));
        archived.cancellations.insert(OrderId::new(4, 0), vec![7]);
        let verdict = archive_exactly_once(&History::default(), &[node(orders)], &archived);
        assert!(!verdict.passed);
        let text = verdict.details.join("\n");
        assert!(text.contains("line 1 of order"), "{text}");
        assert!(text.contains("is not in the archive"), "{text}");
        assert!(text.contains("the state has it standing"), "{text}");
    }
}
