//! A whole benchmark's results: the JSON document `bench/results/<date>.json`, its Markdown
//! tables, its SVG charts, and the targets of the brief judged against the figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::charts::{grouped_bars, line_chart, Line};
use crate::probe::Floor;
use crate::proc_info::Machine;
use crate::record::Kind;
use crate::report::{LatencySummary, RunReport};

/// One point of the concurrency curve: the standard mix, closed loop, at `connections`.
#[derive(Debug, Clone, Serialize)]
pub struct ConcurrencyPoint {
    pub connections: usize,
    pub report: RunReport,
    /// Resident memory of each node after the run, MiB.
    pub rss_mib: BTreeMap<String, f64>,
    /// The largest resident memory of each node read during the run (every 250 ms, its
    /// connections open in its load phase), MiB.
    pub peak_rss_mib: BTreeMap<String, f64>,
}

/// One point of the catalog curve: the cluster holding `products` products.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogPoint {
    pub products: usize,
    /// Time to create the products added for this point.
    pub create_s: f64,
    /// The standard mix over the whole catalog, closed loop.
    pub report: RunReport,
    /// Resident memory of each node, MiB.
    pub rss_mib: BTreeMap<String, f64>,
    /// Bytes of each node's data directory, MiB.
    pub data_mib: BTreeMap<String, f64>,
    /// Time for the leader to build a snapshot (triggered through the admin API, until its
    /// status shows it).
    pub snapshot_s: Option<f64>,
    /// Growth of the leader's data directory while the snapshot was built: the snapshot is
    /// stored in RocksDB, so this approximates its size.
    pub snapshot_growth_mib: Option<f64>,
    /// Time for a gateway to restart (SIGTERM, start, answer health, apply the leader's log).
    pub gateway_restart_s: Option<f64>,
}

/// The brief's targets, measured (never asserted).
#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    pub target: String,
    pub measured: String,
    /// `None` when the scenarios it needs did not run.
    pub met: Option<bool>,
}

/// Everything `flashstock-bench` measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResults {
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub started_at: String,
    pub machine: Machine,
    pub floor: Floor,
    /// The floor probed again right before the light-load purchases, under the same conditions
    /// (the disk's fsync time moves a lot with what else the machine does).
    pub floor_at_light_load: Option<Floor>,
    /// The settings of the run (scale), as given.
    pub settings: serde_json::Value,
    /// Seconds to start a fresh six-node cluster (processes up, leader elected, gateways added).
    pub cluster_start_s: f64,
    pub scenarios: Vec<RunReport>,
    /// Resident memory of every node and baseline after the scenarios, MiB.
    pub rss_after_scenarios_mib: BTreeMap<String, f64>,
    /// Every node's store after the scenarios, by part (its status's `storage`).
    pub storage_after_scenarios: BTreeMap<String, flashstock_api::StorageStatus>,
    /// With `--cpu-budget`: how long each node was held back by its budget over the scenarios,
    /// seconds (the kernel's `throttled_time`), and how many periods it was.
    pub throttled_after_scenarios: BTreeMap<String, (f64, u64)>,
    pub concurrency: Vec<ConcurrencyPoint>,
    pub catalog: Vec<CatalogPoint>,
    pub targets: Vec<TargetResult>,
}

/// The files written for one benchmark.
pub struct Written {
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub charts: Vec<PathBuf>,
}

/// Megabytes (10^6 bytes, as the targets are written) in a mebibyte.
const MB_PER_MIB: f64 = 1.048_576;

fn p(report: &RunReport, kind: Kind) -> Option<&crate::report::LatencySummary> {
    report.latency_of(kind)
}

impl BenchResults {
    pub fn scenario(&self, name: &str) -> Option<&RunReport> {
        self.scenarios.iter().find(|r| r.name == name)
    }

    /// Judge the brief's targets against the figures (a target whose scenarios did not run is
    /// left out).
    pub fn judge(&mut self) {
        self.targets = [
            self.standard_mix_target(),
            self.open_loop_target(),
            self.views_target(),
            self.flash_sale_target(),
            self.flash_sale_redis_target(),
            self.standard_mix_redis_row(),
            self.checkout_cost_row(),
            self.light_load_target(),
            self.light_load_latency_target(),
            self.cpu_per_purchase_target(),
            self.flash_sale_rate_target(),
            self.open_loop_tail_target(),
            self.twice_n_target(),
            self.gateway_memory_target(),
            self.catalog_memory_target(),
            self.catalog_import_target(),
        ]
        .into_iter()
        .flatten()
        .collect();
    }

    /// The largest resident memory of the nodes whose label starts with `role`, MiB.
    fn largest(rss_mib: &BTreeMap<String, f64>, role: &str) -> Option<(String, f64)> {
        rss_mib
            .iter()
            .filter(|(label, _)| label.starts_with(role))
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(label, mib)| (label.clone(), *mib))
    }

    /// A gateway holding the connections of the concurrency curve's run at the most connections
    /// up to the brief's N = 6000: at most 200 MB resident, the largest reading during the run.
    fn gateway_memory_target(&self) -> Option<TargetResult> {
        let point = self
            .concurrency
            .iter()
            .filter(|c| c.connections <= 6000)
            .max_by_key(|c| c.connections)?;
        let (label, mib) = Self::largest(&point.peak_rss_mib, "gateway")?;
        let (_, after_mib) = Self::largest(&point.rss_mib, "gateway")?;
        let mb = mib * MB_PER_MIB;
        Some(TargetResult {
            target: format!(
                "gateway holding {} connections: ≤ 200 MB resident (largest reading during the run)",
                point.connections
            ),
            measured: format!(
                "{label}: {mb:.0} MB ({mib:.0} MiB); after the run {:.0} MB",
                after_mib * MB_PER_MIB
            ),
            met: Some(mb <= 200.0),
        })
    }

    /// The cluster at the catalog curve's largest catalog: a voter ≤ 1 GB resident, a gateway
    /// ≤ 500 MB; the data size beside them.
    fn catalog_memory_target(&self) -> Option<TargetResult> {
        let point = self.catalog.iter().max_by_key(|c| c.products)?;
        let (voter, voter_mib) = Self::largest(&point.rss_mib, "voter")?;
        let (gateway, gateway_mib) = Self::largest(&point.rss_mib, "gateway")?;
        let data_mib = point
            .data_mib
            .iter()
            .filter(|(label, _)| label.starts_with("voter"))
            .map(|(_, mib)| *mib)
            .fold(0.0, f64::max);
        let (voter_mb, gateway_mb) = (voter_mib * MB_PER_MIB, gateway_mib * MB_PER_MIB);
        Some(TargetResult {
            target: format!(
                "{} products: a voter ≤ 1 GB resident, a gateway ≤ 500 MB",
                point.products
            ),
            measured: format!(
                "{voter}: {voter_mb:.0} MB, {gateway}: {gateway_mb:.0} MB; a voter's data {:.0} MB",
                data_mib * MB_PER_MIB
            ),
            met: Some(voter_mb <= 1000.0 && gateway_mb <= 500.0),
        })
    }

    /// The catalog curve's imports (`POST /v1/admin/products/bulk`, until every server shows the
    /// last product): at least 50 000 products/s over the whole curve.
    fn catalog_import_target(&self) -> Option<TargetResult> {
        let largest = self.catalog.iter().map(|c| c.products).max()?;
        let seconds: f64 = self.catalog.iter().map(|c| c.create_s).sum();
        if seconds <= 0.0 {
            return None;
        }
        let rate = largest as f64 / seconds;
        Some(TargetResult {
            target: "catalog import: ≥ 50 000 products/s".into(),
            measured: format!("{largest} products in {seconds:.1} s: {rate:.0}/s"),
            met: Some(rate >= 50_000.0),
        })
    }

    /// Zero errors and no oversell in the standard mix, closed and open loop (and burst).
    fn standard_mix_target(&self) -> Option<TargetResult> {
        let closed = self.scenario("standard-closed")?;
        let open = self.scenario("standard-open")?;
        let burst = self.scenario("standard-burst");
        let bad = |r: &RunReport| {
            r.errors
                + r.check
                    .as_ref()
                    .map_or(0, |c| c.problem_count as u64 + c.unknown)
        };
        Some(TargetResult {
            target: format!(
                "standard mix at {} connections: zero errors and no oversell, closed and open loop",
                closed.config.connections
            ),
            measured: format!(
                "closed: {} errors/problems, {:.0} answers/s{}; open: {} errors/problems",
                bad(closed),
                closed.answers_per_s,
                burst
                    .and_then(|b| b.burst_ms)
                    .map(|ms| format!(
                        ", burst of {} answered in {ms:.0} ms",
                        closed.config.connections
                    ))
                    .unwrap_or_default(),
                bad(open)
            ),
            met: Some(bad(closed) == 0 && bad(open) == 0 && burst.is_none_or(|b| b.ok)),
        })
    }

    /// p99 under 50 ms for views and purchases, open loop.
    fn open_loop_target(&self) -> Option<TargetResult> {
        let open = self.scenario("standard-open")?;
        let view = p(open, Kind::View).map_or(f64::NAN, |l| l.p99_ms);
        let buy = p(open, Kind::PurchaseConfirmed).map_or(f64::NAN, |l| l.p99_ms);
        Some(TargetResult {
            target: "open loop: p99 < 50 ms for views and purchases".into(),
            measured: format!(
                "{:.0} req/s offered over {} connections: view p99 {view:.1} ms, purchase p99 {buy:.1} ms",
                match open.config.mode {
                    crate::driver::Mode::Open { rate } => rate,
                    _ => 0.0,
                },
                open.config.connections
            ),
            met: Some(view < 50.0 && buy < 50.0),
        })
    }

    /// Views at 0.7 × what bare axum answers or more.
    fn views_target(&self) -> Option<TargetResult> {
        let views = self.scenario("views")?;
        let bare = self.scenario("views-axum")?;
        let ratio = views.answers_per_s / bare.answers_per_s.max(1e-9);
        Some(TargetResult {
            target: "views ≥ 0.7 × bare axum req/s under the same load".into(),
            measured: format!(
                "{:.0} vs {:.0} views/s: {ratio:.2} ×",
                views.answers_per_s, bare.answers_per_s
            ),
            met: Some(ratio >= 0.7),
        })
    }

    /// The flash sale: 5 × PostgreSQL's committed purchases per second, and a lower p99.
    fn flash_sale_target(&self) -> Option<TargetResult> {
        let ours = self.scenario("flash-sale")?;
        let pg = self.scenario("flash-sale-postgres")?;
        let ratio = ours.confirmed_per_s / pg.confirmed_per_s.max(1e-9);
        let p99 = |r: &RunReport| p(r, Kind::PurchaseConfirmed).map_or(f64::NAN, |l| l.p99_ms);
        Some(TargetResult {
            target: format!(
                "flash sale, {} buyers: committed purchases/s ≥ 5 × PostgreSQL, lower p99",
                ours.config.connections
            ),
            measured: format!(
                "{:.0} vs {:.0} purchases/s ({ratio:.1} ×); p99 {:.0} vs {:.0} ms",
                ours.confirmed_per_s,
                pg.confirmed_per_s,
                p99(ours),
                p99(pg)
            ),
            met: Some(ratio >= 5.0 && p99(ours) < p99(pg)),
        })
    }

    /// The flash sale against Redis (in memory, one server): half its rate or more, and a p99
    /// below its own or within 2 × of it.
    fn flash_sale_redis_target(&self) -> Option<TargetResult> {
        let ours = self.scenario("flash-sale")?;
        let redis = self.scenario("flash-sale-redis")?;
        let ratio = ours.confirmed_per_s / redis.confirmed_per_s.max(1e-9);
        let p99 = |r: &RunReport| p(r, Kind::PurchaseConfirmed).map_or(f64::NAN, |l| l.p99_ms);
        Some(TargetResult {
            target: format!(
                "flash sale, {} buyers: committed purchases/s ≥ 0.5 × Redis (not durable, not \
                 replicated), p99 ≤ 2 × Redis's",
                ours.config.connections
            ),
            measured: format!(
                "{:.0} vs {:.0} purchases/s ({ratio:.2} ×); p99 {:.0} vs {:.0} ms",
                ours.confirmed_per_s,
                redis.confirmed_per_s,
                p99(ours),
                p99(redis)
            ),
            met: Some(ratio >= 0.5 && p99(ours) <= 2.0 * p99(redis)),
        })
    }

    /// The standard mix, closed loop, beside Redis's: a figure to read, not a target.
    fn standard_mix_redis_row(&self) -> Option<TargetResult> {
        let ours = self.scenario("standard-closed")?;
        let redis = self.scenario("standard-closed-redis")?;
        let p99 = |r: &RunReport, kind| p(r, kind).map_or(f64::NAN, |l| l.p99_ms);
        Some(TargetResult {
            target: format!(
                "standard mix at {} connections beside Redis (for reading; no target)",
                ours.config.connections
            ),
            measured: format!(
                "{:.0} vs {:.0} answers/s ({:.2} ×); view p99 {:.1} vs {:.1} ms, purchase p99 \
                 {:.1} vs {:.1} ms",
                ours.answers_per_s,
                redis.answers_per_s,
                ours.answers_per_s / redis.answers_per_s.max(1e-9),
                p99(ours, Kind::View),
                p99(redis, Kind::View),
                p99(ours, Kind::PurchaseConfirmed),
                p99(redis, Kind::PurchaseConfirmed)
            ),
            met: None,
        })
    }

    /// What checkout costs beside a plain purchase in the same run: the flash sale through
    /// holds (two entries per item, a hold and its confirmation or release) against the plain
    /// flash sale, and three-line carts against single purchases over the same products.
    fn checkout_cost_row(&self) -> Option<TargetResult> {
        let sale = self.scenario("flash-sale")?;
        let held = self.scenario("hold-sale")?;
        let spread = self.scenario("spread")?;
        let cart = self.scenario("cart")?;
        let p99 = |r: &RunReport| p(r, Kind::PurchaseConfirmed).map_or(f64::NAN, |l| l.p99_ms);
        let lines = crate::workload::CART_LINES as f64;
        Some(TargetResult {
            target: format!(
                "checkout beside a plain purchase, {} buyers (for reading; no target)",
                sale.config.connections
            ),
            measured: format!(
                "hold sale {:.0} vs flash sale {:.0} items sold/s ({:.2} ×), p99 {:.0} vs {:.0} \
                 ms; {}-line carts {:.0} carts/s = {:.0} lines/s vs {:.0} single purchases/s \
                 ({:.2} ×), p99 {:.0} vs {:.0} ms",
                held.confirmed_per_s,
                sale.confirmed_per_s,
                held.confirmed_per_s / sale.confirmed_per_s.max(1e-9),
                p99(held),
                p99(sale),
                crate::workload::CART_LINES,
                cart.confirmed_per_s,
                cart.confirmed_per_s * lines,
                spread.confirmed_per_s,
                cart.confirmed_per_s * lines / spread.confirmed_per_s.max(1e-9),
                p99(cart),
                p99(spread)
            ),
            met: None,
        })
    }

    /// A purchase at light load within 3 × the floor (one fsync, one loopback round trip).
    fn light_load_target(&self) -> Option<TargetResult> {
        let light = self.scenario("light-purchases")?;
        let floor = self.floor_at_light_load.as_ref().unwrap_or(&self.floor);
        let floor_ms = (floor.fsync_4k_p50_us + floor.loopback_rtt_p50_us) / 1000.0;
        let p50 = p(light, Kind::PurchaseConfirmed).map_or(f64::NAN, |l| l.p50_ms);
        Some(TargetResult {
            target: format!(
                "purchase p50 at light load ({} buyers) ≤ 3 × floor (one fsync + one loopback round trip)",
                light.config.connections
            ),
            measured: format!(
                "p50 {p50:.2} ms vs floor {floor_ms:.2} ms: {:.1} ×",
                p50 / floor_ms
            ),
            met: Some(p50 <= 3.0 * floor_ms),
        })
    }

    /// The performance issue's light-load target: a purchase p50 of 1.5 ms or less (within 7 ×
    /// a floor of about 0.2 ms), and more purchases per second than PostgreSQL with the same 10
    /// buyers.
    fn light_load_latency_target(&self) -> Option<TargetResult> {
        let light = self.scenario("light-purchases")?;
        let pg = self.scenario("light-purchases-postgres")?;
        let p50 = p(light, Kind::PurchaseConfirmed).map_or(f64::NAN, |l| l.p50_ms);
        Some(TargetResult {
            target: format!(
                "light load ({} buyers): purchase p50 ≤ 1.5 ms, purchases/s above PostgreSQL's",
                light.config.connections
            ),
            measured: format!(
                "p50 {p50:.2} ms; {:.0} vs {:.0} purchases/s ({:.2} ×)",
                light.confirmed_per_s,
                pg.confirmed_per_s,
                light.confirmed_per_s / pg.confirmed_per_s.max(1e-9)
            ),
            met: Some(p50 <= 1.5 && light.confirmed_per_s > pg.confirmed_per_s),
        })
    }

    /// CPU of the whole cluster (gateways and voters) per confirmed purchase: at most 400 µs at
    /// light load and below what PostgreSQL's stack (its server and the axum in front) spends
    /// there, at most 60 µs in the flash sale.
    fn cpu_per_purchase_target(&self) -> Option<TargetResult> {
        let light = self.scenario("light-purchases")?;
        let sale = self.scenario("flash-sale")?;
        let ours_light = cpu_per_confirmed_us(light, &["gateway", "voter"])?;
        let ours_sale = cpu_per_confirmed_us(sale, &["gateway", "voter"])?;
        let pg_light = self
            .scenario("light-purchases-postgres")
            .and_then(|pg| cpu_per_confirmed_us(pg, &["baseline-pg", "postgres"]));
        Some(TargetResult {
            target: "CPU per confirmed purchase, gateways and voters: ≤ 400 µs at light load and \
                     below PostgreSQL's, ≤ 60 µs in the flash sale"
                .into(),
            measured: format!(
                "light load {ours_light:.0} µs (PostgreSQL and its front: {}); flash sale \
                 {ours_sale:.0} µs",
                pg_light.map_or("not run".into(), |us| format!("{us:.0} µs"))
            ),
            met: Some(
                ours_light <= 400.0
                    && pg_light.is_some_and(|pg| ours_light < pg)
                    && ours_sale <= 60.0,
            ),
        })
    }

    /// The flash sale's rate: at least 25 000 confirmed purchases per second.
    fn flash_sale_rate_target(&self) -> Option<TargetResult> {
        let sale = self.scenario("flash-sale")?;
        Some(TargetResult {
            target: format!(
                "flash sale, {} buyers: ≥ 25 000 confirmed purchases/s",
                sale.config.connections
            ),
            measured: format!("{:.0} purchases/s", sale.confirmed_per_s),
            met: Some(sale.confirmed_per_s >= 25_000.0),
        })
    }

    /// The performance issue's open-loop tail, stricter than the brief's: views p99 of 5 ms
    /// or less, purchases p99 of 20 ms or less.
    fn open_loop_tail_target(&self) -> Option<TargetResult> {
        let open = self.scenario("standard-open")?;
        let view = p(open, Kind::View).map_or(f64::NAN, |l| l.p99_ms);
        let buy = p(open, Kind::PurchaseConfirmed).map_or(f64::NAN, |l| l.p99_ms);
        Some(TargetResult {
            target: "open loop: views p99 ≤ 5 ms, purchases p99 ≤ 20 ms".into(),
            measured: format!(
                "view p99 {view:.1} ms, purchase p99 {buy:.1} ms; {} of {} requests dispatched \
                 > 5 ms late",
                open.late_dispatches, open.scheduled
            ),
            met: Some(view <= 5.0 && buy <= 20.0),
        })
    }

    /// Twice the connections of the main scenarios (the concurrency curve's largest point
    /// against the point at half of it): no error, at least 0.9 × the throughput, p99 under
    /// 1 s for views and purchases.
    fn twice_n_target(&self) -> Option<TargetResult> {
        let most = self.concurrency.iter().max_by_key(|c| c.connections)?;
        let half = self
            .concurrency
            .iter()
            .find(|c| c.connections * 2 == most.connections)?;
        let (at_most, at_half) = (&most.report, &half.report);
        let ratio = at_most.answers_per_s / at_half.answers_per_s.max(1e-9);
        let p99 = |kind| p(at_most, kind).map_or(f64::NAN, |l| l.p99_ms);
        let (view, buy) = (p99(Kind::View), p99(Kind::PurchaseConfirmed));
        Some(TargetResult {
            target: format!(
                "{} connections (2 × {}): no error, throughput ≥ 0.9 × that at {}, p99 < 1 s",
                most.connections, half.connections, half.connections
            ),
            measured: format!(
                "{} errors; {:.0} vs {:.0} answers/s ({ratio:.2} ×); view p99 {view:.0} ms, \
                 purchase p99 {buy:.0} ms",
                at_most.errors, at_most.answers_per_s, at_half.answers_per_s
            ),
            met: Some(at_most.errors == 0 && ratio >= 0.9 && view < 1000.0 && buy < 1000.0),
        })
    }

    /// Write `<dir>/<stem>.json`, `<stem>.md` and the charts `<stem>-*.svg`.
    pub fn write(&self, dir: &Path, stem: &str) -> std::io::Result<Written> {
        std::fs::create_dir_all(dir)?;
        let json = dir.join(format!("{stem}.json"));
        std::fs::write(
            &json,
            serde_json::to_string_pretty(self).map_err(std::io::Error::other)?,
        )?;
        let mut charts = Vec::new();
        for (suffix, svg) in self.charts() {
            let path = dir.join(format!("{stem}-{suffix}.svg"));
            std::fs::write(&path, svg)?;
            charts.push(path);
        }
        let markdown = dir.join(format!("{stem}.md"));
        let chart_names: Vec<String> = charts
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        std::fs::write(&markdown, self.markdown(&chart_names))?;
        Ok(Written {
            json,
            markdown,
            charts,
        })
    }

    /// The charts, by file-name suffix.
    pub fn charts(&self) -> Vec<(&'static str, String)> {
        let mut charts = Vec::new();
        charts.extend(self.latency_chart());
        charts.extend(self.concurrency_charts());
        charts.extend(self.catalog_charts());
        charts
    }

    /// Latency percentiles of every scenario, views and purchases apart.
    fn latency_chart(&self) -> Option<(&'static str, String)> {
        let mut rows = Vec::new();
        for report in &self.scenarios {
            for (kind, label) in [(Kind::View, "view"), (Kind::PurchaseConfirmed, "purchase")] {
                if let Some(l) = report.latency_of(kind) {
                    rows.push((
                        format!("{} · {label}", report.name),
                        vec![l.p50_ms, l.p99_ms, l.p999_ms],
                    ));
                }
            }
        }
        if rows.is_empty() {
            return None;
        }
        Some((
            "latency",
            grouped_bars(
                "Latency percentiles per scenario",
                "ms",
                &["p50", "p99", "p99.9"],
                &rows,
            ),
        ))
    }

    /// Throughput and p99 against connections.
    fn concurrency_charts(&self) -> Vec<(&'static str, String)> {
        if self.concurrency.is_empty() {
            return Vec::new();
        }
        let points = &self.concurrency;
        let x = |c: &ConcurrencyPoint| c.connections as f64;
        let mut throughput = vec![Line {
            name: "all".into(),
            points: curve(points, x, |c| Some(c.report.answers_per_s)),
        }];
        throughput.extend(latency_lines(
            points,
            x,
            |c| &c.report,
            &[
                ("views", Kind::View, Figure::PerSecond),
                ("purchases", Kind::PurchaseConfirmed, Figure::PerSecond),
            ],
        ));
        let p99 = latency_lines(
            points,
            x,
            |c| &c.report,
            &[
                ("views", Kind::View, Figure::P99),
                ("purchases", Kind::PurchaseConfirmed, Figure::P99),
            ],
        );
        vec![
            (
                "concurrency-throughput",
                line_chart(
                    "Standard mix, closed loop: throughput against connections",
                    "connections",
                    "answers per second",
                    false,
                    &throughput,
                ),
            ),
            (
                "concurrency-p99",
                line_chart(
                    "Standard mix, closed loop: p99 latency against connections",
                    "connections",
                    "p99 ms (log)",
                    true,
                    &p99,
                ),
            ),
        ]
    }

    /// Latency, memory and disk against catalog size.
    fn catalog_charts(&self) -> Vec<(&'static str, String)> {
        if self.catalog.is_empty() {
            return Vec::new();
        }
        let (points, x) = (&self.catalog, |c: &CatalogPoint| c.products as f64);
        let mut memory: Vec<Line> = ["voter-1", "gateway-101"]
            .iter()
            .map(|node| Line {
                name: format!("{node} RSS MiB"),
                points: curve(points, x, |c| c.rss_mib.get(*node).copied()),
            })
            .collect();
        memory.push(Line {
            name: "voter-1 data MiB".into(),
            points: curve(points, x, |c| c.data_mib.get("voter-1").copied()),
        });
        let latency = latency_lines(
            points,
            x,
            |c| &c.report,
            &[
                ("view p50", Kind::View, Figure::P50),
                ("view p99", Kind::View, Figure::P99),
                ("purchase p50", Kind::PurchaseConfirmed, Figure::P50),
                ("purchase p99", Kind::PurchaseConfirmed, Figure::P99),
            ],
        );
        vec![
            (
                "catalog-latency",
                line_chart(
                    "Standard mix against catalog size: p50 and p99",
                    "products",
                    "ms (log)",
                    true,
                    &latency,
                ),
            ),
            (
                "catalog-memory",
                line_chart(
                    "Memory and disk against catalog size",
                    "products",
                    "MiB",
                    false,
                    &memory,
                ),
            ),
        ]
    }

    /// The Markdown report: machine, floor, targets, scenarios, curves, charts.
    pub fn markdown(&self, charts: &[String]) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# flashstock benchmark, {}\n", self.started_at);
        if let Some(transport) = self.settings.get("transport").and_then(|t| t.as_str()) {
            let _ = writeln!(
                out,
                "Nodes' transport (`raft.transport`, `--transport`): `{transport}`.\n"
            );
        }
        if let Some(ms) = self
            .settings
            .get("learner_append_interval_ms")
            .and_then(|m| m.as_u64())
        {
            let pace = if ms == 0 {
                "not paced, each sent at once".to_string()
            } else {
                format!("at most one per {ms} ms to a gateway while its stream is busy")
            };
            let _ = writeln!(
                out,
                "Appends to gateways (`raft.learner_append_interval_ms`, \
                 `--learner-append-interval`): {pace}.\n"
            );
        }
        if let Some(cores) = self.settings.get("cpu_budget").and_then(|c| c.as_f64()) {
            let _ = writeln!(
                out,
                "CPU budget (`--cpu-budget`): each node held to {cores} cores by a cgroup CPU \
                 quota of its own, as if on a server of its own; the baselines and the load \
                 generator are not held.\n"
            );
        }
        if let Some(cores) = self
            .settings
            .get("gateway_cpu_budget")
            .and_then(|c| c.as_f64())
        {
            let _ = writeln!(
                out,
                "Gateways' CPU budget (`--gateway-cpu-budget`): {cores} cores each instead.\n"
            );
        }
        if let Some(groups) = self.settings.get("groups").and_then(|g| g.as_u64()) {
            if groups > 1 {
                let _ = writeln!(
                    out,
                    "Raft groups (`cluster.groups`, `--groups`): {groups}, products placed by a \
                     hash of their id, each group's leader on the voter it prefers.\n"
                );
            }
        }
        self.machine_markdown(&mut out);
        self.targets_markdown(&mut out);
        self.scenarios_markdown(&mut out);
        self.stages_markdown(&mut out);
        self.concurrency_markdown(&mut out);
        self.catalog_markdown(&mut out);
        if !charts.is_empty() {
            let _ = writeln!(out, "## Charts\n");
            for chart in charts {
                let _ = writeln!(out, "![{chart}]({chart})\n");
            }
        }
        out
    }

    /// The machine and the floor under every figure.
    fn machine_markdown(&self, out: &mut String) {
        let m = &self.machine;
        let _ = writeln!(
            out,
            "Machine: {} cores ({}), {} MiB of memory, Linux {}. Every process (six nodes, the \
             baselines, PostgreSQL and the load generator) shares it, so figures are noisy and \
             are what one small machine does, not six servers.\n",
            m.cores, m.cpu_model, m.memory_mib, m.kernel
        );
        let f = &self.floor;
        let _ = writeln!(
            out,
            "Floor probe: one 4 KiB write + fdatasync p50 {:.0} µs (p99 {:.0} µs); one loopback \
             TCP round trip p50 {:.0} µs (p99 {:.0} µs). A fresh six-node cluster started in \
             {:.1} s.\n",
            f.fsync_4k_p50_us,
            f.fsync_4k_p99_us,
            f.loopback_rtt_p50_us,
            f.loopback_rtt_p99_us,
            self.cluster_start_s
        );
        if let Some(f) = &self.floor_at_light_load {
            let _ = writeln!(
                out,
                "Floor probed again right before the light-load purchases: fsync p50 {:.0} µs \
                 (p99 {:.0} µs), loopback round trip p50 {:.0} µs (p99 {:.0} µs).\n",
                f.fsync_4k_p50_us, f.fsync_4k_p99_us, f.loopback_rtt_p50_us, f.loopback_rtt_p99_us
            );
        }
    }

    /// The brief's targets, judged.
    fn targets_markdown(&self, out: &mut String) {
        if self.targets.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "## Targets\n\n| target | measured | met |\n|---|---|---|"
        );
        for t in &self.targets {
            let met = match t.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            };
            let _ = writeln!(out, "| {} | {} | {met} |", t.target, t.measured);
        }
        out.push('\n');
    }

    /// The scenarios: a row each, notes on their answers, where the CPU went, memory.
    /// Where the writes' time went in each scenario of the cluster, stage by stage.
    fn stages_markdown(&self, out: &mut String) {
        let staged: Vec<&RunReport> = self
            .scenarios
            .iter()
            .filter(|r| r.stages.as_ref().is_some_and(|s| !s.is_empty()))
            .collect();
        if staged.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "## The write path, stage by stage\n\nEvery node's `flashstock_stage_duration_seconds` \
             read before and after the scenario, summed by role. Mean exact; p50 and p99 are \
             the upper bounds of their histogram buckets (doubling from 25 µs).\n\n\
             | scenario | stage | on | count | mean µs | p50 ≤ µs | p99 ≤ µs |\n\
             |---|---|---|---:|---:|---:|---:|"
        );
        let bound = |v: Option<f64>| match v {
            Some(v) if v.is_finite() => format!("{v:.0}"),
            Some(_) => "> 1.6 s".into(),
            None => "-".into(),
        };
        for r in staged {
            for row in r.stages.iter().flatten() {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {:.0} | {} | {} |",
                    r.name,
                    row.stage,
                    row.on,
                    row.count,
                    row.mean_us,
                    bound(row.p50_at_most_us),
                    bound(row.p99_at_most_us)
                );
            }
        }
        out.push('\n');
    }

    fn scenarios_markdown(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "## Scenarios\n\n| scenario | target | mode | conns | answers/s | confirmed/s | \
             view p50 / p99 / p99.9 ms | purchase p50 / p99 / p99.9 ms | errors | check |\n\
             |---|---|---|---:|---:|---:|---|---|---:|---|"
        );
        for r in &self.scenarios {
            scenario_row(out, r);
        }
        out.push('\n');
        for r in &self.scenarios {
            let notes: Vec<String> = r
                .answers
                .iter()
                .filter(|a| a.status != 200 || !a.code.is_empty())
                .map(|a| {
                    format!(
                        "{} {} {} × {}{}",
                        a.request,
                        a.status,
                        a.code,
                        a.count,
                        if a.error { " (error)" } else { "" }
                    )
                })
                .chain(r.burst_ms.map(|b| format!("burst answered in {b:.0} ms")))
                .chain((r.late_dispatches > 0).then(|| {
                    format!(
                        "{} of {} requests dispatched > 5 ms late (waiting for a free connection; counted in latency)",
                        r.late_dispatches, r.scheduled
                    )
                }))
                .chain((r.retries > 0).then(|| format!("{} same-key retries", r.retries)))
                .collect();
            if !notes.is_empty() {
                let _ = writeln!(out, "- {}: {}", r.name, notes.join("; "));
            }
        }
        cpu_table(
            out,
            self.scenarios
                .iter()
                .chain(self.concurrency.iter().map(|c| &c.report)),
        );
        if !self.rss_after_scenarios_mib.is_empty() {
            let _ = writeln!(
                out,
                "\nResident memory after the scenarios (MiB): {}\n",
                mib_list(&self.rss_after_scenarios_mib)
            );
        }
        if !self.throttled_after_scenarios.is_empty() {
            let list: Vec<String> = self
                .throttled_after_scenarios
                .iter()
                .map(|(node, (seconds, periods))| {
                    format!("{node} {seconds:.1} s in {periods} periods")
                })
                .collect();
            let _ = writeln!(
                out,
                "Held back by their CPU budget over the scenarios (time spent waiting for the \
                 next period with the quota used up): {}\n",
                list.join(", ")
            );
        }
        if !self.storage_after_scenarios.is_empty() {
            let _ = writeln!(
                out,
                "Stores after the scenarios (MiB; RocksDB's table files and memtables by column \
                 family, and the write-ahead log files):\n\n\
                 | node | Raft log | state | snapshot | write-ahead log | total |\n\
                 |---|---:|---:|---:|---:|---:|"
            );
            let mib = |bytes: u64| format!("{:.1}", bytes as f64 / 1_048_576.0);
            for (node, s) in &self.storage_after_scenarios {
                let _ = writeln!(
                    out,
                    "| {node} | {} | {} | {} | {} | {} |",
                    mib(s.log_bytes),
                    mib(s.state_bytes),
                    mib(s.snapshot_bytes),
                    mib(s.wal_bytes),
                    mib(s.total_bytes())
                );
            }
            out.push('\n');
        }
    }

    /// The concurrency curve, a row per point.
    fn concurrency_markdown(&self, out: &mut String) {
        if self.concurrency.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "## Concurrency curve (standard mix, closed loop)\n\n| connections | answers/s | \
             view p50 / p99 ms | purchase p50 / p99 ms | errors | gateway RSS MiB, largest \
             during the run | gateway RSS MiB after it |\n\
             |---:|---:|---|---|---:|---|---|"
        );
        let gateways = |rss: &BTreeMap<String, f64>| -> BTreeMap<String, f64> {
            rss.iter()
                .filter(|(k, _)| k.starts_with("gateway"))
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        };
        for c in &self.concurrency {
            let r = &c.report;
            let _ = writeln!(
                out,
                "| {} | {:.0} | {} | {} | {} | {} | {} |",
                c.connections,
                r.answers_per_s,
                pair(r, Kind::View),
                pair(r, Kind::PurchaseConfirmed),
                r.errors,
                mib_list(&gateways(&c.peak_rss_mib)),
                mib_list(&gateways(&c.rss_mib))
            );
        }
        out.push('\n');
    }

    /// The catalog curve, a row per point.
    fn catalog_markdown(&self, out: &mut String) {
        if self.catalog.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "## Catalog curve\n\n| products | import s | answers/s | view p50 / p99 ms | \
             purchase p50 / p99 ms | RSS MiB | data MiB | snapshot s | snapshot MiB | \
             gateway restart s |\n|---:|---:|---:|---|---|---|---|---:|---:|---:|"
        );
        for c in &self.catalog {
            let r = &c.report;
            let opt = |v: Option<f64>, digits: usize| {
                v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
            };
            let _ = writeln!(
                out,
                "| {} | {:.1} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
                c.products,
                c.create_s,
                r.answers_per_s,
                pair(r, Kind::View),
                pair(r, Kind::PurchaseConfirmed),
                mib_list(&c.rss_mib),
                mib_list(&c.data_mib),
                opt(c.snapshot_s, 2),
                opt(c.snapshot_growth_mib, 1),
                opt(c.gateway_restart_s, 2)
            );
        }
        out.push('\n');
    }
}

/// `(x, y)` of every point that has a `y`.
fn curve<P>(points: &[P], x: impl Fn(&P) -> f64, y: impl Fn(&P) -> Option<f64>) -> Vec<(f64, f64)> {
    points
        .iter()
        .filter_map(|point| y(point).map(|y| (x(point), y)))
        .collect()
}

/// A figure of a latency summary, as a curve shows it.
#[derive(Clone, Copy)]
enum Figure {
    PerSecond,
    P50,
    P99,
}

impl Figure {
    fn of(self, latency: &LatencySummary) -> f64 {
        match self {
            Figure::PerSecond => latency.per_s,
            Figure::P50 => latency.p50_ms,
            Figure::P99 => latency.p99_ms,
        }
    }
}

/// A line per `(name, kind, figure)`: that figure of the latency of `kind` in each point's
/// report.
fn latency_lines<P>(
    points: &[P],
    x: impl Fn(&P) -> f64 + Copy,
    report: fn(&P) -> &RunReport,
    lines: &[(&str, Kind, Figure)],
) -> Vec<Line> {
    lines
        .iter()
        .map(|(name, kind, figure)| Line {
            name: (*name).into(),
            points: curve(points, x, |point| {
                report(point).latency_of(*kind).map(|l| figure.of(l))
            }),
        })
        .collect()
}

/// Where the cores went during each load phase: CPU seconds by group of processes, as cores
/// busy on average, and our processes' CPU per answer.
fn cpu_table<'a>(out: &mut String, reports: impl Iterator<Item = &'a RunReport>) {
    // CPU times tick every 10 ms: a phase shorter than this (a burst) says nothing.
    const PHASE_S_MIN: f64 = 1.0;
    let rows: Vec<(&RunReport, &BTreeMap<String, f64>)> = reports
        .filter(|r| r.elapsed_s >= PHASE_S_MIN)
        .filter_map(|r| Some((r, r.cpu_s.as_ref()?)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n## Where the CPU went (load phase; cores busy on average)\n\n| scenario | elapsed s | \
         machine | load generator | gateways | voters | baselines | databases | other processes \
         | our CPU µs per answer |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (r, cpu) in rows {
        let sum = |prefix: &str| -> f64 {
            cpu.iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(_, v)| v)
                .sum()
        };
        let machine = sum("machine");
        let ours =
            sum("loadgen") + sum("gateway") + sum("voter") + sum("baseline") + databases(&sum);
        let seconds = r.elapsed_s.max(1e-9);
        let answers: u64 = r.answers.iter().map(|a| a.count).sum();
        // `+ 0.0` turns a negative zero into a zero.
        let cores = |v: f64| format!("{:.2}", v / seconds + 0.0);
        let _ = writeln!(
            out,
            "| {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            r.name,
            seconds,
            cores(machine),
            cores(sum("loadgen")),
            cores(sum("gateway")),
            cores(sum("voter")),
            cores(sum("baseline")),
            cores(databases(&sum)),
            cores((machine - ours).max(0.0)),
            ours * 1e6 / (answers.max(1) as f64)
        );
    }
    out.push('\n');
}

/// CPU seconds of the processes whose labels start with one of `groups`, per confirmed
/// purchase of the run's load phase, in µs; `None` when CPU was not measured or nothing was
/// confirmed.
fn cpu_per_confirmed_us(report: &RunReport, groups: &[&str]) -> Option<f64> {
    let cpu = report.cpu_s.as_ref()?;
    let confirmed = p(report, Kind::PurchaseConfirmed)?.count;
    if confirmed == 0 {
        return None;
    }
    let seconds: f64 = cpu
        .iter()
        .filter(|(label, _)| groups.iter().any(|group| label.starts_with(group)))
        .map(|(_, seconds)| seconds)
        .sum();
    Some(seconds * 1e6 / confirmed as f64)
}

/// CPU of the baselines' database servers: PostgreSQL's processes and Redis's.
fn databases(sum: &dyn Fn(&str) -> f64) -> f64 {
    sum("postgres") + sum("redis-server")
}

fn mib_list(values: &BTreeMap<String, f64>) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k} {v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pair(r: &RunReport, kind: Kind) -> String {
    r.latency_of(kind).map_or_else(
        || "-".into(),
        |l| format!("{:.1} / {:.1}", l.p50_ms, l.p99_ms),
    )
}

fn triple(r: &RunReport, kind: Kind) -> String {
    r.latency_of(kind).map_or_else(
        || "-".into(),
        |l| format!("{:.1} / {:.1} / {:.1}", l.p50_ms, l.p99_ms, l.p999_ms),
    )
}

fn scenario_row(out: &mut String, r: &RunReport) {
    let mode = match r.config.mode {
        crate::driver::Mode::Closed => "closed".to_owned(),
        crate::driver::Mode::Burst => "burst".to_owned(),
        crate::driver::Mode::Open { rate } => format!("open {rate:.0}/s"),
    };
    let check = match &r.check {
        None => "-".to_owned(),
        Some(c) if c.ok() => format!("ok ({} sold)", c.sold),
        Some(c) => format!("**{} problems**", c.problem_count),
    };
    let _ = writeln!(
        out,
        "| {} | {} | {mode} | {} | {:.0} | {:.0} | {} | {} | {} | {check} |",
        r.name,
        r.target,
        r.config.connections,
        r.answers_per_s,
        r.confirmed_per_s,
        triple(r, Kind::View),
        triple(r, Kind::PurchaseConfirmed),
        r.errors
    );
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time (UTC).
pub fn utc_timestamp(unix_seconds: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds);
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_798_243_199), "2026-12-25T23:59:59Z");
    }
}
