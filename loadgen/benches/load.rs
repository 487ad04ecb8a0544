//! The load benchmark against a cluster with a tweaked gateway: a thin wrapper of the load
//! generator (`loadgen/`), kept to compare gateway settings side by side. The whole benchmark,
//! with baselines and cost curves, is `./bench/run.sh` (see `docs/BENCHMARKS.md`).
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo test --release -p flashstock-loadgen --bench load -- --bench [--clients 6000] [--seconds 20]
//!     [--views 80] [--forward-slots N] [--tls] [--tls-compare ROUNDS]
//! ```
//!
//! `--tls`: the cluster speaks TLS on every link (HTTPS to the gateways, mutual TLS between
//! nodes). `--tls-compare ROUNDS`: the standard mix only, on a plaintext cluster and a TLS one
//! in turn (a fresh cluster each time, plaintext first), ROUNDS times; prints every run and the
//! medians side by side, for the cost of TLS measured in one run.
//!
//! It starts a six-node cluster on loopback (with `gateway.forward_connections_max` set to
//! `--forward-slots` when given) and runs the standard mix in a closed loop, one connection per
//! client spread over the gateways, then a flash sale of 1000 items with a fifth as many buyers;
//! it prints the load generator's summary and exits non-zero on any error or failed check.

use std::time::Duration;

use flashstock_deploy::local::{node_binary, Layout, LocalCluster};
use flashstock_loadgen::driver::{Mode, RunConfig};
use flashstock_loadgen::http::Target;
use flashstock_loadgen::report::{table, RunReport};
use flashstock_loadgen::scenario::{run_scenario, Phases};
use flashstock_loadgen::workload::{Workload, STANDARD_PRODUCTS};

/// Stock of the flash sale.
const FLASH_STOCK: u64 = 1000;

fn value(args: &[String], name: &str) -> Option<u64> {
    let at = args.iter().position(|a| a == name)?;
    let text = args.get(at + 1)?;
    Some(
        text.parse()
            .unwrap_or_else(|_| panic!("{name} takes a number")),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("load: a benchmark; run with `cargo test --release -p flashstock-loadgen --bench load -- --bench`");
        return;
    }
    let clients = value(&args, "--clients").unwrap_or(6000) as usize;
    let seconds = value(&args, "--seconds").unwrap_or(20);
    let views = value(&args, "--views").unwrap_or(80).min(100) as u32;
    let forward_slots = value(&args, "--forward-slots").map(|n| n as usize);
    let tls = args.iter().any(|a| a == "--tls");
    let compare_rounds = value(&args, "--tls-compare");
    flashstock_loadgen::limits::raise_open_files(clients).expect("open files");
    // The nodes log warnings only: per-request logging is not what is measured.
    std::env::set_var("RUST_LOG", "warn");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ok = runtime.block_on(async {
        let binary = node_binary()
            .expect("flashstock-node, built by `cargo build --release --workspace --bins`");
        let duration = Duration::from_secs(seconds);
        if let Some(rounds) = compare_rounds {
            let mut reports = Vec::new();
            for round in 0..rounds.max(1) {
                for tls in [false, true] {
                    let cluster = cluster(&binary, forward_slots, tls).await;
                    let label = if tls { TLS } else { PLAINTEXT };
                    eprintln!("load: round {} of {rounds}: {label}", round + 1);
                    let workload = Workload::standard(STANDARD_PRODUCTS, views);
                    let target = Target::gateways_of(&cluster);
                    let run = ("standard", label, clients, duration);
                    reports.push(closed_run(run, &target, &workload).await);
                }
            }
            print!("{}", table(&reports));
            print_tls_medians(&reports);
            return reports.iter().all(|r| r.ok);
        }
        let cluster = cluster(&binary, forward_slots, tls).await;
        let target = Target::gateways_of(&cluster);
        let runs = [
            (
                "standard",
                Workload::standard(STANDARD_PRODUCTS, views),
                clients,
            ),
            ("flash-sale", Workload::flash_sale(FLASH_STOCK), clients / 5),
        ];
        let mut reports = Vec::new();
        for (name, workload, connections) in runs {
            let run = (name, "flashstock", connections, duration);
            reports.push(closed_run(run, &target, &workload).await);
        }
        print!("{}", table(&reports));
        reports.iter().all(|r| r.ok)
    });
    std::process::exit(i32::from(!ok));
}

/// The labels of the two sides of `--tls-compare`.
const PLAINTEXT: &str = "plaintext";
const TLS: &str = "TLS";

/// One closed-loop run, set-up and check included: (scenario, target label, connections,
/// duration).
async fn closed_run(
    (name, label, connections, duration): (&str, &str, usize, Duration),
    target: &Target,
    workload: &Workload,
) -> RunReport {
    let config = RunConfig::new(Mode::Closed, connections.max(1), duration);
    run_scenario(
        name,
        label,
        target,
        workload,
        &config,
        Phases::SetupAndCheck,
    )
    .await
    .expect("the scenario runs")
}

/// A six-node cluster on loopback, formed; with TLS on every link when `tls`.
async fn cluster(
    binary: &std::path::Path,
    forward_slots: Option<usize>,
    tls: bool,
) -> LocalCluster {
    let layout = Layout {
        voters: 3,
        gateways: 3,
    };
    let mut cluster = LocalCluster::temporary(binary, layout, move |config| {
        if let Some(slots) = forward_slots {
            config.gateway.forward_connections_max = slots;
        }
    })
    .expect("lay out");
    if tls {
        cluster.enable_tls().expect("certificates");
    }
    cluster
        .start_and_form(Duration::from_secs(60))
        .await
        .expect("form the cluster");
    cluster
}

/// One figure of a run, if it has it.
type Pick = fn(&RunReport) -> Option<f64>;

/// The median of each figure over the rounds, plaintext beside TLS, and their ratio.
fn print_tls_medians(reports: &[RunReport]) {
    use flashstock_loadgen::record::Kind;
    let figure = |label: &str, pick: Pick| {
        let mut values: Vec<f64> = reports
            .iter()
            .filter(|r| r.target == label)
            .filter_map(pick)
            .collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    };
    println!("\nmedians over the rounds (plaintext | TLS | TLS / plaintext):");
    let rows: [(&str, Pick); 5] = [
        ("answers per s", |r| Some(r.answers_per_s)),
        ("confirmed purchases per s", |r| Some(r.confirmed_per_s)),
        ("purchase p50 ms", |r| {
            r.latency.get(&Kind::PurchaseConfirmed).map(|l| l.p50_ms)
        }),
        ("purchase p99 ms", |r| {
            r.latency.get(&Kind::PurchaseConfirmed).map(|l| l.p99_ms)
        }),
        ("view p99 ms", |r| {
            r.latency.get(&Kind::View).map(|l| l.p99_ms)
        }),
    ];
    for (name, pick) in rows {
        let plain = figure(PLAINTEXT, pick);
        let tls = figure(TLS, pick);
        println!(
            "  {name:<27} {plain:>10.1} | {tls:>10.1} | {:>5.2}",
            tls / plain
        );
    }
}
