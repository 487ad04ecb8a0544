//! The processes a benchmark measures besides its own: the baselines it starts, and what every
//! node and baseline holds (memory, data, CPU).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster_config::Role;
use flashstock_deploy::local::LocalCluster;
use flashstock_host::Signal;

use crate::proc_info::{cpu_seconds, cpu_seconds_named, dir_bytes, machine_busy_seconds, rss_mib};

/// How long a baseline may take to say it listens (PostgreSQL runs initdb first).
const BASELINE_START_TIMEOUT: Duration = Duration::from_secs(120);

/// A baseline's process, stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Baseline {
    child: Child,
    pub url: String,
}

impl Baseline {
    /// Start `binary` with `args`; wait for its `listening on http://...` line.
    pub fn start(binary: &Path, args: &[String]) -> Result<Baseline, String> {
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        let _ = flashstock_host::signal(self.child.id(), Signal::Term);
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

/// A binary of the same build as this one (`baseline-axum`, `baseline-pg`).
pub fn sibling(name: &str) -> Result<PathBuf, String> {
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

/// How a node is named in the results: `voter-1`, `gateway-101`.
pub fn node_label(role: Role, id: u64) -> String {
    match role {
        Role::Voter => format!("voter-{id}"),
        Role::Gateway => format!("gateway-{id}"),
    }
}

/// Resident memory of every running node, MiB.
pub fn cluster_rss(cluster: &LocalCluster) -> BTreeMap<String, f64> {
    cluster
        .nodes
        .values()
        .filter_map(|node| {
            let rss = rss_mib(node.pid()?)?;
            Some((node_label(node.role, node.id), rss))
        })
        .collect()
}

/// How often [`PeakRss`] reads the nodes' resident memory.
const PEAK_RSS_EVERY: Duration = Duration::from_millis(250);

/// The largest resident memory of each node, read every 250 ms from [`start`] until
/// [`stop`]: what a node holds while a scenario's connections are open, which a reading after
/// the scenario misses (its connections are closed by then, and what they held may already be
/// given back).
///
/// [`start`]: PeakRss::start
/// [`stop`]: PeakRss::stop
pub struct PeakRss {
    stop: tokio::sync::oneshot::Sender<()>,
    sampler: tokio::task::JoinHandle<BTreeMap<String, f64>>,
}

impl PeakRss {
    /// Start reading every node of `cluster` that runs now.
    pub fn start(cluster: &LocalCluster) -> PeakRss {
        let nodes: Vec<(String, u32)> = cluster
            .nodes
            .values()
            .filter_map(|node| Some((node_label(node.role, node.id), node.pid()?)))
            .collect();
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let sampler = tokio::spawn(async move {
            let mut peak = BTreeMap::<String, f64>::new();
            let mut every = tokio::time::interval(PEAK_RSS_EVERY);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = &mut stopped => break,
                }
                for (label, pid) in &nodes {
                    if let Some(mib) = rss_mib(*pid) {
                        let largest = peak.entry(label.clone()).or_insert(0.0);
                        *largest = largest.max(mib);
                    }
                }
            }
            peak
        });
        PeakRss { stop, sampler }
    }

    /// The largest reading of each node, MiB.
    pub async fn stop(self) -> BTreeMap<String, f64> {
        let _ = self.stop.send(());
        self.sampler.await.unwrap_or_default()
    }
}

/// Bytes of every node's data directory, MiB.
pub fn cluster_data(cluster: &LocalCluster) -> BTreeMap<String, f64> {
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

/// Every running node's store by part, as its status reports it; a node that does not answer is
/// left out.
pub async fn cluster_storage(
    cluster: &LocalCluster,
) -> BTreeMap<String, flashstock_api::StorageStatus> {
    let client = cluster.voter_client();
    let mut all = BTreeMap::new();
    for node in cluster.nodes.values() {
        if let Ok(status) = client.status(&cluster.addr(node.id)).await {
            if let Some(storage) = status.storage {
                all.insert(node_label(node.role, node.id), storage);
            }
        }
    }
    all
}

/// Reads the CPU time of every labelled process, of PostgreSQL's and Redis's processes (by name)
/// and of the whole machine: where the two cores went during a load phase.
pub fn cpu_probe(processes: Vec<(String, u32)>) -> impl Fn() -> BTreeMap<String, f64> + Sync {
    move || {
        let mut used: BTreeMap<String, f64> = processes
            .iter()
            .filter_map(|(label, pid)| Some((label.clone(), cpu_seconds(*pid)?)))
            .collect();
        used.insert("postgres".into(), cpu_seconds_named("postgres"));
        used.insert("redis-server".into(), cpu_seconds_named("redis-server"));
        used.insert("machine".into(), machine_busy_seconds());
        used
    }
}
