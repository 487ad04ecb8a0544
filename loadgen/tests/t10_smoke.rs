//! CI smoke of the benchmark's code path at small scale: a real six-node cluster on loopback,
//! driven by the load generator's library in every loop mode with every workload, a few hundred
//! connections for a second or two each; then the two baselines, briefly. Only correctness is
//! asserted (no error, no oversell, conservation, sold == confirmed), never speed.

use std::time::Duration;

use flashstock_deploy::local::{node_binary, Layout, LocalCluster};
use flashstock_deploy::postgres::{Postgres, PostgresOptions};
use flashstock_loadgen::baseline::{self, bare, relational};
use flashstock_loadgen::driver::{Mode, RunConfig};
use flashstock_loadgen::http::Target;
use flashstock_loadgen::record::Kind;
use flashstock_loadgen::report::{table, RunReport};
use flashstock_loadgen::scenario::{run_scenario, Phases};
use flashstock_loadgen::workload::Workload;

const CONNECTIONS: usize = 200;
const SECONDS: Duration = Duration::from_millis(1500);
/// The flash sale's stock. Below the connections, so that even a burst, where each connection
/// sends exactly one one-item purchase, asks for more than there is.
const FLASH_STOCK: u64 = 150;
const _: () = assert!(FLASH_STOCK < CONNECTIONS as u64);

fn config(mode: Mode) -> RunConfig {
    let mut config = RunConfig::new(mode, CONNECTIONS, SECONDS);
    config.progress = false;
    config
}

fn assert_sound(report: &RunReport) {
    assert!(report.ok, "{}", table(std::slice::from_ref(report)));
    let check = report.check.as_ref().expect("checked");
    assert!(check.ok() && check.unknown == 0, "{check:?}");
    assert_eq!(check.sold, check.confirmed);
}

/// Serve `router` on a free loopback port; the task ends with the test's runtime.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(baseline::nodelay(listener), router).await });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn every_mode_and_workload_against_a_real_cluster() {
    flashstock_loadgen::limits::raise_open_files(CONNECTIONS).expect("open files");
    let binary = node_binary().expect("flashstock-node is built");
    let layout = Layout {
        voters: 3,
        gateways: 3,
    };
    let mut cluster = LocalCluster::temporary(&binary, layout, |_| {}).expect("lay out");
    cluster
        .start_and_form(Duration::from_secs(60))
        .await
        .expect("form the cluster");
    let urls = cluster.gateway_urls();
    let target = Target::new(urls, Some(cluster.admin_token.clone()));
    let modes = [Mode::Closed, Mode::Burst, Mode::Open { rate: 800.0 }];
    for mode in modes {
        let workloads = [
            Workload::standard(200, 80),
            Workload::flash_sale(FLASH_STOCK),
            Workload::spread(300),
        ];
        for workload in workloads {
            let name = format!("{:?} {mode:?}", workload.kind);
            let report = run_scenario(
                &name,
                "flashstock",
                &target,
                &workload,
                &config(mode),
                Phases::SetupAndCheck,
            )
            .await
            .expect("the scenario runs");
            assert_sound(&report);
            if workload.kind == flashstock_loadgen::workload::WorkloadKind::FlashSale {
                // Demand exceeds the stock in every mode (a burst too, see FLASH_STOCK): exactly
                // the stock is sold, the rest told sold out.
                assert_eq!(
                    report.check.as_ref().expect("checked").sold,
                    FLASH_STOCK,
                    "{name}"
                );
                assert!(report.latency_of(Kind::PurchaseSoldOut).is_some(), "{name}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_baselines_answer_the_same_load() {
    flashstock_loadgen::limits::raise_open_files(CONNECTIONS).expect("open files");
    let target = Target::new(vec![serve(bare::router()).await], None);
    let views = Workload::standard(100, 100);
    let report = run_scenario(
        "views",
        "axum",
        &target,
        &views,
        &config(Mode::Closed),
        Phases::LoadOnly,
    )
    .await
    .expect("runs");
    assert!(report.ok && report.latency_of(Kind::View).is_some_and(|l| l.count > 0));

    let server = Postgres::start(PostgresOptions {
        max_connections: 64,
        ..PostgresOptions::default()
    })
    .expect("PostgreSQL starts");
    let pool = relational::connect(&server.url(), 32).await.expect("pool");
    let target = Target::new(vec![serve(relational::router(pool)).await], None);
    for (workload, mode) in [
        (Workload::flash_sale(100), Mode::Closed),
        (Workload::spread(200), Mode::Open { rate: 300.0 }),
    ] {
        let report = run_scenario(
            "postgres",
            "postgres",
            &target,
            &workload,
            &config(mode),
            Phases::SetupAndCheck,
        )
        .await
        .expect("runs");
        assert_sound(&report);
    }
}
