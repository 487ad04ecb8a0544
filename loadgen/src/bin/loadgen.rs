//! `loadgen`: one load run against running servers, or against a cluster it starts itself.
//!
//! ```text
//! loadgen --url http://127.0.0.101:PORT,http://127.0.0.102:PORT --admin-token TOKEN \
//!     --mode closed --workload standard --connections 6000 --seconds 15 --json out.json
//! loadgen --local --mode open --rate 6000 --connections 6000 --seconds 15
//! loadgen --url http://127.0.0.1:PORT --load-only --view-percent 100   # the bare axum baseline
//! ```
//!
//! It creates its own products (fresh ids), sends the load, then reads every product back from
//! every URL and checks no oversell and conservation, prints a summary table, and exits non-zero
//! on any error or failed check.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use flashstock_deploy::local::{node_binary, Layout, LocalCluster};
use flashstock_loadgen::driver::{Mode, RunConfig};
use flashstock_loadgen::http::Target;
use flashstock_loadgen::scenario::{run_scenario, Phases};
use flashstock_loadgen::workload::{Workload, WorkloadKind, SPREAD_PRODUCTS, STANDARD_PRODUCTS};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Closed,
    Burst,
    Open,
}

/// Drives flashstock's public API (or a baseline with the same routes) with real connections.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Base URLs to spread connections over (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', required_unless_present = "local")]
    url: Vec<String>,
    /// Start a local six-node cluster in a temporary directory and drive its gateways.
    #[arg(long, conflicts_with = "url")]
    local: bool,
    /// Bearer token of the admin routes, to create the catalog.
    #[arg(long, env = "FLASHSTOCK_ADMIN_TOKEN")]
    admin_token: Option<String>,
    #[arg(long, value_enum, default_value = "closed")]
    mode: ModeArg,
    /// Open loop: requests per second over all connections.
    #[arg(long, default_value_t = 6000.0)]
    rate: f64,
    #[arg(long, value_enum, default_value = "standard")]
    workload: WorkloadKind,
    /// Client connections.
    #[arg(long, default_value_t = 300)]
    connections: usize,
    /// Length of the measured phase (closed and open loop).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Products of the standard mix or the spread workload.
    #[arg(long)]
    products: Option<usize>,
    /// Views among operations of the standard mix, percent.
    #[arg(long, default_value_t = 80)]
    view_percent: u32,
    /// Stock of the flash-sale product.
    #[arg(long, default_value_t = 1000)]
    stock: u64,
    /// Send load only: no catalog set-up, no final check (a server with no state).
    #[arg(long)]
    load_only: bool,
    /// Write every figure of the run to this file as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Never draw the progress bar.
    #[arg(long)]
    no_progress: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = flashstock_loadgen::limits::raise_open_files(args.connections) {
        eprintln!("loadgen: {e}");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let mut cluster = None;
    let target = if args.local {
        // The nodes' logs at warning level: per-request logging is not what is measured.
        std::env::set_var("RUST_LOG", "warn");
        let binary = node_binary().map_err(|e| e.to_string())?;
        let layout = Layout {
            voters: 3,
            gateways: 3,
        };
        let mut local =
            LocalCluster::temporary(&binary, layout, |_| {}).map_err(|e| e.to_string())?;
        local
            .start_and_form(Duration::from_secs(60))
            .await
            .map_err(|e| e.to_string())?;
        let urls = local.gateway_urls();
        let target = Target::new(urls, Some(local.admin_token.clone()));
        cluster = Some(local);
        target
    } else {
        for url in &args.url {
            flashstock_loadgen::http::parse_base_url(url)?;
        }
        Target::new(args.url.clone(), args.admin_token.clone())
    };
    let workload = match args.workload {
        WorkloadKind::Standard => Workload::standard(
            args.products.unwrap_or(STANDARD_PRODUCTS),
            args.view_percent,
        ),
        WorkloadKind::FlashSale => Workload::flash_sale(args.stock),
        WorkloadKind::Spread => Workload::spread(args.products.unwrap_or(SPREAD_PRODUCTS)),
        WorkloadKind::HoldSale => Workload::hold_sale(args.stock),
        WorkloadKind::Cart => Workload::cart(args.products.unwrap_or(SPREAD_PRODUCTS)),
    };
    let mode = match args.mode {
        ModeArg::Closed => Mode::Closed,
        ModeArg::Burst => Mode::Burst,
        ModeArg::Open => Mode::Open { rate: args.rate },
    };
    let mut config = RunConfig::new(
        mode,
        args.connections,
        Duration::from_secs_f64(args.seconds),
    );
    config.progress = !args.no_progress;
    let phases = if args.load_only {
        Phases::LoadOnly
    } else {
        Phases::SetupAndCheck
    };
    let label = if cluster.is_some() {
        "flashstock"
    } else {
        "url"
    };
    let name = format!("{:?}-{:?}", args.workload, args.mode).to_lowercase();
    let report = run_scenario(&name, label, &target, &workload, &config, phases).await?;
    print!(
        "{}",
        flashstock_loadgen::report::table(std::slice::from_ref(&report))
    );
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    drop(cluster);
    Ok(report.ok)
}
