//! The history of a run: every operation a client invoked, with what it learned.
//!
//! A write ends in exactly one of four results, and the checker treats them differently:
//! - [`OpResult::Confirmed`] / [`OpResult::Restocked`]: the cluster said it was applied;
//! - [`OpResult::Rejected`]: a definite refusal, nothing applied;
//! - [`OpResult::Unavailable`]: definitely not applied (no gateway or leader took it);
//! - [`OpResult::Unknown`]: it may or may not have been applied, even after retrying with the
//!   same idempotency key.
//!
//! Times are milliseconds since the run's [`Clock`] started.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flashstock_api::{Order, ProductDetails};
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
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum OpResult {
    /// A purchase the cluster confirmed, and whether the gateway marked it as a replay.
    Confirmed { order: Order, replayed: bool },
    /// A restock the cluster confirmed: the product right after it.
    Restocked { product: ProductDetails },
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
            OpResult::Confirmed { .. } | OpResult::Restocked { .. } | OpResult::Viewed { .. } => {
                "ok".into()
            }
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
    pub result: OpResult,
}

impl OpRecord {
    pub fn latency_ms(&self) -> u64 {
        self.completed_ms.saturating_sub(self.invoked_ms)
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
