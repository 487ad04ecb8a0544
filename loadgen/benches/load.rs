//! The load benchmark against a cluster with a tweaked gateway: a thin wrapper of the load
//! generator (`loadgen/`), kept to compare gateway settings side by side. The whole benchmark,
//! with baselines and cost curves, is `./bench/run.sh` (see `docs/BENCHMARKS.md`).
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo test --release -p flashstock-loadgen --bench load -- --bench [--clients 6000] [--seconds 20]
//!     [--views 80] [--forward-slots N]
//! ```
//!
//! It starts a six-node cluster on loopback (with `gateway.forward_connections_max` set to
//! `--forward-slots` when given) and runs the standard mix in a closed loop, one connection per
//! client spread over the gateways, then a flash sale of 1000 items with a fifth as many buyers;
//! it prints the load generator's summary and exits non-zero on any error or failed check.

use std::time::Duration;

use flashstock_deploy::local::{node_binary, Layout, LocalCluster};
use flashstock_loadgen::driver::{Mode, RunConfig};
use flashstock_loadgen::http::Target;
use flashstock_loadgen::report::table;
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
        let layout = Layout {
            voters: 3,
            gateways: 3,
        };
        let mut cluster = LocalCluster::temporary(&binary, layout, move |config| {
            if let Some(slots) = forward_slots {
                config.gateway.forward_connections_max = slots;
            }
        })
        .expect("lay out");
        cluster
            .start_and_form(Duration::from_secs(60))
            .await
            .expect("form the cluster");
        let target = Target::gateways_of(&cluster);
        let duration = Duration::from_secs(seconds);
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
            let config = RunConfig::new(Mode::Closed, connections.max(1), duration);
            let report = run_scenario(
                name,
                "flashstock",
                &target,
                &workload,
                &config,
                Phases::SetupAndCheck,
            )
            .await
            .expect("the scenario runs");
            reports.push(report);
        }
        print!("{}", table(&reports));
        reports.iter().all(|r| r.ok)
    });
    std::process::exit(i32::from(!ok));
}
