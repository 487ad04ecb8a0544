//! What clients saw, recorded without locks: each client task keeps its own [`Recorder`], merged
//! at the end of the run.
//!
//! - Latencies go to one HdrHistogram per operation kind ([`Kind`]), in microseconds. A client
//!   keeps its latencies as a list and a merge puts them into histograms: a histogram of this
//!   range and precision is 188 KiB, and one per kind per client made 12 000 clients allocate
//!   and zero 4 GiB at their first answers, which took a third of the load generator's CPU in
//!   the measured phase (`clear_page_erms`) from the servers sharing the machine.
//! - Every final answer is counted by kind, status and error `code` (the `code` field of the error
//!   JSON; transport failures as status 0 and `transport:<what>`).
//! - Confirmed purchases go to a per-product [`Ledger`]: quantity confirmed, quantity whose outcome
//!   stayed unknown after the retries, and the `remaining` stock each order reported, which must
//!   all differ (two orders that left the same stock behind would be an oversell).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram records, microseconds (one hour); longer ones are clamped.
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// Operation kinds with a latency histogram of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `GET /v1/products/{id}`, any answer.
    View,
    /// A purchase answered `200`: confirmed.
    PurchaseConfirmed,
    /// A purchase answered `409 insufficient_stock`: sold out.
    PurchaseSoldOut,
    /// A purchase with any other final answer (an error, or an outcome still unknown).
    PurchaseFailed,
    /// A hold then its release (the payment failed): nothing sold.
    HoldReleased,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::View,
        Kind::PurchaseConfirmed,
        Kind::PurchaseSoldOut,
        Kind::PurchaseFailed,
        Kind::HoldReleased,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::PurchaseConfirmed => "purchase ok",
            Kind::PurchaseSoldOut => "sold out",
            Kind::PurchaseFailed => "purchase err",
            Kind::HoldReleased => "hold released",
        }
    }
}

/// What the run saw of one product's purchases.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Items confirmed (each idempotency key counted once).
    pub confirmed: u64,
    /// Items of purchases whose outcome stayed unknown after every retry.
    pub unknown: u64,
    /// `remaining` of every confirmed order.
    pub remaining: Vec<u64>,
}

/// Counters every client bumps as it goes, read by the progress bar.
#[derive(Debug, Default)]
pub struct Live {
    pub answers: AtomicU64,
    pub errors: AtomicU64,
}

impl Live {
    pub fn answered(&self, error: bool) {
        self.answers.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The key of an answer count: kind of request, HTTP status (0: no answer), error code.
pub type AnswerKey = (&'static str, u16, String);

/// Latencies a client records before they go into histograms of its own: a client that answers
/// this many (at light load, a few buyers each answer thousands) holds its histograms, so that
/// its list stays small.
const PENDING_MAX: usize = 4096;

/// One client's (or, merged, one run's) record.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Latencies by kind, of every answer but the `pending` ones.
    latency: BTreeMap<Kind, Histogram<u64>>,
    /// Latencies not yet in `latency`, microseconds: a merge moves them there.
    pending: Vec<(Kind, u32)>,
    /// Final answers by (request kind, status, code); `code` is empty on success.
    pub answers: BTreeMap<AnswerKey, u64>,
    /// Answers that are errors (anything but 200, and 409 sold out where a sale sells out).
    pub errors: u64,
    /// Attempts repeated with the same idempotency key after a 504 or a transport failure.
    pub retries: u64,
    /// Views whose product broke conservation or whose body did not parse.
    pub bad_views: u64,
    pub ledger: BTreeMap<usize, Ledger>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            latency: BTreeMap::new(),
            pending: Vec::new(),
            answers: BTreeMap::new(),
            errors: 0,
            retries: 0,
            bad_views: 0,
            ledger: BTreeMap::new(),
        }
    }

    pub fn latency(&mut self, kind: Kind, elapsed: Duration) {
        let micros = (elapsed.as_micros() as u64).clamp(1, LATENCY_MAX_US);
        let micros = u32::try_from(micros).expect("an hour of microseconds fits 32 bits");
        self.pending.push((kind, micros));
        if self.pending.len() >= PENDING_MAX {
            self.settle();
        }
    }

    /// Move the pending latencies into the histograms.
    fn settle(&mut self) {
        for (kind, micros) in self.pending.drain(..) {
            self.latency
                .entry(kind)
                .or_insert_with(|| {
                    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
                        .expect("valid histogram bounds")
                })
                .record(u64::from(micros))
                .expect("clamped into the histogram's range");
        }
    }

    /// The latency histograms by kind: of a merged record (a run's, an interval's), which holds
    /// every latency in them.
    pub fn histograms(&self) -> &BTreeMap<Kind, Histogram<u64>> {
        assert!(
            self.pending.is_empty(),
            "a client's record is read once merged into a run's"
        );
        &self.latency
    }

    /// Count one final answer; `error` says whether it is an error of the run.
    pub fn answer(&mut self, request: &'static str, status: u16, code: &str, error: bool) {
        *self
            .answers
            .entry((request, status, code.to_owned()))
            .or_default() += 1;
        self.errors += u64::from(error);
    }

    pub fn confirmed(&mut self, product: usize, quantity: u32, remaining: u64) {
        let ledger = self.ledger.entry(product).or_default();
        ledger.confirmed += u64::from(quantity);
        ledger.remaining.push(remaining);
    }

    /// Items confirmed by an answer whose `remaining` says nothing checkable (a hold's
    /// confirmation: what was available then, which releases raise again).
    pub fn confirmed_count(&mut self, product: usize, quantity: u32) {
        self.ledger.entry(product).or_default().confirmed += u64::from(quantity);
    }

    pub fn unknown(&mut self, product: usize, quantity: u32) {
        self.ledger.entry(product).or_default().unknown += u64::from(quantity);
    }

    /// Add `other` to this record; both records' latencies are in histograms after.
    pub fn merge(&mut self, other: Recorder) {
        self.pending.extend(other.pending);
        self.settle();
        for (kind, histogram) in other.latency {
            match self.latency.get_mut(&kind) {
                Some(mine) => mine.add(&histogram).expect("same bounds"),
                None => {
                    self.latency.insert(kind, histogram);
                }
            }
        }
        for (key, count) in other.answers {
            *self.answers.entry(key).or_default() += count;
        }
        self.errors += other.errors;
        self.retries += other.retries;
        self.bad_views += other.bad_views;
        merge_ledgers(&mut self.ledger, other.ledger);
    }

    /// Answers of one kind of request.
    pub fn count(&self, kind: Kind) -> u64 {
        let pending = self.pending.iter().filter(|(k, _)| *k == kind).count() as u64;
        self.latency.get(&kind).map_or(0, Histogram::len) + pending
    }

    /// Items confirmed over every product.
    pub fn confirmed_items(&self) -> u64 {
        self.ledger.values().map(|l| l.confirmed).sum()
    }
}

/// Add `from` to `into`: what several runs over the same products saw, for one final check.
pub fn merge_ledgers(into: &mut BTreeMap<usize, Ledger>, from: BTreeMap<usize, Ledger>) {
    for (product, ledger) in from {
        let mine = into.entry(product).or_default();
        mine.confirmed += ledger.confirmed;
        mine.unknown += ledger.unknown;
        mine.remaining.extend(ledger.remaining);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_with_many_answers_keeps_them_in_histograms() {
        let mut client = Recorder::new();
        for micros in 1..=(PENDING_MAX as u64 + 10) {
            client.latency(Kind::PurchaseConfirmed, Duration::from_micros(micros));
        }
        assert_eq!(client.pending.len(), 10);
        assert_eq!(
            client.count(Kind::PurchaseConfirmed),
            PENDING_MAX as u64 + 10
        );
        let mut run = Recorder::new();
        run.merge(client);
        let confirmed = &run.histograms()[&Kind::PurchaseConfirmed];
        assert_eq!(confirmed.len(), PENDING_MAX as u64 + 10);
        assert!(confirmed.equivalent(confirmed.max(), PENDING_MAX as u64 + 10));
    }

    #[test]
    fn merging_adds_histograms_counts_and_ledgers() {
        let mut a = Recorder::new();
        a.latency(Kind::View, Duration::from_millis(2));
        a.answer("view", 200, "", false);
        a.confirmed(3, 1, 9);
        let mut b = Recorder::new();
        b.latency(Kind::View, Duration::from_millis(4));
        b.answer("view", 200, "", false);
        b.answer("purchase", 503, "overloaded", true);
        b.confirmed(3, 2, 7);
        b.unknown(3, 1);
        assert_eq!(b.count(Kind::View), 1);
        a.merge(b);
        assert_eq!(a.count(Kind::View), 2);
        let view = &a.histograms()[&Kind::View];
        assert!(view.equivalent(view.min(), 2000) && view.equivalent(view.max(), 4000));
        assert_eq!(a.answers[&("view", 200, String::new())], 2);
        assert_eq!(a.errors, 1);
        assert_eq!(a.ledger[&3].confirmed, 3);
        assert_eq!(a.ledger[&3].unknown, 1);
        assert_eq!(a.ledger[&3].remaining, vec![9, 7]);
    }
}
