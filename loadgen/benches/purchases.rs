//! Purchase throughput of one Raft leader, with and without batching.
//!
//! # What it measures
//!
//! Three real `flashstock-node` voter processes run on loopback (one machine, so the "network" is
//! free and the three replicas share its cores and its disk). One product is created with a stock
//! of 1 000 000 000, so no purchase can sell out. Then `--clients` concurrent tasks send writes
//! (`VoterClient::write`, the voters' internal write endpoint) **to the leader only**, back to back,
//! for `--seconds` seconds, in two modes:
//!
//! - `batching off`: each write carries 1 purchase, so each purchase is one Raft entry;
//! - `batching on`: each write carries `--batch` purchases, so that many share one Raft entry
//!   (one replicated fsync), which is what a gateway does.
//!
//! Every purchase has a unique idempotency key. The modes alternate (off, on, off, on, ...) and each
//! runs 3 times; the table shows each mode's median run by purchases per second. Only
//! `Outcome::Purchased` counts as a purchase; any other outcome or client error is counted in the
//! `errors` column (summed over the mode's runs), described below the table, and makes the process
//! exit non-zero.
//!
//! # How to run it
//!
//! Through the release profile only (RocksDB is built once for it):
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo test --release -p flashstock-loadgen --bench purchases -- --bench [--seconds N] [--clients N] [--batch N]
//! ```
//!
//! Defaults: 5 s per run, 64 clients, 32 purchases per batched write. Without `--bench` in its
//! arguments (as when a test run builds every target) it prints one line and exits at once.
//!
//! `--archive` also starts a PostgreSQL server (Debian's `postgresql` package) and turns the order
//! archive on, so that a run with and a run without it show what archiving costs purchases; at
//! the end it reports the archive backlog and how fast the leader worked it off.
//!
//! # How to read it
//!
//! - `purchases/s`: confirmed purchases per second of the run's wall time (until the last write
//!   sent before the deadline returned);
//! - `writes/s`: `VoterClient::write` calls per second, i.e. HTTP requests and Raft entries;
//! - `write p50/p99/p99.9 ms`: latency of one `VoterClient::write` call, from sending the request
//!   to decoding the answer (committed on a majority and applied);
//! - `ratio on/off`: how much batching multiplies purchase throughput.
//!
//! The numbers are of one machine running all three replicas plus the clients: they show the
//! effect of batching, not what three separate servers would do. The leader's status at the end
//! shows how many log entries the runs wrote; a leader or term change during the runs is reported.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use flashstock_api::{Command, NodeStatus, Op, Outcome};
use flashstock_client::VoterClient;
use flashstock_deploy::local::{node_binary, Layout, LocalCluster};
use flashstock_deploy::postgres::{Postgres, PostgresOptions};

const PRODUCT: &str = "bench-product";
const INITIAL_STOCK: u64 = 1_000_000_000;
const REPEATS: usize = 3;
const ELECTION_WAIT: Duration = Duration::from_secs(30);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed write, so that a failing node is not hammered in a tight loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// Most example messages kept per kind of error.
const ERROR_EXAMPLES_MAX: usize = 3;

/// Command-line settings.
#[derive(Debug, Clone, Copy)]
struct Settings {
    seconds: u64,
    clients: usize,
    batch: usize,
    archive: bool,
}

impl Settings {
    fn parse(args: &[String]) -> Result<Settings, String> {
        let mut settings = Settings {
            seconds: 5,
            clients: 64,
            batch: 32,
            archive: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| -> Result<u64, String> {
                let text = args.next().ok_or(format!("{name} needs a value"))?;
                match text.parse::<u64>() {
                    Ok(n) if n >= 1 => Ok(n),
                    _ => Err(format!("{name} needs a positive integer, got {text:?}")),
                }
            };
            match arg.as_str() {
                "--bench" => {}
                "--archive" => settings.archive = true,
                "--seconds" => settings.seconds = value("--seconds")?,
                "--clients" => settings.clients = value("--clients")? as usize,
                "--batch" => settings.batch = value("--batch")? as usize,
                other => {
                    return Err(format!(
                        "unknown argument {other:?}; expected --bench [--seconds N] [--clients N] [--batch N] [--archive]"
                    ))
                }
            }
        }
        Ok(settings)
    }
}

/// One benchmark mode: how many purchases each write carries.
#[derive(Debug, Clone, Copy)]
struct Mode {
    name: &'static str,
    commands_per_write: usize,
}

/// What one run of one mode measured.
#[derive(Debug, Default)]
struct RunResult {
    elapsed: Duration,
    writes: u64,
    purchased: u64,
    /// Sorted latencies of every write call, failed ones included.
    latencies: Vec<Duration>,
    /// Error kind to (count, example messages).
    errors: BTreeMap<String, (u64, Vec<String>)>,
}

impl RunResult {
    fn purchases_per_second(&self) -> f64 {
        self.purchased as f64 / self.elapsed.as_secs_f64()
    }

    fn writes_per_second(&self) -> f64 {
        self.writes as f64 / self.elapsed.as_secs_f64()
    }

    fn error_count(&self) -> u64 {
        self.errors.values().map(|(count, _)| count).sum()
    }

    fn record_error(&mut self, kind: String, example: String, count: u64) {
        let entry = self.errors.entry(kind).or_default();
        entry.0 += count;
        if entry.1.len() < ERROR_EXAMPLES_MAX {
            entry.1.push(example);
        }
    }

    /// Add another run's or task's error counts and examples to this one's.
    fn merge_errors(&mut self, other: &BTreeMap<String, (u64, Vec<String>)>) {
        for (kind, (count, examples)) in other {
            let entry = self.errors.entry(kind.clone()).or_default();
            entry.0 += count;
            let room = ERROR_EXAMPLES_MAX.saturating_sub(entry.1.len());
            entry.1.extend(examples.iter().take(room).cloned());
        }
    }

    /// Fold another task's counts into this one (latencies are sorted once, at the end).
    fn merge(&mut self, other: RunResult) {
        self.writes += other.writes;
        self.purchased += other.purchased;
        self.latencies.extend(other.latencies);
        self.merge_errors(&other.errors);
    }
}

/// The `p`-quantile (0 < p <= 1) of sorted latencies, by nearest rank, in milliseconds.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

fn purchase(key: String) -> Command {
    Command {
        key,
        op: Op::Purchase {
            product: PRODUCT.into(),
            quantity: 1,
            customer: None,
            token: None,
        },
    }
}

fn create_product() -> Command {
    Command {
        key: format!("{PRODUCT}-create"),
        op: Op::CreateProduct {
            product: PRODUCT.into(),
            name: "Benchmark product".into(),
            price_cents: 1999,
            stock: INITIAL_STOCK,
        },
    }
}

/// One client task: writes back to back until `deadline`, each write with `mode`'s batch size.
async fn client_task(
    client: VoterClient,
    mode: Mode,
    key_prefix: String,
    deadline: Instant,
) -> RunResult {
    let mut result = RunResult::default();
    let mut sequence: u64 = 0;
    while Instant::now() < deadline {
        let commands: Vec<Command> = (0..mode.commands_per_write)
            .map(|_| {
                sequence += 1;
                purchase(format!("{key_prefix}-{sequence}"))
            })
            .collect();
        let started = Instant::now();
        let answer = client.write(commands).await;
        result.latencies.push(started.elapsed());
        result.writes += 1;
        match answer {
            Ok(applied) => {
                for outcome in &applied.outcomes {
                    match outcome {
                        Outcome::Purchased(_) => result.purchased += 1,
                        Outcome::Rejected(rejection) => result.record_error(
                            format!("rejected: {}", rejection.code()),
                            rejection.to_string(),
                            1,
                        ),
                        other => result.record_error(
                            "unexpected outcome".into(),
                            format!("{other:?}"),
                            1,
                        ),
                    }
                }
                let missing = mode.commands_per_write as u64 - applied.outcomes.len() as u64;
                if missing > 0 {
                    result.record_error(
                        "missing outcomes".into(),
                        format!(
                            "{} outcomes for {}",
                            applied.outcomes.len(),
                            mode.commands_per_write
                        ),
                        missing,
                    );
                }
            }
            Err(error) => {
                // The whole write failed: count each of its purchases as an error.
                let kind = if error.is_definite() {
                    "write refused"
                } else {
                    "write outcome unknown"
                };
                result.record_error(
                    kind.into(),
                    error.to_string(),
                    mode.commands_per_write as u64,
                );
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
    result
}

/// One run of one mode: `clients` tasks for `seconds`, all through `client` (the leader only).
async fn run(client: &VoterClient, settings: Settings, mode: Mode, run_id: usize) -> RunResult {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(settings.seconds);
    let tasks: Vec<_> = (0..settings.clients)
        .map(|task| {
            let prefix = format!("bench-r{run_id}-c{task}");
            tokio::spawn(client_task(client.clone(), mode, prefix, deadline))
        })
        .collect();
    let mut total = RunResult::default();
    for task in tasks {
        total.merge(task.await.expect("a client task does not panic"));
    }
    total.elapsed = started.elapsed();
    total.latencies.sort_unstable();
    total
}

fn print_status(label: &str, status: &NodeStatus) {
    let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    println!(
        "{label}: node {} {} term {} leader {} last_log_index {} applied_index {}",
        status.id,
        status.state,
        status.term,
        show(status.leader),
        show(status.last_log_index),
        show(status.applied_index),
    );
}

/// Wait until the leader's archive backlog is 0 and print how fast it went down.
async fn report_archive_drain(
    client: &VoterClient,
    leader_addr: &str,
    backlog_at_end: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    loop {
        let status = client.status(leader_addr).await?;
        let archive = status.archive.ok_or("the leader reports no archive")?;
        if archive.backlog == 0 {
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "archive: {} orders placed, backlog {backlog_at_end} when the runs ended, \
                 worked off in {seconds:.2} s ({:.0} orders/s)",
                archive.orders_placed,
                backlog_at_end as f64 / seconds.max(0.001)
            );
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!("archive backlog still {} after 600 s", archive.backlog).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The voters' cluster (with PostgreSQL for the archive when asked), formed, and a client that
/// writes to its leader alone.
struct Bench {
    // Held for its drop; fields drop in order: the cluster stops before the PostgreSQL it
    // archives into.
    _cluster: LocalCluster,
    _postgres: Option<Postgres>,
    leader: u64,
    leader_addr: String,
    client: VoterClient,
}

async fn start(settings: Settings) -> Result<Bench, Box<dyn std::error::Error>> {
    let binary = node_binary()?;
    let layout = Layout {
        voters: 3,
        gateways: 0,
    };
    let postgres = match settings.archive {
        true => Some(Postgres::start(PostgresOptions::default())?),
        false => None,
    };
    let archive_url = postgres.as_ref().map(Postgres::url);
    println!(
        "archive: {}",
        archive_url
            .as_deref()
            .unwrap_or("off (pass --archive to turn it on)")
    );
    let mut cluster = LocalCluster::temporary(&binary, layout, |config| {
        config.archive.postgres_url = archive_url.clone();
    })?;
    cluster.start_all().await?;
    cluster.init().await?;
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await?;
    let leader_addr = cluster.addr(leader);
    println!(
        "cluster: {}, leader is voter {leader} at {leader_addr}",
        cluster.dir.display()
    );
    // Every write goes to the leader alone: no redirection, no other voter's endpoint.
    let client = VoterClient::new(
        vec![leader_addr.clone()],
        &cluster.operator_secret,
        WRITE_TIMEOUT,
    );
    Ok(Bench {
        _cluster: cluster,
        _postgres: postgres,
        leader,
        leader_addr,
        client,
    })
}

/// Each mode `REPEATS` times, alternating; the results by mode.
async fn run_modes(
    client: &VoterClient,
    settings: Settings,
    modes: &[Mode; 2],
) -> Vec<Vec<RunResult>> {
    let mut results: Vec<Vec<RunResult>> = modes.iter().map(|_| Vec::new()).collect();
    let mut run_id = 0;
    for repeat in 1..=REPEATS {
        for (mode, runs) in modes.iter().zip(results.iter_mut()) {
            run_id += 1;
            let result = run(client, settings, *mode, run_id).await;
            println!(
                "  run {repeat}/{REPEATS} {:<13} {:>9.0} purchases/s {:>8.0} writes/s  p50 {:>7.1} ms  errors {}",
                mode.name,
                result.purchases_per_second(),
                result.writes_per_second(),
                percentile_ms(&result.latencies, 0.50),
                result.error_count(),
            );
            runs.push(result);
        }
    }
    results
}

/// The table of each mode's median run, the ratio on/off, and the errors if any; the number of
/// errors.
fn print_table(settings: Settings, modes: &[Mode; 2], results: &mut [Vec<RunResult>]) -> u64 {
    println!();
    println!(
        "flashstock purchase throughput, 3 voters on one machine, {} clients, {} s per run, median of {REPEATS}",
        settings.clients, settings.seconds
    );
    println!(
        "{:<14} {:>10} {:>12} {:>10} {:>13} {:>7} {:>9} {:>7}",
        "mode",
        "cmds/write",
        "purchases/s",
        "writes/s",
        "write p50 ms",
        "p99 ms",
        "p99.9 ms",
        "errors"
    );
    let mut medians = Vec::new();
    let mut total_errors = 0;
    for (mode, runs) in modes.iter().zip(results.iter_mut()) {
        runs.sort_by(|a, b| {
            a.purchases_per_second()
                .total_cmp(&b.purchases_per_second())
        });
        let median = &runs[runs.len() / 2];
        let errors: u64 = runs.iter().map(RunResult::error_count).sum();
        total_errors += errors;
        println!(
            "{:<14} {:>10} {:>12.0} {:>10.0} {:>13.1} {:>7.1} {:>9.1} {:>7}",
            mode.name,
            mode.commands_per_write,
            median.purchases_per_second(),
            median.writes_per_second(),
            percentile_ms(&median.latencies, 0.50),
            percentile_ms(&median.latencies, 0.99),
            percentile_ms(&median.latencies, 0.999),
            errors,
        );
        medians.push(median.purchases_per_second());
    }
    println!("ratio on/off: {:.1}x", medians[1] / medians[0]);
    if total_errors > 0 {
        print_errors(modes, results);
    }
    total_errors
}

/// Every kind of error of each mode, with examples.
fn print_errors(modes: &[Mode; 2], results: &[Vec<RunResult>]) {
    println!();
    println!("errors (every failed purchase counts once):");
    for (mode, runs) in modes.iter().zip(results) {
        let mut merged = RunResult::default();
        for run in runs {
            merged.merge_errors(&run.errors);
        }
        for (kind, (count, examples)) in &merged.errors {
            println!("  {}: {kind}: {count}, e.g. {examples:?}", mode.name);
        }
    }
}

/// What the leader's log shows of the runs, the archive's drain, and whether leadership held.
async fn report_after(
    bench: &Bench,
    before: &NodeStatus,
    results: &[Vec<RunResult>],
) -> Result<(), Box<dyn std::error::Error>> {
    let (client, leader, leader_addr) = (&bench.client, bench.leader, &bench.leader_addr);
    println!();
    let after = client.status(leader_addr).await?;
    print_status("leader after", &after);
    let written = after.last_log_index.unwrap_or(0) - before.last_log_index.unwrap_or(0);
    let writes: u64 = results.iter().flatten().map(|run| run.writes).sum();
    let purchased: u64 = results.iter().flatten().map(|run| run.purchased).sum();
    println!(
        "log entries written by the runs: {written}; writes sent: {writes} (one entry each); \
         purchases confirmed: {purchased}"
    );
    if let Some(archive) = &after.archive {
        if archive.enabled {
            report_archive_drain(client, leader_addr, archive.backlog).await?;
        }
    }
    let leader_kept = after.leader == Some(leader) && after.term == before.term;
    if !leader_kept {
        println!(
            "WARNING: leadership changed during the runs (term {} -> {}, leader {:?} -> {:?})",
            before.term, after.term, before.leader, after.leader
        );
    } else {
        println!(
            "leadership: voter {leader} led throughout (term {})",
            after.term
        );
    }
    Ok(())
}

async fn bench(settings: Settings) -> Result<bool, Box<dyn std::error::Error>> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "machine: {cores} cores (available_parallelism); 3 voters, the clients and this process share them"
    );
    let bench = start(settings).await?;
    let client = &bench.client;
    let created = client.write(vec![create_product()]).await?;
    match created.outcomes.first() {
        Some(Outcome::ProductCreated(_)) => {}
        other => return Err(format!("creating the product answered {other:?}").into()),
    }
    let before = client.status(&bench.leader_addr).await?;
    print_status("leader before", &before);

    let modes = [
        Mode {
            name: "batching off",
            commands_per_write: 1,
        },
        Mode {
            name: "batching on",
            commands_per_write: settings.batch,
        },
    ];
    let mut results = run_modes(client, settings, &modes).await;
    let total_errors = print_table(settings, &modes, &mut results);
    report_after(&bench, &before, &results).await?;
    Ok(total_errors == 0)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|arg| arg == "--bench") {
        println!("purchases: benchmark skipped; run it with `cargo test --release -p flashstock-loadgen --bench purchases -- --bench`");
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::parse(&args) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("purchases: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    // The cluster lives inside `bench`, so its processes are killed before the process exits.
    match runtime.block_on(bench(settings)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("purchases: the benchmark saw errors");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("purchases: {error}");
            ExitCode::FAILURE
        }
    }
}
