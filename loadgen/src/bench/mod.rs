//! The whole benchmark, in one process (the library behind `flashstock-bench`).
//!
//! 1. Reads the machine (cores, memory) and probes the floor: one fsynced 4 KiB write on the
//!    data disk, one loopback TCP round trip.
//! 2. Starts a six-node cluster on loopback (timing its start), the bare axum baseline (three
//!    processes, as there are three gateways), the PostgreSQL baseline (a throwaway server,
//!    pool of 300 connections) and the Redis baseline (a throwaway in-memory server, a purchase
//!    one Lua script), each its own process.
//! 3. Runs the standard scenarios ([`scenarios`]) with the same load generator: views against
//!    bare axum and the gateways; the standard mix closed loop, burst and open loop (closed loop
//!    against Redis too); the flash sale, the spread workload and purchases at light load against
//!    flashstock, PostgreSQL and Redis.
//! 4. Draws the cost curves: the standard mix as connections grow, and the cluster as the
//!    catalog grows ([`catalog_curve`]: memory of every node, data size, snapshot time and size,
//!    gateway restart).
//! 5. Writes `<out>/<date>.json`, `<date>.md` and `<date>-*.svg`, and prints the tables.
//!
//! The figures come from [`settings`]. Nothing asserts on speed: [`run`] returns whether every
//! run was free of errors and passed its checks.
//!
//! `--sustained MINUTES` runs, instead of all this, one long run of the standard mix with the
//! archive on ([`sustained`]).

pub mod catalog_curve;
pub mod processes;
pub mod scenarios;
pub mod settings;
pub mod stages;
pub mod sustained;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flashstock_deploy::local::{free_port, node_binary, node_ip, Layout, LocalCluster};

use crate::driver::Mode;
use crate::http::Target;
use crate::probe::{probe, Floor};
use crate::proc_info::{rss_mib, Machine};
use crate::report::table;
use crate::results::{utc_timestamp, BenchResults, ConcurrencyPoint};
use crate::scenario::{run_scenario_probed, CpuProbe, Phases};
use crate::workload::{Catalog, Workload, STANDARD_PRODUCTS, UNLIMITED_STOCK};
use processes::{cluster_rss, cluster_storage, cpu_probe, node_label, sibling, Baseline, PeakRss};
use scenarios::{main_scenarios, run_config};
use settings::Settings;

/// Loopback addresses of the baselines (the nodes use 127.0.0.1-3 and 127.0.0.101-103): one bare
/// axum process per gateway, so that both get the same share of the cores against the load
/// generator (the scheduler shares a core between threads, not between servers).
const BARE_AXUM_NODES: [u64; 3] = [201, 202, 203];
const POSTGRES_BASELINE_NODE: u64 = 210;
const REDIS_BASELINE_NODE: u64 = 211;

/// One line of progress, on stderr (stdout carries the tables).
pub fn say(text: impl AsRef<str>) {
    eprintln!("flashstock-bench: {}", text.as_ref());
}

/// Run the whole benchmark and write its results under `out`; whether every run was clean.
pub async fn run(settings: Settings, out: &Path, progress: bool) -> Result<bool, String> {
    if let Some((minutes, interval_s)) = settings.sustained {
        if !(minutes > 0.0 && interval_s > 0.0 && interval_s <= minutes * 60.0) {
            return Err(format!(
                "--sustained {minutes} with --sustained-interval {interval_s}: both must be \
                 positive, the interval at most the run"
            ));
        }
        let interval = Duration::from_secs_f64(interval_s);
        return sustained::run_sustained(&settings, minutes, interval, out, progress).await;
    }
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let machine = Machine::read();
    say(format!(
        "{} cores, {} MiB; scale {:?}: {} connections, {} s per scenario",
        machine.cores, machine.memory_mib, settings.scale, settings.connections, settings.seconds
    ));
    let (mut cluster, floor, cluster_start_s) = start_cluster(&settings).await?;
    let shop = Target::gateways_of(&cluster);
    let baselines = Baselines::start(&settings)?;
    let mut results = BenchResults {
        started_at: utc_timestamp(started),
        machine,
        floor,
        floor_at_light_load: None,
        settings: serde_json::to_value(&settings).map_err(|e| e.to_string())?,
        cluster_start_s,
        scenarios: Vec::new(),
        rss_after_scenarios_mib: BTreeMap::new(),
        storage_after_scenarios: BTreeMap::new(),
        throttled_after_scenarios: BTreeMap::new(),
        concurrency: Vec::new(),
        catalog: Vec::new(),
        targets: Vec::new(),
    };
    let cpu = cpu_probe(measured_processes(&cluster, &baselines));
    run_main_scenarios(
        &mut results,
        &cluster,
        &shop,
        &baselines,
        &settings,
        progress,
        &cpu,
    )
    .await?;
    results.rss_after_scenarios_mib = cluster_rss(&cluster);
    results.rss_after_scenarios_mib.extend(baselines.rss());
    results.storage_after_scenarios = cluster_storage(&cluster).await;
    if cluster.cpu_budget().is_some() {
        results.throttled_after_scenarios = cluster
            .nodes
            .values()
            .filter_map(|node| {
                let budget = cluster.cpu_budget_of(node.id)?;
                let (periods, seconds) = budget.throttled(&format!("node-{}", node.id))?;
                Some((node_label(node.role, node.id), (seconds, periods)))
            })
            .collect();
    }
    // The baselines are done: their processes leave the machine to the cluster.
    drop(baselines);
    run_concurrency_curve(&mut results, &cluster, &shop, &settings, progress, &cpu).await?;
    run_catalog_curve(&mut results, &mut cluster, &shop, &settings, progress).await?;
    drop(cluster);
    write_and_print(results, out)
}

/// A six-node cluster in a temporary directory, formed; the floor probed on its disk before it
/// starts, and the seconds it took to form.
async fn start_cluster(settings: &Settings) -> Result<(LocalCluster, Floor, f64), String> {
    let mut cluster = {
        let binary = node_binary().map_err(|e| e.to_string())?;
        let layout = Layout {
            voters: 3,
            gateways: 3,
        };
        let per_gateway = settings.connections_max() / 3 + 1000;
        let transport = settings.transport.config();
        let groups = settings.groups;
        let learner_interval = settings.learner_append_interval_ms;
        LocalCluster::temporary(&binary, layout, move |config| {
            config.limits.connections_max = config.limits.connections_max.max(per_gateway);
            config.raft.transport = transport;
            config.cluster.groups = groups;
            config.raft.learner_append_interval_ms = learner_interval;
        })
        .map_err(|e| e.to_string())?
    };
    if let Some(cores) = settings.cpu_budget {
        let budget = flashstock_host::CpuBudget::new(cores).map_err(|e| e.to_string())?;
        say(format!(
            "CPU budget: each node held to {cores} cores (a cgroup CPU quota each)"
        ));
        cluster.set_cpu_budget(budget);
    }
    if let Some(cores) = settings.gateway_cpu_budget {
        let budget = flashstock_host::CpuBudget::new(cores).map_err(|e| e.to_string())?;
        say(format!(
            "CPU budget of each gateway: {cores} cores instead (a cgroup CPU quota each)"
        ));
        cluster.set_gateway_cpu_budget(budget);
    }
    // The floor probe writes where the nodes keep their data.
    let floor = probe_floor(&cluster).await?;
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
    if settings.groups > 1 {
        let spread = wait_leaders_spread(&cluster, settings.groups).await?;
        say(format!(
            "{} Raft groups, led by voters {spread:?}",
            settings.groups
        ));
    }
    Ok((cluster, floor, cluster_start_s))
}

/// Wait (at most a minute) until the leaders of the `groups` groups have spread over the voters
/// as each group prefers ([`flashstock_node`'s `leader_spread`]: group g on the voter at
/// position g mod 3); their leaders by group.
async fn wait_leaders_spread(cluster: &LocalCluster, groups: u16) -> Result<Vec<u64>, String> {
    let voters = cluster.voter_ids();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut leaders = Vec::new();
        for group in 0..groups {
            let leader = cluster
                .wait_for_group_leader_among(group, &voters, Duration::from_secs(30))
                .await
                .map_err(|e| e.to_string())?;
            leaders.push(leader);
        }
        let spread = leaders
            .iter()
            .zip(0..)
            .all(|(leader, group)| *leader == voters[group % voters.len()]);
        if spread {
            return Ok(leaders);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the leaders did not spread within a minute: {leaders:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The floor (one fsync, one loopback round trip), on the disk of the cluster's data.
async fn probe_floor(cluster: &LocalCluster) -> Result<Floor, String> {
    let dir = cluster.dir.clone();
    tokio::task::spawn_blocking(move || probe(&dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("floor probe: {e}"))
}

/// The baselines' processes, stopped when dropped.
struct Baselines {
    bare_axum: Vec<Baseline>,
    postgres: Option<Baseline>,
    redis: Option<Baseline>,
}

impl Baselines {
    /// The bare axum processes, then the PostgreSQL and Redis baselines if `settings` ask for
    /// them.
    fn start(settings: &Settings) -> Result<Baselines, String> {
        let listen = |node: u64| -> Result<String, String> {
            let ip = node_ip(node);
            let port = free_port(ip).map_err(|e| e.to_string())?;
            Ok(format!("{ip}:{port}"))
        };
        let mut bare_axum = Vec::new();
        for node in BARE_AXUM_NODES {
            bare_axum.push(Baseline::start(
                &sibling("baseline-axum")?,
                &["--listen".into(), listen(node)?],
            )?);
        }
        let urls: Vec<String> = bare_axum.iter().map(|b| b.url.clone()).collect();
        say(format!("bare axum baselines at {}", urls.join(", ")));
        let postgres = if settings.postgres {
            let baseline = Baseline::start(
                &sibling("baseline-pg")?,
                &["--listen".into(), listen(POSTGRES_BASELINE_NODE)?],
            )?;
            say(format!("PostgreSQL baseline at {}", baseline.url));
            Some(baseline)
        } else {
            None
        };
        let redis = if settings.redis {
            let baseline = Baseline::start(
                &sibling("baseline-redis")?,
                &["--listen".into(), listen(REDIS_BASELINE_NODE)?],
            )?;
            say(format!("Redis baseline at {}", baseline.url));
            Some(baseline)
        } else {
            None
        };
        Ok(Baselines {
            bare_axum,
            postgres,
            redis,
        })
    }

    fn bare_axum_target(&self) -> Target {
        Target::new(self.bare_axum.iter().map(|b| b.url.clone()).collect(), None)
    }

    fn postgres_target(&self) -> Option<Target> {
        let pg = self.postgres.as_ref()?;
        Some(Target::new(vec![pg.url.clone()], None))
    }

    fn redis_target(&self) -> Option<Target> {
        let redis = self.redis.as_ref()?;
        Some(Target::new(vec![redis.url.clone()], None))
    }

    /// Every baseline process with its label in the results.
    fn labelled_pids(&self) -> Vec<(String, u32)> {
        let mut pids: Vec<(String, u32)> = BARE_AXUM_NODES
            .iter()
            .zip(&self.bare_axum)
            .map(|(node, baseline)| (format!("baseline-axum-{node}"), baseline.pid()))
            .collect();
        if let Some(pg) = &self.postgres {
            pids.push(("baseline-pg".into(), pg.pid()));
        }
        if let Some(redis) = &self.redis {
            pids.push(("baseline-redis".into(), redis.pid()));
        }
        pids
    }

    /// Resident memory of every baseline, MiB (0 when it cannot be read).
    fn rss(&self) -> BTreeMap<String, f64> {
        self.labelled_pids()
            .into_iter()
            .map(|(label, pid)| (label, rss_mib(pid).unwrap_or(0.0)))
            .collect()
    }
}

/// The processes whose CPU each load phase records: the nodes, this load generator, the
/// baselines.
fn measured_processes(cluster: &LocalCluster, baselines: &Baselines) -> Vec<(String, u32)> {
    let mut processes: Vec<(String, u32)> = cluster
        .nodes
        .values()
        .filter_map(|node| Some((node_label(node.role, node.id), node.pid()?)))
        .collect();
    processes.push(("loadgen".into(), std::process::id()));
    processes.extend(baselines.labelled_pids());
    processes
}

/// The main scenarios, in order, each report printed as it ends.
async fn run_main_scenarios(
    results: &mut BenchResults,
    cluster: &LocalCluster,
    shop: &Target,
    baselines: &Baselines,
    settings: &Settings,
    progress: bool,
    cpu: &CpuProbe,
) -> Result<(), String> {
    let plan = main_scenarios(
        settings,
        shop,
        baselines.bare_axum_target(),
        baselines.postgres_target(),
        baselines.redis_target(),
        progress,
    );
    for scenario in plan {
        if scenario.probe_floor_first {
            let floor = probe_floor(cluster).await?;
            say(format!(
                "floor again: fsync 4 KiB p50 {:.0} µs, loopback round trip p50 {:.0} µs",
                floor.fsync_4k_p50_us, floor.loopback_rtt_p50_us
            ));
            results.floor_at_light_load = Some(floor);
        }
        say(format!(
            "scenario {}: {}, {:?}, {} connections",
            scenario.name, scenario.label, scenario.config.mode, scenario.config.connections
        ));
        // Only the cluster has stages; the baselines are other programs.
        let ours = scenario.label == "flashstock";
        let before = if ours {
            Some(stages::scrape(cluster).await)
        } else {
            None
        };
        let mut report = run_scenario_probed(
            scenario.name,
            scenario.label,
            &scenario.target,
            &scenario.workload,
            &scenario.config,
            scenario.phases,
            Some(cpu),
        )
        .await?;
        if let Some(before) = before {
            report.stages = Some(stages::between(&before, &stages::scrape(cluster).await));
        }
        print!("{}", table(std::slice::from_ref(&report)));
        results.scenarios.push(report);
    }
    Ok(())
}

/// The standard mix, closed loop, at each connection count of the concurrency curve.
async fn run_concurrency_curve(
    results: &mut BenchResults,
    cluster: &LocalCluster,
    shop: &Target,
    settings: &Settings,
    progress: bool,
    cpu: &CpuProbe,
) -> Result<(), String> {
    for &connections in &settings.concurrency {
        say(format!("concurrency curve: {connections} connections"));
        let peak = PeakRss::start(cluster);
        let report = run_scenario_probed(
            &format!("concurrency-{connections}"),
            "flashstock",
            shop,
            &Workload::standard(STANDARD_PRODUCTS, 80),
            &run_config(Mode::Closed, connections, settings.curve_seconds, progress),
            Phases::SetupAndCheck,
            Some(cpu),
        )
        .await;
        let peak_rss_mib = peak.stop().await;
        let report = report?;
        print!("{}", table(std::slice::from_ref(&report)));
        results.concurrency.push(ConcurrencyPoint {
            connections,
            rss_mib: cluster_rss(cluster),
            peak_rss_mib,
            report,
        });
    }
    Ok(())
}

/// The catalog curve: one catalog, grown point by point.
async fn run_catalog_curve(
    results: &mut BenchResults,
    cluster: &mut LocalCluster,
    shop: &Target,
    settings: &Settings,
    progress: bool,
) -> Result<(), String> {
    let mut catalog = Catalog::fresh("cat", 0, UNLIMITED_STOCK);
    // Every point's purchases, for the check of the grown catalog.
    let mut ledger = BTreeMap::new();
    for &products in &settings.catalog {
        if products <= catalog.products {
            continue;
        }
        say(format!("catalog curve: growing to {products} products"));
        let point = catalog_curve::catalog_point(
            cluster,
            shop,
            (&mut catalog, &mut ledger),
            products,
            settings,
            progress,
        )
        .await?;
        print!("{}", table(std::slice::from_ref(&point.report)));
        results.catalog.push(point);
    }
    Ok(())
}

/// Judge the targets, write the results under `out`, print the tables, the targets and where
/// the files are; whether every run was clean.
fn write_and_print(mut results: BenchResults, out: &Path) -> Result<bool, String> {
    results.judge();
    let stem = results.started_at[..16].replace(':', "");
    let written = results
        .write(out, &stem)
        .map_err(|e| format!("{}: {e}", out.display()))?;
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
