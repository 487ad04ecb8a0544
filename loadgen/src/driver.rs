//! The three ways a run sends load.
//!
//! - **Closed loop** ([`Mode::Closed`]): C clients, one connection each; a client sends its next
//!   request when the last one returns. Finds the maximum throughput; its latencies are those of
//!   a saturated system (a closed loop slows down with the server, so it understates stalls).
//! - **Burst** ([`Mode::Burst`]): the C connections are opened, then every client fires one
//!   request at the same instant; the figure is the time until the last answer.
//! - **Open loop** ([`Mode::Open`]): requests arrive at a fixed rate whatever the server does.
//!   Request `i` is due at `start + i / rate`; a dispatcher hands it to a free connection at that
//!   time, or as soon as one is free. Latency runs from the **intended** send time, so time spent
//!   waiting for a free connection, or behind a stalled server, counts (no coordinated omission).
//!
//! In every mode, connections are opened before the measured phase starts. A write (a purchase,
//! a hold and its confirmation or release, a cart) carries a unique `Idempotency-Key`; after `504 outcome_unknown` or a transport failure it is sent again
//! with the same key, at most [`RunConfig::purchase_attempts`] times, and classified by its final
//! answer.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flashstock_api::{
    CartRequest, ErrorBody, HoldResponse, Line, OrderChanged, ProductView, PurchaseRequest,
    PurchaseResponse, ORDER_TOKEN_HEADER,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::{mpsc, Barrier};

use crate::http::{Answer, Connection, Target};
use crate::record::{Kind, Live, Recorder};
use crate::workload::{Op, Rng, Workload};

/// Pause before the first same-key retry of a purchase; it doubles up to [`RETRY_BACKOFF_MAX`].
const RETRY_BACKOFF: Duration = Duration::from_millis(20);
const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(500);
/// A dispatch later than this after its intended time counts as late (open loop). Above the
/// timer's 1 ms granularity, so it counts waits for a free connection, not timer rounding.
const LATE_DISPATCH: Duration = Duration::from_millis(5);
/// How often the progress bar is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// How load is sent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    Closed,
    Burst,
    /// Fixed arrival rate, requests per second over all connections.
    Open {
        rate: f64,
    },
}

/// Settings of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub mode: Mode,
    /// Client connections, spread round-robin over the target's URLs.
    pub connections: usize,
    /// Length of the measured phase (closed and open loop).
    pub duration: Duration,
    /// Deadline of one HTTP exchange.
    pub request_timeout: Duration,
    /// Attempts of one purchase (same idempotency key) after 504 or a transport failure.
    pub purchase_attempts: u32,
    /// Draw a progress bar (only on a terminal).
    pub progress: bool,
    /// Seed of the clients' random draws.
    pub seed: u64,
    /// Closed loop: also keep the record split into intervals of this length, for figures over
    /// time ([`RunResult::intervals`]).
    pub interval: Option<Duration>,
}

impl RunConfig {
    pub fn new(mode: Mode, connections: usize, duration: Duration) -> RunConfig {
        RunConfig {
            mode,
            connections,
            duration,
            request_timeout: Duration::from_secs(30),
            purchase_attempts: 5,
            progress: true,
            seed: 1,
            interval: None,
        }
    }
}

/// What a run measured, before the final-state check.
#[derive(Debug)]
pub struct RunResult {
    pub recorder: Recorder,
    /// Time to open every connection (not measured as latency).
    pub connect_time: Duration,
    /// From the start of the measured phase to the last answer.
    pub elapsed: Duration,
    /// From the start to the last confirmed purchase: how long a flash sale took to sell out.
    pub last_confirmed: Option<Duration>,
    /// Burst mode: the time from the release to the last answer.
    pub burst_time: Option<Duration>,
    /// Open loop: requests handed to a connection more than 5 ms after their intended time.
    pub late_dispatches: u64,
    /// Open loop: requests scheduled.
    pub scheduled: u64,
    /// With [`RunConfig::interval`]: the record of each interval from the start, in order
    /// (`recorder` is their sum). An answer counts in the interval in which its client next
    /// looked at the clock, right after it: at most one answer per client lands one interval
    /// early or late.
    pub intervals: Vec<Recorder>,
}

/// One simulated client: a connection, its random draws and its record.
struct Client {
    index: usize,
    connection: Connection,
    workload: Arc<Workload>,
    recorder: Recorder,
    live: Arc<Live>,
    purchases: u64,
    attempts: u32,
    /// Length of the measured phase (closed loop).
    duration: Duration,
    /// Unique to the run: in every idempotency key, so that runs over the same catalog never
    /// share a key.
    run_id: Arc<str>,
    /// When it last saw a purchase confirmed.
    last_confirmed: Option<Instant>,
}

/// How a purchase ended, for the loop that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Done,
    SoldOut,
}

fn error_code(answer: &Answer) -> String {
    serde_json::from_slice::<ErrorBody>(&answer.body)
        .map(|body| body.code.to_string())
        .unwrap_or_else(|_| "unparsed".into())
}

impl Client {
    fn new(
        index: usize,
        target: &Target,
        workload: Arc<Workload>,
        live: Arc<Live>,
        config: &RunConfig,
        run_id: Arc<str>,
    ) -> Client {
        let connection = target
            .connection(target.url_for(index), config.request_timeout)
            .expect("target URLs were checked when the target was built");
        Client {
            index,
            connection,
            workload,
            recorder: Recorder::new(),
            live,
            purchases: 0,
            attempts: config.purchase_attempts.max(1),
            duration: config.duration,
            run_id,
            last_confirmed: None,
        }
    }

    /// Perform one operation; latency runs from `since` (the intended send time in an open loop).
    async fn perform(&mut self, op: Op, since: Instant) -> Ended {
        match op {
            Op::View { product } => {
                self.view(product, since).await;
                Ended::Done
            }
            Op::Purchase { product, quantity } => self.purchase(product, quantity, since).await,
            Op::HoldThenPay { product, pay } => self.hold_then_pay(product, pay, since).await,
            Op::Cart { products } => self.cart(&products[..], since).await,
        }
    }

    async fn view(&mut self, product: usize, since: Instant) {
        let path = format!("/v1/products/{}", self.workload.catalog.id(product));
        let sent = self.connection.get(&path).await;
        self.recorder.latency(Kind::View, since.elapsed());
        let error = match sent {
            Ok(answer) if answer.status == 200 => {
                // Every view is checked: a product that breaks conservation, or shows more sold
                // than it ever had, is an oversell seen from outside.
                let sound = serde_json::from_slice::<ProductView>(&answer.body).is_ok_and(|v| {
                    v.product.is_conserved()
                        && v.product.sold <= v.product.initial_stock + v.product.restocked
                });
                if sound {
                    self.recorder.answer("view", 200, "", false);
                } else {
                    self.recorder.bad_views += 1;
                    self.recorder.answer("view", 200, "bad_view", true);
                }
                !sound
            }
            Ok(answer) => {
                let code = error_code(&answer);
                self.recorder.answer("view", answer.status, &code, true);
                true
            }
            Err(e) => {
                self.recorder
                    .answer("view", 0, &format!("transport:{}", e.label()), true);
                true
            }
        };
        self.live.answered(error);
    }

    /// Send one write with `key` until its answer is definite: after `504 outcome_unknown` or a
    /// transport failure the same key is sent again, at most `attempts` times in all.
    async fn write(&mut self, path: &str, key: &str, body: Bytes, token: Option<&str>) -> Written {
        let mut headers = vec![("idempotency-key", key)];
        if let Some(token) = token {
            headers.push((ORDER_TOKEN_HEADER, token));
        }
        let mut backoff = RETRY_BACKOFF;
        for attempt in 1..=self.attempts {
            let unknown = match self
                .connection
                .post_json(path, &headers, body.clone())
                .await
            {
                Ok(answer) if answer.status == 504 => (504, error_code(&answer)),
                Ok(answer) => return Written::Answered(answer),
                Err(e) => (0, format!("transport:{}", e.label())),
            };
            if attempt == self.attempts {
                return Written::Unknown(unknown.0, unknown.1);
            }
            // Outcome unknown: the same key again tells what happened, and never applies twice.
            self.recorder.retries += 1;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
        }
        unreachable!("at least one attempt")
    }

    /// A purchase whose outcome stayed unknown: `items` may or may not have been sold.
    fn unknown(
        &mut self,
        request: &'static str,
        status: u16,
        code: &str,
        items: &[usize],
        since: Instant,
    ) {
        self.recorder.latency(Kind::PurchaseFailed, since.elapsed());
        for product in items {
            self.recorder.unknown(*product, 1);
        }
        self.recorder.answer(request, status, code, true);
        self.live.answered(true);
    }

    /// A definite refusal of a purchase (a plain one, a hold or a cart): sold out is expected
    /// once a sale sells out, anything else is an error of the run.
    fn refused(&mut self, request: &'static str, answer: &Answer, since: Instant) -> Ended {
        let code = error_code(answer);
        let sold_out = answer.status == 409 && code == "insufficient_stock";
        let error = !(sold_out && self.workload.sells_out());
        let kind = if sold_out {
            Kind::PurchaseSoldOut
        } else {
            Kind::PurchaseFailed
        };
        self.recorder.latency(kind, since.elapsed());
        self.recorder.answer(request, answer.status, &code, error);
        self.live.answered(error);
        if sold_out {
            Ended::SoldOut
        } else {
            Ended::Done
        }
    }

    fn next_key(&mut self) -> String {
        self.purchases += 1;
        format!("{}-{}-{}", self.run_id, self.index, self.purchases)
    }

    async fn purchase(&mut self, product: usize, quantity: u32, since: Instant) -> Ended {
        let key = self.next_key();
        let path = format!(
            "/v1/products/{}/purchase",
            self.workload.catalog.id(product)
        );
        let body = Bytes::from(
            serde_json::to_vec(&PurchaseRequest {
                quantity,
                customer: None,
            })
            .expect("a purchase request serializes"),
        );
        match self.write(&path, &key, body, None).await {
            Written::Answered(answer) if answer.status == 200 => {
                let elapsed = since.elapsed();
                match serde_json::from_slice::<PurchaseResponse>(&answer.body) {
                    Ok(bought) => {
                        self.recorder.latency(Kind::PurchaseConfirmed, elapsed);
                        self.recorder.confirmed(
                            product,
                            bought.order.quantity,
                            bought.order.remaining,
                        );
                        self.recorder.answer("purchase", 200, "", false);
                        self.last_confirmed = Some(Instant::now());
                        self.live.answered(false);
                    }
                    // Confirmed, but we cannot tell what: keep it as unknown for the check.
                    Err(_) => self.unknown("purchase", 200, "unparsed", &[product], since),
                }
                Ended::Done
            }
            Written::Answered(answer) => self.refused("purchase", &answer, since),
            Written::Unknown(status, code) => {
                self.unknown("purchase", status, &code, &[product], since);
                Ended::Done
            }
        }
    }

    /// Hold one item, then pay (confirm) or not (release), as a checkout with a payment step
    /// does. Latency runs from the hold to the second answer; only a confirmed hold sold.
    async fn hold_then_pay(&mut self, product: usize, pay: bool, since: Instant) -> Ended {
        let key = self.next_key();
        let id = self.workload.catalog.id(product);
        let body = Bytes::from(
            serde_json::to_vec(&CartRequest {
                lines: vec![Line {
                    product: id,
                    quantity: 1,
                }],
                customer: None,
            })
            .expect("a hold request serializes"),
        );
        let held = match self.write("/v1/holds", &key, body, None).await {
            Written::Answered(answer) if answer.is_success() => {
                match serde_json::from_slice::<HoldResponse>(&answer.body) {
                    Ok(held) => held,
                    Err(_) => {
                        // Held, but we cannot tell which hold: it expires by itself.
                        self.unknown("hold", answer.status, "unparsed", &[], since);
                        return Ended::Done;
                    }
                }
            }
            Written::Answered(answer) => return self.refused("hold", &answer, since),
            Written::Unknown(status, code) => {
                // Held or not, nothing was sold: an unconfirmed hold expires.
                self.unknown("hold", status, &code, &[], since);
                return Ended::Done;
            }
        };
        let (action, request) = if pay {
            ("confirm", "confirm")
        } else {
            ("release", "release")
        };
        let path = format!("/v1/holds/{}/{action}", held.hold.id.0);
        let key = self.next_key();
        let sold: &[usize] = if pay { &[product] } else { &[] };
        match self
            .write(&path, &key, Bytes::new(), Some(&held.token))
            .await
        {
            Written::Answered(answer) if answer.is_success() => {
                self.recorder.latency(
                    if pay {
                        Kind::PurchaseConfirmed
                    } else {
                        Kind::HoldReleased
                    },
                    since.elapsed(),
                );
                if pay {
                    // A confirmation's `remaining` is what was available when it was confirmed,
                    // which releases raise again: only the count is checked.
                    self.recorder.confirmed_count(product, 1);
                    self.last_confirmed = Some(Instant::now());
                }
                self.recorder.answer(request, answer.status, "", false);
                self.live.answered(false);
            }
            Written::Answered(answer) => {
                // A hold just placed is neither expired nor finished: any refusal is an error.
                let code = error_code(&answer);
                self.recorder.latency(Kind::PurchaseFailed, since.elapsed());
                self.recorder.answer(request, answer.status, &code, true);
                self.live.answered(true);
            }
            Written::Unknown(status, code) => self.unknown(request, status, &code, sold, since),
        }
        Ended::Done
    }

    /// Buy a cart of distinct products at once: one order, every line or none.
    async fn cart(&mut self, products: &[usize], since: Instant) -> Ended {
        let key = self.next_key();
        let lines = products
            .iter()
            .map(|p| Line {
                product: self.workload.catalog.id(*p),
                quantity: 1,
            })
            .collect();
        let body = Bytes::from(
            serde_json::to_vec(&CartRequest {
                lines,
                customer: None,
            })
            .expect("a cart serializes"),
        );
        match self.write("/v1/checkout", &key, body, None).await {
            Written::Answered(answer) if answer.is_success() => {
                match serde_json::from_slice::<OrderChanged>(&answer.body) {
                    Ok(bought) if bought.order.lines.len() == products.len() => {
                        self.recorder
                            .latency(Kind::PurchaseConfirmed, since.elapsed());
                        for (product, line) in products.iter().zip(&bought.order.lines) {
                            self.recorder
                                .confirmed(*product, line.quantity, line.remaining);
                        }
                        self.recorder.answer("cart", answer.status, "", false);
                        self.last_confirmed = Some(Instant::now());
                        self.live.answered(false);
                    }
                    _ => self.unknown("cart", answer.status, "unparsed", products, since),
                }
                Ended::Done
            }
            Written::Answered(answer) => self.refused("cart", &answer, since),
            Written::Unknown(status, code) => {
                self.unknown("cart", status, &code, products, since);
                Ended::Done
            }
        }
    }
}

/// How a write ended: a definite answer, or none after every attempt.
enum Written {
    Answered(Answer),
    Unknown(u16, String),
}

/// A progress bar on stderr, redrawn from the live counters; none when stderr is not a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// `length` is the expected number of steps (milliseconds of the run, or items to create);
    /// `position` reads the current step.
    pub fn start(
        enabled: bool,
        label: &str,
        length: u64,
        position: impl Fn() -> (u64, String) + Send + 'static,
    ) -> Progress {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress {
                bar: None,
                ticker: None,
            };
        }
        let bar = ProgressBar::new(length.max(1));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {elapsed:>4} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_owned());
        let drawn = bar.clone();
        let ticker = tokio::spawn(async move {
            loop {
                let (at, message) = position();
                drawn.set_position(at);
                drawn.set_message(message);
                tokio::time::sleep(PROGRESS_INTERVAL).await;
            }
        });
        Progress {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }

    pub fn finish(self) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

fn run_progress(config: &RunConfig, live: &Arc<Live>, began: Instant) -> Progress {
    let live = live.clone();
    let length = config.duration.as_millis() as u64;
    Progress::start(config.progress, "load", length, move || {
        let elapsed = began.elapsed();
        let answers = live.answers.load(std::sync::atomic::Ordering::Relaxed);
        let errors = live.errors.load(std::sync::atomic::Ordering::Relaxed);
        let rate = answers as f64 / elapsed.as_secs_f64().max(1e-3);
        (
            elapsed.as_millis() as u64,
            format!("{answers} answers, {rate:.0}/s, {errors} errors"),
        )
    })
}

/// Run `workload` against `target` as `config` says. The catalog must exist (see `setup`).
pub async fn run(target: &Target, workload: Arc<Workload>, config: &RunConfig) -> RunResult {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let run_id: Arc<str> = format!("{}-r{:x}", workload.catalog.prefix, nanos % (1 << 40)).into();
    match config.mode {
        Mode::Closed | Mode::Burst => closed(target, workload, config, run_id).await,
        Mode::Open { rate } => open(target, workload, config, rate, run_id).await,
    }
}

/// What one client task hands back.
struct ClientDone {
    recorder: Recorder,
    last_confirmed: Option<Instant>,
    finished: Instant,
}

async fn closed(
    target: &Target,
    workload: Arc<Workload>,
    config: &RunConfig,
    run_id: Arc<str>,
) -> RunResult {
    let burst = config.mode == Mode::Burst;
    let live = Arc::new(Live::default());
    // Everyone connects, then everyone starts at once.
    let start = Arc::new(Barrier::new(config.connections + 1));
    let (go_tx, go_rx) = tokio::sync::watch::channel(None::<Instant>);
    let mut tasks = tokio::task::JoinSet::new();
    let (split, merger) = match config.interval.filter(|_| !burst) {
        Some(every) => {
            let (split, merger) = Split::start(every);
            (Some(split), Some(merger))
        }
        None => (None, None),
    };
    let connecting = Instant::now();
    for index in 0..config.connections {
        let mut client = Client::new(
            index,
            target,
            workload.clone(),
            live.clone(),
            config,
            run_id.clone(),
        );
        let start = start.clone();
        let split = split.clone();
        let mut go = go_rx.clone();
        let mut rng = Rng::new(config.seed.wrapping_mul(1_000_003) + index as u64);
        tasks.spawn(async move {
            // A failed connect is retried by the first request, and counted there.
            let _ = client.connection.connect().await;
            start.wait().await;
            let began = go
                .wait_for(Option::is_some)
                .await
                .map(|at| at.expect("set"))
                .unwrap_or_else(|_| Instant::now());
            if burst {
                let op = client.workload.next_op(&mut rng);
                client.perform(op, Instant::now()).await;
            } else {
                let deadline = began + client.duration;
                let mut interval = 0;
                while Instant::now() < deadline {
                    let op = client.workload.next_op(&mut rng);
                    // A flash-sale buyer stops once it has seen the product sold out.
                    let ended = client.perform(op, Instant::now()).await;
                    if let Some(split) = &split {
                        let now = split.index(began, Instant::now());
                        if now != interval {
                            split.deposit(interval, std::mem::take(&mut client.recorder));
                            interval = now;
                        }
                    }
                    if ended == Ended::SoldOut {
                        break;
                    }
                }
                if let Some(split) = &split {
                    split.deposit(interval, std::mem::take(&mut client.recorder));
                }
            }
            ClientDone {
                recorder: client.recorder,
                last_confirmed: client.last_confirmed,
                finished: Instant::now(),
            }
        });
    }
    start.wait().await;
    let connect_time = connecting.elapsed();
    let began = Instant::now();
    go_tx.send_replace(Some(began));
    let progress = run_progress(config, &live, began);
    let mut result = collect(&mut tasks, began).await;
    progress.finish();
    result.connect_time = connect_time;
    // Every client's sender is gone with its task; this one closes the merger's channel.
    drop(split);
    if let Some(merger) = merger {
        result.intervals = merger.await.expect("the merger does not panic");
        for interval in &result.intervals {
            result.recorder.merge(interval.clone());
        }
    }
    if burst {
        result.burst_time = Some(result.elapsed);
    }
    result
}

async fn collect(tasks: &mut tokio::task::JoinSet<ClientDone>, began: Instant) -> RunResult {
    let mut recorder = Recorder::new();
    let mut last_confirmed: Option<Instant> = None;
    let mut finished = began;
    while let Some(done) = tasks.join_next().await {
        let done = done.expect("a client task does not panic");
        recorder.merge(done.recorder);
        last_confirmed = last_confirmed.max(done.last_confirmed);
        finished = finished.max(done.finished);
    }
    RunResult {
        recorder,
        connect_time: Duration::ZERO,
        elapsed: finished - began,
        last_confirmed: last_confirmed.map(|at| at - began),
        burst_time: None,
        late_dispatches: 0,
        scheduled: 0,
        intervals: Vec::new(),
    }
}

/// Where the clients of a closed loop hand in their record at each interval's end
/// ([`RunConfig::interval`]). One task merges them, so that no client waits on another's merge.
#[derive(Clone)]
struct Split {
    every: Duration,
    /// Bounded by the clients: each hands in at most one record per interval.
    records: mpsc::UnboundedSender<(usize, Recorder)>,
}

impl Split {
    /// The split, and the merger that returns every interval's record once every clone of the
    /// split is dropped.
    fn start(every: Duration) -> (Split, tokio::task::JoinHandle<Vec<Recorder>>) {
        assert!(!every.is_zero(), "an interval has a length");
        let (records, mut handed_in) = mpsc::unbounded_channel::<(usize, Recorder)>();
        let merger = tokio::spawn(async move {
            let mut intervals: Vec<Recorder> = Vec::new();
            while let Some((index, record)) = handed_in.recv().await {
                if intervals.len() <= index {
                    intervals.resize_with(index + 1, Recorder::new);
                }
                intervals[index].merge(record);
            }
            intervals
        });
        (Split { every, records }, merger)
    }

    /// The interval `at` falls in.
    fn index(&self, began: Instant, at: Instant) -> usize {
        (at.saturating_duration_since(began).as_nanos() / self.every.as_nanos()) as usize
    }

    fn deposit(&self, index: usize, record: Recorder) {
        // The merger runs until every sender is gone: the send cannot fail.
        let _ = self.records.send((index, record));
    }
}

/// One request of an open loop: what to do and when it was due.
struct Job {
    op: Op,
    due: Instant,
}

async fn open(
    target: &Target,
    workload: Arc<Workload>,
    config: &RunConfig,
    rate: f64,
    run_id: Arc<str>,
) -> RunResult {
    assert!(rate > 0.0, "an open loop needs a positive rate");
    let live = Arc::new(Live::default());
    let start = Arc::new(Barrier::new(config.connections + 1));
    let (idle_tx, mut idle_rx) = mpsc::unbounded_channel::<usize>();
    let mut jobs = Vec::with_capacity(config.connections);
    let mut tasks = tokio::task::JoinSet::new();
    let connecting = Instant::now();
    for index in 0..config.connections {
        let mut client = Client::new(
            index,
            target,
            workload.clone(),
            live.clone(),
            config,
            run_id.clone(),
        );
        let (job_tx, mut job_rx) = mpsc::channel::<Job>(1);
        jobs.push(job_tx);
        let start = start.clone();
        let idle = idle_tx.clone();
        tasks.spawn(async move {
            let _ = client.connection.connect().await;
            start.wait().await;
            let _ = idle.send(index);
            while let Some(job) = job_rx.recv().await {
                client.perform(job.op, job.due).await;
                let _ = idle.send(index);
            }
            ClientDone {
                recorder: client.recorder,
                last_confirmed: client.last_confirmed,
                finished: Instant::now(),
            }
        });
    }
    drop(idle_tx);
    start.wait().await;
    let connect_time = connecting.elapsed();
    let began = Instant::now();
    let progress = run_progress(config, &live, began);
    let mut rng = Rng::new(config.seed);
    let total = (rate * config.duration.as_secs_f64()).round() as u64;
    let mut late = 0;
    for i in 0..total {
        let due = began + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        // Waiting here for a free connection is part of the request's latency: it runs from `due`.
        let Some(index) = idle_rx.recv().await else {
            break;
        };
        if due.elapsed() > LATE_DISPATCH {
            late += 1;
        }
        let job = Job {
            op: workload.next_op(&mut rng),
            due,
        };
        if jobs[index].send(job).await.is_err() {
            break;
        }
    }
    drop(jobs);
    let mut result = collect(&mut tasks, began).await;
    progress.finish();
    result.connect_time = connect_time;
    result.late_dispatches = late;
    result.scheduled = total;
    result
}
