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
//!
//! With checkout on (cluster version 2; off in a run that starts on an older release), tasks
//! also hold stock for their customer and then confirm, release or abandon the hold (an
//! abandoned one expires after the run's short `checkout.hold_ttl_ms`, and is later confirmed
//! too late on purpose), buy carts of several products at once, cancel their own orders (now
//! and then one they cancelled already), and buy a product with a limit per customer; several
//! tasks share each customer. Every one of these writes has its own key and settles like a
//! purchase.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flashstock_api::{
    BulkItem, BulkRequest, BulkResponse, BulkStatus, CreateProductRequest, HoldDetails, HoldId,
    HoldReleased, HoldResponse, Line, Order, OrderChanged, OrderId, OrderWithLines, ProductView,
    PurchaseResponse,
};
use flashstock_client::{Served, ShopClient, ShopError};
use tokio::task::JoinSet;

use crate::history::{is_committed_rejection, Clock, OpKind, OpRecord, OpResult, ServedBy, Target};
use crate::rng::Rng;

/// Pause before re-sending a write whose outcome is unknown, times the attempt number.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Longest single sleep of a task, so that it notices the end of the run quickly.
const SLEEP_SLICE: Duration = Duration::from_millis(100);
/// `client` of the admin task's records.
pub const ADMIN_CLIENT: usize = usize::MAX;

/// How much later than a hold's deadline (the log's time, which is the leader's wall clock) a
/// client confirms an abandoned hold, so that the confirmation's own log time is surely past it.
const LATE_CONFIRM_MARGIN_MS: u64 = 500;

/// Most orders a client remembers for cancellations (the latest ones).
const OWN_ORDERS_MAX: usize = 256;
/// Most abandoned holds a client remembers for late confirmations; past that, it lets them
/// expire unobserved.
const ABANDONED_MAX: usize = 64;

/// A product of the run, its initial stock, how often buyers pick it (relative weight), and
/// its limit per customer, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductSpec {
    pub id: String,
    pub stock: u64,
    pub weight: u64,
    /// Most items one customer may hold and buy (cluster version 2): only purchases naming a
    /// customer, holds and carts buy it.
    pub limit_per_customer: Option<u32>,
}

/// The id of the product with a limit per customer ([`default_products`]).
pub const CAPPED: &str = "capped";

/// Five products: two that sell out quickly, one that lasts a while, one that never sells out
/// and draws most buyers ([`WorkloadConfig::size_for`] sizes it to the run), and [`CAPPED`],
/// plenty of stock but at most 6 items per customer, bought by a few customers that several
/// tasks share, so that `limit_reached` is the usual answer.
pub fn default_products() -> Vec<ProductSpec> {
    [
        ("hot", 30, 2, None),
        ("limited", 150, 2, None),
        ("steady", 1500, 2, None),
        ("plenty", 1_000_000, 4, None),
        (CAPPED, 100_000, 1, Some(6)),
    ]
    .into_iter()
    .map(|(id, stock, weight, limit_per_customer)| ProductSpec {
        id: id.into(),
        stock,
        weight,
        limit_per_customer,
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
    /// Checkout operations (cluster version 2): holds, carts, cancellations, purchases of the
    /// product with a limit per customer. Off ([`WorkloadConfig::without_checkout`]) for a run
    /// that starts on a release without checkout.
    pub checkout: bool,
    /// Share of operations that hold 1 to 3 lines (then confirm, release or abandon), in
    /// percent.
    pub hold_percent: u64,
    /// Of the holds placed, the share released (the payment failed) and the share abandoned
    /// (left to expire), in percent; the rest are confirmed.
    pub release_percent: u64,
    pub abandon_percent: u64,
    /// Of the holds confirmed or released, the share then also released or confirmed with a
    /// new key, which must be refused `hold_finished`, in percent.
    pub second_action_percent: u64,
    /// Share of operations that confirm an abandoned hold after its deadline (refused
    /// `hold_expired`), in percent, when the client has one.
    pub late_confirm_percent: u64,
    /// Share of operations that buy a cart of 2 or 3 products, in percent.
    pub cart_percent: u64,
    /// Share of operations that cancel one of the client's orders, in percent.
    pub cancel_percent: u64,
    /// Of the cancellations, the share aimed at an order the client cancelled before (refused
    /// `already_cancelled`), in percent.
    pub recancel_percent: u64,
    /// Share of operations that buy the product with a limit per customer, in percent.
    pub capped_percent: u64,
    /// Customers of the run: task `i` buys as customer `i mod customers`, so several tasks
    /// (four, by default) share each one and together run into its limits.
    pub customers: usize,
    /// Purchases, holds and carts one customer may send per second to one gateway
    /// (`limits.client_purchase_rate_per_s`, which applies per customer to the harness, a
    /// trusted source): above the default of 5, since several busy tasks share a customer;
    /// some `rate_limited` refusals remain.
    pub customer_rate_per_s: u32,
    /// The cluster's `checkout.hold_ttl_ms` for the run: short, so abandoned holds expire
    /// within it.
    pub hold_ttl_ms: u64,
    /// Raft groups of the cluster: the lines of half the holds and half the carts are drawn
    /// from one group's products, the other half's from every group (a hold or a cart across
    /// groups, held and bought all or nothing).
    pub groups: u16,
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
            checkout: true,
            hold_percent: 10,
            release_percent: 15,
            abandon_percent: 15,
            second_action_percent: 10,
            late_confirm_percent: 2,
            cart_percent: 6,
            cancel_percent: 3,
            recancel_percent: 20,
            capped_percent: 5,
            customers: (clients / 4).max(1),
            customer_rate_per_s: 25,
            hold_ttl_ms: 2000,
            groups: 1,
        }
    }

    /// Give every Raft group of [`WorkloadConfig::groups`] a product: for each group that holds
    /// none of the run's products, one like `steady` (1 500 items, weight 2), named
    /// `spread-<n>` with the first `n` placed in that group.
    pub fn add_product_per_group(&mut self) {
        use flashstock_api::placement::group_of;
        let groups = self.groups;
        for group in 0..groups {
            if self
                .products
                .iter()
                .any(|p| group_of(&p.id, groups) == group)
            {
                continue;
            }
            let id = (0u64..)
                .map(|n| format!("spread-{n}"))
                .find(|id| group_of(id, groups) == group)
                .expect("some name lands in every group");
            self.products.push(ProductSpec {
                id,
                stock: 1500,
                weight: 2,
                limit_per_customer: None,
            });
        }
    }

    /// No checkout operation and no product with a limit: the workload of the release before
    /// checkout, for a cluster that starts on it.
    pub fn without_checkout(&mut self) {
        self.checkout = false;
        self.products.retain(|p| p.limit_per_customer.is_none());
    }

    /// The products plain purchases, twins and re-sends pick from: those without a limit per
    /// customer.
    fn unlimited(&self) -> Vec<ProductSpec> {
        let unlimited: Vec<ProductSpec> = self
            .products
            .iter()
            .filter(|p| p.limit_per_customer.is_none())
            .cloned()
            .collect();
        if unlimited.is_empty() {
            self.products.clone()
        } else {
            unlimited
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
            limit_per_customer: spec.limit_per_customer,
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
    let unlimited = Arc::new(config.unlimited());
    let mut tasks = JoinSet::new();
    for id in 0..config.clients {
        let client = Client {
            id,
            rng: Rng::stream(config.seed, id as u64 + 1),
            shop: ShopClient::new(rotated(gateways, id)).with_tls(tls.clone()),
            other: ShopClient::new(rotated(gateways, id + 1)).with_tls(tls.clone()),
            customer: customer_of(&config, id),
            unlimited: unlimited.clone(),
            config: config.clone(),
            clock,
            progress: progress.clone(),
            next_key: 0,
            confirmed: Vec::new(),
            orders: Vec::new(),
            abandoned: Vec::new(),
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

/// The customer task `id` buys as: one of [`WorkloadConfig::customers`], each shared by several
/// tasks.
pub fn customer_of(config: &WorkloadConfig, id: usize) -> String {
    format!("j{}-u{}", config.seed, id % config.customers.max(1))
}

/// An order of the client's own, which it may cancel with its token.
struct OwnOrder {
    id: OrderId,
    token: String,
    lines: Vec<Line>,
    /// A cancellation of it was confirmed (or refused as already done), or may have been
    /// applied (its outcome unknown).
    cancelled: bool,
}

/// A hold the client left to expire, which it confirms once the deadline is well past.
struct Abandoned {
    id: HoldId,
    token: String,
    lines: Vec<Line>,
    expires_at_ms: u64,
}

/// What a client does with a hold once the cluster placed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HoldPlan {
    Confirm,
    Release,
    Abandon,
}

/// One buyer.
struct Client {
    id: usize,
    rng: Rng,
    shop: ShopClient,
    /// Starts at the next gateway: re-sends usually reach another gateway than the first send.
    other: ShopClient,
    /// The customer its holds, carts and purchases of a limited product name.
    customer: String,
    /// The products plain purchases pick from ([`WorkloadConfig::unlimited`]).
    unlimited: Arc<Vec<ProductSpec>>,
    config: Arc<WorkloadConfig>,
    clock: Clock,
    progress: Arc<Progress>,
    next_key: u64,
    /// This client's confirmed purchases, candidates for a re-send.
    confirmed: Vec<Order>,
    /// Every order this client placed, candidates for a cancellation.
    orders: Vec<OwnOrder>,
    /// Holds left to expire, oldest first.
    abandoned: Vec<Abandoned>,
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
        let c = &self.config;
        let resend = c.resend_percent;
        let twin = resend + c.twin_percent;
        let view = twin + c.view_percent;
        let (hold, late, cart, cancel, capped) = match c.checkout {
            true => {
                let hold = view + c.hold_percent;
                let late = hold + c.late_confirm_percent;
                let cart = late + c.cart_percent;
                let cancel = cart + c.cancel_percent;
                (hold, late, cart, cancel, cancel + c.capped_percent)
            }
            false => (view, view, view, view, view),
        };
        if roll < resend && !self.confirmed.is_empty() {
            self.resend().await;
        } else if roll < twin {
            self.twin().await;
        } else if roll < view {
            self.view().await;
        } else if roll < hold {
            self.hold().await;
        } else if roll < late && self.due_abandoned().is_some() {
            self.late_confirm().await;
        } else if roll < cart && roll >= late {
            self.cart().await;
        } else if roll < cancel && roll >= cart && !self.orders.is_empty() {
            self.cancel().await;
        } else if roll < capped && roll >= cancel {
            self.capped_purchase().await;
        } else {
            self.purchase().await;
        }
    }

    fn pick_product(&mut self) -> String {
        pick_weighted(&mut self.rng, &self.config.products)
    }

    fn pick_unlimited(&mut self) -> String {
        pick_weighted(&mut self.rng, &self.unlimited)
    }

    /// `low` to `high` lines of distinct products (of all the run's), drawn by weight, each of
    /// 1 or 2 items; with several groups, from the first line's group unless `across`.
    fn pick_lines(&mut self, low: u64, high: u64, across: bool) -> Vec<Line> {
        let mut left = self.config.products.clone();
        let count = self.rng.range(low, high);
        let mut lines = Vec::new();
        for _ in 0..count {
            if left.is_empty() {
                break;
            }
            let product = pick_weighted(&mut self.rng, &left);
            left.retain(|p| p.id != product);
            // With several groups, the other lines come from the first line's group.
            let groups = self.config.groups;
            if groups > 1 && !across {
                let group = flashstock_api::placement::group_of(&product, groups);
                left.retain(|p| flashstock_api::placement::group_of(&p.id, groups) == group);
            }
            let quantity = self.rng.range(1, 2) as u32;
            lines.push(Line { product, quantity });
        }
        lines
    }

    fn record(&mut self, record: OpRecord) {
        self.ops.push(record);
    }

    fn new_key(&mut self) -> String {
        let key = format!("j{}-c{}-{}", self.config.seed, self.id, self.next_key);
        self.next_key += 1;
        key
    }

    /// A fresh purchase: its key, product and quantity.
    fn new_purchase(&mut self) -> (String, String, u32) {
        let product = self.pick_unlimited();
        let quantity = self.rng.range(1, 3) as u32;
        (self.new_key(), product, quantity)
    }

    /// A record of this client's: `kind` on `target`, from `invoked_ms` until now.
    fn op_record(
        &self,
        kind: OpKind,
        key: &str,
        target: Target,
        invoked_ms: u64,
        settled: (u32, u32),
        result: OpResult,
    ) -> OpRecord {
        let first = target.lines.first();
        OpRecord {
            client: self.id,
            kind,
            key: Some(key.to_owned()),
            product: first.map(|l| l.product.clone()).unwrap_or_default(),
            quantity: target.lines.iter().map(|l| u64::from(l.quantity)).sum(),
            invoked_ms,
            completed_ms: self.clock.ms(),
            attempts: settled.0,
            unknown_attempts: settled.1,
            expected: None,
            target,
            result,
        }
    }

    /// Remember an order this client may cancel later.
    fn own(&mut self, id: OrderId, token: Option<&str>, lines: Vec<Line>) {
        let Some(token) = token else { return };
        if !self.orders.iter().any(|o| o.id == id) {
            if self.orders.len() >= OWN_ORDERS_MAX {
                self.orders.remove(0);
            }
            self.orders.push(OwnOrder {
                id,
                token: token.to_owned(),
                lines,
                cancelled: false,
            });
        }
    }

    /// Record one send of a purchase; a confirmed one becomes a candidate for re-sends and
    /// cancellations.
    fn record_purchase(
        &mut self,
        kind: OpKind,
        (key, product, quantity): (&str, &str, u32),
        customer: Option<&str>,
        invoked_ms: u64,
        settled: Settled<PurchaseResponse>,
    ) {
        let result = match settled.result {
            Ok(response) => {
                self.progress.note_confirmed(invoked_ms);
                if !self.confirmed.iter().any(|o| o.key == key) {
                    self.confirmed.push(response.order.clone());
                }
                let line = Line {
                    product: product.to_owned(),
                    quantity,
                };
                let order = &response.order;
                self.own(order.id, order.token.as_deref(), vec![line]);
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
            target: Target {
                customer: customer.map(str::to_owned),
                ..Target::default()
            },
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
        self.record_purchase(OpKind::Purchase, op, None, invoked_ms, settled);
    }

    /// A purchase of the product with a limit per customer, as this client's customer.
    async fn capped_purchase(&mut self) {
        let Some(product) = self
            .config
            .products
            .iter()
            .find(|p| p.limit_per_customer.is_some())
            .map(|p| p.id.clone())
        else {
            return self.purchase().await;
        };
        let quantity = self.rng.range(1, 2) as u32;
        let key = self.new_key();
        let customer = self.customer.clone();
        let invoked_ms = self.clock.ms();
        let shop = &self.shop;
        let settled = with_same_key(self.config.unknown_retries, || {
            shop.purchase_as_with_key(&key, &product, quantity, Some(&customer))
        })
        .await;
        let op = (key.as_str(), product.as_str(), quantity);
        self.record_purchase(OpKind::Purchase, op, Some(&customer), invoked_ms, settled);
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
        self.record_purchase(OpKind::Purchase, op, None, invoked_ms, a);
        self.record_purchase(OpKind::Twin, op, None, invoked_ms, b);
    }

    async fn resend(&mut self) {
        let original = self.rng.pick(&self.confirmed).clone();
        let invoked_ms = self.clock.ms();
        let other = &self.other;
        let settled = with_same_key(self.config.unknown_retries, || {
            other.purchase_as_with_key(
                &original.key,
                &original.product,
                original.quantity,
                original.customer.as_deref(),
            )
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
            expected: Some(original.clone()),
            target: Target {
                customer: original.customer,
                ..Target::default()
            },
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
            target: Target::default(),
            result,
        };
        self.record(record);
    }

    /// Hold 1 to 3 lines for the customer, then confirm, release or abandon the hold; now and
    /// then, once confirmed or released, try the other ending too (refused `hold_finished`).
    /// Every choice is drawn before the first send.
    async fn hold(&mut self) {
        // With several groups, half the holds draw their lines from every group: a hold across
        // groups, confirmed as one order per group and recorded as one ([`merged_answer`]).
        let lines = match self.config.groups > 1 && self.rng.chance(50) {
            true => self.pick_lines(2, 3, true),
            false => self.pick_lines(1, 3, false),
        };
        let roll = self.rng.below(100);
        let plan = if roll < self.config.release_percent {
            HoldPlan::Release
        } else if roll < self.config.release_percent + self.config.abandon_percent {
            HoldPlan::Abandon
        } else {
            HoldPlan::Confirm
        };
        let second = self.rng.chance(self.config.second_action_percent);
        let key = self.new_key();
        let customer = self.customer.clone();
        let invoked_ms = self.clock.ms();
        let shop = &self.shop;
        let settled = with_same_key(self.config.unknown_retries, || {
            shop.hold_with_key(&key, lines.clone(), Some(&customer))
        })
        .await;
        let counts = (settled.attempts, settled.unknown_attempts);
        let (held, result) = match settled.result {
            Ok(HoldResponse {
                mut hold,
                token,
                replayed,
            }) => {
                // A hold across groups lists its lines group by group: recorded, like the
                // checker sees it, in the request's order.
                let position = |product: &str| lines.iter().position(|l| l.product == product);
                hold.lines.sort_by_key(|line| position(&line.product));
                (
                    Some((hold.clone(), token)),
                    OpResult::Held { hold, replayed },
                )
            }
            Err(result) => (None, result),
        };
        let target = Target {
            lines,
            customer: Some(customer),
            ..Target::default()
        };
        let record = self.op_record(OpKind::Hold, &key, target, invoked_ms, counts, result);
        self.record(record);
        let Some((hold, token)) = held else {
            return;
        };
        let lines = hold_lines(&hold);
        match plan {
            HoldPlan::Abandon if self.abandoned.len() >= ABANDONED_MAX => {}
            HoldPlan::Abandon => self.abandoned.push(Abandoned {
                id: hold.id,
                token,
                lines,
                expires_at_ms: hold.expires_at_ms,
            }),
            HoldPlan::Confirm => {
                let confirmed = self.confirm(OpKind::Confirm, hold.id, &token, &lines).await;
                if confirmed && second {
                    self.release(hold.id, &token, &lines).await;
                }
            }
            HoldPlan::Release => {
                let released = self.release(hold.id, &token, &lines).await;
                if released && second {
                    self.confirm(OpKind::Confirm, hold.id, &token, &lines).await;
                }
            }
        }
    }

    /// Confirm hold `id` with a new key; whether it became an order.
    async fn confirm(&mut self, kind: OpKind, id: HoldId, token: &str, lines: &[Line]) -> bool {
        let key = self.new_key();
        let invoked_ms = self.clock.ms();
        let shop = &self.shop;
        let settled = with_same_key(self.config.unknown_retries, || {
            shop.confirm_hold_with_key(&key, id.0, token)
        })
        .await;
        let counts = (settled.attempts, settled.unknown_attempts);
        let result = match settled.result {
            // Like a cart across groups' orders, a hold across groups' are not cancelled.
            Ok(changed) if !changed.other_orders.is_empty() => {
                merged_answer(&key, lines, changed, Some(id))
            }
            Ok(changed) => {
                let order = &changed.order;
                self.own(order.id, order.token.as_deref(), lines.to_vec());
                placed(changed)
            }
            Err(result) => result,
        };
        let became_order = matches!(result, OpResult::Placed { .. });
        let target = Target {
            lines: lines.to_vec(),
            customer: Some(self.customer.clone()),
            hold: Some(id),
            order: None,
        };
        let record = self.op_record(kind, &key, target, invoked_ms, counts, result);
        self.record(record);
        became_order
    }

    /// Release hold `id` with a new key; whether it was released.
    async fn release(&mut self, id: HoldId, token: &str, lines: &[Line]) -> bool {
        let key = self.new_key();
        let invoked_ms = self.clock.ms();
        let shop = &self.shop;
        let settled = with_same_key(self.config.unknown_retries, || {
            shop.release_hold_with_key(&key, id.0, token)
        })
        .await;
        let counts = (settled.attempts, settled.unknown_attempts);
        let result = match settled.result {
            Ok(HoldReleased { hold, replayed }) => OpResult::Released { hold, replayed },
            Err(result) => result,
        };
        let released = matches!(result, OpResult::Released { .. });
        let target = Target {
            lines: lines.to_vec(),
            customer: Some(self.customer.clone()),
            hold: Some(id),
            order: None,
        };
        let record = self.op_record(OpKind::Release, &key, target, invoked_ms, counts, result);
        self.record(record);
        released
    }

    /// The oldest abandoned hold whose deadline is past by [`LATE_CONFIRM_MARGIN_MS`] on this
    /// machine's clock (the clock the leader stamps the log's time with).
    fn due_abandoned(&self) -> Option<usize> {
        let now = wall_clock_ms();
        self.abandoned
            .iter()
            .position(|h| now > h.expires_at_ms + LATE_CONFIRM_MARGIN_MS)
    }

    /// Confirm an abandoned hold after its deadline: it must be refused `hold_expired`.
    async fn late_confirm(&mut self) {
        let Some(index) = self.due_abandoned() else {
            return;
        };
        let hold = self.abandoned.remove(index);
        self.confirm(OpKind::LateConfirm, hold.id, &hold.token, &hold.lines)
            .await;
    }

    /// A cart of 2 or 3 products bought at once: one order of every line, or nothing. With
    /// several groups, half the carts draw their lines from every group: a cart across groups
    /// is bought as one order per group, recorded as one ([`merged_answer`]).
    async fn cart(&mut self) {
        let across = self.config.groups > 1 && self.rng.chance(50);
        let lines = self.pick_lines(2, 3, across);
        let key = self.new_key();
        let customer = self.customer.clone();
        let invoked_ms = self.clock.ms();
        let shop = &self.shop;
        let settled = with_same_key(self.config.unknown_retries, || {
            shop.checkout_with_key(&key, lines.clone(), Some(&customer))
        })
        .await;
        let counts = (settled.attempts, settled.unknown_attempts);
        let result = match settled.result {
            // Orders of a cart across groups are not cancelled: each group would give back
            // its own lines only, and the checker sees the cart as one order.
            Ok(changed) if !changed.other_orders.is_empty() => {
                merged_answer(&key, &lines, changed, None)
            }
            Ok(changed) => {
                let order = &changed.order;
                self.own(order.id, order.token.as_deref(), lines.clone());
                placed(changed)
            }
            Err(result) => result,
        };
        let target = Target {
            lines,
            customer: Some(customer),
            ..Target::default()
        };
        let record = self.op_record(OpKind::Cart, &key, target, invoked_ms, counts, result);
        self.record(record);
    }

    /// Cancel one of this client's orders, with a new key: one not cancelled yet or, now and
    /// then, one cancelled before (which must be refused `already_cancelled`).
    async fn cancel(&mut self) {
        let again = self.rng.chance(self.config.recancel_percent);
        let candidates: Vec<usize> = (0..self.orders.len())
            .filter(|&i| self.orders[i].cancelled == again)
            .collect();
        let index = match candidates.is_empty() {
            true => self.rng.below(self.orders.len() as u64) as usize,
            false => *self.rng.pick(&candidates),
        };
        let (id, token, lines) = {
            let order = &self.orders[index];
            (order.id, order.token.clone(), order.lines.clone())
        };
        let kind = match self.orders[index].cancelled {
            true => OpKind::Recancel,
            false => OpKind::Cancel,
        };
        let key = self.new_key();
        let invoked_ms = self.clock.ms();
        let shop = &self.shop;
        let settled = with_same_key(self.config.unknown_retries, || {
            shop.cancel_order_with_key(&key, id.0, &token)
        })
        .await;
        let counts = (settled.attempts, settled.unknown_attempts);
        let result = match settled.result {
            Ok(OrderChanged {
                order, replayed, ..
            }) => OpResult::Cancelled {
                order: order.id,
                cancelled_at_ms: order.cancelled_at_ms,
                lines: order.lines,
                replayed,
            },
            Err(result) => result,
        };
        let maybe_cancelled = matches!(
            result,
            OpResult::Cancelled { .. } | OpResult::Unknown { .. }
        ) || result.rejection() == Some("already_cancelled");
        if maybe_cancelled {
            self.orders[index].cancelled = true;
        }
        let target = Target {
            lines,
            customer: None,
            hold: None,
            order: Some(id),
        };
        let record = self.op_record(kind, &key, target, invoked_ms, counts, result);
        self.record(record);
    }
}

/// A hold's lines as a request names them.
fn hold_lines(hold: &HoldDetails) -> Vec<Line> {
    hold.lines
        .iter()
        .map(|line| Line {
            product: line.product.clone(),
            quantity: line.quantity,
        })
        .collect()
}

/// An order a cart or a confirmation placed, as the history records it.
fn placed(changed: OrderChanged) -> OpResult {
    let OrderWithLines {
        id,
        key,
        product,
        quantity,
        customer,
        price_cents,
        remaining,
        placed_at_ms,
        token,
        lines,
        hold,
        ..
    } = changed.order;
    OpResult::Placed {
        order: Order {
            id,
            key,
            product,
            quantity,
            customer,
            price_cents,
            remaining,
            placed_at_ms,
            token,
        },
        lines,
        hold,
        replayed: changed.replayed,
    }
}

/// The answer to a cart or a hold across groups (one order per group), as one order under the
/// request's `key` (a hold's: the confirmation's, naming the hold `hold`), the way the checker
/// sees it in the nodes' states ([`crate::checker::carts_across::merged_order`]).
fn merged_answer(
    key: &str,
    lines: &[Line],
    changed: OrderChanged,
    hold: Option<HoldId>,
) -> OpResult {
    let part = |order: OrderWithLines| {
        let lines = order
            .lines
            .iter()
            .map(|line| flashstock_api::OrderLine {
                product: line.product.clone(),
                quantity: line.quantity,
                price_cents: line.price_cents,
                remaining: line.remaining,
                limit_epoch: 0,
            })
            .collect();
        let OpResult::Placed { order, .. } = placed(OrderChanged {
            order,
            replayed: false,
            other_orders: Vec::new(),
        }) else {
            unreachable!("placed always answers Placed")
        };
        (order, lines)
    };
    let replayed = changed.replayed;
    let mut parts = vec![part(changed.order)];
    parts.extend(changed.other_orders.into_iter().map(part));
    let requested: Vec<(String, u64)> = lines
        .iter()
        .map(|line| (line.product.clone(), u64::from(line.quantity)))
        .collect();
    let (order, lines) = crate::checker::carts_across::merged_order(key, &requested, parts);
    OpResult::Placed {
        order,
        lines: lines.iter().map(Into::into).collect(),
        hold,
        replayed,
    }
}

/// This machine's wall clock, milliseconds since the Unix epoch: what the leader stamps the
/// log's time with, and so holds' deadlines.
fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The admin: restocks a random product now and then; every other restock is sent as a bulk
/// request of one item (`POST /v1/admin/products/bulk`, as a catalog import sends them), so that
/// its retries after an unknown outcome meet the bulk request's idempotency record.
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
        let retries = self.config.unknown_retries;
        let (result, settled) = if n.is_multiple_of(2) {
            let settled =
                with_same_key(retries, || shop.restock_with_key(&key, &product, quantity)).await;
            let result = match settled.result {
                Ok(changed) => OpResult::Restocked {
                    product: Some(changed.product),
                },
                Err(result) => result,
            };
            (result, (settled.attempts, settled.unknown_attempts))
        } else {
            let request = BulkRequest {
                items: vec![BulkItem::Restock {
                    id: product.clone(),
                    quantity,
                }],
            };
            let settled = with_same_key(retries, || shop.bulk_with_key(&key, &request)).await;
            let result = match settled.result {
                Ok(response) => bulk_restock_result(response),
                Err(result) => result,
            };
            (result, (settled.attempts, settled.unknown_attempts))
        };
        self.ops.push(OpRecord {
            client: ADMIN_CLIENT,
            kind: OpKind::Restock,
            key: Some(key),
            product,
            quantity,
            invoked_ms,
            completed_ms: self.clock.ms(),
            attempts: settled.0,
            unknown_attempts: settled.1,
            expected: None,
            target: Target::default(),
            result,
        });
    }
}

/// The outcome of a restock sent as a bulk request of one item, from the request's answer: the
/// answer is definite (the request's record gave it, or it applied now), and says what the item
/// did but not the product after it.
fn bulk_restock_result(response: BulkResponse) -> OpResult {
    match response.results.into_iter().next() {
        Some(item) if item.status == BulkStatus::Restocked => OpResult::Restocked { product: None },
        Some(item) => match item.error {
            Some(error) => OpResult::Rejected {
                code: error.code.to_string(),
                message: error.message,
            },
            None => OpResult::Rejected {
                code: "unexpected_item_status".into(),
                message: format!("a restock item answered {:?}", item.status),
            },
        },
        None => OpResult::Rejected {
            code: "no_item_result".into(),
            message: "a bulk answer without the item's result".into(),
        },
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

    fn item(status: BulkStatus, error: Option<&str>) -> BulkResponse {
        BulkResponse {
            results: vec![flashstock_api::BulkItemResult {
                id: "p".into(),
                status,
                replayed: false,
                error: error.map(|code| flashstock_api::ErrorBody {
                    code: flashstock_api::ErrorCode::parse(code),
                    message: "refused".into(),
                }),
            }],
        }
    }

    /// A one-item bulk restock is confirmed only when its item says restocked; a refused item
    /// is a definite rejection with its code.
    #[test]
    fn a_bulk_restock_is_what_its_item_says() {
        assert_eq!(
            bulk_restock_result(item(BulkStatus::Restocked, None)),
            OpResult::Restocked { product: None }
        );
        assert!(matches!(
            bulk_restock_result(item(BulkStatus::Rejected, Some("unknown_product"))),
            OpResult::Rejected { code, .. } if code == "unknown_product"
        ));
        assert!(matches!(
            bulk_restock_result(item(BulkStatus::Created, None)),
            OpResult::Rejected { code, .. } if code == "unexpected_item_status"
        ));
        assert!(matches!(
            bulk_restock_result(BulkResponse { results: vec![] }),
            OpResult::Rejected { code, .. } if code == "no_item_result"
        ));
    }

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
