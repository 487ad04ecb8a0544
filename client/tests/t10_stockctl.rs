//! `stockctl`, the real binary, against a real cluster of three voters and three gateways on
//! loopback: its tables and JSON, its exit codes, and a membership round trip.
//!
//! Needs `flashstock-node` built: `cargo build --release --workspace --bins` first.

use std::future::Future;
use std::process::Output;
use std::time::{Duration, Instant};

use flashstock_api::{
    ArchiveReport, ArchiveStatus, NodeStatus, ProductChanged, ProductList, ProductView,
    PurchaseResponse, RaftState,
};
use flashstock_deploy::local::{node_binary, Layout, LocalCluster};
use flashstock_deploy::postgres::{Postgres, PostgresOptions};
use serde::de::DeserializeOwned;

/// Generous: the machine is shared and slow.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a condition may take to hold.
const CONDITION_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// What stockctl itself may take per command.
const COMMAND_TIMEOUT_MS: &str = "60000";

/// Runs `stockctl` with the cluster's addresses and credentials in its environment.
struct Ctl {
    env: Vec<(&'static str, String)>,
}

impl Ctl {
    fn for_cluster(cluster: &LocalCluster) -> Ctl {
        let endpoints: Vec<String> = cluster.nodes.keys().map(|id| cluster.addr(*id)).collect();
        let gateways: Vec<String> = cluster.gateway_urls();
        Ctl {
            env: vec![
                ("STOCKCTL_ENDPOINTS", endpoints.join(",")),
                ("STOCKCTL_SECRET", cluster.secret.clone()),
                ("STOCKCTL_GATEWAYS", gateways.join(",")),
                ("STOCKCTL_ADMIN_TOKEN", cluster.admin_token.clone()),
            ],
        }
    }

    /// No cluster settings at all.
    fn bare() -> Ctl {
        Ctl { env: Vec::new() }
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_stockctl"));
        for name in [
            "STOCKCTL_ENDPOINTS",
            "STOCKCTL_SECRET",
            "FLASHSTOCK_SECRET",
            "STOCKCTL_GATEWAYS",
            "STOCKCTL_ADMIN_TOKEN",
        ] {
            command.env_remove(name);
        }
        command
            .envs(self.env.iter().map(|(k, v)| (*k, v)))
            .arg("--timeout-ms")
            .arg(COMMAND_TIMEOUT_MS)
            .args(args)
            .output()
            .await
            .expect("stockctl runs")
    }

    /// Run a command that must succeed; its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert!(
            output.status.success(),
            "stockctl {args:?}: {}",
            show(&output)
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
    }

    /// Run a command that must succeed with `--output json`; its parsed stdout.
    async fn json<T: DeserializeOwned>(&self, args: &[&str]) -> T {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let stdout = self.ok(&all).await;
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}:\n{stdout}"))
    }
}

fn show(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Poll `probe` until it returns a value, or panic after [`CONDITION_TIMEOUT`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + CONDITION_TIMEOUT;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not within {CONDITION_TIMEOUT:?}; last: {last}")
            }
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

async fn formed_cluster() -> LocalCluster {
    formed_cluster_with(3, |_| {}).await
}

async fn formed_cluster_with(
    gateways: u64,
    tweak: impl Fn(&mut cluster_config::Config),
) -> LocalCluster {
    let layout = Layout {
        voters: 3,
        gateways,
    };
    let binary = node_binary().expect("flashstock-node is built");
    let mut cluster = LocalCluster::temporary(&binary, layout, tweak).expect("lay out");
    cluster
        .start_and_form(FORM_TIMEOUT)
        .await
        .expect("start and form the cluster");
    cluster
}

/// Every node's status, once all six answer and agree on one leader; returns them and the leader.
async fn agreed_status(ctl: &Ctl) -> (Vec<NodeStatus>, u64) {
    eventually("six nodes agree on one leader", || async {
        let output = ctl.run(&["cluster", "status", "--output", "json"]).await;
        let statuses: Vec<NodeStatus> = serde_json::from_slice(&output.stdout)
            .map_err(|e| format!("{e}: {}", show(&output)))?;
        let leaders: Vec<u64> = statuses
            .iter()
            .filter(|s| s.state == RaftState::Leader)
            .map(|s| s.id)
            .collect();
        match leaders[..] {
            [leader]
                if statuses.len() == 6 && statuses.iter().all(|s| s.leader == Some(leader)) =>
            {
                Ok((statuses, leader))
            }
            _ => Err(show(&output)),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stockctl_operates_a_real_cluster() {
    let mut cluster = formed_cluster().await;
    let ctl = Ctl::for_cluster(&cluster);
    status_lists_every_node(&ctl).await;
    catalog_and_purchases(&ctl).await;
    snapshot_shows_in_status(&ctl).await;
    wrong_secret_is_refused(&ctl).await;
    archive_off_is_said(&ctl).await;
    membership_round_trip(&mut cluster, &ctl).await;
}

async fn archive_off_is_said(ctl: &Ctl) {
    let status: serde_json::Value = ctl.json(&["archive", "status"]).await;
    assert_eq!(status["enabled"], false, "{status}");
    let table = ctl.ok(&["archive", "status"]).await;
    assert!(table.contains("off (no archive.postgres_url)"), "{table}");
    let output = ctl.run(&["archive", "report", "--since", "1h"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    assert!(
        stderr(&output).contains("archive_disabled"),
        "{}",
        show(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_status_and_report_read_a_real_archive() {
    let postgres = Postgres::start(PostgresOptions::default()).expect("start PostgreSQL");
    let url = postgres.url();
    let cluster = formed_cluster_with(1, |config| {
        config.archive.postgres_url = Some(url.clone());
        config.archive.interval_ms = 20;
    })
    .await;
    let ctl = Ctl::for_cluster(&cluster);
    ctl.ok(&[
        "product",
        "create",
        "tee",
        "--name",
        "Tee",
        "--price-cents",
        "1999",
        "--stock",
        "100",
    ])
    .await;
    for _ in 0..3 {
        ctl.ok(&["buy", "tee", "2"]).await;
    }

    let status: ArchiveStatus = eventually("the archive catches up", || async {
        let output = ctl.run(&["archive", "status", "--output", "json"]).await;
        let status: ArchiveStatus = serde_json::from_slice(&output.stdout)
            .map_err(|e| format!("{e}: {}", show(&output)))?;
        if status.backlog == 0 && status.orders_placed == 3 {
            Ok(status)
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await;
    assert!(status.enabled && status.active && status.cursor.is_some());
    let table = ctl.ok(&["archive", "status"]).await;
    assert!(table.contains("on, archiving on leader"), "{table}");
    let cluster_table = ctl.ok(&["cluster", "status"]).await;
    assert!(cluster_table.lines().next().unwrap().contains("BACKLOG"));

    let report: ArchiveReport = ctl.json(&["archive", "report", "--since", "1h"]).await;
    assert_eq!(report.products.len(), 1, "{report:?}");
    let tee = &report.products[0];
    assert_eq!((tee.orders, tee.units, tee.revenue_cents), (3, 6, 6 * 1999));
    let table = ctl.ok(&["archive", "report", "--since", "1h"]).await;
    assert!(table.contains("TOTAL    3       6      119.94"), "{table}");
    // A range before the purchases holds nothing.
    let empty: ArchiveReport = ctl
        .json(&[
            "archive",
            "report",
            "--from",
            "2020-01-01",
            "--to",
            "2020-02-01",
        ])
        .await;
    assert!(empty.products.is_empty(), "{empty:?}");
}

async fn status_lists_every_node(ctl: &Ctl) {
    let (statuses, leader) = agreed_status(ctl).await;
    let mut ids: Vec<u64> = statuses.iter().map(|s| s.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3, 101, 102, 103]);
    let leader_status = statuses.iter().find(|s| s.id == leader).unwrap();
    assert_eq!(leader_status.voters, [1, 2, 3]);

    let table = ctl.ok(&["cluster", "status"]).await;
    eprintln!("stockctl cluster status:\n{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID")
            && lines[0].contains("LAST LOG")
            && lines[0].ends_with("BACKLOG"),
        "{table}"
    );
    assert_eq!(lines.len(), 7, "a header and six nodes:\n{table}");
    let state_column: Vec<&str> = lines[1..]
        .iter()
        .map(|line| line.split_whitespace().nth(3).unwrap())
        .collect();
    assert_eq!(
        state_column.iter().filter(|s| **s == "Leader").count(),
        1,
        "{table}"
    );
    let gateways = lines.iter().filter(|l| l.contains(" gateway ")).count();
    assert_eq!(gateways, 3, "{table}");
}

async fn catalog_and_purchases(ctl: &Ctl) {
    let created = ctl
        .ok(&[
            "product",
            "create",
            "tee",
            "--name",
            "Tee shirt",
            "--price-cents",
            "1999",
            "--stock",
            "5",
        ])
        .await;
    assert!(
        created.contains("Tee shirt") && created.contains("19.99"),
        "{created}"
    );

    let view: ProductView = ctl
        .json(&["product", "show", "tee", "--linearizable"])
        .await;
    assert_eq!((view.product.stock, view.product.sold), (5, 0));

    // The same key twice: one order.
    let table = ctl
        .ok(&["buy", "tee", "2", "--key", "stockctl-test-1"])
        .await;
    let first_order = table
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next());
    let first_order: u64 = first_order.unwrap().parse().expect("an order id");
    let again: PurchaseResponse = ctl
        .json(&["buy", "tee", "2", "--key", "stockctl-test-1"])
        .await;
    assert_eq!(again.order.id.0, first_order);
    assert!(again.replayed);
    assert_eq!(again.order.remaining, 3);

    // More than the stock: a definite, committed rejection.
    let sold_out = ctl.run(&["buy", "tee", "4"]).await;
    assert_eq!(sold_out.status.code(), Some(1), "{}", show(&sold_out));
    assert!(
        stderr(&sold_out).contains("insufficient_stock"),
        "{}",
        show(&sold_out)
    );

    let restocked: ProductChanged = ctl.json(&["product", "restock", "tee", "10"]).await;
    assert_eq!(
        (restocked.product.stock, restocked.product.restocked),
        (13, 10)
    );

    ctl.ok(&[
        "product",
        "create",
        "mug",
        "--name",
        "Mug",
        "--price-cents",
        "850",
        "--stock",
        "7",
    ])
    .await;
    // Gateways read their local replica: poll until it has both products, restock included.
    let list: ProductList = eventually("the list shows both products", || async {
        let list: ProductList = ctl
            .json(&["product", "list", "--limit", "1", "--all"])
            .await;
        let stocks: Vec<(&str, u64)> = list
            .products
            .iter()
            .map(|p| (p.id.as_str(), p.stock))
            .collect();
        match stocks[..] {
            [("mug", 7), ("tee", 13)] => Ok(list),
            _ => Err(format!("{stocks:?}")),
        }
    })
    .await;
    assert_eq!(list.next_after, None);
    assert!(list.products.iter().all(|p| p.is_conserved()));
}

async fn snapshot_shows_in_status(ctl: &Ctl) {
    #[derive(serde::Deserialize)]
    struct Report {
        node: u64,
        snapshot_index: Option<u64>,
    }
    let report: Report = ctl.json(&["cluster", "snapshot"]).await;
    let index = report.snapshot_index.expect("a snapshot index");
    let (statuses, leader) = agreed_status(ctl).await;
    assert_eq!(report.node, leader, "the leader by default");
    let node = statuses.iter().find(|s| s.id == report.node).unwrap();
    assert!(node.snapshot_index >= Some(index), "{node:?}");

    // A gateway too, by id.
    let report: Report = ctl.json(&["cluster", "snapshot", "--node", "102"]).await;
    assert_eq!(report.node, 102);
    assert!(report.snapshot_index.is_some());
}

async fn wrong_secret_is_refused(ctl: &Ctl) {
    let output = ctl
        .run(&["--secret", "not-the-secret", "cluster", "status"])
        .await;
    assert_ne!(output.status.code(), Some(0), "{}", show(&output));
    assert!(
        stderr(&output).contains("unauthorized"),
        "{}",
        show(&output)
    );
}

/// Remove a follower voter, replace its disk, add it back as a learner, promote it: three voters
/// again.
async fn membership_round_trip(cluster: &mut LocalCluster, ctl: &Ctl) {
    let (_, leader) = agreed_status(ctl).await;
    let voter = *cluster
        .voter_ids()
        .iter()
        .rev()
        .find(|id| **id != leader)
        .unwrap();
    let others: Vec<u64> = cluster
        .voter_ids()
        .into_iter()
        .filter(|id| *id != voter)
        .collect();
    let voter_arg = voter.to_string();

    let removed: serde_json::Value = ctl.json(&["cluster", "remove", &voter_arg]).await;
    assert_eq!(removed["voters"], serde_json::json!(others), "{removed}");
    wait_for_voters(ctl, &others).await;

    // As stockctl advises: a removed node is stopped and wiped before it rejoins.
    cluster.kill(voter).expect("kill");
    cluster.wipe(voter).expect("wipe");
    cluster.start(voter).await.expect("restart");

    let addr = cluster.addr(voter);
    ctl.ok(&["cluster", "add-learner", &voter_arg, &addr]).await;
    let promoted = ctl.ok(&["cluster", "promote", &voter_arg]).await;
    assert!(
        promoted.starts_with(&format!("promoted node {voter}")),
        "{promoted}"
    );
    wait_for_voters(ctl, &[1, 2, 3]).await;

    // Promoting a voter again changes nothing.
    let again = ctl.ok(&["cluster", "promote", &voter_arg]).await;
    assert!(again.contains("is a voter already"), "{again}");
    // And the cluster still sells.
    let bought: PurchaseResponse = ctl.json(&["buy", "mug"]).await;
    assert_eq!(bought.order.product, "mug");

    // A learner (a gateway) is removed from the membership, then added back.
    let gateway = *cluster.gateway_ids().last().unwrap();
    let gateway_arg = gateway.to_string();
    let removed: serde_json::Value = ctl.json(&["cluster", "remove", &gateway_arg]).await;
    let members = removed["members"].as_array().unwrap();
    assert!(
        members
            .iter()
            .all(|m| m["id"] != serde_json::json!(gateway)),
        "{removed}"
    );
    ctl.ok(&[
        "cluster",
        "add-learner",
        &gateway_arg,
        &cluster.addr(gateway),
    ])
    .await;
}

/// Wait until the leader reports exactly these voters.
async fn wait_for_voters(ctl: &Ctl, voters: &[u64]) {
    eventually(&format!("voters {voters:?}"), || async {
        let output = ctl.run(&["cluster", "status", "--output", "json"]).await;
        let statuses: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout)
            .map_err(|e| format!("{e}: {}", show(&output)))?;
        let leader = statuses
            .iter()
            .filter_map(|s| serde_json::from_value::<NodeStatus>(s.clone()).ok())
            .find(|s| s.state == RaftState::Leader);
        match leader {
            Some(leader) if leader.voters == voters => Ok(()),
            _ => Err(show(&output)),
        }
    })
    .await
}

#[tokio::test]
async fn usage_errors_exit_2_and_failures_exit_1() {
    let ctl = Ctl::bare();
    let missing = ctl
        .run(&[
            "product",
            "create",
            "tee",
            "--price-cents",
            "1",
            "--stock",
            "1",
        ])
        .await;
    assert_eq!(missing.status.code(), Some(2), "{}", show(&missing));
    assert!(stderr(&missing).contains("--name"), "{}", show(&missing));

    // A product id becomes part of a URL: one the API would refuse is a usage error.
    let bad_id = ctl.run(&["buy", "tee/../x", "1"]).await;
    assert_eq!(bad_id.status.code(), Some(2), "{}", show(&bad_id));
    assert!(stderr(&bad_id).contains("product id"), "{}", show(&bad_id));

    let no_command = ctl.run(&["cluster"]).await;
    assert_eq!(no_command.status.code(), Some(2), "{}", show(&no_command));

    let no_endpoints = ctl.run(&["cluster", "status"]).await;
    assert_eq!(
        no_endpoints.status.code(),
        Some(2),
        "{}",
        show(&no_endpoints)
    );
    assert!(stderr(&no_endpoints).contains("STOCKCTL_ENDPOINTS"));

    let help = ctl.run(&["--help"]).await;
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Examples:") && help.contains("stockctl buy"),
        "{help}"
    );

    // Nothing listens on port 1: every endpoint fails, so the command does.
    let down = ctl
        .run(&[
            "--endpoints",
            "127.0.0.1:1",
            "--secret",
            "s",
            "cluster",
            "status",
        ])
        .await;
    assert_eq!(down.status.code(), Some(1), "{}", show(&down));
    assert!(stderr(&down).contains("unreachable"), "{}", show(&down));
}
