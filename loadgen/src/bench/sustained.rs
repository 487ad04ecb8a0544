//! The sustained run (`flashstock-bench --sustained MINUTES`): the standard mix, closed loop, at
//! `--connections` for MINUTES without a pause, with the order archive on (a PostgreSQL server
//! of the benchmark's own), to see what only time shows: whether throughput and p99 hold, whether
//! each node's memory and data level off, and what a snapshot build does to p99.
//!
//! The load's figures come from the run's record split into intervals
//! ([`crate::driver::RunConfig::interval`]); at the end of each interval a sampler reads every
//! node: resident memory, its store by part, its snapshot's index (a new index: a snapshot was
//! built), the archive's backlog, and the CPU each process used. The sampler's clock starts when
//! the clients begin to connect, so each sample is taken up to the connecting time (about a
//! second at 6 000 connections) before the end of the load's interval it stands beside. After
//! the load, the run waits
//! for the archive to drain, checks the final state as every scenario does, and counts the
//! orders in the archive's database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flashstock_api::{NodeStatus, StorageStatus};
use flashstock_deploy::local::{node_binary, Layout, LocalCluster};
use flashstock_deploy::postgres::{Postgres, PostgresOptions};
use serde::Serialize;

use crate::charts::{time_chart, Line};
use crate::check::check;
use crate::driver::{run, Mode};
use crate::http::Target;
use crate::proc_info::{rss_mib, Machine};
use crate::record::{Kind, Recorder};
use crate::report::RunReport;
use crate::results::utc_timestamp;
use crate::setup::create_products;
use crate::workload::{Workload, STANDARD_PRODUCTS};

use super::processes::{cpu_probe, node_label};
use super::say;
use super::scenarios::run_config;
use super::settings::Settings;

/// Share of views in the standard mix, percent (as in the main scenarios).
const VIEW_PERCENT: u32 = 80;
/// Longest wait for the archive to take every order once the load stops.
const ARCHIVE_DRAIN_MAX: Duration = Duration::from_secs(600);
const MIB: f64 = 1024.0 * 1024.0;

/// What the sustained run measured.
#[derive(Debug, Serialize)]
pub struct SustainedResults {
    pub started_at: String,
    pub machine: Machine,
    pub connections: usize,
    pub minutes: f64,
    pub interval_s: f64,
    pub transport: super::settings::TransportArg,
    /// One row per interval, in order.
    pub intervals: Vec<IntervalFigures>,
    /// Every snapshot a node built (or received) during the load.
    pub snapshots: Vec<SnapshotSeen>,
    /// Seconds from the end of the load until the archive's backlog was 0; `None`: not within
    /// ten minutes.
    pub archive_drained_s: Option<f64>,
    /// Orders in the archive's database once drained, and orders the cluster placed.
    pub archived_orders: Option<u64>,
    pub orders_placed: Option<u64>,
    /// The whole run, as every scenario reports it (final-state check included).
    pub whole: RunReport,
}

/// The figures of one interval.
#[derive(Debug, Serialize)]
pub struct IntervalFigures {
    /// End of the interval, seconds from the start of the load.
    pub end_s: f64,
    pub answers_per_s: f64,
    pub confirmed_per_s: f64,
    pub errors: u64,
    pub view_p50_ms: f64,
    pub view_p99_ms: f64,
    pub purchase_p50_ms: f64,
    pub purchase_p99_ms: f64,
    /// Read at the interval's end, by node.
    pub rss_mib: BTreeMap<String, f64>,
    pub storage: BTreeMap<String, StorageStatus>,
    /// The leader's view of the archive's backlog.
    pub archive_backlog: Option<u64>,
    /// CPU seconds each process used in the interval (`machine`: every process).
    pub cpu_s: BTreeMap<String, f64>,
}

/// A node's snapshot index changed between two samples.
#[derive(Debug, Serialize)]
pub struct SnapshotSeen {
    pub node: String,
    /// The interval (from 0) at whose end it was first seen.
    pub interval: usize,
    pub index: u64,
}

/// What the sampler read of the cluster at one interval's end (empty: not read).
#[derive(Default)]
struct Sample {
    rss_mib: BTreeMap<String, f64>,
    storage: BTreeMap<String, StorageStatus>,
    snapshot_index: BTreeMap<String, Option<u64>>,
    archive_backlog: Option<u64>,
    cpu_s: BTreeMap<String, f64>,
}

/// Run the sustained benchmark for `minutes`, sampling every `interval`; write its results under
/// `out`. Whether the run was clean (no error, final state checked, archive drained and exact).
pub async fn run_sustained(
    settings: &Settings,
    minutes: f64,
    interval: Duration,
    out: &Path,
    progress: bool,
) -> Result<bool, String> {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let machine = Machine::read();
    let postgres = Postgres::start(PostgresOptions::default())
        .map_err(|e| format!("the archive's PostgreSQL: {e}"))?;
    say(format!("archive database at {}", postgres.url()));
    let mut cluster = start_cluster(settings, &postgres.url())?;
    cluster
        .start_and_form(Duration::from_secs(60))
        .await
        .map_err(|e| e.to_string())?;
    let shop = Target::gateways_of(&cluster);
    let workload = Workload::standard(STANDARD_PRODUCTS, VIEW_PERCENT);
    create_products(
        &shop,
        &workload.catalog,
        0..workload.catalog.products,
        progress,
    )
    .await?;
    let mut config = run_config(Mode::Closed, settings.connections, minutes * 60.0, progress);
    config.interval = Some(interval);
    let count = ((minutes * 60.0) / interval.as_secs_f64()).ceil() as usize;
    say(format!(
        "sustained: standard mix, {} connections, {minutes} minutes, figures every {} s",
        settings.connections,
        interval.as_secs_f64()
    ));
    let processes: Vec<(String, u32)> = cluster
        .nodes
        .values()
        .filter_map(|node| Some((node_label(node.role, node.id), node.pid()?)))
        .chain([("loadgen".to_string(), std::process::id())])
        .collect();
    let cpu = cpu_probe(processes);
    let workload = Arc::new(workload);
    let (result, samples) = tokio::join!(
        run(&shop, workload.clone(), &config),
        sample_every(&cluster, &cpu, interval, count)
    );
    let load_ended = Instant::now();
    let archive_drained_s = archive_drained(&cluster, load_ended).await;
    let checked = check(&shop, &workload.catalog, &result.recorder.ledger).await;
    let orders_placed = leader_status(&cluster)
        .await
        .and_then(|s| s.archive)
        .map(|a| a.orders_placed);
    let archived_orders = count_archived(&postgres.url()).await;
    let whole = RunReport::new(
        "sustained",
        "flashstock",
        &workload,
        &config,
        &result,
        Some(checked),
    );
    let intervals = figures(&result.intervals, count, interval, samples.1);
    let results = SustainedResults {
        started_at: utc_timestamp(started),
        machine,
        connections: settings.connections,
        minutes,
        interval_s: interval.as_secs_f64(),
        transport: settings.transport,
        intervals,
        snapshots: samples.0,
        archive_drained_s,
        archived_orders,
        orders_placed,
        whole,
    };
    drop(cluster);
    drop(postgres);
    let clean = results.whole.ok
        && results.archive_drained_s.is_some()
        && results.archived_orders.is_some()
        && results.archived_orders == results.orders_placed;
    let written = write(&results, out)?;
    print!("{}", markdown(&results, &[]));
    println!("\nresults: {}", written.join("\n         "));
    Ok(clean)
}

/// The six-node cluster of the benchmark, its voters archiving into `archive_url`.
fn start_cluster(settings: &Settings, archive_url: &str) -> Result<LocalCluster, String> {
    let binary = node_binary().map_err(|e| e.to_string())?;
    let per_gateway = settings.connections / 3 + 1000;
    let transport = settings.transport.config();
    let url = archive_url.to_owned();
    LocalCluster::temporary(
        &binary,
        Layout {
            voters: 3,
            gateways: 3,
        },
        move |config| {
            config.limits.connections_max = config.limits.connections_max.max(per_gateway);
            config.raft.transport = transport;
            config.archive.postgres_url = Some(url.clone());
        },
    )
    .map_err(|e| e.to_string())
}

/// Sample the cluster at the end of each of `count` intervals; every snapshot seen, and the
/// samples.
async fn sample_every(
    cluster: &LocalCluster,
    cpu: &(impl Fn() -> BTreeMap<String, f64> + Sync),
    interval: Duration,
    count: usize,
) -> (Vec<SnapshotSeen>, Vec<Sample>) {
    let began = tokio::time::Instant::now();
    let mut cpu_before = cpu();
    let mut snapshot_before: BTreeMap<String, Option<u64>> = BTreeMap::new();
    let mut snapshots = Vec::new();
    let mut samples = Vec::with_capacity(count);
    for k in 0..count {
        tokio::time::sleep_until(began + interval * (k as u32 + 1)).await;
        let cpu_now = cpu();
        let cpu_s = cpu_now
            .iter()
            .map(|(process, after)| {
                let used = after - cpu_before.get(process).copied().unwrap_or(0.0);
                (process.clone(), used.max(0.0))
            })
            .collect();
        cpu_before = cpu_now;
        let sample = sample(cluster, cpu_s).await;
        // One line per interval, so that a run cut short (a node or this process killed) still
        // shows how far it got and what grew.
        let nodes: Vec<String> = sample
            .rss_mib
            .iter()
            .map(|(node, rss)| {
                let data = sample
                    .storage
                    .get(node)
                    .map_or(0.0, |s| s.total_bytes() as f64 / MIB);
                format!("{node} {rss:.0}/{data:.0}")
            })
            .collect();
        say(format!(
            "sustained: {:.1} min; RSS/data MiB: {}; archive backlog {}",
            (interval * (k as u32 + 1)).as_secs_f64() / 60.0,
            nodes.join(", "),
            opt(sample.archive_backlog)
        ));
        for (node, index) in &sample.snapshot_index {
            let before = snapshot_before.get(node).copied().flatten();
            if let Some(index) = *index {
                if before != Some(index) {
                    snapshots.push(SnapshotSeen {
                        node: node.clone(),
                        interval: k,
                        index,
                    });
                }
            }
        }
        snapshot_before = sample.snapshot_index.clone();
        samples.push(sample);
    }
    (snapshots, samples)
}

/// Every node's memory and status now; a node that does not answer is left out.
async fn sample(cluster: &LocalCluster, cpu_s: BTreeMap<String, f64>) -> Sample {
    let client = cluster.voter_client();
    let mut sample = Sample {
        cpu_s,
        ..Sample::default()
    };
    for node in cluster.nodes.values() {
        let label = node_label(node.role, node.id);
        if let Some(rss) = node.pid().and_then(rss_mib) {
            sample.rss_mib.insert(label.clone(), rss);
        }
        let Ok(status) = client.status(&cluster.addr(node.id)).await else {
            continue;
        };
        if status.leader == Some(status.id) {
            sample.archive_backlog = status.archive.as_ref().map(|a| a.backlog);
        }
        if let Some(storage) = status.storage {
            sample.storage.insert(label.clone(), storage);
        }
        sample.snapshot_index.insert(label, status.snapshot_index);
    }
    sample
}

/// The leader's status, if a leader answers.
async fn leader_status(cluster: &LocalCluster) -> Option<NodeStatus> {
    let client = cluster.voter_client();
    for id in cluster.voter_ids() {
        if let Ok(status) = client.status(&cluster.addr(id)).await {
            if status.leader == Some(status.id) {
                return Some(status);
            }
        }
    }
    None
}

/// Seconds from `since` until the leader reports an empty archive backlog.
async fn archive_drained(cluster: &LocalCluster, since: Instant) -> Option<f64> {
    while since.elapsed() < ARCHIVE_DRAIN_MAX {
        let backlog = leader_status(cluster)
            .await
            .and_then(|s| s.archive)
            .map(|a| a.backlog);
        if backlog == Some(0) {
            return Some(since.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Longest wait for the archive's database to count its orders.
const COUNT_TIMEOUT: Duration = Duration::from_secs(60);

/// Orders in the archive's database; `None` if it cannot say within [`COUNT_TIMEOUT`].
async fn count_archived(url: &str) -> Option<u64> {
    tokio::time::timeout(COUNT_TIMEOUT, count_archived_now(url))
        .await
        .map_err(|_| say("counting the archive: no answer within 60 s"))
        .ok()
        .flatten()
}

async fn count_archived_now(url: &str) -> Option<u64> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| say(format!("counting the archive: {e}")))
        .ok()?;
    let driver = tokio::spawn(connection);
    let count = client
        .query_one("SELECT count(*) FROM flashstock_orders", &[])
        .await
        .map_err(|e| say(format!("counting the archive: {e}")))
        .ok()
        .map(|row| row.get::<_, i64>(0) as u64);
    drop(client);
    let _ = driver.await;
    count
}

/// Each interval's figures: the load's record beside the sample taken at its end. Answers that
/// ended after the last full interval (requests in flight when the run stopped) count in it.
fn figures(
    records: &[Recorder],
    count: usize,
    interval: Duration,
    samples: Vec<Sample>,
) -> Vec<IntervalFigures> {
    let mut records: Vec<Recorder> = records.to_vec();
    while records.len() > count.max(1) {
        let tail = records.pop().expect("longer than one");
        records.last_mut().expect("not empty").merge(tail);
    }
    let seconds = interval.as_secs_f64();
    let ms = |record: &Recorder, kind: Kind, quantile: f64| {
        record
            .histograms()
            .get(&kind)
            .map_or(0.0, |h| h.value_at_quantile(quantile) as f64 / 1000.0)
    };
    records
        .iter()
        .zip(
            samples
                .into_iter()
                .map(Some)
                .chain(std::iter::repeat_with(|| None)),
        )
        .enumerate()
        .map(|(k, (record, sample))| {
            let answers: u64 = record.histograms().values().map(|h| h.len()).sum();
            let sample = sample.unwrap_or_default();
            IntervalFigures {
                end_s: seconds * (k + 1) as f64,
                answers_per_s: answers as f64 / seconds,
                confirmed_per_s: record.count(Kind::PurchaseConfirmed) as f64 / seconds,
                errors: record.errors,
                view_p50_ms: ms(record, Kind::View, 0.5),
                view_p99_ms: ms(record, Kind::View, 0.99),
                purchase_p50_ms: ms(record, Kind::PurchaseConfirmed, 0.5),
                purchase_p99_ms: ms(record, Kind::PurchaseConfirmed, 0.99),
                rss_mib: sample.rss_mib,
                storage: sample.storage,
                archive_backlog: sample.archive_backlog,
                cpu_s: sample.cpu_s,
            }
        })
        .collect()
}

/// How much a series of (minutes, value) grew per minute over the first third of the run and
/// over the last third: growth that levels off has a last-third slope well below the first's.
fn slopes(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len();
    if n < 6 {
        return None;
    }
    let slope = |a: (f64, f64), b: (f64, f64)| (b.1 - a.1) / (b.0 - a.0);
    Some((
        slope(points[0], points[n / 3]),
        slope(points[n - 1 - n / 3], points[n - 1]),
    ))
}

/// Every node's series of one figure, minutes on x.
fn node_lines(
    results: &SustainedResults,
    value: impl Fn(&IntervalFigures, &str) -> Option<f64>,
) -> Vec<Line> {
    let nodes: Vec<String> = results
        .intervals
        .iter()
        .flat_map(|i| i.rss_mib.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    nodes
        .into_iter()
        .map(|node| Line {
            points: results
                .intervals
                .iter()
                .filter_map(|i| Some((i.end_s / 60.0, value(i, &node)?)))
                .collect(),
            name: node,
        })
        .collect()
}

fn data_mib(figures: &IntervalFigures, node: &str) -> Option<f64> {
    Some(figures.storage.get(node)?.total_bytes() as f64 / MIB)
}

/// The charts, by file suffix.
fn charts(results: &SustainedResults) -> Vec<(&'static str, String)> {
    let line = |name: &str, pick: fn(&IntervalFigures) -> f64| Line {
        name: name.into(),
        points: results
            .intervals
            .iter()
            .map(|i| (i.end_s / 60.0, pick(i)))
            .collect(),
    };
    let throughput = [
        line("answers/s", |i| i.answers_per_s),
        line("confirmed/s", |i| i.confirmed_per_s),
    ];
    let latency = [
        line("view p99", |i| i.view_p99_ms),
        line("purchase p99", |i| i.purchase_p99_ms),
        line("purchase p50", |i| i.purchase_p50_ms),
    ];
    vec![
        (
            "sustained-throughput",
            time_chart("Throughput", "minutes", "per second", &throughput),
        ),
        (
            "sustained-latency",
            time_chart("Latency", "minutes", "ms", &latency),
        ),
        (
            "sustained-rss",
            time_chart(
                "Resident memory by node",
                "minutes",
                "MiB",
                &node_lines(results, |i, node| i.rss_mib.get(node).copied()),
            ),
        ),
        (
            "sustained-data",
            time_chart(
                "Data by node (log, state, snapshot, WAL)",
                "minutes",
                "MiB",
                &node_lines(results, data_mib),
            ),
        ),
    ]
}

/// The results as a page: the verdicts, then a row per interval.
fn markdown(results: &SustainedResults, chart_names: &[String]) -> String {
    use std::fmt::Write as _;
    let mut md = String::new();
    let whole = &results.whole;
    let _ = writeln!(
        md,
        "# Sustained run, {}\n\nStandard mix ({VIEW_PERCENT} % views), closed loop, {} \
         connections, {} min, the archive on, internal transport `{:?}`; {} cores, {} MiB.\n",
        results.started_at,
        results.connections,
        results.minutes,
        results.transport,
        results.machine.cores,
        results.machine.memory_mib
    );
    let confirmed = whole
        .latency_of(Kind::PurchaseConfirmed)
        .map_or(0, |l| l.count);
    let _ = writeln!(
        md,
        "- answers: {:.0} per second over the run, {} errors; {} purchases confirmed; final \
         state: {}",
        whole.answers_per_s,
        whole.errors,
        confirmed,
        if whole.ok { "passed" } else { "FAILED" }
    );
    let _ = writeln!(
        md,
        "- archive: {} orders placed, {} in the database, drained {}",
        opt(results.orders_placed),
        opt(results.archived_orders),
        results
            .archive_drained_s
            .map_or("NOT within the wait".into(), |s| format!(
                "{s:.1} s after the load"
            ))
    );
    let _ = writeln!(md, "- snapshots seen: {}", results.snapshots.len());
    for snapshot in &results.snapshots {
        let _ = writeln!(
            md,
            "  - {} at index {} (interval ending {:.1} min)",
            snapshot.node,
            snapshot.index,
            results
                .intervals
                .get(snapshot.interval)
                .map_or(0.0, |i| i.end_s / 60.0)
        );
    }
    let _ = writeln!(
        md,
        "\nGrowth per minute, first third of the run against the last third (levelling off: the \
         second well below the first):\n\n| node | RSS MiB/min | data MiB/min |\n|---|---:|---:|"
    );
    let rss = node_lines(results, |i, node| i.rss_mib.get(node).copied());
    let data = node_lines(results, data_mib);
    for line in &rss {
        let pair = |slopes: Option<(f64, f64)>| {
            slopes.map_or("-".into(), |(first, last)| {
                format!("{first:+.1} → {last:+.1}")
            })
        };
        let data_slopes = data
            .iter()
            .find(|d| d.name == line.name)
            .and_then(|d| slopes(&d.points));
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            line.name,
            pair(slopes(&line.points)),
            pair(data_slopes)
        );
    }
    let _ = writeln!(
        md,
        "\n| min | answers/s | confirmed/s | errors | view p50 / p99 ms | purchase p50 / p99 ms \
         | RSS MiB (min-max) | data MiB (min-max) | archive backlog | CPU s (machine) |\n\
         |---:|---:|---:|---:|---|---|---|---|---:|---:|"
    );
    for i in &results.intervals {
        let range = |values: Vec<f64>| {
            let low = values.iter().copied().fold(f64::INFINITY, f64::min);
            let high = values.iter().copied().fold(0.0, f64::max);
            if values.is_empty() {
                "-".into()
            } else {
                format!("{low:.0}-{high:.0}")
            }
        };
        let _ = writeln!(
            md,
            "| {:.1} | {:.0} | {:.0} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {} | {} | {} | {:.1} |",
            i.end_s / 60.0,
            i.answers_per_s,
            i.confirmed_per_s,
            i.errors,
            i.view_p50_ms,
            i.view_p99_ms,
            i.purchase_p50_ms,
            i.purchase_p99_ms,
            range(i.rss_mib.values().copied().collect()),
            range(
                i.storage
                    .values()
                    .map(|s| s.total_bytes() as f64 / MIB)
                    .collect()
            ),
            opt(i.archive_backlog),
            i.cpu_s.get("machine").copied().unwrap_or(0.0)
        );
    }
    for name in chart_names {
        let _ = writeln!(md, "\n![{name}]({name})");
    }
    md
}

fn opt(value: Option<u64>) -> String {
    value.map_or("-".into(), |v| v.to_string())
}

/// Write `<stem>-sustained.json`, `.md` and the charts under `out`; the paths written.
fn write(results: &SustainedResults, out: &Path) -> Result<Vec<String>, String> {
    let fail = |e: std::io::Error| format!("{}: {e}", out.display());
    std::fs::create_dir_all(out).map_err(fail)?;
    let stem = format!("{}-sustained", results.started_at[..16].replace(':', ""));
    let mut written: Vec<PathBuf> = Vec::new();
    let json = out.join(format!("{stem}.json"));
    let text = serde_json::to_string_pretty(results).map_err(|e| e.to_string())?;
    std::fs::write(&json, text).map_err(fail)?;
    written.push(json);
    let mut chart_names = Vec::new();
    for (suffix, svg) in charts(results) {
        let name = format!("{}-{suffix}.svg", &stem[..stem.len() - "-sustained".len()]);
        std::fs::write(out.join(&name), svg).map_err(fail)?;
        written.push(out.join(&name));
        chart_names.push(name);
    }
    let md = out.join(format!("{stem}.md"));
    std::fs::write(&md, markdown(results, &chart_names)).map_err(fail)?;
    written.push(md);
    Ok(written.iter().map(|p| p.display().to_string()).collect())
}
