//! `stockctl`, the real binary, against a real cluster of three voters and three gateways on
//! loopback: its tables and JSON, its exit codes, and a membership round trip.
//!
//! Needs `flashstock-node` built: `cargo build --release --workspace --bins` first.

use std::collections::BTreeSet;
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
#[derive(Clone)]
struct Ctl {
    env: Vec<(&'static str, String)>,
    timeout_ms: &'static str,
}

impl Ctl {
    fn for_cluster(cluster: &LocalCluster) -> Ctl {
        let endpoints: Vec<String> = cluster.nodes.keys().map(|id| cluster.addr(*id)).collect();
        let gateways: Vec<String> = cluster.gateway_urls();
        Ctl {
            env: vec![
                ("STOCKCTL_ENDPOINTS", endpoints.join(",")),
                ("STOCKCTL_SECRET", cluster.operator_secret.clone()),
                ("STOCKCTL_GATEWAYS", gateways.join(",")),
                ("STOCKCTL_ADMIN_TOKEN", cluster.admin_token.clone()),
            ],
            timeout_ms: COMMAND_TIMEOUT_MS,
        }
    }

    /// The same, with another limit per command.
    fn with_timeout(&self, timeout_ms: &'static str) -> Ctl {
        Ctl {
            timeout_ms,
            ..self.clone()
        }
    }

    /// No cluster settings at all.
    fn bare() -> Ctl {
        Ctl {
            env: Vec::new(),
            timeout_ms: COMMAND_TIMEOUT_MS,
        }
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
            .arg(self.timeout_ms)
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
    bulk_import(&ctl).await;
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

    let output = ctl.run(&["cluster", "status"]).await;
    assert!(output.status.success(), "{}", show(&output));
    let table = String::from_utf8(output.stdout.clone()).expect("utf-8");
    eprintln!("stockctl cluster status:\n{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID")
            && lines[0].contains("LAST LOG")
            && lines[0].ends_with("BACKLOG  DATA MIB  RELEASE"),
        "{table}"
    );
    // Every node says what it runs, and the line under the table that they all run it.
    let format = leader_status
        .release
        .as_ref()
        .expect("the leader's release")
        .state_format;
    let release = format!(
        "{}/w{}/f{}",
        env!("CARGO_PKG_VERSION"),
        flashstock_api::WIRE_VERSION,
        format
    );
    assert!(lines[1..].iter().all(|l| l.ends_with(&release)), "{table}");
    assert!(
        stderr(&output).contains(&format!(
            "release: every node answering runs {} (wire {}, state format {}, cluster version up \
             to {})",
            env!("CARGO_PKG_VERSION"),
            flashstock_api::WIRE_VERSION,
            format,
            flashstock_api::CLUSTER_VERSION
        )),
        "{}",
        show(&output)
    );
    // Every member runs this release, so the leader raises the cluster version to its own
    // within seconds of forming, and the line under the table says so.
    let raised = format!("cluster version: {}\n", flashstock_api::CLUSTER_VERSION);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let output = ctl.run(&["cluster", "status"]).await;
        if stderr(&output).contains(&raised) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cluster version was not raised: {}",
            show(&output)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let storage = leader_status
        .storage
        .as_ref()
        .expect("the leader's storage");
    assert!(storage.log_bytes + storage.wal_bytes > 0, "{storage:?}");
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

/// `product import`: 2 500 creates and a restock in three requests, bad lines reported by
/// number and not imported, and a second run of the same file applying nothing twice.
async fn bulk_import(ctl: &Ctl) {
    #[derive(serde::Deserialize)]
    struct Report {
        lines: usize,
        created: usize,
        restocked: usize,
        replayed: usize,
        errors: Vec<LineError>,
        unknown: Vec<usize>,
    }
    #[derive(serde::Deserialize)]
    struct LineError {
        line: usize,
        id: Option<String>,
        code: String,
    }
    let mut csv = String::from("op,id,name,price_cents,stock,quantity\n");
    for i in 0..2500 {
        csv.push_str(&format!(
            "create,bulk-{i},\"Bulk, item {i}\",{},5,\n",
            100 + i
        ));
    }
    csv.push_str("restock,bulk-0,,,,7\n"); // line 2502
    csv.push_str("create,bulk-x,Bad price,12.5,1,\n"); // line 2503: unreadable
    csv.push_str("create,tee,Again,100,1,\n"); // line 2504: exists, refused by the state machine
    csv.push_str("create,bad id,Bad id,100,1,\n"); // line 2505: fails the gateway's checks
    let file = std::env::temp_dir().join(format!("stockctl-import-{}.csv", std::process::id()));
    std::fs::write(&file, csv).expect("write the import file");
    let path = file.to_str().expect("a UTF-8 path");

    let run = || async {
        let output = ctl
            .run(&[
                "product", "import", path, "--chunk", "1000", "--output", "json",
            ])
            .await;
        // Lines not imported: a definite failure, after the report.
        assert_eq!(output.status.code(), Some(1), "{}", show(&output));
        let report: Report = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", show(&output)));
        report
    };
    let first = run().await;
    assert_eq!(
        (first.lines, first.created, first.restocked, first.replayed),
        (2504, 2500, 1, 0)
    );
    assert!(first.unknown.is_empty());
    let errors: Vec<(usize, Option<&str>, &str)> = first
        .errors
        .iter()
        .map(|e| (e.line, e.id.as_deref(), e.code.as_str()))
        .collect();
    assert_eq!(
        errors,
        vec![
            (2503, None, "invalid_request"),
            (2504, Some("tee"), "product_exists"),
            (2505, Some("bad id"), "invalid_request"),
        ]
    );

    // The same file again: the same keys, so every line comes back replayed and nothing is
    // applied twice (the restock above all).
    let second = run().await;
    assert_eq!(
        (second.created, second.restocked, second.replayed),
        (2500, 1, 2501)
    );
    assert_eq!(second.errors.len(), 3);
    let view: ProductView = ctl
        .json(&["product", "show", "bulk-0", "--linearizable"])
        .await;
    assert_eq!((view.product.stock, view.product.restocked), (12, 7));
    let last: ProductView = ctl
        .json(&["product", "show", "bulk-2499", "--linearizable"])
        .await;
    assert_eq!(last.product.name, "Bulk, item 2499");
    let _ = std::fs::remove_file(&file);
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
    add_learner(ctl, cluster, gateway).await;
}

/// `stockctl cluster add-learner ID ADDR` for node `id` of `cluster`.
async fn add_learner(ctl: &Ctl, cluster: &LocalCluster, id: u64) {
    let (id, addr) = (id.to_string(), cluster.addr(id));
    ctl.ok(&["cluster", "add-learner", &id, &addr]).await;
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

/// `cluster init` refuses more voters than the archive's connection bound assumes (as
/// membership changes do), and the node stays uninitialized: a proper init then succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_refuses_more_than_the_maximum_voters() {
    let layout = Layout {
        voters: 1,
        gateways: 0,
    };
    let binary = node_binary().expect("flashstock-node is built");
    let mut cluster = LocalCluster::temporary(&binary, layout, |_| {}).expect("lay out");
    cluster.start(1).await.expect("start voter 1");
    let ctl = Ctl::for_cluster(&cluster);
    let max = cluster_config::defaults::VOTERS_MAX as u64;
    let voters: Vec<String> = (1..=max + 1)
        .map(|id| match id {
            1 => format!("1={}", cluster.addr(1)),
            _ => format!("{id}=127.0.0.{id}:1"),
        })
        .collect();
    let mut args = vec!["cluster", "init"];
    for voter in &voters {
        args.extend(["--voter", voter.as_str()]);
    }
    let refused = ctl.run(&args).await;
    assert_eq!(refused.status.code(), Some(1), "{}", show(&refused));
    assert!(
        stderr(&refused).contains("too_many_voters")
            && stderr(&refused).contains(&format!("at most {max} voters")),
        "{}",
        show(&refused)
    );
    let help = ctl.run(&["cluster", "init", "--help"]).await;
    assert!(
        String::from_utf8_lossy(&help.stdout).contains(&format!("at most {max}")),
        "stockctl cluster init --help names the maximum: {}",
        show(&help)
    );

    let voter = format!("1={}", cluster.addr(1));
    ctl.ok(&["cluster", "init", "--voter", &voter]).await;
    let leader = cluster
        .wait_for_leader(FORM_TIMEOUT)
        .await
        .expect("one voter leads");
    assert_eq!(leader, 1);
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

/// Buys one `product` at a time through the gateways until stopped; counts confirmations.
struct Buyer {
    confirmed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Buyer {
    fn start(cluster: &LocalCluster, product: &'static str) -> Buyer {
        use std::sync::atomic::Ordering;
        let shop = cluster.shop_client();
        let confirmed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let counter = confirmed.clone();
        let task = tokio::spawn(async move {
            while !*stopped.borrow_and_update() {
                if shop.purchase(product, 1).await.is_ok() {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Buyer {
            confirmed,
            stop,
            task,
        }
    }

    fn confirmed(&self) -> u64 {
        self.confirmed.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn stop(self) -> u64 {
        let _ = self.stop.send(true);
        let confirmed = self.confirmed.clone();
        self.task.await.expect("the buyer does not panic");
        confirmed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The leader's status, through stockctl.
async fn leader_status(ctl: &Ctl) -> NodeStatus {
    eventually("a leader answers", || async {
        let output = ctl.run(&["cluster", "status", "--output", "json"]).await;
        let statuses: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout)
            .map_err(|e| format!("{e}: {}", show(&output)))?;
        statuses
            .into_iter()
            .filter_map(|s| serde_json::from_value::<NodeStatus>(s).ok())
            .find(|s| s.state == RaftState::Leader)
            .ok_or_else(|| show(&output))
    })
    .await
}

/// Run `stockctl cluster replace-disk VOTER`, stopping, wiping and restarting the voter when it
/// asks; returns what stockctl said on stderr once it has succeeded.
async fn replace_disk(cluster: &mut LocalCluster, ctl: &Ctl, voter: u64) -> Vec<String> {
    let mut replace = tokio::process::Command::new(env!("CARGO_BIN_EXE_stockctl"));
    replace
        .envs(ctl.env.iter().map(|(k, v)| (*k, v)))
        .args([
            "--timeout-ms",
            COMMAND_TIMEOUT_MS,
            "cluster",
            "replace-disk",
        ])
        .arg(voter.to_string())
        .args(["--restart-wait", "120s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut replace = replace.spawn().expect("stockctl starts");
    // Step 2 asks the operator to stop, wipe and restart the node: do it once asked.
    let stderr_pipe = replace.stderr.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr_pipe));
    let mut said = Vec::new();
    while let Some(line) = lines.next_line().await.expect("read stockctl") {
        said.push(line.clone());
        if line.contains("step 2/5") {
            break;
        }
    }
    assert!(
        said.iter().any(|l| l.contains("step 2/5")),
        "stockctl never asked for the restart: {said:?}"
    );
    cluster.kill(voter).expect("kill");
    cluster.wipe(voter).expect("wipe");
    cluster.start(voter).await.expect("restart empty");
    let rest = tokio::spawn(async move {
        let mut rest = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push(line);
        }
        rest
    });
    let status = tokio::time::timeout(Duration::from_secs(240), replace.wait())
        .await
        .expect("replace-disk finishes")
        .expect("stockctl runs");
    said.extend(rest.await.unwrap());
    assert!(status.success(), "replace-disk failed: {said:#?}");
    assert!(said.iter().any(|l| l.contains("step 5/5")), "{said:#?}");
    said
}

/// `stockctl cluster replace-disk` after the leader has purged its log, under load: the node
/// comes back empty, is fed a snapshot, catches up and votes again, and purchases go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_disk_rejoins_through_a_snapshot_after_a_purge() {
    let mut cluster = formed_cluster_with(1, |config| {
        config.raft.snapshot_every_logs = 100;
        config.raft.logs_to_keep_after_snapshot = 10;
    })
    .await;
    let ctl = Ctl::for_cluster(&cluster);
    let stock = "1000000";
    let create = [
        "product",
        "create",
        "bolt",
        "--name",
        "Bolt",
        "--price-cents",
        "5",
    ];
    ctl.ok(&[&create[..], &["--stock", stock]].concat()).await;
    let buyer = Buyer::start(&cluster, "bolt");
    let leader = eventually("the leader purges its log", || async {
        let leader = leader_status(&ctl).await;
        match leader.purged_index {
            Some(purged) if purged > 0 => Ok(leader),
            _ => Err(format!("purged {:?}", leader.purged_index)),
        }
    })
    .await;
    let [voter, _] = followers(&cluster, leader.id);

    replace_disk(&mut cluster, &ctl, voter).await;

    let before = buyer.confirmed();
    let after_rejoin = eventually("purchases go on after the rejoin", || async {
        match buyer.confirmed() {
            n if n >= before + 20 => Ok(n),
            n => Err(format!("{n} confirmed")),
        }
    })
    .await;
    assert!(after_rejoin >= before + 20);
    buyer.stop().await;
    wait_for_voters(&ctl, &[1, 2, 3]).await;
    // The node was fed a snapshot: its first log entry after the wipe came after a purge.
    let rejoined: NodeStatus = eventually("the rejoined node has caught up", || async {
        let leader = leader_status(&ctl).await;
        let status = cluster
            .voter_client()
            .status(&cluster.addr(voter))
            .await
            .map_err(|e| e.to_string())?;
        match (status.applied_index, leader.committed_index) {
            (Some(applied), Some(committed)) if applied >= committed => Ok(status),
            _ => Err(format!("{status:?}")),
        }
    })
    .await;
    assert!(
        rejoined.snapshot_index.is_some_and(|index| index > 0),
        "node {voter} never installed or built a snapshot: {rejoined:?}"
    );
    assert!(rejoined.fatal.is_none(), "{rejoined:?}");
}

/// A change whose new voters would need a node that is down is refused, naming it, and nothing
/// changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_needs_a_dead_node_is_refused() {
    let mut cluster = formed_cluster_with(1, |_| {}).await;
    let ctl = Ctl::for_cluster(&cluster);
    let leader = leader_status(&ctl).await;
    let [dead, other] = followers(&cluster, leader.id);
    cluster.kill(dead).expect("kill");

    // Removing the other follower leaves {leader, dead}: both needed, one is down.
    let refused = ctl.run(&["cluster", "remove", &other.to_string()]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", show(&refused));
    let text = stderr(&refused);
    assert!(text.contains("members_unavailable"), "{text}");
    assert!(text.contains(&dead.to_string()), "{text}");
    let after = leader_status(&ctl).await;
    assert_eq!(after.voters, vec![1, 2, 3], "nothing changed: {after:?}");
    assert!(after.membership.as_ref().is_some_and(|m| m.committed));

    // Removing the dead one is fine: the others are a majority of both sides.
    let removed: serde_json::Value = ctl.json(&["cluster", "remove", &dead.to_string()]).await;
    let mut rest = vec![leader.id, other];
    rest.sort();
    assert_eq!(removed["voters"], serde_json::json!(rest), "{removed}");
}

/// What one attempt to stall a change gave.
enum Attempt {
    /// Refused before anything was proposed: the member stopped before the leader's check.
    Refused,
    /// The change completed: the member stopped too late.
    Completed,
    /// Proposed and not completed: stalled.
    Stalled,
    /// Anything else (leadership moved meanwhile): says nothing about the moment.
    Other,
}

/// A change can still stall if a member it needs stops in the moment between the leader's check
/// and the commit. Then the status shows the change and the member it waits for, other changes
/// are refused, and once the member answers again the change ends (completed, or dropped if a
/// leader without it is elected) and can be undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_change_is_seen_ends_and_is_undone() {
    let cluster = formed_cluster_with(0, |_| {}).await;
    let slow = Ctl::for_cluster(&cluster);
    // Short: a stopped node answers nothing, and each status call waits for it that long.
    let ctl = slow.with_timeout("3000");
    let client = cluster.voter_client();

    // Search the moment to stop a member the change needs: too early is refused, too late
    // completes.
    let (mut early_us, mut late_us) = (0u64, 30_000u64);
    let mut stalled = None;
    for _ in 0..40 {
        // Remove `removed`; the new voters {leader, needed} need `needed`, which stops.
        let leader = leader_status(&ctl).await;
        let [needed, removed] = followers(&cluster, leader.id);
        let pid = cluster.nodes[&needed].pid().unwrap() as libc::pid_t;
        let mut voters = vec![leader.id, needed];
        voters.sort();
        let delay = Duration::from_micros((early_us + late_us) / 2);
        let change = {
            let (client, voters) = (client.clone(), voters.clone());
            let addr = cluster.addr(leader.id);
            tokio::spawn(async move { client.change_membership(&addr, voters, false).await })
        };
        let started = Instant::now();
        tokio::task::spawn_blocking(move || {
            while started.elapsed() < delay {
                std::hint::spin_loop();
            }
            signal(pid, libc::SIGSTOP);
        })
        .await
        .unwrap();
        let answer = change.await.unwrap();
        // Judged by what the leader says, not by the answer: a stalled change may also end in a
        // client timeout.
        let membership = leader_status(&ctl)
            .await
            .membership
            .expect("a membership view");
        let in_progress = !membership.committed || membership.configs.len() > 1;
        let attempt = match &answer {
            _ if in_progress && membership.waiting_for.contains(&needed) => Attempt::Stalled,
            Err(flashstock_client::Error::Api { code, .. })
                if *code == flashstock_api::ErrorCode::MembersUnavailable =>
            {
                Attempt::Refused
            }
            Ok(_) if !in_progress => Attempt::Completed,
            other => {
                // Leadership moved, or the change stalled on another member: start again.
                eprintln!("attempt ended otherwise: {other:?}, {membership:?}");
                Attempt::Other
            }
        };
        eprintln!(
            "attempt: stop after {delay:?}: {}",
            match attempt {
                Attempt::Stalled => "stalled",
                Attempt::Refused => "refused",
                Attempt::Completed => "completed",
                Attempt::Other => "other",
            }
        );
        match attempt {
            Attempt::Stalled => {
                stalled = Some((needed, removed, pid, voters));
                break;
            }
            Attempt::Refused => early_us = delay.as_micros() as u64,
            Attempt::Completed => late_us = delay.as_micros() as u64,
            Attempt::Other => {}
        }
        signal(pid, libc::SIGCONT);
        settle(&ctl).await;
        restore_voter(&slow, &cluster, removed).await;
        if late_us.saturating_sub(early_us) < 200 {
            (early_us, late_us) = (0, 30_000);
        }
    }
    let Some((needed, removed, pid, voters)) = stalled else {
        panic!("no attempt stalled the change (last between {early_us} and {late_us} µs)");
    };

    // Seen: the leader's status shows the change in progress and what it waits for.
    let stuck = leader_status(&ctl).await;
    let membership = stuck.membership.clone().expect("a membership view");
    assert!(
        !membership.committed || membership.configs.len() == 2,
        "{membership:?}"
    );
    assert!(membership.waiting_for.contains(&needed), "{membership:?}");
    let text = ctl.run(&["cluster", "status"]).await;
    let said = stderr(&text);
    assert!(said.contains("CHANGE IN PROGRESS"), "{said}");
    assert!(said.contains(&format!("waiting for [{needed}]")), "{said}");
    // Another change is refused by the leader while this one is in progress.
    let other = client
        .add_learner(&cluster.addr(stuck.id), 9, "127.0.0.9:1")
        .await;
    match other {
        Err(flashstock_client::Error::Api {
            code: flashstock_api::ErrorCode::MembershipChangeInProgress,
            ..
        }) => {}
        other => panic!("another change during a stalled one: {other:?}"),
    }

    // The member answers again: the change completes, or, if a leader that never received it
    // is elected meanwhile, it is dropped (it was never committed). Either way it ends, and the
    // membership in force is one of the two.
    signal(pid, libc::SIGCONT);
    settle(&ctl).await;
    let done = leader_status(&ctl).await;
    assert!(
        done.voters == voters || done.voters == vec![1, 2, 3],
        "neither the old nor the new voters: {done:?}"
    );
    // Undone (if it completed): the removed voter comes back through the checked steps.
    restore_voter(&slow, &cluster, removed).await;
}

/// The two voters other than `leader`.
fn followers(cluster: &LocalCluster, leader: u64) -> [u64; 2] {
    let others: Vec<u64> = cluster
        .voter_ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    others.try_into().expect("three voters")
}

/// Stop or resume a node of this test.
fn signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill only sends a signal, to the pid of a node this test started.
    unsafe { libc::kill(pid, signal) };
}

/// Wait until no membership change is in progress.
async fn settle(ctl: &Ctl) {
    eventually("the membership settles", || async {
        let leader = leader_status(ctl).await;
        match &leader.membership {
            Some(m) if m.committed && m.configs.len() == 1 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// Add voter `id` back after its removal: a learner first, then a voter.
async fn restore_voter(ctl: &Ctl, cluster: &LocalCluster, id: u64) {
    let members = |status: &NodeStatus| status.voters.clone();
    let leader = leader_status(ctl).await;
    if !members(&leader).contains(&id) {
        let arg = id.to_string();
        ctl.ok(&["cluster", "add-learner", &arg, &cluster.addr(id)])
            .await;
        ctl.ok(&["cluster", "promote", &arg]).await;
    }
    wait_for_voters(ctl, &[1, 2, 3]).await;
}

/// Buys one `product` at a time through the gateways until stopped, and keeps every outcome:
/// when each confirmation came, and every purchase that did not end confirmed.
struct Recorder {
    confirmed_at: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
    failed: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    fn start(cluster: &LocalCluster, product: &'static str) -> Recorder {
        let shop = cluster.shop_client();
        let confirmed_at = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let failed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (at, errors) = (confirmed_at.clone(), failed.clone());
        let task = tokio::spawn(async move {
            while !*stopped.borrow_and_update() {
                match shop.purchase(product, 1).await {
                    Ok(_) => at.lock().unwrap().push(Instant::now()),
                    Err(e) => errors.lock().unwrap().push(e.to_string()),
                }
            }
        });
        Recorder {
            confirmed_at,
            failed,
            stop,
            task,
        }
    }

    /// Wait until `more` purchases beyond those already seen are confirmed.
    async fn wait_for(&self, more: usize) {
        let target = self.confirmed_at.lock().unwrap().len() + more;
        eventually("the buyer gets purchases confirmed", || async {
            match self.confirmed_at.lock().unwrap().len() {
                n if n >= target => Ok(()),
                n => Err(format!("{n} of {target} confirmed")),
            }
        })
        .await
    }

    /// Confirmations, purchases that did not end confirmed, and the longest time between two
    /// confirmations.
    async fn stop(self) -> (usize, Vec<String>, Duration) {
        let _ = self.stop.send(true);
        self.task.await.expect("the buyer does not panic");
        let at = self.confirmed_at.lock().unwrap().clone();
        let gap = at
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .max()
            .unwrap_or_default();
        let failed = self.failed.lock().unwrap().clone();
        (at.len(), failed, gap)
    }
}

/// `stockctl cluster hand-off`: leadership moves to the voter asked for, purchases go on
/// through it, and none fails or ends unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_off_moves_leadership_with_no_failed_purchase() {
    let cluster = formed_cluster_with(1, |_| {}).await;
    let ctl = Ctl::for_cluster(&cluster);
    let create = [
        "product",
        "create",
        "nut",
        "--name",
        "Nut",
        "--price-cents",
        "3",
    ];
    ctl.ok(&[&create[..], &["--stock", "1000000"]].concat())
        .await;
    let before = leader_status(&ctl).await;
    let [to, _] = followers(&cluster, before.id);
    let buyer = Recorder::start(&cluster, "nut");
    buyer.wait_for(50).await;
    let handed: flashstock_api::HandedOff = ctl
        .json(&["cluster", "hand-off", "--to", &to.to_string()])
        .await;
    buyer.wait_for(50).await;
    let (confirmed, failed, gap) = buyer.stop().await;
    println!(
        "hand-off {} -> {} took {} ms; {confirmed} purchases confirmed, longest gap between \
         confirmations {gap:?}",
        handed.from, handed.to, handed.took_ms
    );
    assert_eq!((handed.from, handed.to), (before.id, to));
    assert!(handed.term > before.term, "{handed:?} after {before:?}");
    let after = leader_status(&ctl).await;
    assert_eq!(after.id, to, "the leader is the voter handed to");
    assert!(failed.is_empty(), "purchases failed: {failed:?}");
    assert!(confirmed > 0);
}

/// Run `stockctl cluster rolling-restart`, restarting each node when it asks; returns the nodes
/// in the order restarted, what stockctl said on stderr, and its JSON report.
async fn rolling_restart(
    cluster: &mut LocalCluster,
    ctl: &Ctl,
) -> (Vec<u64>, Vec<String>, Vec<serde_json::Value>) {
    let mut restart = tokio::process::Command::new(env!("CARGO_BIN_EXE_stockctl"));
    restart
        .envs(ctl.env.iter().map(|(k, v)| (*k, v)))
        .args(["--timeout-ms", COMMAND_TIMEOUT_MS, "--output", "json"])
        .args(["cluster", "rolling-restart", "--restart-wait", "120s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut restart = restart.spawn().expect("stockctl starts");
    let stderr_pipe = restart.stderr.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr_pipe));
    let mut said = Vec::new();
    let mut restarted = Vec::new();
    let reading = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(line) = lines.next_line().await.expect("read stockctl") {
            said.push(line.clone());
            // "stockctl: node K/N: restart node ID (ROLE, ADDR) now; ..."
            if let Some(rest) = line.split(": restart node ").nth(1) {
                let id: u64 = rest.split(' ').next().unwrap().parse().expect("a node id");
                assert!(
                    cluster.terminate(id).expect("stop"),
                    "node {id} exits cleanly"
                );
                cluster.start(id).await.expect("start again");
                restarted.push(id);
            }
        }
    })
    .await;
    assert!(
        reading.is_ok(),
        "the rolling restart did not end: {said:#?}"
    );
    let output = restart.wait_with_output().await.expect("stockctl runs");
    assert!(output.status.success(), "{said:#?}\n{}", show(&output));
    let report: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).expect("a JSON report");
    (restarted, said, report)
}

/// `stockctl cluster rolling-restart`, answering its prompts: every node restarts once, the
/// gateway first and the leader last after a hand-off, and no purchase through the gateways
/// fails or ends unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_restarts_every_node_with_no_failed_purchase() {
    let mut cluster = formed_cluster_with(2, |_| {}).await;
    let ctl = Ctl::for_cluster(&cluster);
    let create = [
        "product",
        "create",
        "cog",
        "--name",
        "Cog",
        "--price-cents",
        "4",
    ];
    ctl.ok(&[&create[..], &["--stock", "1000000"]].concat())
        .await;
    let leader = leader_status(&ctl).await;
    let buyer = Recorder::start(&cluster, "cog");

    let (restarted, said, report) = rolling_restart(&mut cluster, &ctl).await;
    let (confirmed, failed, gap) = buyer.stop().await;
    println!(
        "rolling restart of {restarted:?}: {confirmed} purchases confirmed, longest gap between \
         confirmations {gap:?}; report {report:?}"
    );

    let mut gateways: Vec<u64> = cluster.gateway_ids();
    gateways.sort_unstable();
    let [first, second] = followers(&cluster, leader.id);
    let expected: Vec<u64> = gateways
        .into_iter()
        .chain([first.min(second), first.max(second), leader.id])
        .collect();
    assert_eq!(restarted, expected, "gateways, followers, the leader last");
    let handed = &report.last().expect("a row per node")["handed_off"];
    assert_eq!(
        handed["from"], leader.id,
        "the leader handed off: {report:?}"
    );
    assert!(failed.is_empty(), "purchases failed: {failed:?}");
    assert!(confirmed > 0);
    // It ends saying what every node runs and where the cluster version is.
    let cluster_version = format!(
        "stockctl: cluster version: {}",
        flashstock_api::CLUSTER_VERSION
    );
    assert!(
        said.iter()
            .any(|l| l.starts_with("stockctl: release: every node answering runs"))
            && said.contains(&cluster_version),
        "{said:#?}"
    );
}

/// `cluster status` of a cluster of three Raft groups: each group's leader in a table of its
/// own, and every group's entries in JSON; `--group` speaks to one group (a hand-off moves that
/// group's leader); a membership change without it changes every group.
#[tokio::test(flavor = "multi_thread")]
async fn groups_are_shown_moved_and_changed_together() {
    let mut cluster = formed_cluster_with(1, |config| config.cluster.groups = 3).await;
    let ctl = Ctl::for_cluster(&cluster);

    let leaders = |ctl: Ctl, group: u16| async move { group_leader(&ctl, group).await };
    wait_leaders_spread(&ctl).await;

    let text = ctl.ok(&["cluster", "status"]).await;
    let header = text
        .lines()
        .position(|line| line.starts_with("GROUP"))
        .unwrap_or_else(|| panic!("no groups table:\n{text}"));
    let rows: Vec<&str> = text.lines().skip(header + 1).take(3).collect();
    for (group, row) in rows.iter().enumerate() {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[0], group.to_string(), "{text}");
        assert_eq!(cells[1], (group + 1).to_string(), "{text}");
    }
    let entries: Vec<NodeStatus> = ctl.json(&["cluster", "status"]).await;
    let groups: BTreeSet<Option<u16>> = entries.iter().map(|s| s.group).collect();
    assert_eq!(groups, BTreeSet::from([Some(0), Some(1), Some(2)]));
    assert_eq!(entries.len(), 3 * cluster.nodes.len());

    // One group's leader moves; the others stay.
    let moved: flashstock_api::HandedOff = ctl
        .json(&["--group", "2", "cluster", "hand-off", "--to", "1"])
        .await;
    assert_eq!((moved.from, moved.to), (3, 1));
    assert_eq!(leaders(ctl.clone(), 1).await, Ok(2));

    // A learner leaves every group and comes back to every group.
    let gateway = cluster.gateway_ids()[0];
    let gateway_arg = gateway.to_string();
    ctl.ok(&["cluster", "remove", &gateway_arg]).await;
    let member_of = |ctl: Ctl, group: u16| async move {
        let entries: Vec<NodeStatus> = ctl
            .json(&["--group", &group.to_string(), "cluster", "status"])
            .await;
        let leader = entries.iter().find(|s| s.state == RaftState::Leader);
        leader.map(|s| s.members.iter().any(|m| m.id == gateway))
    };
    let memberships = || async {
        let mut each = Vec::new();
        for group in 0..3 {
            each.push(member_of(ctl.clone(), group).await);
        }
        each
    };
    assert_eq!(memberships().await, [Some(false); 3], "left every group");
    cluster.kill(gateway).expect("stop the gateway");
    cluster.wipe(gateway).expect("wipe it");
    cluster.start(gateway).await.expect("start it again");
    add_learner(&ctl, &cluster, gateway).await;
    assert_eq!(memberships().await, [Some(true); 3], "back in every group");

    // Voter 2's disk is replaced while it leads group 1 and purchases go on in every group: it
    // leaves every group before the wipe, and is a voter of every group again at the end.
    wait_leaders_spread(&ctl).await;
    let mut buyers = Vec::new();
    for product in products_in_groups(3) {
        create_part(&ctl, product).await;
        buyers.push(Recorder::start(&cluster, product));
    }
    let said = replace_disk(&mut cluster, &ctl, 2).await;
    assert!(
        said.iter()
            .any(|l| l.contains("step 1/5") && l.contains("in each of the 3 Raft groups")),
        "{said:#?}"
    );
    for buyer in buyers {
        let (confirmed, failed, _) = buyer.stop().await;
        assert!(confirmed > 0, "no purchase confirmed in a group");
        assert!(failed.is_empty(), "purchases failed: {failed:?}");
    }
    for group in 0..3u16 {
        let entries: Vec<NodeStatus> = ctl
            .json(&["--group", &group.to_string(), "cluster", "status"])
            .await;
        let leader = entries
            .iter()
            .find(|s| s.state == RaftState::Leader)
            .unwrap_or_else(|| panic!("group {group} has a leader: {entries:?}"));
        assert_eq!(leader.voters, [1, 2, 3], "group {group}: {leader:?}");
    }
    // Group 1 goes back to its preferred voter once the new disk has caught up.
    wait_leaders_spread(&ctl).await;
}

/// The first product id `part-<n>` of each of `groups` Raft groups, by group.
fn products_in_groups(groups: u16) -> Vec<&'static str> {
    (0..groups)
        .map(|group| {
            let id = (0..)
                .map(|n| format!("part-{n}"))
                .find(|id| flashstock_api::placement::group_of(id, groups) == group)
                .expect("some id lands in every group");
            // A buyer (`Recorder`) keeps its product for the whole test.
            &*Box::leak(id.into_boxed_str())
        })
        .collect()
}

/// Create product `id` with plenty of stock.
async fn create_part(ctl: &Ctl, id: &str) {
    ctl.ok(&[
        "product",
        "create",
        id,
        "--name",
        "Part",
        "--price-cents",
        "3",
        "--stock",
        "1000000",
    ])
    .await;
}

/// Group `group`'s leader, if every node agrees on it.
async fn group_leader(ctl: &Ctl, group: u16) -> Result<u64, String> {
    let group = group.to_string();
    let entries: Vec<NodeStatus> = ctl.json(&["--group", &group, "cluster", "status"]).await;
    let leaders: Vec<Option<u64>> = entries.iter().map(|s| s.leader).collect();
    match leaders.first() {
        Some(Some(leader)) if leaders.iter().all(|l| *l == Some(*leader)) => Ok(*leader),
        _ => Err(format!("no agreed leader of group {group}: {leaders:?}")),
    }
}

/// Wait until the leaders have spread: group g (of three) led by voter g + 1, its preferred.
async fn wait_leaders_spread(ctl: &Ctl) {
    for group in 0..3u16 {
        let wanted = u64::from(group) + 1;
        eventually("each group led by its preferred voter", || async {
            match group_leader(ctl, group).await? {
                leader if leader == wanted => Ok(()),
                leader => Err(format!("group {group} led by {leader}")),
            }
        })
        .await;
    }
}

/// `stockctl cluster rolling-restart` of a cluster of three Raft groups, each led by another
/// voter: every group a voter leads is handed off before it restarts, and no purchase fails in
/// any group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_hands_off_every_group_a_voter_leads() {
    let mut cluster = formed_cluster_with(1, |config| config.cluster.groups = 3).await;
    let ctl = Ctl::for_cluster(&cluster);
    wait_leaders_spread(&ctl).await;
    let mut buyers = Vec::new();
    for product in products_in_groups(3) {
        create_part(&ctl, product).await;
        buyers.push(Recorder::start(&cluster, product));
    }

    let (restarted, said, report) = rolling_restart(&mut cluster, &ctl).await;
    assert_eq!(restarted.len(), 4, "every node once: {said:#?}");
    for buyer in buyers {
        let (confirmed, failed, gap) = buyer.stop().await;
        println!("{confirmed} purchases confirmed, longest gap {gap:?}");
        assert!(confirmed > 0, "no purchase confirmed in a group");
        assert!(failed.is_empty(), "purchases failed: {failed:?}");
    }
    // Every group was led by a voter when it restarted, so every group was handed off.
    let mut handed: BTreeSet<u64> = BTreeSet::new();
    for row in &report {
        if !row["handed_off"].is_null() {
            handed.insert(0);
        }
        for other in row["other_groups_handed_off"]
            .as_array()
            .into_iter()
            .flatten()
        {
            handed.insert(other["group"].as_u64().expect("a group"));
        }
    }
    assert_eq!(handed, BTreeSet::from([0, 1, 2]), "{report:#?}");
    assert!(
        said.iter()
            .any(|l| l.contains("led group 1: handed leadership")),
        "{said:#?}"
    );
}
