//! CPU of applying purchases to the RocksDB state machine, one thread, no Raft, no network.
//!
//! # What it measures
//!
//! Every replica (three voters, three gateways) applies every committed purchase, so the apply
//! is paid six times per purchase: in a flash sale it was more than a third of a gateway's CPU.
//! This bench applies entries of `--batch` purchases (what a gateway's batch becomes) to a fresh
//! store in a temporary directory, as openraft hands them to `RaftStateMachine::apply`, and
//! prints the wall time per purchase, in two workloads:
//!
//! - `one product`: every purchase buys the same product (a flash sale);
//! - `spread`: purchases spread over `--products` products.
//!
//! Idempotency keys and order tokens are pseudo-random hex, as a client's and a gateway's are,
//! so the state's keys arrive in random order as they do in a shop. The workloads alternate and
//! each runs three times in its own store; the table shows the median run. Each entry is applied
//! and waited for before the next, so one thread works at a time and the wall time is its CPU
//! time plus a hand-off per entry.
//!
//! # How to run it
//!
//! Through the release profile only (RocksDB is built once for it):
//!
//! ```text
//! cargo test --release --workspace --bench apply -- --bench [--purchases N] [--batch N] [--products N]
//! ```
//!
//! Defaults: 200 000 purchases per run, 32 per entry, 10 000 products. Without `--bench` in its
//! arguments (as when a test run builds every target) it prints one line and exits at once.

use std::time::{Duration, Instant};

use flashstock_api::{Command, Op, Proposal};
use flashstock_loadgen::workload::Rng;
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use raft_store::Entry;

/// What one run applies.
#[derive(Debug, Clone, Copy)]
struct Settings {
    purchases: usize,
    batch: usize,
    products: usize,
}

/// A purchase workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    OneProduct,
    Spread,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::OneProduct => "one product",
            Workload::Spread => "spread",
        }
    }
}

/// 32 lowercase hex digits: the shape of a client's key and of an order's token.
fn hex128(random: &mut Rng) -> String {
    format!("{:016x}{:016x}", random.next_u64(), random.next_u64())
}

fn entry(index: u64, proposed_at_ms: u64, commands: Vec<Command>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal {
            proposed_at_ms,
            forget_keys_before_ms: 0,
            drop_archived_before_ms: 0,
            commands,
        }),
    }
}

fn product_id(i: usize) -> String {
    format!("p-{i:06}")
}

/// One run in a fresh store: the catalog, then the purchases; the time of the purchases alone.
async fn run(settings: Settings, workload: Workload) -> Duration {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (_log, mut sm) = raft_store::open(dir.path()).expect("open the store");
    let mut index = 0;
    let mut next_index = || {
        index += 1;
        index
    };
    let creates: Vec<Command> = (0..settings.products)
        .map(|i| Command {
            key: format!("create-{i}"),
            op: Op::CreateProduct {
                product: product_id(i),
                name: format!("Product {i}"),
                price_cents: 1000,
                stock: u64::MAX / 2,
            },
        })
        .collect();
    for chunk in creates.chunks(1000) {
        sm.apply(vec![entry(next_index(), 1_000, chunk.to_vec())])
            .await
            .expect("create the catalog");
    }

    let mut random = Rng::new(7);
    let entries: Vec<Entry> = (0..settings.purchases.div_ceil(settings.batch))
        .map(|e| {
            let commands = (0..settings.batch)
                .map(|_| {
                    let product = match workload {
                        Workload::OneProduct => product_id(0),
                        Workload::Spread => {
                            product_id(random.below(settings.products as u64) as usize)
                        }
                    };
                    Command {
                        key: hex128(&mut random),
                        op: Op::Purchase {
                            product,
                            quantity: 1,
                            customer: None,
                            token: Some(hex128(&mut random)),
                        },
                    }
                })
                .collect();
            entry(next_index(), 2_000 + e as u64, commands)
        })
        .collect();
    let started = Instant::now();
    for entry in entries {
        sm.apply(vec![entry]).await.expect("apply");
    }
    started.elapsed()
}

fn settings_from_args() -> Option<Settings> {
    let mut settings = Settings {
        purchases: 200_000,
        batch: 32,
        products: 10_000,
    };
    let mut bench = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a positive number"))
        };
        match arg.as_str() {
            "--bench" => bench = true,
            "--purchases" => settings.purchases = value("--purchases"),
            "--batch" => settings.batch = value("--batch").max(1),
            "--products" => settings.products = value("--products").max(1),
            other => panic!(
                "unknown argument {other:?}; expected --bench [--purchases N] [--batch N] [--products N]"
            ),
        }
    }
    bench.then_some(settings)
}

fn main() {
    let Some(settings) = settings_from_args() else {
        println!("apply: pass --bench to run (cargo test --release --workspace --bench apply -- --bench)");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    println!(
        "apply: {} purchases per run, {} per entry, {} products, median of 3 runs",
        settings.purchases, settings.batch, settings.products
    );
    let workloads = [Workload::OneProduct, Workload::Spread];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); workloads.len()];
    for _ in 0..3 {
        for (i, workload) in workloads.iter().enumerate() {
            times[i].push(runtime.block_on(run(settings, *workload)));
        }
    }
    println!("| workload | µs per purchase (median) | runs, µs per purchase |");
    println!("|---|---:|---|");
    for (workload, mut runs) in workloads.iter().zip(times) {
        let per = |d: &Duration| d.as_secs_f64() * 1e6 / settings.purchases as f64;
        let all: Vec<String> = runs.iter().map(|d| format!("{:.2}", per(d))).collect();
        runs.sort();
        println!(
            "| {} | {:.2} | {} |",
            workload.name(),
            per(&runs[1]),
            all.join(", ")
        );
    }
}
