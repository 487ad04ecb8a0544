//! `flashstock-bench`: the whole benchmark, in one process (run by `bench/run.sh`).
//!
//! 1. Reads the machine (cores, memory) and probes the floor: one fsynced 4 KiB write on the
//!    data disk, one loopback TCP round trip.
//! 2. Starts a six-node cluster on loopback (timing its start), the bare axum baseline (three
//!    processes, as there are three gateways) and the PostgreSQL baseline (a throwaway server,
//!    pool of 300 connections), each its own process.
//! 3. Runs the standard scenarios with the same load generator: views against bare axum and the
//!    gateways; the standard mix closed loop, burst and open loop; the flash sale and the spread
//!    workload against flashstock and PostgreSQL; purchases at light load.
//! 4. Draws the cost curves: the standard mix as connections grow, and the cluster as the
//!    catalog grows (memory of every node, data size, snapshot time and size, gateway restart).
//! 5. Writes `<out>/<date>.json`, `<date>.md` and `<date>-*.svg`, and prints the tables.
//!
//! `--scale full` is the brief's scale (6000 connections, curves to 12 000 connections and a
//! million products: long); `--scale quick` a reduced one; every figure can be set by a flag.
//! Nothing asserts on speed; the exit status is non-zero when a run saw an error or a check
//! failed.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use cluster_config::Role;
use flashstock_deploy::local::{free_port, node_binary, node_ip, Layout, LocalCluster};
use flashstock_loadgen::check::check;
use flashstock_loadgen::driver::{run, Mode, RunConfig};
use flashstock_loadgen::http::Target;
use flashstock_loadgen::probe::probe;
use flashstock_loadgen::proc_info::{
    cpu_seconds, cpu_seconds_named, dir_bytes, machine_busy_seconds, rss_mib, Machine,
};
use flashstock_loadgen::record::{merge_ledgers, Ledger};
use flashstock_loadgen::report::{table, RunReport};
use flashstock_loadgen::results::{utc_timestamp, BenchResults, CatalogPoint, ConcurrencyPoint};
use flashstock_loadgen::scenario::{run_scenario_probed, Phases};
use flashstock_loadgen::setup::create_products;
use flashstock_loadgen::workload::{
    Catalog, Workload, WorkloadKind, SPREAD_PRODUCTS, STANDARD_PRODUCTS, UNLIMITED_STOCK,
};
use serde::Serialize;

/// How long a baseline may take to say it listens (PostgreSQL runs initdb first).
const BASELINE_START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a snapshot, a restart or a catch-up may take.
const SLOW_STEP_TIMEOUT: Duration = Duration::from_secs(600);
/// Loopback addresses of the baselines (the nodes use 127.0.0.1-3 and 127.0.0.101-103): one bare
/// axum process per gateway, so that both get the same share of the cores against the load
/// generator (the scheduler shares a core between threads, not between servers).
const BARE_AXUM_NODES: [u64; 3] = [201, 202, 203];
const POSTGRES_BASELINE_NODE: u64 = 210;
/// Connections of the catalog curve's runs, at most.
const CATALOG_CURVE_CONNECTIONS_MAX: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
enum Scale {
    /// The brief's scale: 6000 connections, curves to 12 000 connections and 1 000 000 products.
    Full,
    /// A reduced scale that fits in a few minutes.
    Quick,
}

/// Runs flashstock's benchmark: cluster, baselines, scenarios, cost curves, results.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Preset of every figure below; flags override it.
    #[arg(long, value_enum, default_value = "full")]
    scale: Scale,
    /// Connections of the main scenarios (views, standard mix).
    #[arg(long)]
    connections: Option<usize>,
    /// Length of each main scenario, seconds.
    #[arg(long)]
    seconds: Option<f64>,
    /// Open loop: offered requests per second.
    #[arg(long)]
    open_rate: Option<f64>,
    /// Buyers of the flash sale and connections of the spread workload.
    #[arg(long)]
    flash_buyers: Option<usize>,
    /// Stock of the flash-sale product.
    #[arg(long)]
    flash_stock: Option<u64>,
    /// Buyers of the light-load purchase scenario.
    #[arg(long, default_value_t = 10)]
    light_buyers: usize,
    /// Connection counts of the concurrency curve (comma-separated; empty: skip).
    #[arg(long, value_delimiter = ',')]
    concurrency: Option<Vec<usize>>,
    /// Catalog sizes of the catalog curve (comma-separated, growing; empty: skip).
    #[arg(long, value_delimiter = ',')]
    catalog: Option<Vec<usize>>,
    /// Length of each curve point's run, seconds.
    #[arg(long)]
    curve_seconds: Option<f64>,
    /// Directory of the results.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Skip the PostgreSQL baseline (e.g. where PostgreSQL is not installed).
    #[arg(long)]
    skip_postgres: bool,
    /// Never draw progress bars.
    #[arg(long)]
    no_progress: bool,
}

/// The figures in force, after the preset and the flags.
#[derive(Debug, Clone, Serialize)]
struct Settings {
    scale: Scale,
    connections: usize,
    seconds: f64,
    open_rate: f64,
    flash_buyers: usize,
    flash_stock: u64,
    light_buyers: usize,
    concurrency: Vec<usize>,
    catalog: Vec<usize>,
    curve_seconds: f64,
    postgres: bool,
}

impl Settings {
    fn from(args: &Args) -> Settings {
        let full = args.scale == Scale::Full;
        let pick = |given: Option<f64>, full_value: f64, quick_value: f64| {
            given.unwrap_or(if full { full_value } else { quick_value })
        };
        Settings {
            scale: args.scale,
            connections: args.connections.unwrap_or(if full { 6000 } else { 1000 }),
            seconds: pick(args.seconds, 15.0, 6.0),
            open_rate: pick(args.open_rate, 6000.0, 1500.0),
            flash_buyers: args.flash_buyers.unwrap_or(if full { 1200 } else { 300 }),
            flash_stock: args.flash_stock.unwrap_or(if full { 20_000 } else { 5000 }),
            light_buyers: args.light_buyers,
            concurrency: args.concurrency.clone().unwrap_or_else(|| {
                if full {
                    vec![100, 1000, 6000, 12_000]
                } else {
                    vec![100, 300, 1000, 2000]
                }
            }),
            catalog: args.catalog.clone().unwrap_or_else(|| {
                if full {
                    vec![10, 10_000, 1_000_000]
                } else {
                    vec![10, 10_000, 100_000]
                }
            }),
            curve_seconds: pick(args.curve_seconds, 8.0, 4.0),
            postgres: !args.skip_postgres,
        }
    }

    fn connections_max(&self) -> usize {
        self.concurrency
            .iter()
            .copied()
            .chain([self.connections, self.flash_buyers, self.light_buyers])
            .max()
            .unwrap_or(1)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = Settings::from(&args);
    if let Err(e) = flashstock_loadgen::limits::raise_open_files(settings.connections_max()) {
        eprintln!("flashstock-bench: {e}");
        return ExitCode::from(2);
    }
    // The nodes log warnings only: per-request logging is not what is measured.
    std::env::set_var("RUST_LOG", "warn");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(bench(&args, settings)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("flashstock-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn say(text: impl AsRef<str>) {
    eprintln!("flashstock-bench: {}", text.as_ref());
}

/// A baseline's process, stopped with SIGTERM (then SIGKILL) when dropped.
struct Baseline {
    child: Child,
    url: String,
}

impl Baseline {
    /// Start `binary` with `args`; wait for its `listening on http://...` line.
    fn start(binary: &Path, args: &[String]) -> Result<Baseline, String> {
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads every line until the process ends, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(url) = line
                    .strip_prefix("listening on ")
                    .and_then(|rest| rest.split_whitespace().next())
                {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let mut baseline = Baseline {
            child,
            url: String::new(),
        };
        baseline.url = rx.recv_timeout(BASELINE_START_TIMEOUT).map_err(|_| {
            format!(
                "{} did not say it listens within {BASELINE_START_TIMEOUT:?}",
                binary.display()
            )
        })?;
        Ok(baseline)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        // SAFETY: kill only sends a signal to our own child's process id.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sibling(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: build every binary first (`cargo build --release --workspace --bins`)",
            path.display()
        ))
    }
}

fn node_label(role: Role, id: u64) -> String {
    match role {
        Role::Voter => format!("voter-{id}"),
        Role::Gateway => format!("gateway-{id}"),
    }
}

fn cluster_rss(cluster: &LocalCluster) -> BTreeMap<String, f64> {
    cluster
        .nodes
        .values()
        .filter_map(|node| {
            let rss = rss_mib(node.pid()?)?;
            Some((node_label(node.role, node.id), rss))
        })
        .collect()
}

fn cluster_data(cluster: &LocalCluster) -> BTreeMap<String, f64> {
    cluster
        .nodes
        .values()
        .map(|node| {
            (
                node_label(node.role, node.id),
                dir_bytes(&node.data_dir) as f64 / (1024.0 * 1024.0),
            )
        })
        .collect()
}

fn run_config(mode: Mode, connections: usize, seconds: f64, progress: bool) -> RunConfig {
    let mut config = RunConfig::new(mode, connections, Duration::from_secs_f64(seconds));
    config.progress = progress;
    config
}

async fn bench(args: &Args, settings: Settings) -> Result<bool, String> {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let progress = !args.no_progress;
    let machine = Machine::read();
    say(format!(
        "{} cores, {} MiB; scale {:?}: {} connections, {} s per scenario",
        machine.cores, machine.memory_mib, settings.scale, settings.connections, settings.seconds
    ));

    let mut cluster = {
        let binary = node_binary().map_err(|e| e.to_string())?;
        let layout = Layout {
            voters: 3,
            gateways: 3,
        };
        let per_gateway = settings.connections_max() / 3 + 1000;
        LocalCluster::temporary(&binary, layout, move |config| {
            config.limits.connections_max = config.limits.connections_max.max(per_gateway);
        })
        .map_err(|e| e.to_string())?
    };
    // The floor probe writes where the nodes keep their data.
    let floor = {
        let dir = cluster.dir.clone();
        tokio::task::spawn_blocking(move || probe(&dir))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("floor probe: {e}"))?
    };
    say(format!(
        "floor: fsync 4 KiB p50 {:.0} µs, loopback round trip p50 {:.0} µs",
        floor.fsync_4k_p50_us, floor.loopback_rtt_p50_us
    ));
    let forming = Instant::now();
    cluster
        .start_and_form(Duration::from_secs(60))
        .await
        .map_err(|e| e.to_string())?;
    let cluster_start_s = forming.elapsed().as_secs_f64();
    say(format!("cluster formed in {cluster_start_s:.1} s"));
    let urls: Vec<String> = cluster.gateway_urls();
    let shop = Target::new(urls, Some(cluster.admin_token.clone()));

    let listen = |node: u64| -> Result<String, String> {
        let ip = node_ip(node);
        let port = free_port(ip).map_err(|e| e.to_string())?;
        Ok(format!("{ip}:{port}"))
    };
    let mut bare = Vec::new();
    for node in BARE_AXUM_NODES {
        bare.push(Baseline::start(
            &sibling("baseline-axum")?,
            &["--listen".into(), listen(node)?],
        )?);
    }
    let bare_urls: Vec<String> = bare.iter().map(|b| b.url.clone()).collect();
    say(format!("bare axum baselines at {}", bare_urls.join(", ")));
    let relational = if settings.postgres {
        let baseline = Baseline::start(
            &sibling("baseline-pg")?,
            &["--listen".into(), listen(POSTGRES_BASELINE_NODE)?],
        )?;
        say(format!("PostgreSQL baseline at {}", baseline.url));
        Some(baseline)
    } else {
        None
    };

    let mut results = BenchResults {
        started_at: utc_timestamp(started),
        machine,
        floor,
        floor_at_light_load: None,
        settings: serde_json::to_value(&settings).map_err(|e| e.to_string())?,
        cluster_start_s,
        scenarios: Vec::new(),
        rss_after_scenarios_mib: BTreeMap::new(),
        concurrency: Vec::new(),
        catalog: Vec::new(),
        targets: Vec::new(),
    };

    // The main scenarios.
    let s = &settings;
    let bare_target = Target::new(bare_urls, None);
    let mut plan: Vec<(&str, &str, Target, Workload, RunConfig, Phases)> = vec![
        (
            "views-axum",
            "axum",
            bare_target,
            Workload::standard(STANDARD_PRODUCTS, 100),
            run_config(Mode::Closed, s.connections, s.seconds, progress),
            Phases::LoadOnly,
        ),
        (
            "views",
            "flashstock",
            shop.clone(),
            Workload::standard(STANDARD_PRODUCTS, 100),
            run_config(Mode::Closed, s.connections, s.seconds, progress),
            Phases::SetupAndCheck,
        ),
        (
            "standard-closed",
            "flashstock",
            shop.clone(),
            Workload::standard(STANDARD_PRODUCTS, 80),
            run_config(Mode::Closed, s.connections, s.seconds, progress),
            Phases::SetupAndCheck,
        ),
        (
            "standard-burst",
            "flashstock",
            shop.clone(),
            Workload::standard(STANDARD_PRODUCTS, 80),
            run_config(Mode::Burst, s.connections, s.seconds, progress),
            Phases::SetupAndCheck,
        ),
        (
            "standard-open",
            "flashstock",
            shop.clone(),
            Workload::standard(STANDARD_PRODUCTS, 80),
            run_config(
                Mode::Open { rate: s.open_rate },
                s.connections,
                s.seconds,
                progress,
            ),
            Phases::SetupAndCheck,
        ),
        (
            "flash-sale",
            "flashstock",
            shop.clone(),
            Workload::flash_sale(s.flash_stock),
            run_config(Mode::Closed, s.flash_buyers, s.seconds, progress),
            Phases::SetupAndCheck,
        ),
        (
            "spread",
            "flashstock",
            shop.clone(),
            Workload::spread(SPREAD_PRODUCTS),
            run_config(Mode::Closed, s.flash_buyers, s.seconds, progress),
            Phases::SetupAndCheck,
        ),
        (
            "light-purchases",
            "flashstock",
            shop.clone(),
            Workload::standard(STANDARD_PRODUCTS, 0),
            run_config(Mode::Closed, s.light_buyers, s.seconds, progress),
            Phases::SetupAndCheck,
        ),
    ];
    if let Some(pg) = &relational {
        let pg_target = Target::new(vec![pg.url.clone()], None);
        plan.extend([
            (
                "flash-sale-postgres",
                "postgres",
                pg_target.clone(),
                Workload::flash_sale(s.flash_stock),
                run_config(Mode::Closed, s.flash_buyers, s.seconds, progress),
                Phases::SetupAndCheck,
            ),
            (
                "spread-postgres",
                "postgres",
                pg_target.clone(),
                Workload::spread(SPREAD_PRODUCTS),
                run_config(Mode::Closed, s.flash_buyers, s.seconds, progress),
                Phases::SetupAndCheck,
            ),
            (
                "light-purchases-postgres",
                "postgres",
                pg_target,
                Workload::standard(STANDARD_PRODUCTS, 0),
                run_config(Mode::Closed, s.light_buyers, s.seconds, progress),
                Phases::SetupAndCheck,
            ),
        ]);
    }
    // The CPU of every process during each load phase: where the two cores went.
    let mut processes: Vec<(String, u32)> = cluster
        .nodes
        .values()
        .filter_map(|node| Some((node_label(node.role, node.id), node.pid()?)))
        .collect();
    processes.push(("loadgen".into(), std::process::id()));
    for (node, baseline) in BARE_AXUM_NODES.iter().zip(&bare) {
        processes.push((format!("baseline-axum-{node}"), baseline.pid()));
    }
    if let Some(pg) = &relational {
        processes.push(("baseline-pg".into(), pg.pid()));
    }
    let cpu_probe = move || -> BTreeMap<String, f64> {
        let mut used: BTreeMap<String, f64> = processes
            .iter()
            .filter_map(|(label, pid)| Some((label.clone(), cpu_seconds(*pid)?)))
            .collect();
        used.insert("postgres".into(), cpu_seconds_named("postgres"));
        used.insert("machine".into(), machine_busy_seconds());
        used
    };
    for (name, label, target, workload, config, phases) in plan {
        if name == "light-purchases" {
            let dir = cluster.dir.clone();
            let floor = tokio::task::spawn_blocking(move || probe(&dir))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("floor probe: {e}"))?;
            say(format!(
                "floor again: fsync 4 KiB p50 {:.0} µs, loopback round trip p50 {:.0} µs",
                floor.fsync_4k_p50_us, floor.loopback_rtt_p50_us
            ));
            results.floor_at_light_load = Some(floor);
        }
        say(format!(
            "scenario {name}: {label}, {:?}, {} connections",
            config.mode, config.connections
        ));
        let report = run_scenario_probed(
            name,
            label,
            &target,
            &workload,
            &config,
            phases,
            Some(&cpu_probe),
        )
        .await?;
        print!("{}", table(std::slice::from_ref(&report)));
        results.scenarios.push(report);
    }
    results.rss_after_scenarios_mib = cluster_rss(&cluster);
    for (node, baseline) in BARE_AXUM_NODES.iter().zip(&bare) {
        results.rss_after_scenarios_mib.insert(
            format!("baseline-axum-{node}"),
            rss_mib(baseline.pid()).unwrap_or(0.0),
        );
    }
    if let Some(pg) = &relational {
        results
            .rss_after_scenarios_mib
            .insert("baseline-pg".into(), rss_mib(pg.pid()).unwrap_or(0.0));
    }
    // The baselines are done: their processes leave the machine to the cluster.
    drop(bare);
    drop(relational);

    // The concurrency curve.
    for &connections in &settings.concurrency {
        say(format!("concurrency curve: {connections} connections"));
        let report = run_scenario_probed(
            &format!("concurrency-{connections}"),
            "flashstock",
            &shop,
            &Workload::standard(STANDARD_PRODUCTS, 80),
            &run_config(Mode::Closed, connections, settings.curve_seconds, progress),
            Phases::SetupAndCheck,
            Some(&cpu_probe),
        )
        .await?;
        print!("{}", table(std::slice::from_ref(&report)));
        results.concurrency.push(ConcurrencyPoint {
            connections,
            rss_mib: cluster_rss(&cluster),
            report,
        });
    }

    // The catalog curve: one catalog, grown point by point.
    let mut catalog = Catalog::fresh("cat", 0, UNLIMITED_STOCK);
    // Every point's purchases, for the check of the grown catalog.
    let mut ledger = BTreeMap::new();
    for &products in &settings.catalog {
        if products <= catalog.products {
            continue;
        }
        say(format!("catalog curve: growing to {products} products"));
        let point = catalog_point(
            &mut cluster,
            &shop,
            (&mut catalog, &mut ledger),
            products,
            &settings,
            progress,
        )
        .await?;
        print!("{}", table(std::slice::from_ref(&point.report)));
        results.catalog.push(point);
    }
    drop(cluster);

    results.judge();
    let stem = results.started_at[..16].replace(':', "");
    let written = results
        .write(&args.out, &stem)
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!("\n{}", table(&results.scenarios));
    for t in &results.targets {
        let met = match t.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        };
        println!("target: {} -- {} -- {met}", t.target, t.measured);
    }
    println!(
        "\nresults: {}\n         {}\n         {}",
        written.json.display(),
        written.markdown.display(),
        written
            .charts
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join("\n         ")
    );
    let all_ok = results
        .scenarios
        .iter()
        .chain(results.concurrency.iter().map(|c| &c.report))
        .chain(results.catalog.iter().map(|c| &c.report))
        .all(|r| r.ok);
    Ok(all_ok)
}

/// Grow `catalog` to `products`, then measure the cluster holding it. `ledger` gathers what
/// every point's run saw confirmed, so that each check covers the purchases of all of them.
async fn catalog_point(
    cluster: &mut LocalCluster,
    shop: &Target,
    (catalog, ledger): (&mut Catalog, &mut BTreeMap<usize, Ledger>),
    products: usize,
    settings: &Settings,
    progress: bool,
) -> Result<CatalogPoint, String> {
    let created = create_products(shop, catalog, catalog.products..products, progress).await?;
    catalog.products = products;
    let workload = Arc::new(Workload {
        kind: WorkloadKind::Standard,
        catalog: catalog.clone(),
        view_percent: 80,
    });
    let config = run_config(
        Mode::Closed,
        settings.connections.min(CATALOG_CURVE_CONNECTIONS_MAX),
        settings.curve_seconds,
        progress,
    );
    let result = run(shop, workload.clone(), &config).await;
    merge_ledgers(ledger, result.recorder.ledger.clone());
    let checked = check(shop, catalog, ledger).await;
    let report = RunReport::new(
        &format!("catalog-{products}"),
        "flashstock",
        &workload,
        &config,
        &result,
        Some(checked),
    );
    let rss_mib = cluster_rss(cluster);
    let data_mib = cluster_data(cluster);

    // A snapshot on the leader, through the admin API, timed until its status shows it.
    let voters = cluster.voter_client();
    let leader = cluster
        .wait_for_leader(SLOW_STEP_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let addr = cluster.addr(leader);
    let leader_dir = cluster.nodes[&leader].data_dir.clone();
    let applied = voters
        .status(&addr)
        .await
        .map_err(|e| e.to_string())?
        .applied_index
        .unwrap_or(0);
    let bytes_before = dir_bytes(&leader_dir);
    let began = Instant::now();
    let mut snapshot_s = None;
    if voters.snapshot(&addr).await.is_ok() {
        while began.elapsed() < SLOW_STEP_TIMEOUT {
            let status = voters.status(&addr).await.map_err(|e| e.to_string())?;
            if status.snapshot_index.is_some_and(|i| i >= applied) {
                snapshot_s = Some(began.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let snapshot_growth_mib = snapshot_s
        .map(|_| (dir_bytes(&leader_dir) as f64 - bytes_before as f64) / (1024.0 * 1024.0));

    // A gateway restart: stop it, start it, wait until it has applied the leader's log.
    let gateway = *cluster.gateway_ids().last().expect("a gateway");
    let last = voters
        .status(&addr)
        .await
        .map_err(|e| e.to_string())?
        .last_log_index
        .unwrap_or(0);
    cluster.terminate(gateway).map_err(|e| e.to_string())?;
    let began = Instant::now();
    cluster.start(gateway).await.map_err(|e| e.to_string())?;
    cluster
        .wait_applied(gateway, last, SLOW_STEP_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let gateway_restart_s = Some(began.elapsed().as_secs_f64());

    Ok(CatalogPoint {
        products,
        create_s: created.as_secs_f64(),
        report,
        rss_mib,
        data_mib,
        snapshot_s,
        snapshot_growth_mib,
        gateway_restart_s,
    })
}
