//! One run: form a cluster, run the workload under the nemesis, heal, settle, check, report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flashstock_deploy::local::{node_binary, Layout, LocalCluster};
use flashstock_deploy::netns::{NodeNetwork, PrivateNetwork, HOST_IP};
use flashstock_deploy::postgres::PostgresOptions;
use tokio::task::JoinSet;

use crate::archive_db::ArchiveDb;
use crate::checker::CheckReport;
use crate::history::{stamp, Clock, History, OpRecord};
use crate::nemesis::{FaultKind, Nemesis, NemesisConfig};
use crate::proxy::{self, Proxies};
use crate::report::{Report, RunFacts};
use crate::workload::{self, Progress, WorkloadConfig};
use crate::Error;
use crate::{archive, checker, final_state};

/// How long forming the cluster and creating the products may take.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the nodes may take to agree on the final state after the workload.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the run prints its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// The short run's snapshot interval: a few snapshots and purges in its minute.
pub const SHORT_SNAPSHOT_EVERY_LOGS: u64 = 500;

/// The short run's `gateway.ready_leader_silence_ms`, which a `stale-gateway` fault is held past.
pub const SHORT_READY_LEADER_SILENCE_MS: u64 = 2000;

/// The most a run may last past its `seconds`: covering the fault kinds not drawn yet, healing,
/// settling and reading the final state. Orders are kept at least this long past `seconds`.
const RUN_OVERTIME_MAX_S: u64 = 3600;

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Workload time; the run goes on past it only to finish covering every fault kind once.
    pub seconds: u64,
    pub workload: WorkloadConfig,
    pub nemesis: NemesisConfig,
    /// Lay the cluster out here (kept afterwards) instead of a temporary directory.
    pub dir: Option<PathBuf>,
    /// Run this node binary instead of `flashstock-node` (a deliberately broken one, to show
    /// that the checker catches it).
    pub node_binary: Option<PathBuf>,
    /// Archive orders in a PostgreSQL server started for the run, and check the archive.
    pub archive: bool,
    /// Give every node a network namespace of its own. The process must already run in a
    /// private network namespace ([`flashstock_deploy::netns::run_in_private_network`]).
    pub namespaces: bool,
    /// Build a snapshot every this many entries (`raft.snapshot_every_logs`), and keep a tenth
    /// of that behind it; `None`: the nodes' defaults.
    pub snapshot_every_logs: Option<u64>,
    /// TLS on every link: the clients reach the gateways over HTTPS, the nodes speak mutual TLS
    /// (certificates made for the run, see `LocalCluster::enable_tls`).
    pub tls: bool,
    /// Raft groups of the cluster (`cluster.groups`); 1: the cluster of before groups.
    pub groups: u16,
}

/// Kinds of fault that only a cluster of one group can take, left out of a run of several
/// groups: a rolling upgrade starts from the previous release (0.1.0), which has no groups. The
/// faults that change a membership, restore a store or restart every node do it in every group.
pub const ONE_GROUP_FAULTS: [FaultKind; 1] = [FaultKind::Upgrade];

impl RunConfig {
    /// A run of `groups` Raft groups: the workload covers every group, and the kinds of fault
    /// only one group can take ([`ONE_GROUP_FAULTS`]) are left out. Returns those left out.
    pub fn with_groups(&mut self, groups: u16) -> Vec<FaultKind> {
        self.groups = groups;
        if groups <= 1 {
            return Vec::new();
        }
        self.workload.groups = groups;
        self.workload.add_product_per_group();
        let left_out: Vec<FaultKind> = self
            .nemesis
            .kinds
            .iter()
            .copied()
            .filter(|kind| ONE_GROUP_FAULTS.contains(kind))
            .collect();
        self.nemesis.kinds.retain(|kind| !left_out.contains(kind));
        left_out
    }

    /// A long run, as the `jepsen` binary does it.
    pub fn new(seconds: u64, clients: usize, seed: u64, faults: Vec<FaultKind>) -> RunConfig {
        let mut workload = WorkloadConfig::new(clients, seed);
        workload.size_for(seconds);
        // An upgrade run starts on a release without checkout, which would refuse its writes
        // (and the product with a limit) until the very end.
        if faults.contains(&FaultKind::Upgrade) {
            workload.without_checkout();
        }
        RunConfig {
            seconds,
            workload,
            nemesis: NemesisConfig::new(faults, seed),
            dir: None,
            node_binary: None,
            archive: false,
            namespaces: false,
            snapshot_every_logs: None,
            tls: false,
            groups: 1,
        }
    }

    /// The short run of CI: every kind of fault once or twice in about 25 s, few clients, so
    /// that it fits two shared cores.
    pub fn short(seed: u64) -> RunConfig {
        let mut config = RunConfig::new(25, 16, seed, FaultKind::ALL.to_vec());
        config.workload.think_ms = (2, 20);
        config.nemesis.hold_ms = (1200, 3000);
        config.nemesis.leader_hold_ms = (3000, 3500);
        config.nemesis.gap_ms = (300, 800);
        // Gateways cut off from the voters turn not-ready within 2 s (the least the configuration
        // allows is above the election timeout, 1.2 s), so the `stale-gateway` fault fits.
        config.nemesis.ready_leader_silence_ms = SHORT_READY_LEADER_SILENCE_MS;
        config.archive = true;
        // Snapshots, log purges, and so a wiped node fed by a snapshot, within the minute.
        config.snapshot_every_logs = Some(SHORT_SNAPSHOT_EVERY_LOGS);
        config
    }
}

/// A finished run: the report, the history behind it, and the tail of every node's log.
pub struct RunOutcome {
    pub report: Report,
    pub history: History,
    pub log_tails: String,
}

impl RunOutcome {
    /// Write the history (JSON lines), the report (JSON) and the timeline chart (SVG) into
    /// `dir`, as `history.jsonl`, `report.json` and `timeline.svg`; returns their paths.
    pub fn save(&self, dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let faults: Vec<_> = self.report.faults.iter().map(|f| f.fault.clone()).collect();
        let files = [
            (
                "history.jsonl",
                crate::timeline::jsonl(&self.history, &faults),
            ),
            (
                "report.json",
                serde_json::to_string_pretty(&self.report).expect("the report serializes"),
            ),
            (
                "timeline.svg",
                crate::timeline::chart_svg(&self.history, &faults, self.report.duration_ms),
            ),
        ];
        let mut paths = Vec::new();
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::write(&path, text)?;
            paths.push(path);
        }
        Ok(paths)
    }
}

/// A run that could not finish, with the tail of every node's log.
#[derive(Debug, thiserror::Error)]
#[error("{message}\n{log_tails}")]
pub struct RunError {
    pub message: String,
    pub log_tails: String,
}

/// Run once. Node processes are killed and partition rules deleted when this returns, or when
/// the future is dropped.
pub async fn run(config: &RunConfig) -> Result<RunOutcome, RunError> {
    let failed = |message: String| RunError {
        message,
        log_tails: String::new(),
    };
    let binary = match &config.node_binary {
        Some(binary) => binary.clone(),
        None => node_binary().map_err(|e| failed(e.to_string()))?,
    };
    // With a namespace per node, this process is 198.18.0.254 on their bridge; PostgreSQL
    // listens there.
    let private_network = match config.namespaces {
        true => {
            let prefix = format!("fsj{}", std::process::id());
            let ids = [1, 2, 3, 101, 102, 103];
            Some(PrivateNetwork::create(&prefix, &ids).map_err(failed)?)
        }
        false => None,
    };
    let network = private_network
        .as_ref()
        .map_or(NodeNetwork::Loopback, |p| p.network.clone());
    println!("jepsen: network: {}", network.describe());
    let postgres = start_archive(config, &network).map_err(failed)?;
    let archive_url = postgres.as_ref().map(ArchiveDb::url);
    // Latency faults need a proxy in front of each voter, which every node then uses.
    let proxy_addrs = match config.nemesis.kinds.contains(&FaultKind::Latency) {
        true => Some(proxy::plan(&network, &[1, 2, 3]).map_err(|e| failed(e.to_string()))?),
        false => None,
    };
    let mut cluster = lay_out(
        config,
        &binary,
        &network,
        archive_url.clone(),
        proxy_addrs.as_ref(),
    )
    .map_err(|e| failed(format!("laying out the cluster: {e}")))?;
    if config.tls {
        cluster
            .enable_tls()
            .map_err(|e| failed(format!("making the run's certificates: {e}")))?;
    }
    println!("jepsen: cluster in {}", cluster.dir.display());
    if let (Some(url), Some(db)) = (&archive_url, &postgres) {
        println!("jepsen: archive in {url} ({})", db.describe());
    }
    let proxies = match &proxy_addrs {
        Some(addrs) => Some(
            start_proxies(&cluster, &network, addrs)
                .await
                .map_err(failed)?,
        ),
        None => None,
    };
    let result = drive(&mut cluster, config, postgres, proxies).await;
    let log_tails = log_tails(&cluster);
    // The nodes stop before their namespaces go.
    drop(cluster);
    drop(private_network);
    match result {
        Ok((report, history)) => Ok(RunOutcome {
            report,
            history,
            log_tails,
        }),
        Err(e) => Err(RunError {
            message: e.to_string(),
            log_tails,
        }),
    }
}

/// The six nodes' configs: archiving often into `archive_url`, and reaching each voter through
/// its proxy when there are proxies.
fn lay_out(
    config: &RunConfig,
    binary: &std::path::Path,
    network: &NodeNetwork,
    archive_url: Option<String>,
    proxy_addrs: Option<&BTreeMap<u64, proxy::ProxyAddrs>>,
) -> Result<LocalCluster, flashstock_deploy::local::Error> {
    let layout = Layout {
        voters: 3,
        gateways: 3,
    };
    let tweak = |node: &mut cluster_config::Config| {
        node.cluster.groups = config.groups;
        node.archive.postgres_url = archive_url.clone();
        node.archive.interval_ms = 50;
        node.archive.retry_max_ms = 1000;
        // The bound the `stale-gateway` fault holds the gateways to.
        node.gateway.ready_leader_silence_ms = config.nemesis.ready_leader_silence_ms;
        // The checker reads every order of the run from the nodes' state: none may reach its
        // retention and be dropped before the end (the run goes on past `seconds` to cover
        // every fault kind, then settles).
        let run_ms = (config.seconds + RUN_OVERTIME_MAX_S) * 1000;
        node.archive.retention_ms = node.archive.retention_ms.max(run_ms);
        if config.workload.checkout {
            // Abandoned holds expire within the run; every order stays cancellable to its end.
            node.checkout.hold_ttl_ms = config.workload.hold_ttl_ms;
            // A cart across groups left by a killed gateway is settled within the run.
            node.checkout.cart_decision_ms = config.workload.hold_ttl_ms;
            node.checkout.cancel_window_ms = node.checkout.cancel_window_ms.max(run_ms);
            node.limits.client_purchase_rate_per_s = node
                .limits
                .client_purchase_rate_per_s
                .max(config.workload.customer_rate_per_s);
        }
        if let Some(every) = config.snapshot_every_logs {
            node.raft.snapshot_every_logs = every;
            node.raft.logs_to_keep_after_snapshot = every / 10;
        }
        if let Some(addrs) = proxy_addrs {
            if let Some(proxy) = addrs.get(&node.node.id) {
                node.node.advertise = Some(proxy.listen.to_string());
            }
            for peer in &mut node.cluster.voters {
                peer.addr = addrs[&peer.id].listen.to_string();
            }
        }
    };
    match &config.dir {
        Some(dir) => LocalCluster::lay_out_on(binary, dir, layout, network.clone(), tweak),
        None => LocalCluster::temporary_on(binary, layout, network.clone(), tweak),
    }
}

/// PostgreSQL for the archive when the run asks for it, a primary and its synchronous standby,
/// listening where the nodes reach them.
fn start_archive(config: &RunConfig, network: &NodeNetwork) -> Result<Option<ArchiveDb>, String> {
    if !config.archive {
        return Ok(None);
    }
    let options = PostgresOptions {
        listen_ip: match network {
            NodeNetwork::Loopback => std::net::Ipv4Addr::LOCALHOST,
            NodeNetwork::Namespaces { .. } => HOST_IP,
        },
        ..PostgresOptions::default()
    };
    ArchiveDb::start(options)
        .map(Some)
        .map_err(|e| format!("starting PostgreSQL for the archive: {e}"))
}

/// A fault proxy in front of each voter, at the addresses the nodes were configured with.
async fn start_proxies(
    cluster: &LocalCluster,
    network: &NodeNetwork,
    addrs: &BTreeMap<u64, proxy::ProxyAddrs>,
) -> Result<Proxies, String> {
    let targets = addrs
        .keys()
        .map(|id| (*id, cluster.nodes[id].listen))
        .collect();
    let proxies = Proxies::start(network, addrs, &targets).await?;
    println!("jepsen: a fault proxy in front of each voter (latency faults)");
    Ok(proxies)
}

/// The last lines of every node's log, each under a heading.
pub fn log_tails(cluster: &LocalCluster) -> String {
    let mut text = String::new();
    for (id, node) in &cluster.nodes {
        text.push_str(&format!(
            "---- node {id} ({}) ----\n{}\n",
            node.log_path.display(),
            cluster.log_tail(*id)
        ));
    }
    text
}

async fn drive(
    cluster: &mut LocalCluster,
    config: &RunConfig,
    postgres: Option<ArchiveDb>,
    proxies: Option<Proxies>,
) -> Result<(Report, History), Error> {
    cluster.start_and_form(FORM_TIMEOUT).await?;
    if config.workload.checkout {
        wait_cluster_version(cluster, CHECKOUT_CLUSTER_VERSION, FORM_TIMEOUT)
            .await
            .map_err(Error::Harness)?;
    }
    let shop = cluster.shop_client();
    workload::create_products(&shop, &config.workload, FORM_TIMEOUT)
        .await
        .map_err(Error::Harness)?;
    let gateways: Vec<String> = cluster.gateway_urls();
    let clock = Clock::start();
    println!(
        "jepsen: workload starts; {} is {} UTC (node logs are in UTC)",
        stamp(0),
        utc_now()
    );
    let progress = Arc::new(Progress::default());
    let tasks = workload::spawn(
        &config.workload,
        &gateways,
        &cluster.admin_token,
        cluster.shop_tls(),
        clock,
        progress.clone(),
    );
    let ticker = tokio::spawn(print_progress(clock, progress.clone()));
    let mut nemesis = Nemesis::new(
        config.nemesis.clone(),
        clock,
        progress.clone(),
        postgres,
        proxies,
        cluster,
    );
    let end_ms = config.seconds * 1000;
    let faulted = nemesis.run(cluster, end_ms).await;
    if faulted.is_ok() {
        let left = end_ms.saturating_sub(clock.ms());
        tokio::time::sleep(Duration::from_millis(left)).await;
    }
    progress.stop();
    let duration_ms = clock.ms();
    let history = join(tasks).await;
    ticker.abort();
    let healed = nemesis.heal_everything(cluster).await;
    faulted?;
    healed?;
    let mut history = history?;
    history.extend(std::mem::take(&mut nemesis.probe_views));
    println!(
        "{} jepsen: workload stopped after {} operations; settling",
        stamp(clock.ms()),
        history.ops.len()
    );
    let (settled_index, check) = check_final_state(cluster, config, &history, &nemesis).await?;
    let facts = RunFacts {
        seed: config.workload.seed,
        clients: config.workload.clients,
        duration_ms,
        fault_kinds: nemesis.kinds().to_vec(),
        partitions_skipped: nemesis.partitions_skipped.clone(),
        settled_index,
        network: match cluster.tls() {
            Some(_) => format!("{}, TLS on every link", cluster.network.describe()),
            None => format!("{}, plaintext", cluster.network.describe()),
        },
    };
    let report = Report::new(facts, &history, nemesis.faults.clone(), check);
    Ok((report, history))
}

/// Checkout's commands need this cluster version, which a fresh cluster reaches within
/// seconds (the leader raises it once every member runs a release that supports it).
const CHECKOUT_CLUSTER_VERSION: u32 = 2;

/// Wait until every node has applied cluster version `version`, so that no checkout write of
/// the workload is refused for a cluster mid-switch.
async fn wait_cluster_version(
    cluster: &LocalCluster,
    version: u32,
    timeout: Duration,
) -> Result<(), String> {
    let client = cluster.voter_client();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut behind = Vec::new();
        for id in cluster.nodes.keys() {
            match client.status(&cluster.addr(*id)).await {
                Ok(status) if status.applied_cluster_version() >= version => {}
                Ok(status) => behind.push(format!(
                    "node {id} at cluster version {}",
                    status.applied_cluster_version()
                )),
                Err(e) => behind.push(format!("node {id}: {e}")),
            }
        }
        if behind.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "the cluster did not reach cluster version {version} within {timeout:?}: {}",
                behind.join("; ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Once the nemesis has healed everything: wait for the last holds to end, for the archive to
/// drain and the cluster to settle, read every node, and check the history against what they
/// hold; the settled index and the verdicts.
async fn check_final_state(
    cluster: &LocalCluster,
    config: &RunConfig,
    history: &History,
    nemesis: &Nemesis,
) -> Result<(u64, CheckReport), Error> {
    let checkout = config.workload.checkout;
    if checkout {
        // Bounded by the holds' time-to-live and a settling margin.
        let timeout = Duration::from_millis(config.workload.hold_ttl_ms) + SETTLE_TIMEOUT;
        match final_state::holds_finished(cluster, timeout).await {
            Some(0) => {}
            Some(held) => {
                println!("jepsen: {held} items still held after {timeout:?}; checking anyway")
            }
            None => println!(
                "jepsen: no group leader answered what is held within {timeout:?}; checking anyway"
            ),
        }
    }
    if nemesis.postgres_url().is_some() {
        archive::wait_drained(cluster, SETTLE_TIMEOUT)
            .await
            .map_err(Error::Harness)?;
    }
    let settled_index = final_state::settle(cluster, SETTLE_TIMEOUT)
        .await
        .map_err(|e| Error::Harness(format!("the cluster did not settle: {e}")))?;
    let nodes = final_state::collect(cluster, checkout)
        .await
        .map_err(Error::Harness)?;
    let mut check = checker::check(history, &config.workload.products, &nodes, cluster.groups);
    // The archive's and the cut-off gateways' verdicts come right after the core invariants,
    // before checkout's, so that the numbers of the first ten never change.
    let mut after_core = Vec::new();
    if let Some(url) = nemesis.postgres_url() {
        let orders = nodes.first().map_or(&[][..], |n| &n.orders[..]);
        let archived = archive::read_caught_up(&url, orders, SETTLE_TIMEOUT)
            .await
            .map_err(Error::Harness)?;
        after_core.push(archive::archive_exactly_once(history, &nodes, &archived));
    }
    after_core.push(checker::stale_views::cut_off_gateways_own_up(
        history,
        &nemesis.gateway_cuts(),
    ));
    let at = checker::CORE_INVARIANTS.min(check.invariants.len());
    for (i, invariant) in after_core.into_iter().enumerate() {
        check.invariants.insert(at + i, invariant);
    }
    Ok((settled_index, check))
}

/// Wait for every workload task and merge what they recorded.
async fn join(mut tasks: JoinSet<Vec<OpRecord>>) -> Result<History, Error> {
    let mut history = History::default();
    while let Some(done) = tasks.join_next().await {
        let ops = done.map_err(|e| Error::Harness(format!("a workload task failed: {e}")))?;
        history.extend(ops);
    }
    Ok(history)
}

/// The wall clock's time of day, `HH:MM:SS.mmm` UTC, to match run times with node logs.
fn utc_now() -> String {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ms_of_day = since_epoch.as_millis() % 86_400_000;
    let (h, m) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60);
    let (sec, ms) = (ms_of_day / 1000 % 60, ms_of_day % 1000);
    format!("{h:02}:{m:02}:{sec:02}.{ms:03}")
}

async fn print_progress(clock: Clock, progress: Arc<Progress>) {
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        println!(
            "{} workload: {} purchases confirmed so far",
            stamp(clock.ms()),
            progress.confirmed()
        );
    }
}
