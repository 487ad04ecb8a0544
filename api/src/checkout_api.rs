//! Public API (`/v1`, JSON) of checkout (cluster version 2): the bodies and answers of the
//! hold, cart and cancellation routes, and the product and order views that show what checkout
//! adds (stock held, limits per customer, order lines, cancellations).
//!
//! Every view here is a superset of the view of the release before: it keeps each field the
//! older type ([`crate::ProductView`], [`crate::OrderView`], [`crate::StockEvent`], ...) has,
//! with the same name and meaning, and only adds fields, so an older client reads it unchanged.
//!
//! Holds, like orders, are private: the answer that places one returns its token, and only a
//! request that shows it ([`crate::ORDER_TOKEN_PARAM`] or [`crate::ORDER_TOKEN_HEADER`]) reads,
//! confirms or releases it. Without it, or with a wrong one, the answer is `unknown_hold`, as
//! for a hold that does not exist.

use serde::{Deserialize, Serialize};

use crate::{Hold, HoldId, HoldState, Line, Order, OrderId, OrderLine, OrderTerms};

/// The body of `POST /v1/holds` and `POST /v1/checkout`: the lines of a cart (1 to
/// `checkout.cart_lines_max`, one per product) and, optionally, the shop's reference of the
/// buyer. A product with a limit per customer requires `customer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartRequest {
    pub lines: Vec<Line>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
}

/// One line of a hold as shown: a quantity of a product at the unit price the hold keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldLineView {
    pub product: String,
    pub quantity: u32,
    pub price_cents: u64,
}

/// Where a hold is in its life, on the wire: `held`, `confirmed`, `released`, `expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    /// The stock is held until `expires_at_ms`.
    Held,
    /// It became the order `order`.
    Confirmed,
    /// Released: its stock is available again.
    Released,
    /// Neither confirmed nor released in time: its stock is available again.
    Expired,
}

impl From<HoldState> for HoldStatus {
    fn from(state: HoldState) -> HoldStatus {
        match state {
            HoldState::Held => HoldStatus::Held,
            HoldState::Confirmed { .. } => HoldStatus::Confirmed,
            HoldState::Released => HoldStatus::Released,
            HoldState::Expired => HoldStatus::Expired,
        }
    }
}

/// A hold as its owner reads it: [`Hold`] without its idempotency key and its token.
///
/// A hold past `expires_at_ms` that no entry has expired yet still reads `held` for a moment
/// (holds expire when the log's time passes their deadline, within about a quarter second on an
/// idle cluster); it can no longer be confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldDetails {
    pub id: HoldId,
    pub status: HoldStatus,
    /// The order it became, once `confirmed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderId>,
    pub customer: Option<String>,
    pub lines: Vec<HoldLineView>,
    /// The log's time when it was placed, milliseconds since the Unix epoch.
    pub held_at_ms: u64,
    /// From then on it is expired, unless confirmed or released before.
    pub expires_at_ms: u64,
    /// The log's time of its last change of status.
    pub changed_at_ms: u64,
    /// A hold whose products lie in several Raft groups, once `confirmed`: the orders of its
    /// other groups, one per group (`order` is its primary group's, the lowest). Bought
    /// together: all of them or none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_orders: Vec<OrderId>,
}

impl From<&Hold> for HoldDetails {
    fn from(hold: &Hold) -> HoldDetails {
        HoldDetails {
            id: hold.id,
            status: hold.state.into(),
            order: match hold.state {
                HoldState::Confirmed { order } => Some(order),
                _ => None,
            },
            customer: hold.customer.clone(),
            lines: hold
                .lines
                .iter()
                .map(|line| HoldLineView {
                    product: line.product.clone(),
                    quantity: line.quantity,
                    price_cents: line.price_cents,
                })
                .collect(),
            held_at_ms: hold.held_at_ms,
            expires_at_ms: hold.expires_at_ms,
            changed_at_ms: hold.changed_at_ms,
            other_orders: Vec::new(),
        }
    }
}

/// The answer of `POST /v1/holds` (201): the hold, the token that reads, confirms and
/// releases it, and whether this answers a retry of a request already applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldResponse {
    pub hold: HoldDetails,
    /// The hold's capability: 32 lowercase hex digits. The order it becomes has the same token.
    pub token: String,
    pub replayed: bool,
}

/// The answer of `GET /v1/holds/{id}`: the hold and the applied index of the replica that
/// served it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldView {
    pub applied_index: u64,
    pub hold: HoldDetails,
}

/// The answer of `POST /v1/holds/{id}/release` and `POST /v1/admin/holds/{id}/release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldReleased {
    pub hold: HoldDetails,
    pub replayed: bool,
}

/// One line of an order as shown: [`OrderLine`] without its limit bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLineView {
    pub product: String,
    pub quantity: u32,
    pub price_cents: u64,
    /// The product's available stock right after the order was placed.
    pub remaining: u64,
}

impl From<&OrderLine> for OrderLineView {
    fn from(line: &OrderLine) -> OrderLineView {
        OrderLineView {
            product: line.product.clone(),
            quantity: line.quantity,
            price_cents: line.price_cents,
            remaining: line.remaining,
        }
    }
}

/// Whether an order stands: `placed` or `cancelled`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    #[default]
    Placed,
    /// Cancelled: its stock went back to available.
    Cancelled,
}

impl OrderStatus {
    pub fn of(terms: &OrderTerms) -> OrderStatus {
        if terms.cancelled_at_ms.is_some() {
            OrderStatus::Cancelled
        } else {
            OrderStatus::Placed
        }
    }
}

/// An order as the answer to a write shows it (a checkout, a confirmed hold, a cancellation):
/// every field of [`Order`] (those of its first line for `product`, `quantity`, `price_cents`
/// and `remaining`), and its lines, status and hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderWithLines {
    pub id: OrderId,
    /// The idempotency key of the request that placed it (echoed to its sender only).
    pub key: String,
    pub product: String,
    pub quantity: u32,
    pub customer: Option<String>,
    pub price_cents: u64,
    pub remaining: u64,
    pub placed_at_ms: u64,
    /// The order's capability; for an order confirmed from a hold, the hold's token.
    pub token: Option<String>,
    /// Every line, in the cart's order; at least one.
    pub lines: Vec<OrderLineView>,
    pub status: OrderStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at_ms: Option<u64>,
    /// The hold it was confirmed from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldId>,
}

impl OrderWithLines {
    pub fn new(order: Order, terms: &OrderTerms) -> OrderWithLines {
        let lines = terms.lines_of(&order).iter().map(Into::into).collect();
        OrderWithLines {
            id: order.id,
            key: order.key,
            product: order.product,
            quantity: order.quantity,
            customer: order.customer,
            price_cents: order.price_cents,
            remaining: order.remaining,
            placed_at_ms: order.placed_at_ms,
            token: order.token,
            lines,
            status: OrderStatus::of(terms),
            cancelled_at_ms: terms.cancelled_at_ms,
            hold: terms.hold,
        }
    }
}

/// The answer of `POST /v1/checkout` (201), of a confirmed hold and of a cancellation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderChanged {
    pub order: OrderWithLines,
    /// True when this answers a retry of a request already applied (same idempotency key).
    pub replayed: bool,
    /// A checkout, or a confirmed hold, whose products lie in several Raft groups: the orders
    /// of its other groups, one per group, with `order`'s token (`order` is the one of the
    /// cart's primary group). Bought together: all of them or none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_orders: Vec<OrderWithLines>,
}

/// The body of `PUT /v1/admin/products/{id}/limit`: the new limit per customer, or `null` to
/// remove it (which forgets what customers took: a limit set again counts afresh).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetLimitRequest {
    /// Required, `null` included: a body that leaves it out is refused rather than taken as a
    /// removal.
    #[serde(deserialize_with = "present")]
    pub limit_per_customer: Option<u32>,
}

/// An `Option` field that must be present (`null` for `None`): serde takes a missing `Option`
/// for `None` unless the field has its own deserializer.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    Option::deserialize(deserializer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OrderDetails, OrderView, ProductView, StockEvent};

    fn order() -> Order {
        Order {
            id: OrderId::new(9, 1),
            key: "k".into(),
            product: "mug".into(),
            quantity: 2,
            customer: Some("alice".into()),
            price_cents: 900,
            remaining: 3,
            placed_at_ms: 77,
            token: Some("ab".repeat(16)),
        }
    }

    /// The views only add fields: what a gateway of the release before sends (no `held`, no
    /// lines) still reads, and what this release sends for an order reads as an [`Order`].
    #[test]
    fn views_read_what_the_release_before_sent() {
        let product: ProductView = serde_json::from_str(
            r#"{"applied_index":4,"product":{"id":"mug","name":"Mug","price_cents":900,
                "stock":3,"initial_stock":5,"restocked":0,"sold":2}}"#,
        )
        .unwrap();
        assert_eq!(
            (product.product.held, product.product.limit_per_customer),
            (0, None)
        );
        assert!(product.product.is_conserved());

        let event: StockEvent =
            serde_json::from_str(r#"{"product":"mug","stock":3,"sold":2,"log_index":4}"#).unwrap();
        assert_eq!((event.held, event.limit_per_customer), (0, None));

        let old = serde_json::json!({"applied_index": 12, "order": {"id": order().id,
            "product": "mug", "quantity": 2, "customer": "alice", "price_cents": 900,
            "remaining": 3, "placed_at_ms": 77}});
        let view: OrderView = serde_json::from_value(old).unwrap();
        assert_eq!(view.order.status, OrderStatus::Placed);
        assert!(view.order.lines.is_empty());

        let now = OrderDetails::from(order());
        assert_eq!(now.lines.len(), 1, "a single purchase shows its one line");
        assert_eq!(now.status, OrderStatus::Placed);

        let placed = OrderWithLines::new(order(), &OrderTerms::default());
        let old: Order = serde_json::from_value(serde_json::to_value(&placed).unwrap()).unwrap();
        assert_eq!(old, order());
    }

    #[test]
    fn a_limit_is_set_or_removed_explicitly() {
        let set: SetLimitRequest = serde_json::from_str(r#"{"limit_per_customer":2}"#).unwrap();
        assert_eq!(set.limit_per_customer, Some(2));
        let removed: SetLimitRequest =
            serde_json::from_str(r#"{"limit_per_customer":null}"#).unwrap();
        assert_eq!(removed.limit_per_customer, None);
        assert!(serde_json::from_str::<SetLimitRequest>("{}").is_err());
    }

    #[test]
    fn cancelled_orders_say_so() {
        let terms = OrderTerms {
            cancelled_at_ms: Some(99),
            ..OrderTerms::default()
        };
        let json = serde_json::to_value(OrderDetails::new(order(), &terms)).unwrap();
        assert_eq!(json["status"], "cancelled");
        assert_eq!(json["cancelled_at_ms"], 99);
        assert_eq!(json["hold"], serde_json::Value::Null);
    }
}
