//! The local launcher behind `flashstock-local`: a whole cluster on this machine, in one command.
//!
//! Lays out (or reuses) three voters and three gateways in a directory, starts them as real
//! `flashstock-node` processes on loopback, forms the Raft group, loads the demo catalog through
//! the public API, prints where everything is and how to use it, then waits for Ctrl-C or
//! SIGTERM and stops every node with SIGTERM: gateways first, then voters. A rerun with the same
//! directory resumes the same cluster, on the same ports, with its data.
//!
//! The rooms:
//! - [`signals`]: the two processes (the one in the terminal forwards signals to a supervisor in
//!   a process group of its own, so the nodes do not all receive Ctrl-C at once) and why the
//!   supervisor stops.
//! - [`catalog`]: the demo catalog: where it is read from, and creating what is missing.
//! - [`nodes`]: the nodes' processes: ports checked free before start, a watch while running, the
//!   ordered stop.
//! - [`summary`]: what is printed once the cluster runs.
//!
//! The order archive is off unless asked for: [`Options::archive_url`] points the voters at an
//! existing PostgreSQL database, [`Options::with_archive`] starts a PostgreSQL server of its own
//! in `DIR/postgres` (Debian's `postgresql` package) and stops it last.

pub mod catalog;
pub mod nodes;
pub mod signals;
pub mod summary;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use cluster_config::{Config, Role};

use crate::local::{node_binary, Layout, LocalCluster};
use crate::postgres::{Postgres, PostgresOptions};
use signals::Shutdown;

/// Set in the supervisor's environment: the process id of the launcher that started it.
const SUPERVISED_ENV: &str = "FLASHSTOCK_LOCAL_SUPERVISOR_OF";

/// What the launcher is asked to do (the command line of `flashstock-local`).
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory of the cluster's configs, data and logs; default `.local-cluster` in the
    /// repository.
    pub dir: Option<PathBuf>,
    /// Demo products to create; default `deploy/demo-catalog.json` in the repository.
    pub catalog: Option<PathBuf>,
    /// How long the cluster may take to form (elect a leader, add the gateways).
    pub form_timeout: Duration,
    /// Archive confirmed orders in this PostgreSQL database.
    pub archive_url: Option<String>,
    /// Start a PostgreSQL server for the archive in `DIR/postgres`.
    pub with_archive: bool,
    /// `cluster.groups` of every node; `None`: what the configs say (1 for a new cluster).
    pub groups: Option<u16>,
}

/// Run the launcher: in the process started from the terminal, start the supervisor and forward
/// signals to it; in the supervisor, run the cluster until asked to stop.
pub fn run(options: Options) -> ExitCode {
    match std::env::var(SUPERVISED_ENV) {
        Ok(parent) => {
            let parent = parent.parse().unwrap_or(0);
            runtime(4).block_on(supervise(options, parent))
        }
        Err(_) => runtime(1).block_on(signals::forward_to_supervisor(SUPERVISED_ENV)),
    }
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("start the Tokio runtime")
}

/// One line of the launcher's progress, on stdout.
pub(crate) fn say(message: impl std::fmt::Display) {
    println!("flashstock-local: {message}");
}

/// One line of why the launcher fails, on stderr.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("flashstock-local: {message}");
    ExitCode::FAILURE
}

/// The supervisor: runs the cluster until asked to stop, then stops it in order.
async fn supervise(options: Options, parent: u32) -> ExitCode {
    let mut shutdown = Shutdown::new(parent);
    let root = catalog::repository_root();
    let dir = absolute(
        options
            .dir
            .clone()
            .unwrap_or_else(|| root.join(".local-cluster")),
    );
    let prepared = match prepare(&options, &root, &dir).await {
        Ok(prepared) => prepared,
        Err(message) => return fail(message),
    };
    let Prepared {
        catalog,
        postgres,
        archive_url,
        mut cluster,
        admin_token,
    } = prepared;

    let started = tokio::select! {
        result = bring_up(&mut cluster, &catalog, admin_token.as_deref(), options.form_timeout) => result,
        reason = shutdown.requested() => Err(format!("{reason} while starting")),
    };
    if let Err(message) = started {
        eprintln!("flashstock-local: {message}");
        eprintln!("flashstock-local: stopping the nodes that were started");
        nodes::stop(&mut cluster).await;
        return ExitCode::FAILURE;
    }

    summary::print(&cluster, admin_token.as_deref(), archive_url.as_deref()).await;
    say(format!(
        "ready. Ctrl-C stops the cluster; its data stays in {} and a rerun resumes it.",
        dir.display()
    ));
    let reason = tokio::select! {
        reason = shutdown.requested() => reason,
        _ = nodes::watch(&cluster) => "unreachable",
    };
    println!();
    say(format!("{reason}: stopping gateways, then voters"));
    nodes::stop(&mut cluster).await;
    if let Some(postgres) = postgres {
        say("stopping PostgreSQL");
        drop(postgres);
    }
    say("stopped");
    ExitCode::SUCCESS
}

/// Everything ready before the first node starts.
struct Prepared {
    catalog: Vec<flashstock_api::CreateProductRequest>,
    postgres: Option<Postgres>,
    archive_url: Option<String>,
    cluster: LocalCluster,
    admin_token: Option<String>,
}

/// Read the catalog, find the node binary, start PostgreSQL if asked, lay out (or reuse) the
/// cluster in `dir` and check its ports are free.
async fn prepare(options: &Options, root: &Path, dir: &Path) -> Result<Prepared, String> {
    let catalog = catalog::load(options.catalog.as_deref(), root)?;
    let binary = node_binary().map_err(|e| e.to_string())?;
    let reused = dir.join("node-1.toml").is_file();
    let postgres = if options.with_archive {
        say(format!(
            "starting PostgreSQL for the archive in {}",
            dir.join("postgres").display()
        ));
        let postgres = Postgres::start_in(&dir.join("postgres"), PostgresOptions::default())
            .map_err(|e| format!("cannot start PostgreSQL for the archive: {e}"))?;
        Some(postgres)
    } else {
        None
    };
    let archive_url = options
        .archive_url
        .clone()
        .or_else(|| postgres.as_ref().map(Postgres::url));
    let layout = Layout {
        voters: 3,
        gateways: 3,
    };
    let tweak = |config: &mut Config| {
        config.archive.postgres_url = archive_url.clone();
        if let Some(groups) = options.groups {
            config.cluster.groups = groups;
        }
    };
    let cluster = LocalCluster::lay_out(&binary, dir, layout, tweak)
        .map_err(|e| format!("cannot lay out the cluster in {}: {e}", dir.display()))?;
    if reused {
        say(format!(
            "resuming the cluster in {} (same configs, ports and data)",
            dir.display()
        ));
    } else {
        say(format!(
            "new cluster in {} (configs written with free ports)",
            dir.display()
        ));
    }
    nodes::check_ports(&cluster).await?;
    let admin_token = admin_token(&cluster);
    if let Some(token) = &admin_token {
        let _ = std::fs::write(dir.join("admin-token"), token);
    }
    Ok(Prepared {
        catalog,
        postgres,
        archive_url,
        cluster,
        admin_token,
    })
}

/// Start the nodes, form the cluster, create the demo products.
async fn bring_up(
    cluster: &mut LocalCluster,
    products: &[flashstock_api::CreateProductRequest],
    admin_token: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    say(format!(
        "starting voters {}, then gateways {}",
        list(&cluster.voter_ids()),
        list(&cluster.gateway_ids())
    ));
    let leader = cluster
        .start_and_form(timeout)
        .await
        .map_err(|e| format!("the cluster did not start: {e}"))?;
    say(format!(
        "cluster formed: node {leader} leads, gateways added as learners"
    ));
    catalog::create_missing(cluster, products, admin_token).await?;

    // Let every replica apply what the leader has, so the status table and the first reads agree.
    let client = cluster.voter_client();
    if let Ok(status) = client.status(&cluster.addr(leader)).await {
        let index = status.applied_index.unwrap_or(0);
        for id in cluster.nodes.keys() {
            if let Err(e) = cluster
                .wait_applied(*id, index, Duration::from_secs(10))
                .await
            {
                say(format!("warning: {e}"));
            }
        }
    }
    Ok(())
}

/// The admin token the gateways were configured with.
fn admin_token(cluster: &LocalCluster) -> Option<String> {
    let gateway = cluster.gateway_ids().first().copied()?;
    match Config::load(&cluster.nodes[&gateway].config_path) {
        Ok(config) => config.cluster.admin_token,
        Err(_) => Some(cluster.admin_token.clone()),
    }
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Voter => "voter",
        Role::Gateway => "gateway",
    }
}

fn list(ids: &[u64]) -> String {
    ids.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
