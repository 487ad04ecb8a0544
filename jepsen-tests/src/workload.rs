//! The workload: client tasks that buy, re-send and view, and an admin task that restocks.
//!
//! Each client task owns a [`ShopClient`] over the three gateways, starting at a different one
//! (task `i` starts at gateway `i mod 3`), and a second one starting at the next gateway, through
//! which it re-sends already confirmed purchases. Now and then it sends one purchase twice at
//! once with the same key ("twins"), through one gateway or two. Views read the gateway's local
//! replica or, some of them, linearizably. Every write has its own idempotency key; when
//! the outcome is unknown the same key is sent again, a bounded number of times. Each operation
//! ends as one [`OpRecord`] of the [`History`](crate::history::History).
//!
//! Products have limited stock, so some sell out (`insufficient_stock`) until the admin task
//! restocks them; one has plenty, so purchases keep being confirmed through every fault.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flashstock_api::{CreateProductRequest, Order, ProductView, PurchaseResponse};
use flashstock_client::{Served, ShopClient, ShopError};
use tokio::task::JoinSet;

use crate::history::{is_committed_rejection, Clock, OpKind, OpRecord, OpResult, ServedBy};
use crate::rng::Rng;

/// Pause before re-sending a write whose outcome is unknown, times the attempt number.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Longest single sleep of a task, so that it notices the end of the run quickly.
const SLEEP_SLICE: Duration = Duration::from_millis(100);
/// `client` of the admin task's records.
pub const ADMIN_CLIENT: usize = usize::MAX;

/// A product of the run, its initial stock, and how often buyers pick it (relative weight).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductSpec {
    pub id: String,
    pub stock: u64,
    pub weight: u64,
}

/// Four products: two that sell out quickly, one that lasts a while, one that never sells out
/// and draws most buyers ([`WorkloadConfig::size_for`] sizes it to the run).
pub fn default_products() -> Vec<ProductSpec> {
    [
        ("hot", 30, 2),
        ("limited", 150, 2),
        ("steady", 1500, 2),
        ("plenty", 1_000_000, 4),
    ]
    .into_iter()
    .map(|(id, stock, weight)| ProductSpec {
        id: id.into(),
        stock,
        weight,
    })
    .collect()
}

/// A product id drawn by weight.
fn pick_weighted(rng: &mut Rng, products: &[ProductSpec]) -> String {
    let total: u64 = products.iter().map(|p| p.weight.max(1)).sum();
    let mut roll = rng.below(total);
    for product in products {
        let weight = product.weight.max(1);
        if roll < weight {
            return product.id.clone();
        }
        roll -= weight;
    }
    unreachable!("the roll is below the total weight")
}

/// What the clients do.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub clients: usize,
    pub seed: u64,
    pub products: Vec<ProductSpec>,
    /// Pause of a client between two operations, in milliseconds (drawn in this range).
    pub think_ms: (u64, u64),
    /// How many times a write whose outcome is unknown is sent again with the same key.
    pub unknown_retries: u32,
    /// Share of operations that are views, in percent.
    pub view_percent: u64,
    /// Share of operations that re-send an already confirmed purchase, in percent.
    pub resend_percent: u64,
    /// Share of purchases sent twice at once with one key, in percent of all operations.
    pub twin_percent: u64,
    /// Pause of the admin task between restocks, in milliseconds.
    pub restock_every_ms: (u64, u64),
    /// Items added by one restock.
    pub restock_quantity: (u64, u64),
}

impl WorkloadConfig {
    pub fn new(clients: usize, seed: u64) -> WorkloadConfig {
        WorkloadConfig {
            clients,
            seed,
            products: default_products(),
            think_ms: (0, 10),
            unknown_retries: 3,
            view_percent: 15,
            resend_percent: 5,
            twin_percent: 4,
            restock_every_ms: (500, 1500),
            restock_quantity: (5, 40),
        }
    }

    /// Give the product that must never sell out enough stock for `seconds` of this many
    /// clients: a 60-minute run of 64 clients once bought about 7.5 of its items per client and
    /// second, so [`PLENTY_ITEMS_PER_CLIENT_SECOND`] leaves a wide margin. Never below its
    /// default, so short runs keep theirs.
    pub fn size_for(&mut self, seconds: u64) {
        let needed = seconds * self.clients as u64 * PLENTY_ITEMS_PER_CLIENT_SECOND;
        if let Some(plenty) = self.products.iter_mut().max_by_key(|p| p.stock) {
            plenty.stock = plenty.stock.max(needed);
        }
    }
}

/// Stock of the never-sold-out product per client and second of workload ([`WorkloadConfig::size_for`]).
pub const PLENTY_ITEMS_PER_CLIENT_SECOND: u64 = 20;

/// What the tasks share with the nemesis: when a purchase was last confirmed, and when to stop.
#[derive(Debug, Default)]
pub struct Progress {
    /// 1 + the invocation time of the latest-invoked confirmed purchase (0: none yet).
    last_confirmed_invoked: AtomicU64,
    confirmed: AtomicU64,
    stop: AtomicBool,
}

impl Progress {
    pub fn note_confirmed(&self, invoked_ms: u64) {
        self.last_confirmed_invoked
            .fetch_max(invoked_ms + 1, Ordering::Relaxed);
        self.confirmed.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a purchase invoked at or after `ms` has been confirmed.
    pub fn confirmed_invoked_since(&self, ms: u64) -> bool {
        self.last_confirmed_invoked.load(Ordering::Relaxed) > ms
    }

    pub fn confirmed(&self) -> u64 {
        self.confirmed.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Sleep for `duration`, or less if the run ends meanwhile.
async fn sleep_unless_stopped(progress: &Progress, duration: Duration) {
    let mut left = duration;
    while !left.is_zero() && !progress.stopped() {
        let slice = left.min(SLEEP_SLICE);
        tokio::time::sleep(slice).await;
        left -= slice;
    }
}

/// The end of a write after its retries.
struct Settled<T> {
    result: Result<T, OpResult>,
    attempts: u32,
    unknown_attempts: u32,
}

/// Call `call` (one write with a fixed key) until the outcome is known, at most
/// `1 + retries` times. "Unavailable" after an unknown attempt is still unknown: the earlier
/// attempt may have been applied.
async fn with_same_key<T, F, Fut>(retries: u32, mut call: F) -> Settled<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ShopError>>,
{
    let mut unknown: Option<String> = None;
    let mut settled = Settled {
        result: Err(OpResult::Unknown {
            message: String::new(),
        }),
        attempts: 0,
        unknown_attempts: 0,
    };
    loop {
        settled.attempts += 1;
        let error = match call().await {
            Ok(value) => {
                settled.result = Ok(value);
                return settled;
            }
            Err(error) => error,
        };
        match error {
            ShopError::Rejected { code, message, .. } => {
                let code = code.to_string();
                settled.result = Err(match unknown {
                    Some(earlier) if !is_committed_rejection(&code) => OpResult::Unknown {
                        message: format!("{earlier}; then {code}: {message}"),
                    },
                    _ => OpResult::Rejected { code, message },
                });
                return settled;
            }
            ShopError::Unavailable { message } if unknown.is_none() => {
                settled.result = Err(OpResult::Unavailable { message });
                return settled;
            }
            ShopError::Unavailable { .. } => {}
            ShopError::OutcomeUnknown { message } => {
                settled.unknown_attempts += 1;
                unknown = Some(message);
            }
        }
        if settled.attempts > retries {
            settled.result = Err(OpResult::Unknown {
                message: unknown.unwrap_or_default(),
            });
            return settled;
        }
        tokio::time::sleep(RETRY_PAUSE * settled.attempts).await;
    }
}

/// Gateway URLs rotated so that the list starts at index `first`.
fn rotated(gateways: &[String], first: usize) -> Vec<String> {
    let mut urls = gateways.to_vec();
    urls.rotate_left(first % gateways.len());
    urls
}

/// Create every product, retrying with the same key until it is confirmed.
pub async fn create_products(
    shop: &ShopClient,
    config: &WorkloadConfig,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    for spec in &config.products {
        let key = format!("j{}-create-{}", config.seed, spec.id);
        let request = CreateProductRequest {
            id: spec.id.clone(),
            name: format!("Jepsen {}", spec.id),
            price_cents: 1000,
            stock: spec.stock,
            limit_per_customer: None,
        };
        loop {
            match shop.create_product_with_key(&key, &request).await {
                Ok(_) => break,
                Err(ShopError::Rejected { code, message, .. }) => {
                    return Err(format!("creating {}: {code}: {message}", spec.id))
                }
                Err(error) if tokio::time::Instant::now() > deadline => {
                    return Err(format!("creating {}: {error}", spec.id))
                }
                Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
            }
        }
    }
    Ok(())
}

/// Start the client tasks and the admin task; each returns its operations when the run stops.
pub fn spawn(
    config: &WorkloadConfig,
    gateways: &[String],
    admin_token: &str,
    tls: Option<flashstock_client::TlsConfig>,
    clock: Clock,
    progress: Arc<Progress>,
) -> JoinSet<Vec<OpRecord>> {
    let config = Arc::new(config.clone());
    let mut tasks = JoinSet::new();
    for id in 0..config.clients {
        let client = Client {
            id,
            rng: Rng::stream(config.seed, id as u64 + 1),
            shop: ShopClient::new(rotated(gateways, id)).with_tls(tls.clone()),
            other: ShopClient::new(rotated(gateways, id + 1)).with_tls(tls.clone()),
            config: config.clone(),
            clock,
            progress: progress.clone(),
            next_key: 0,
            confirmed: Vec::new(),
            ops: Vec::new(),
        };
        tasks.spawn(client.run());
    }
    let admin = Admin {
        rng: Rng::stream(config.seed, 0),
        shop: ShopClient::new(gateways.to_vec())
            .with_admin_token(admin_token)
            .with_tls(tls),
        config,
        clock,
        progress,
        ops: Vec::new(),
    };
    tasks.spawn(admin.run());
    tasks
}

/// One buyer.
struct Client {
    id: usize,
    rng: Rng,
    shop: ShopClient,
    /// Starts at the next gateway: re-sends usually reach another gateway than the first send.
    other: ShopClient,
    config: Arc<WorkloadConfig>,
    clock: Clock,
    progress: Arc<Progress>,
    next_key: u64,
    /// This client's confirmed orders, candidates for a re-send.
    confirmed: Vec<Order>,
    ops: Vec<OpRecord>,
}

impl Client {
    async fn run(mut self) -> Vec<OpRecord> {
        while !self.progress.stopped() {
            self.step().await;
            let (low, high) = self.config.think_ms;
            let think = self.rng.millis(low, high);
            sleep_unless_stopped(&self.progress, think).await;
        }
        self.ops
    }

    async fn step(&mut self) {
        let roll = self.rng.below(100);
        let resend = self.config.resend_percent;
        let twin = resend + self.config.twin_percent;
        if roll < resend && !self.confirmed.is_empty() {
            self.resend().await;
        } else if roll < twin {
            self.twin().await;
        } else if roll < twin + self.config.view_percent {
            self.view().await;
        } else {
            self.purchase().await;
        }
    }

    fn pick_product(&mut self) -> String {
        pick_weighted(&mut self.rng, &self.config.products)
    }

    fn record(&mut self, record: OpRecord) {
        self.ops.push(record);
    }

    /// A fresh purchase: its key, product and quantity.
    fn new_purchase(&mut self) -> (String, String, u32) {
        let product = self.pick_product();
        let quantity = self.rng.range(1, 3) as u32;
        let key = format!("j{}-c{}-{}", self.config.seed, self.id, self.next_key);
        self.next_key += 1;
        (key, product, quantity)
    }

    /// Record one send of a purchase; a confirmed one becomes a candidate for re-sends.
    fn record_purchase(
        &mut self,
        kind: OpKind,
        (key, product, quantity): (&str, &str, u32),
        invoked_ms: u64,
        settled: Settled<PurchaseResponse>,
    ) {
        let result = match settled.result {
            Ok(response) => {
                self.progress.note_confirmed(invoked_ms);
                if !self.confirmed.iter().any(|o| o.key == key) {
                    self.confirmed.push(response.order.clone());
                }
                OpResult::Confirmed {
                    order: response.order,
                    replayed: response.replayed,
                }
            }
            Err(result) => result,
        };
        let record = OpRecord {
            client: self.id,
            kind,
            key: Some(key.to_owned()),
            product: product.to_owned(),
            quantity: u64::from(quantity),
            invoked_ms,
            completed_ms: self.clock.ms(),
            attempts: settled.attempts,
            unknown_attempts: settled.unknown_attempts,
            expected: None,
            result,
        };
        self.record(record);
    }

    async fn purchase(&mut self) {
        let (key, product, quantity) = self.new_purchase();
        let invoked_ms = self.clock.ms();
        let shop = &self.shop;
        let settled = with_same_key(self.config.unknown_retries, || {
            shop.purchase_with_key(&key, &product, quantity)
        })
        .await;
        let op = (key.as_str(), product.as_str(), quantity);
        self.record_purchase(OpKind::Purchase, op, invoked_ms, settled);
    }

    /// The same purchase sent twice at once with one key, through one gateway (so that both
    /// sends usually share a batch, i.e. a Raft entry) or through two.
    async fn twin(&mut self) {
        let (key, product, quantity) = self.new_purchase();
        let same_gateway = self.rng.chance(50);
        let invoked_ms = self.clock.ms();
        let first = &self.shop;
        let second = if same_gateway {
            &self.shop
        } else {
            &self.other
        };
        let retries = self.config.unknown_retries;
        let (a, b) = tokio::join!(
            with_same_key(retries, || first
                .purchase_with_key(&key, &product, quantity)),
            with_same_key(retries, || second
                .purchase_with_key(&key, &product, quantity)),
        );
        let op = (key.as_str(), product.as_str(), quantity);
        self.record_purchase(OpKind::Purchase, op, invoked_ms, a);
        self.record_purchase(OpKind::Twin, op, invoked_ms, b);
    }

    async fn resend(&mut self) {
        let original = self.rng.pick(&self.confirmed).clone();
        let invoked_ms = self.clock.ms();
        let other = &self.other;
        let settled = with_same_key(self.config.unknown_retries, || {
            other.purchase_with_key(&original.key, &original.product, original.quantity)
        })
        .await;
        let result = match settled.result {
            Ok(response) => OpResult::Confirmed {
                order: response.order,
                replayed: response.replayed,
            },
            Err(result) => result,
        };
        let record = OpRecord {
            client: self.id,
            kind: OpKind::Resend,
            key: Some(original.key.clone()),
            product: original.product.clone(),
            quantity: u64::from(original.quantity),
            invoked_ms,
            completed_ms: self.clock.ms(),
            attempts: settled.attempts,
            unknown_attempts: settled.unknown_attempts,
            expected: Some(original),
            result,
        };
        self.record(record);
    }

    async fn view(&mut self) {
        let product = self.pick_product();
        let linearizable = self.rng.chance(30);
        let invoked_ms = self.clock.ms();
        let result = view_result(self.shop.product_served(&product, linearizable).await);
        let record = OpRecord {
            client: self.id,
            kind: if linearizable {
                OpKind::LinearView
            } else {
                OpKind::View
            },
            key: None,
            product,
            quantity: 0,
            invoked_ms,
            completed_ms: self.clock.ms(),
            attempts: 1,
            unknown_attempts: 0,
            expected: None,
            result,
        };
        self.record(record);
    }
}

/// The admin: restocks a random product now and then.
struct Admin {
    rng: Rng,
    shop: ShopClient,
    config: Arc<WorkloadConfig>,
    clock: Clock,
    progress: Arc<Progress>,
    ops: Vec<OpRecord>,
}

impl Admin {
    async fn run(mut self) -> Vec<OpRecord> {
        let mut n = 0;
        loop {
            let (low, high) = self.config.restock_every_ms;
            let pause = self.rng.millis(low, high);
            sleep_unless_stopped(&self.progress, pause).await;
            if self.progress.stopped() {
                return self.ops;
            }
            self.restock(n).await;
            n += 1;
        }
    }

    async fn restock(&mut self, n: u64) {
        let product = self.rng.pick(&self.config.products).id.clone();
        let (low, high) = self.config.restock_quantity;
        let quantity = self.rng.range(low, high);
        let key = format!("j{}-admin-{n}", self.config.seed);
        let invoked_ms = self.clock.ms();
        let shop = &self.shop;
        let settled = with_same_key(self.config.unknown_retries, || {
            shop.restock_with_key(&key, &product, quantity)
        })
        .await;
        let result = match settled.result {
            Ok(changed) => OpResult::Restocked {
                product: changed.product,
            },
            Err(result) => result,
        };
        self.ops.push(OpRecord {
            client: ADMIN_CLIENT,
            kind: OpKind::Restock,
            key: Some(key),
            product,
            quantity,
            invoked_ms,
            completed_ms: self.clock.ms(),
            attempts: settled.attempts,
            unknown_attempts: settled.unknown_attempts,
            expected: None,
            result,
        });
    }
}

/// A view's answer as the history records it, with the gateway that served it and the staleness
/// it declared.
pub(crate) fn view_result(answer: Result<Served<ProductView>, ShopError>) -> OpResult {
    match answer {
        Ok(served) => OpResult::Viewed {
            product: served.value.product,
            applied_index: Some(served.value.applied_index),
            served_by: Some(ServedBy {
                gateway: served.gateway,
                staleness: served.staleness,
            }),
        },
        Err(ShopError::Rejected { code, message, .. }) => OpResult::Rejected {
            code: code.to_string(),
            message,
        },
        Err(ShopError::Unavailable { message }) => OpResult::Unavailable { message },
        Err(ShopError::OutcomeUnknown { message }) => OpResult::Unknown { message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Answers queued for a fake write, one per call.
    fn scripted(
        answers: Vec<Result<u32, ShopError>>,
    ) -> impl FnMut() -> std::future::Ready<Result<u32, ShopError>> {
        let answers = Mutex::new(answers.into_iter());
        move || std::future::ready(answers.lock().unwrap().next().expect("a scripted answer"))
    }

    fn unknown() -> ShopError {
        ShopError::OutcomeUnknown {
            message: "lost".into(),
        }
    }

    fn unavailable() -> ShopError {
        ShopError::Unavailable {
            message: "down".into(),
        }
    }

    fn rejected(code: &str) -> ShopError {
        ShopError::Rejected {
            status: 409,
            code: flashstock_api::ErrorCode::parse(code),
            message: String::new(),
        }
    }

    #[tokio::test]
    async fn unknown_then_confirmed_is_confirmed() {
        let settled = with_same_key(3, scripted(vec![Err(unknown()), Ok(7)])).await;
        assert_eq!(settled.result, Ok(7));
        assert_eq!((settled.attempts, settled.unknown_attempts), (2, 1));
    }

    #[tokio::test]
    async fn unavailable_alone_is_definite_but_not_after_unknown() {
        let settled = with_same_key(3, scripted(vec![Err(unavailable())])).await;
        assert!(matches!(settled.result, Err(OpResult::Unavailable { .. })));
        let answers = vec![Err(unknown()), Err(unavailable()), Err(unavailable())];
        let settled = with_same_key(2, scripted(answers)).await;
        assert!(matches!(settled.result, Err(OpResult::Unknown { .. })));
        assert_eq!(settled.attempts, 3);
    }

    #[tokio::test]
    async fn a_committed_rejection_settles_an_unknown_attempt() {
        let answers = vec![Err(unknown()), Err(rejected("insufficient_stock"))];
        let settled = with_same_key(3, scripted(answers)).await;
        assert!(matches!(settled.result, Err(OpResult::Rejected { .. })));
        let answers = vec![Err(unknown()), Err(rejected("invalid_request"))];
        let settled = with_same_key(3, scripted(answers)).await;
        assert!(matches!(settled.result, Err(OpResult::Unknown { .. })));
    }
}
