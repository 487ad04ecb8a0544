//! The benchmark's figures: a preset (`--scale`), each figure overridable by a flag.

use std::path::PathBuf;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// The brief's scale: 6000 connections, curves to 12 000 connections and 1 000 000 products.
    Full,
    /// A reduced scale that fits in a few minutes.
    Quick,
}

/// The command line of `flashstock-bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct Flags {
    /// Preset of every figure below; flags override it.
    #[arg(long, value_enum, default_value = "full")]
    pub scale: Scale,
    /// Connections of the main scenarios (views, standard mix).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Length of each main scenario, seconds.
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Open loop: offered requests per second.
    #[arg(long)]
    pub open_rate: Option<f64>,
    /// Buyers of the flash sale and connections of the spread workload.
    #[arg(long)]
    pub flash_buyers: Option<usize>,
    /// Stock of the flash-sale product.
    #[arg(long)]
    pub flash_stock: Option<u64>,
    /// Buyers of the light-load purchase scenario.
    #[arg(long, default_value_t = 10)]
    pub light_buyers: usize,
    /// Connection counts of the concurrency curve (comma-separated; the flag alone: skip).
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    pub concurrency: Option<Vec<usize>>,
    /// Catalog sizes of the catalog curve (comma-separated, growing; the flag alone: skip).
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    pub catalog: Option<Vec<usize>>,
    /// Length of each curve point's run, seconds.
    #[arg(long)]
    pub curve_seconds: Option<f64>,
    /// Directory of the results.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Skip the PostgreSQL baseline (e.g. where PostgreSQL is not installed).
    #[arg(long)]
    pub skip_postgres: bool,
    /// Skip the Redis baseline (e.g. where redis-server is not installed).
    #[arg(long)]
    pub skip_redis: bool,
    /// Never draw progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// How the nodes send Raft's calls and forwarded writes (`raft.transport`), to compare the
    /// two side by side.
    #[arg(long, value_enum, default_value = "wire")]
    pub transport: TransportArg,
    /// Run only the sustained benchmark, for this many minutes: the standard mix at
    /// `--connections` without a pause, with the order archive on (30 is the figure of record).
    #[arg(long, value_name = "MINUTES")]
    pub sustained: Option<f64>,
    /// Length of one interval of the sustained run's figures, seconds.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub sustained_interval: f64,
    /// Hold each node to this many cores (a cgroup v1 CPU quota each; root only), as if each
    /// ran on a server of its own: a leader can no longer borrow its followers' idle CPU. The
    /// baselines and the load generator are not held.
    #[arg(long, value_name = "CORES")]
    pub cpu_budget: Option<f64>,
    /// Hold each gateway to this many cores instead of --cpu-budget's (which it needs): e.g.
    /// more than the voters, so that the voters' CPU, which more Raft groups spread, is the
    /// ceiling rather than the gateways'.
    #[arg(long, value_name = "CORES", requires = "cpu_budget")]
    pub gateway_cpu_budget: Option<f64>,
    /// Raft groups the cluster splits its products over (`cluster.groups`), each led by its
    /// own voter once the leaders have spread.
    #[arg(long, default_value_t = 1, value_name = "G")]
    pub groups: u16,
    /// The least time between two appends a leader sends a gateway whose stream is busy
    /// (`raft.learner_append_interval_ms`; 0 sends each at once), to compare settings side by
    /// side. Default: the nodes' default.
    #[arg(long, value_name = "MS")]
    pub learner_append_interval: Option<u64>,
}

/// `--transport`: `raft.transport` of every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TransportArg {
    /// The internal wire: one multiplexed binary connection per peer.
    Wire,
    /// One HTTP/1.1 exchange per call.
    Http,
}

impl TransportArg {
    pub fn config(self) -> cluster_config::Transport {
        match self {
            TransportArg::Wire => cluster_config::Transport::Wire,
            TransportArg::Http => cluster_config::Transport::Http,
        }
    }
}

/// The figures in force, after the preset and the flags (written into the results as given).
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub(crate) scale: Scale,
    pub(crate) connections: usize,
    pub(crate) seconds: f64,
    pub(crate) open_rate: f64,
    pub(crate) flash_buyers: usize,
    pub(crate) flash_stock: u64,
    pub(crate) light_buyers: usize,
    pub(crate) concurrency: Vec<usize>,
    pub(crate) catalog: Vec<usize>,
    pub(crate) curve_seconds: f64,
    pub(crate) postgres: bool,
    pub(crate) redis: bool,
    pub(crate) transport: TransportArg,
    /// Minutes of the sustained run, and its interval in seconds; `None`: the standard benchmark.
    pub(crate) sustained: Option<(f64, f64)>,
    /// Cores each node is held to; `None`: the nodes share the machine.
    pub(crate) cpu_budget: Option<f64>,
    /// Cores each gateway is held to, when not `cpu_budget`.
    pub(crate) gateway_cpu_budget: Option<f64>,
    /// Raft groups of the cluster.
    pub(crate) groups: u16,
    /// `raft.learner_append_interval_ms` of every node.
    pub(crate) learner_append_interval_ms: u64,
}

impl Settings {
    pub fn from(flags: &Flags) -> Settings {
        let full = flags.scale == Scale::Full;
        let pick = |given: Option<f64>, full_value: f64, quick_value: f64| {
            given.unwrap_or(if full { full_value } else { quick_value })
        };
        Settings {
            scale: flags.scale,
            connections: flags.connections.unwrap_or(if full { 6000 } else { 1000 }),
            seconds: pick(flags.seconds, 15.0, 6.0),
            open_rate: pick(flags.open_rate, 6000.0, 1500.0),
            flash_buyers: flags.flash_buyers.unwrap_or(if full { 1200 } else { 300 }),
            flash_stock: flags
                .flash_stock
                .unwrap_or(if full { 20_000 } else { 5000 }),
            light_buyers: flags.light_buyers,
            concurrency: flags.concurrency.clone().unwrap_or_else(|| {
                if full {
                    vec![100, 1000, 6000, 12_000]
                } else {
                    vec![100, 300, 1000, 2000]
                }
            }),
            catalog: flags.catalog.clone().unwrap_or_else(|| {
                if full {
                    vec![10, 10_000, 1_000_000]
                } else {
                    vec![10, 10_000, 100_000]
                }
            }),
            curve_seconds: pick(flags.curve_seconds, 8.0, 4.0),
            postgres: !flags.skip_postgres,
            redis: !flags.skip_redis,
            transport: flags.transport,
            sustained: flags
                .sustained
                .map(|minutes| (minutes, flags.sustained_interval)),
            cpu_budget: flags.cpu_budget,
            gateway_cpu_budget: flags.gateway_cpu_budget,
            groups: flags.groups,
            learner_append_interval_ms: flags
                .learner_append_interval
                .unwrap_or(cluster_config::defaults::DEFAULT_LEARNER_APPEND_INTERVAL_MS),
        }
    }

    /// The most connections any run opens at once.
    pub fn connections_max(&self) -> usize {
        if self.sustained.is_some() {
            return self.connections;
        }
        self.concurrency
            .iter()
            .copied()
            .chain([self.connections, self.flash_buyers, self.light_buyers])
            .max()
            .unwrap_or(1)
    }
}
