//! The deliberate bug of [`crate::UnsafeFaults::ack_before_commit`], compiled only with the
//! `unsafe-faults` feature (which only the fault-injection harness enables): a purchase is
//! queued, and confirmed at once with an order the cluster never assigned (id 0), before
//! anything is committed. It exists to prove that the harness's checker catches a lost
//! confirmed purchase.

use flashstock_api::{Command, Op, Order, OrderId, Outcome};

use super::{Client, ForwardError, Forwarded, Forwarder};

/// Submit `command`; a purchase is answered as confirmed before it is even sent.
pub(super) async fn submit(
    forwarder: &Forwarder,
    client: Client,
    command: Command,
) -> Result<Forwarded, ForwardError> {
    let Op::Purchase {
        product,
        quantity,
        customer,
        token,
    } = command.op.clone()
    else {
        return forwarder.submit_and_wait(client, command).await;
    };
    let order = Order {
        id: OrderId(0),
        key: command.key.clone(),
        product,
        quantity,
        customer,
        price_cents: 0,
        remaining: 0,
        placed_at_ms: crate::now_ms(),
        token,
    };
    let forwarder = forwarder.clone();
    tokio::spawn(async move {
        let _ = forwarder.submit_and_wait(client, command).await;
    });
    Ok(Forwarded {
        outcome: Outcome::Purchased(order),
        replayed: false,
    })
}
