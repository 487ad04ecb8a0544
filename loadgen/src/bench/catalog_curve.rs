//! The catalog curve: one catalog grown point by point, and at each point the cluster measured
//! holding it (a run of the standard mix, memory, data, a snapshot, a gateway restart).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashstock_api::NodeStatus;
use flashstock_deploy::local::LocalCluster;

use super::processes::{cluster_data, cluster_rss};
use super::scenarios::run_config;
use super::settings::Settings;
use crate::check::check;
use crate::driver::{run, Mode};
use crate::http::Target;
use crate::proc_info::dir_bytes;
use crate::record::{merge_ledgers, Ledger};
use crate::report::RunReport;
use crate::results::CatalogPoint;
use crate::setup::import_products;
use crate::workload::{Catalog, Workload, WorkloadKind};

/// How long a snapshot, a restart or a catch-up may take.
const SLOW_STEP_TIMEOUT: Duration = Duration::from_secs(600);
/// Connections of the catalog curve's runs, at most.
const CATALOG_CURVE_CONNECTIONS_MAX: usize = 1000;

/// Grow `catalog` to `products`, then measure the cluster holding it. `ledger` gathers what
/// every point's run saw confirmed, so that each check covers the purchases of all of them.
pub async fn catalog_point(
    cluster: &mut LocalCluster,
    shop: &Target,
    (catalog, ledger): (&mut Catalog, &mut BTreeMap<usize, Ledger>),
    products: usize,
    settings: &Settings,
    progress: bool,
) -> Result<CatalogPoint, String> {
    let created = import_products(shop, catalog, catalog.products..products, progress).await?;
    catalog.products = products;
    let workload = Arc::new(Workload {
        kind: WorkloadKind::Standard,
        catalog: catalog.clone(),
        view_percent: 80,
        cart_groups: None,
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
    let leader = cluster
        .wait_for_leader(SLOW_STEP_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let (snapshot_s, snapshot_growth_mib) = time_snapshot(cluster, leader).await?;
    let gateway_restart_s = Some(time_gateway_restart(cluster, leader).await?);
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

/// A snapshot on `leader`, through the admin API, timed until its status shows it; and how
/// much the leader's data directory grew meanwhile, MiB. `None`s when the snapshot was refused
/// or did not show within SLOW_STEP_TIMEOUT.
async fn time_snapshot(
    cluster: &LocalCluster,
    leader: u64,
) -> Result<(Option<f64>, Option<f64>), String> {
    let voters = cluster.voter_client();
    let addr = cluster.addr(leader);
    let leader_dir = cluster.nodes[&leader].data_dir.clone();
    let applied = status(cluster, leader).await?.applied_index.unwrap_or(0);
    let bytes_before = dir_bytes(&leader_dir);
    let began = Instant::now();
    let mut snapshot_s = None;
    if voters.snapshot(&addr).await.is_ok() {
        while began.elapsed() < SLOW_STEP_TIMEOUT {
            let now = status(cluster, leader).await?;
            if now.snapshot_index.is_some_and(|i| i >= applied) {
                snapshot_s = Some(began.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let growth_mib = snapshot_s
        .map(|_| (dir_bytes(&leader_dir) as f64 - bytes_before as f64) / (1024.0 * 1024.0));
    Ok((snapshot_s, growth_mib))
}

/// A gateway restart: stop it, start it, wait until it has applied the log of `leader`;
/// seconds.
async fn time_gateway_restart(cluster: &mut LocalCluster, leader: u64) -> Result<f64, String> {
    let gateway = *cluster.gateway_ids().last().expect("a gateway");
    let last = status(cluster, leader).await?.last_log_index.unwrap_or(0);
    cluster.terminate(gateway).map_err(|e| e.to_string())?;
    let began = Instant::now();
    cluster.start(gateway).await.map_err(|e| e.to_string())?;
    cluster
        .wait_applied(gateway, last, SLOW_STEP_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    Ok(began.elapsed().as_secs_f64())
}

/// The status of node `id`, through the admin API.
async fn status(cluster: &LocalCluster, id: u64) -> Result<NodeStatus, String> {
    let addr = cluster.addr(id);
    cluster
        .voter_client()
        .status(&addr)
        .await
        .map_err(|e| e.to_string())
}
