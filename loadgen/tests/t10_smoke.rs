//! CI smoke of the benchmark's code path at small scale: a real six-node cluster on loopback,
//! driven by the load generator's library in every loop mode with every workload, a few hundred
//! connections for a second or two each; then the three baselines, briefly. Only correctness is
//! asserted (no error, no oversell, conservation, sold == confirmed), never speed.

use std::time::Duration;

use flashstock_deploy::local::{node_binary, Layout, LocalCluster};
use flashstock_deploy::postgres::{Postgres, PostgresOptions};
use flashstock_deploy::redis::RedisServer;
use flashstock_loadgen::baseline::{self, bare, redis_stack, relational};
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
            // Checkout needs cluster version 2, which the leader raised seconds ago.
            Workload::hold_sale(FLASH_STOCK),
            Workload::cart(300),
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
    run_sound(
        "postgres",
        &target,
        [
            (Workload::flash_sale(100), Mode::Closed),
            (Workload::spread(200), Mode::Open { rate: 300.0 }),
        ],
    )
    .await;
}

/// Run each workload against `target` in its mode, with set-up and check; each must be sound.
async fn run_sound<const N: usize>(
    label: &'static str,
    target: &Target,
    runs: [(Workload, Mode); N],
) {
    for (workload, mode) in runs {
        let report = run_scenario(
            label,
            label,
            target,
            &workload,
            &config(mode),
            Phases::SetupAndCheck,
        )
        .await
        .expect("runs");
        assert_sound(&report);
    }
}

/// The Redis baseline under the same workloads: the Lua purchase neither oversells nor loses a
/// confirmed purchase, a replayed key answers its first order, and the final check's catalog
/// pages read every product.
#[tokio::test(flavor = "multi_thread")]
async fn the_redis_baseline_answers_the_same_load() {
    flashstock_loadgen::limits::raise_open_files(CONNECTIONS).expect("open files");
    let server = RedisServer::start(64).expect("redis-server starts");
    let shop = redis_stack::connect(&server.url(), 4)
        .await
        .expect("connects");
    let url = serve(redis_stack::router(shop)).await;
    let target = Target::new(vec![url.clone()], None);

    // A re-sent key answers the first order, marked replayed, and takes nothing more.
    let mut connection = flashstock_loadgen::http::Connection::new(&url, Duration::from_secs(5))
        .expect("a connection");
    let created = connection
        .post_json(
            "/v1/admin/products",
            &[],
            r#"{"id":"replay","name":"Replay","price_cents":100,"stock":5}"#.into(),
        )
        .await
        .expect("created");
    assert_eq!(created.status, 201);
    let mut orders = Vec::new();
    for _ in 0..2 {
        let answer = connection
            .post_json(
                "/v1/products/replay/purchase",
                &[(flashstock_api::IDEMPOTENCY_KEY_HEADER, "key-1")],
                r#"{"quantity":2}"#.into(),
            )
            .await
            .expect("answered");
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let response: flashstock_api::PurchaseResponse =
            serde_json::from_slice(&answer.body).expect("a purchase response");
        orders.push(response);
    }
    assert!(!orders[0].replayed && orders[1].replayed);
    assert_eq!(orders[0].order, orders[1].order);
    assert_eq!(orders[0].order.remaining, 3);
    let view = connection.get("/v1/products/replay").await.expect("viewed");
    let view: flashstock_api::ProductView = serde_json::from_slice(&view.body).expect("a view");
    assert_eq!((view.product.stock, view.product.sold), (3, 2));

    run_sound(
        "redis",
        &target,
        [
            (Workload::flash_sale(FLASH_STOCK), Mode::Closed),
            (Workload::standard(120, 80), Mode::Burst),
            (Workload::spread(1500), Mode::Open { rate: 300.0 }),
        ],
    )
    .await;
}

/// The sustained run end to end at small scale: its own PostgreSQL and cluster, the record split
/// into intervals, every node sampled at each interval's end, the archive drained and counted.
#[tokio::test(flavor = "multi_thread")]
async fn the_sustained_run_samples_every_interval_and_drains_the_archive() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        flags: flashstock_loadgen::bench::settings::Flags,
    }
    let out = tempfile::tempdir().expect("a directory");
    let cli = <Cli as clap::Parser>::parse_from([
        "flashstock-bench",
        "--sustained",
        "0.1",
        "--sustained-interval",
        "2",
        "--connections",
        "60",
        "--no-progress",
        "--out",
        &out.path().display().to_string(),
    ]);
    let settings = flashstock_loadgen::bench::settings::Settings::from(&cli.flags);
    let clean = flashstock_loadgen::bench::run(settings, out.path(), false)
        .await
        .expect("the sustained run runs");
    assert!(clean, "the run saw an error, or the archive differs");
    let json = std::fs::read_dir(out.path())
        .expect("results")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.to_string_lossy().ends_with("-sustained.json"))
        .expect("the results' JSON");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(json).expect("readable")).expect("JSON");
    let intervals = results["intervals"].as_array().expect("intervals");
    // 6 s in intervals of 2 s.
    assert_eq!(intervals.len(), 3, "{results:#}");
    for interval in intervals {
        assert!(
            interval["answers_per_s"].as_f64() > Some(0.0),
            "{interval:#}"
        );
        assert_eq!(interval["rss_mib"].as_object().map(|m| m.len()), Some(6));
        assert_eq!(interval["storage"].as_object().map(|m| m.len()), Some(6));
    }
    assert!(results["orders_placed"].as_u64() > Some(0));
    assert_eq!(results["archived_orders"], results["orders_placed"]);
}
