//! Checkout, from cluster version 2 on: carts of several products, holds that keep stock for a
//! buyer while the payment runs, per-customer limits, and cancellations.
//!
//! Everything here is decided by the state machine, in log order, like a purchase: a hold moves
//! stock from available to held for all its lines or for none; it ends confirmed (an order),
//! released, or expired by the log's own clock. The records are versioned by where they are (see
//! docs/ARCHITECTURE.md, "Versions and upgrades"): the product and order records of the release
//! before are kept byte for byte, and what checkout adds to them ([`ProductTerms`],
//! [`OrderTerms`]) follows them only when it is not empty, so that a record no checkout command
//! touched reads the same in both releases.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Order, OrderId, Product};

/// Most lines (distinct products) one cart or hold may carry, whatever the configuration says.
pub const CART_LINES_LIMIT: usize = 100;
/// Shortest time-to-live of a hold.
pub const HOLD_TTL_MS_MIN: u64 = 1_000;
/// Longest time-to-live of a hold: one hour.
pub const HOLD_TTL_MS_MAX: u64 = 3_600_000;

/// One line of a cart or a hold: a quantity of one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub product: String,
    pub quantity: u32,
}

/// The id of a hold: like an [`OrderId`], the position of the command that placed it
/// (incarnation, log index, slot), so it is unique, ordered like the log and the same on every
/// replica. A hold and the order it becomes have different ids: the order's is the confirmation's
/// position, so orders stay in log order for the archive's cursor.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct HoldId(pub u64);

impl From<OrderId> for HoldId {
    fn from(position: OrderId) -> HoldId {
        HoldId(position.0)
    }
}

impl fmt::Display for HoldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a hold is in its life. Only [`HoldState::Held`] keeps stock; the others are final.
/// Externally tagged (no `#[serde(tag)]`): it travels in bincode inside outcomes and records,
/// which cannot decode an internally tagged enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    /// The stock is held until `expires_at_ms`.
    Held,
    /// Confirmed: it became the order `order`.
    Confirmed { order: OrderId },
    /// Released by its owner or an admin: the stock went back to available.
    Released,
    /// Neither confirmed nor released in time: the stock went back to available.
    Expired,
}

impl HoldState {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Held => "held",
            HoldState::Confirmed { .. } => "confirmed",
            HoldState::Released => "released",
            HoldState::Expired => "expired",
        }
    }
}

/// One line of a hold, with the unit price when the hold was placed (the price the order gets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldLine {
    pub product: String,
    pub quantity: u32,
    pub price_cents: u64,
    /// The product's limit epoch ([`ProductTerms::limit_epoch`]) this line counts against for
    /// its customer; 0: the product had no limit, nothing was counted.
    pub limit_epoch: u32,
}

/// Stock held for a customer while it pays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub id: HoldId,
    /// The idempotency key of the command that placed it.
    pub key: String,
    pub customer: Option<String>,
    pub lines: Vec<HoldLine>,
    /// The log's time when it was placed.
    pub held_at_ms: u64,
    /// The log's time from which it is expired, unless confirmed or released before.
    pub expires_at_ms: u64,
    pub state: HoldState,
    /// The log's time of the last change of `state`.
    pub changed_at_ms: u64,
    /// The capability to read, confirm and release the hold through the public API, like an
    /// order's ([`Order::token`]). `None`: placed through the internal API; only an admin may
    /// confirm or release it.
    pub token: Option<String>,
}

/// One line of an order, with its unit price and the stock left right after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub product: String,
    pub quantity: u32,
    pub price_cents: u64,
    pub remaining: u64,
    /// As [`HoldLine::limit_epoch`]: a cancellation gives the customer back what was counted.
    pub limit_epoch: u32,
}

/// What an order's record holds beyond [`Order`]: empty for a single purchase never cancelled,
/// whose record is then the same as in the release before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTerms {
    /// Every line of the order, in the cart's order; empty for an order of one line that counts
    /// against no limit, which [`Order`]'s own fields describe. When not empty, [`Order`]'s
    /// `product`, `quantity`, `price_cents` and `remaining` are those of the first line.
    pub lines: Vec<OrderLine>,
    /// The hold it was confirmed from, if any.
    pub hold: Option<HoldId>,
    /// When it was cancelled (the log's time); `None` while it stands.
    pub cancelled_at_ms: Option<u64>,
}

impl OrderTerms {
    pub fn is_empty(&self) -> bool {
        self == &OrderTerms::default()
    }

    /// The order's lines: [`OrderTerms::lines`], or the one line of `order`'s own fields.
    pub fn lines_of(&self, order: &Order) -> Vec<OrderLine> {
        if self.lines.is_empty() {
            vec![OrderLine {
                product: order.product.clone(),
                quantity: order.quantity,
                price_cents: order.price_cents,
                remaining: order.remaining,
                limit_epoch: 0,
            }]
        } else {
            self.lines.clone()
        }
    }
}

/// What a product's record holds beyond [`Product`]: empty (all zero) for a product no checkout
/// command touched, whose record is then the same as in the release before. With holds, a
/// product's counters keep `initial_stock + restocked == stock + held + sold`: [`Product::stock`]
/// is what is available.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductTerms {
    /// Items held by holds not confirmed, released or expired yet.
    pub held: u64,
    /// Most items one customer may hold and buy of this product, over every hold and order not
    /// cancelled. `None`: no limit. Purchases of a product with a limit must name the customer.
    pub limit_per_customer: Option<u32>,
    /// Counts each time a limit is set on a product that had none. What customers took is
    /// counted per epoch: removing a limit forgets the counts, and a line counted in an earlier
    /// epoch gives nothing back to a later one's.
    pub limit_epoch: u32,
    /// Items returned to available by cancelled orders (they left `sold`).
    pub cancelled: u64,
}

impl ProductTerms {
    pub fn is_empty(&self) -> bool {
        self == &ProductTerms::default()
    }

    /// Whether the conservation law holds for `product` with these terms.
    pub fn conserves(&self, product: &Product) -> bool {
        let supplied = product.initial_stock.checked_add(product.restocked);
        let accounted =
            (product.stock.checked_add(self.held)).and_then(|n| n.checked_add(product.sold));
        supplied.is_some() && supplied == accounted
    }
}

/// Public API: a product as shown to buyers and admins: its counters, what is held, its limit.
/// JSON only (its optional field is skipped when absent, which bincode cannot decode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductDetails {
    pub id: String,
    pub name: String,
    pub price_cents: u64,
    /// Items available to buy or hold.
    pub stock: u64,
    pub initial_stock: u64,
    pub restocked: u64,
    /// Items sold by orders not cancelled.
    pub sold: u64,
    /// Items held for buyers who are paying. `initial_stock + restocked == stock + held + sold`.
    #[serde(default)]
    pub held: u64,
    /// Most items one customer may buy (held and bought together), if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_per_customer: Option<u32>,
}

impl ProductDetails {
    pub fn new(product: Product, terms: ProductTerms) -> ProductDetails {
        ProductDetails {
            id: product.id,
            name: product.name,
            price_cents: product.price_cents,
            stock: product.stock,
            initial_stock: product.initial_stock,
            restocked: product.restocked,
            sold: product.sold,
            held: terms.held,
            limit_per_customer: terms.limit_per_customer,
        }
    }

    /// Whether the conservation law holds: `initial_stock + restocked == stock + held + sold`.
    pub fn is_conserved(&self) -> bool {
        let supplied = self.initial_stock.checked_add(self.restocked);
        let accounted = (self.stock.checked_add(self.held)).and_then(|n| n.checked_add(self.sold));
        supplied.is_some() && supplied == accounted
    }
}

impl From<Product> for ProductDetails {
    fn from(product: Product) -> ProductDetails {
        ProductDetails::new(product, ProductTerms::default())
    }
}
