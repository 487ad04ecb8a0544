//! The history of a run: every operation a client invoked, with what it learned.
//!
//! A write ends in exactly one of four results, and the checker treats them differently:
//! - [`OpResult::Confirmed`] / [`OpResult::Restocked`] (and, for checkout, [`OpResult::Held`],
//!   [`OpResult::Placed`], [`OpResult::Released`], [`OpResult::Cancelled`]): the cluster said it
//!   was applied;
//! - [`OpResult::Rejected`]: a definite refusal, nothing applied;
//! - [`OpResult::Unavailable`]: definitely not applied (no gateway or leader took it);
//! - [`OpResult::Unknown`]: it may or may not have been applied, even after retrying with the
//!   same idempotency key.
//!
//! Times are milliseconds since the run's [`Clock`] started.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flashstock_api::{HoldDetails, HoldId, Line, Order, OrderId, OrderLineView, ProductDetails};
use serde::Serialize;

/// Milliseconds since the start of a run, shared by the workload, the nemesis and the report.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    pub fn ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// `[  12.345s]`: how log lines of a run are stamped.
pub fn stamp(ms: u64) -> String {
    format!("[{:>8.3}s]", ms as f64 / 1000.0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum OpKind {
    /// A purchase with a fresh key (retried with that same key while the outcome is unknown).
    Purchase,
    /// An already confirmed purchase sent again with its key: must return the same order.
    Resend,
    /// The same purchase sent a second time, concurrently with its [`OpKind::Purchase`] and
    /// with the same key (through the same gateway or another): one order at most, and both
    /// sends must learn the same outcome.
    Twin,
    Restock,
    /// A view of a gateway's local replica.
    View,
    /// A view that waits for everything committed when it started (`consistency=linearizable`).
    LinearView,
    /// Stock held for the client's customer (`POST /v1/holds`), 1 to 3 lines.
    Hold,
    /// A held hold confirmed by its owner: an order of the hold's lines.
    Confirm,
    /// A held hold released by its owner: its stock back to available.
    Release,
    /// A confirmation of a hold the client abandoned, sent after its deadline: must be refused
    /// `hold_expired`.
    LateConfirm,
    /// A cart of 2 or 3 products bought at once (`POST /v1/checkout`): all lines or none.
    Cart,
    /// A cancellation of one of the client's orders by its owner.
    Cancel,
    /// A cancellation, with a new key, of an order the client cancelled before: must be refused
    /// `already_cancelled`.
    Recancel,
}

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Purchase => "purchase",
            OpKind::Resend => "resend",
            OpKind::Twin => "twin",
            OpKind::Restock => "restock",
            OpKind::View => "view",
            OpKind::LinearView => "linear-view",
            OpKind::Hold => "hold",
            OpKind::Confirm => "confirm",
            OpKind::Release => "release",
            OpKind::LateConfirm => "late-confirm",
            OpKind::Cart => "cart",
            OpKind::Cancel => "cancel",
            OpKind::Recancel => "recancel",
        }
    }

    /// Whether the kind places an order under its own key when it succeeds: a purchase (and its
    /// twin), a cart, a hold's confirmation.
    pub fn places_order(self) -> bool {
        matches!(
            self,
            OpKind::Purchase | OpKind::Twin | OpKind::Cart | OpKind::Confirm | OpKind::LateConfirm
        )
    }

    /// Whether the kind acts on a hold the client holds (by its id and token).
    pub fn acts_on_hold(self) -> bool {
        matches!(
            self,
            OpKind::Confirm | OpKind::Release | OpKind::LateConfirm
        )
    }

    /// Whether the kind cancels an order.
    pub fn cancels(self) -> bool {
        matches!(self, OpKind::Cancel | OpKind::Recancel)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum OpResult {
    /// A purchase the cluster confirmed, and whether the gateway marked it as a replay.
    Confirmed { order: Order, replayed: bool },
    /// A restock the cluster confirmed: the product right after it, or `None` for a restock sent
    /// as an item of a bulk request, whose answer says only what the item did.
    Restocked { product: Option<ProductDetails> },
    /// A view: the product as the gateway's replica had it, and the log index the replica had
    /// applied (`None` in hand-made histories that do not say).
    Viewed {
        product: ProductDetails,
        applied_index: Option<u64>,
        /// The gateway that answered and the staleness it declared (`None` in hand-made
        /// histories that do not say).
        #[serde(skip_serializing_if = "Option::is_none")]
        served_by: Option<ServedBy>,
    },
    /// A hold the cluster placed (or, `replayed`, had placed under the same key).
    Held { hold: HoldDetails, replayed: bool },
    /// An order of one or more lines the cluster placed: a cart, or a hold confirmed. `order`
    /// holds [`Order`]'s fields (those of the first line); `lines` every line.
    Placed {
        order: Order,
        lines: Vec<OrderLineView>,
        hold: Option<HoldId>,
        replayed: bool,
    },
    /// A hold the cluster released.
    Released { hold: HoldDetails, replayed: bool },
    /// An order the cluster cancelled, and the log's time it did.
    Cancelled {
        order: OrderId,
        cancelled_at_ms: Option<u64>,
        lines: Vec<OrderLineView>,
        replayed: bool,
    },
    /// Definitely not applied: a committed rejection or a refusal at the edge.
    Rejected { code: String, message: String },
    /// Definitely not applied: no gateway or leader took it within the retry budget.
    Unavailable { message: String },
    /// Maybe applied: the answer was lost on every attempt that might have applied it.
    Unknown { message: String },
}

impl OpResult {
    /// A short label for counting: `confirmed`, `rejected:<code>`, `unavailable`, `unknown`.
    pub fn label(&self) -> String {
        match self {
            OpResult::Confirmed { .. }
            | OpResult::Restocked { .. }
            | OpResult::Viewed { .. }
            | OpResult::Held { .. }
            | OpResult::Placed { .. }
            | OpResult::Released { .. }
            | OpResult::Cancelled { .. } => "ok".into(),
            OpResult::Rejected { code, .. } => format!("rejected:{code}"),
            OpResult::Unavailable { .. } => "unavailable".into(),
            OpResult::Unknown { .. } => "unknown".into(),
        }
    }

    /// True when the operation was definitely not applied.
    pub fn is_definitely_not_applied(&self) -> bool {
        matches!(
            self,
            OpResult::Rejected { .. } | OpResult::Unavailable { .. }
        )
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, OpResult::Unknown { .. })
    }

    /// The code of a rejection, if this is one.
    pub fn rejection(&self) -> Option<&str> {
        match self {
            OpResult::Rejected { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether this is a rejection the state machine committed for the key (its final
    /// outcome).
    pub fn is_committed_rejection(&self) -> bool {
        self.rejection().is_some_and(is_committed_rejection)
    }
}

/// Which gateway answered a view, and how stale it said the view may be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServedBy {
    /// The gateway's public base URL.
    pub gateway: String,
    /// Its `x-staleness-ms` header, verbatim: milliseconds, or `unknown`; `None` if absent.
    pub staleness: Option<String>,
}

/// Rejections that the state machine commits for a key: the key's final outcome. A retry
/// with the key, or an earlier attempt with it that commits later, gets the same answer.
/// Other refusals (bad input at the edge, a bad token) are about one request only.
pub fn is_committed_rejection(code: &str) -> bool {
    flashstock_api::ErrorCode::parse(code).is_committed_rejection()
}

/// One operation of one client, from its first call to its final result.
#[derive(Debug, Clone, Serialize)]
pub struct OpRecord {
    /// The client task that ran it (`usize::MAX` for the admin task).
    pub client: usize,
    pub kind: OpKind,
    /// The idempotency key of a write.
    pub key: Option<String>,
    pub product: String,
    pub quantity: u64,
    pub invoked_ms: u64,
    pub completed_ms: u64,
    /// Calls of the client library (each of which may try several gateways).
    pub attempts: u32,
    /// Calls that ended in "outcome unknown" (then retried with the same key).
    pub unknown_attempts: u32,
    /// For a resend: the order the first confirmation returned.
    pub expected: Option<Order>,
    /// What a checkout operation is about (empty for the others).
    #[serde(skip_serializing_if = "Target::is_empty")]
    pub target: Target,
    pub result: OpResult,
}

/// What a checkout operation is about: its lines, its customer, the hold or order it acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Target {
    /// A hold's or a cart's lines; for an operation on a hold, the hold's lines; for a
    /// cancellation, the order's lines. Empty for a purchase, whose `product` and `quantity`
    /// are its one line.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<Line>,
    /// The customer named by the request (a hold, a cart, a purchase of a limited product).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// The hold a confirmation or release acts on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldId>,
    /// The order a cancellation acts on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderId>,
}

impl Target {
    pub fn is_empty(&self) -> bool {
        self == &Target::default()
    }
}

impl OpRecord {
    pub fn latency_ms(&self) -> u64 {
        self.completed_ms.saturating_sub(self.invoked_ms)
    }

    /// The lines the operation asks for: its target's, or its one product and quantity.
    pub fn lines(&self) -> Vec<(String, u64)> {
        if self.target.lines.is_empty() {
            vec![(self.product.clone(), self.quantity)]
        } else {
            self.target
                .lines
                .iter()
                .map(|line| (line.product.clone(), u64::from(line.quantity)))
                .collect()
        }
    }

    /// The order the operation placed, when the cluster confirmed it: a purchase's (its first
    /// send, twin, retry or re-send), a cart's, a confirmed hold's.
    pub fn placed_order(&self) -> Option<&Order> {
        match &self.result {
            OpResult::Confirmed { order, .. } | OpResult::Placed { order, .. } => Some(order),
            _ => None,
        }
    }

    /// The lines of the order the operation placed, as the answer showed them.
    pub fn placed_lines(&self) -> Option<Vec<(String, u64)>> {
        match &self.result {
            OpResult::Confirmed { order, .. } => {
                Some(vec![(order.product.clone(), u64::from(order.quantity))])
            }
            OpResult::Placed { lines, .. } => Some(
                lines
                    .iter()
                    .map(|line| (line.product.clone(), u64::from(line.quantity)))
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// Every operation of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct History {
    pub ops: Vec<OpRecord>,
}

impl History {
    pub fn extend(&mut self, ops: Vec<OpRecord>) {
        self.ops.extend(ops);
        self.ops.sort_by_key(|op| (op.invoked_ms, op.client));
    }

    pub fn of_kind(&self, kind: OpKind) -> impl Iterator<Item = &OpRecord> {
        self.ops.iter().filter(move |op| op.kind == kind)
    }

    /// The first sends of each purchase key: the purchase and its twin, if any (not the
    /// re-sends of an already confirmed key).
    pub fn sends_by_key(&self) -> BTreeMap<&str, Vec<&OpRecord>> {
        let mut sends: BTreeMap<&str, Vec<&OpRecord>> = BTreeMap::new();
        let firsts = self
            .ops
            .iter()
            .filter(|op| matches!(op.kind, OpKind::Purchase | OpKind::Twin));
        for op in firsts {
            if let Some(key) = op.key.as_deref() {
                sends.entry(key).or_default().push(op);
            }
        }
        sends
    }

    /// Every send of each key that places an order when it succeeds: purchases and their twins
    /// (not the re-sends of an already confirmed key), carts, hold confirmations.
    pub fn order_sends(&self) -> BTreeMap<&str, Vec<&OpRecord>> {
        let mut sends: BTreeMap<&str, Vec<&OpRecord>> = BTreeMap::new();
        for op in self.ops.iter().filter(|op| op.kind.places_order()) {
            if let Some(key) = op.key.as_deref() {
                sends.entry(key).or_default().push(op);
            }
        }
        sends
    }

    /// Views of either consistency.
    pub fn views(&self) -> impl Iterator<Item = &OpRecord> {
        self.ops
            .iter()
            .filter(|op| matches!(op.kind, OpKind::View | OpKind::LinearView))
    }

    /// Counts of results per kind: `(kind, label) -> count`.
    pub fn counts(&self) -> BTreeMap<(OpKind, String), usize> {
        let mut counts = BTreeMap::new();
        for op in &self.ops {
            *counts.entry((op.kind, op.result.label())).or_default() += 1;
        }
        counts
    }

    /// Purchases invoked at or after `from_ms` (and before `until_ms`) that were confirmed.
    pub fn confirmed_purchases_invoked_between(&self, from_ms: u64, until_ms: u64) -> usize {
        self.of_kind(OpKind::Purchase)
            .filter(|op| (from_ms..until_ms).contains(&op.invoked_ms))
            .filter(|op| matches!(op.result, OpResult::Confirmed { .. }))
            .count()
    }
}

/// An operation of `kind` on product `p`, one item, key `k`, one attempt, ended with `result`:
/// for tests.
#[cfg(test)]
pub(crate) fn test_op(
    kind: OpKind,
    invoked_ms: u64,
    completed_ms: u64,
    result: OpResult,
) -> OpRecord {
    OpRecord {
        client: 0,
        kind,
        key: Some("k".into()),
        product: "p".into(),
        quantity: 1,
        invoked_ms,
        completed_ms,
        attempts: 1,
        unknown_attempts: 0,
        expected: None,
        target: Default::default(),
        result,
    }
}

/// A view of product `p` (10 in stock, none sold), answered at `completed_ms`: for tests.
#[cfg(test)]
pub(crate) fn test_view(
    invoked_ms: u64,
    completed_ms: u64,
    applied_index: Option<u64>,
    served_by: Option<ServedBy>,
) -> OpRecord {
    let viewed = OpResult::Viewed {
        product: flashstock_api::Product {
            id: "p".into(),
            name: "P".into(),
            price_cents: 1000,
            stock: 10,
            initial_stock: 10,
            restocked: 0,
            sold: 0,
        }
        .into(),
        applied_index,
        served_by,
    };
    OpRecord {
        key: None,
        quantity: 0,
        ..test_op(OpKind::View, invoked_ms, completed_ms, viewed)
    }
}
