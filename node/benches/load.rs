//! The flash-sale load benchmark: N concurrent clients, each on its own persistent connection,
//! spread over the three gateways of a six-node cluster on this machine, 80% views and 20%
//! purchases. Half the purchases go to one flash-sale product with limited stock, the rest to
//! ordinary products.
//!
//! Run (release profile, like everything here):
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo test --release -p flashstock-node --bench load -- --bench [--clients 6000] [--seconds 20]
//!     [--flash-stock 1000] [--views 80] [--forward-slots N]
//! ```
//!
//! It prints, for views and purchases separately: requests, requests per second, latency
//! p50/p99/p99.9 and every non-success status with its count; then checks the flash-sale product
//! on every replica: exactly its stock sold (when demand exceeded it), conservation, and that the
//! confirmed purchases the clients saw equal the product's `sold`. Any error (a status other than
//! 200 or the expected 409 sold out), or a failed check, makes it exit non-zero.
//!
//! Everything (six nodes, the clients, this process) shares the machine's cores: the figures
//! are what one small machine does, not what six servers would.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashstock_api::{CreateProductRequest, PurchaseResponse};
use flashstock_deploy::local::{Layout, LocalCluster};
use tokio::sync::Barrier;

const FLASH: &str = "flash-drop";
const ORDINARY_PRODUCTS: usize = 20;

struct Options {
    clients: usize,
    seconds: u64,
    flash_stock: u64,
    /// Share of views among requests, in percent (the rest are purchases).
    view_percent: u64,
    /// Overrides `gateway.forward_connections_max`, the batches in flight per gateway.
    forward_slots: Option<usize>,
}

fn options() -> Option<Options> {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        return None;
    }
    let value = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} takes a number"))
            })
            .unwrap_or(default)
    };
    Some(Options {
        clients: value("--clients", 6000) as usize,
        seconds: value("--seconds", 20),
        flash_stock: value("--flash-stock", 1000),
        view_percent: value("--views", 80).min(100),
        forward_slots: args
            .iter()
            .position(|a| a == "--forward-slots")
            .map(|_| value("--forward-slots", 0) as usize),
    })
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    view_latency: Vec<Duration>,
    purchase_latency: Vec<Duration>,
    /// (kind, status) -> count, for every answer that is not a plain success.
    statuses: BTreeMap<(&'static str, u16), u64>,
    flash_confirmed: u64,
    transport_errors: BTreeMap<String, u64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.view_latency.extend(other.view_latency);
        self.purchase_latency.extend(other.purchase_latency);
        for (key, n) in other.statuses {
            *self.statuses.entry(key).or_default() += n;
        }
        for (key, n) in other.transport_errors {
            *self.transport_errors.entry(key).or_default() += n;
        }
        self.flash_confirmed += other.flash_confirmed;
    }
}

/// A small deterministic PRNG (splitmix64): each client draws its own sequence of operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn client(
    index: usize,
    base: String,
    start: Arc<Barrier>,
    duration: Duration,
    view_percent: u64,
) -> Tally {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut rng = Rng(index as u64 * 7919 + 1);
    let mut tally = Tally::default();
    // Open the connection before the measured phase.
    let _ = http.get(format!("{base}/v1/health")).send().await;
    start.wait().await;
    let until = Instant::now() + duration;
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let product = if rng.below(2) == 0 {
            FLASH.to_string()
        } else {
            format!("item-{}", rng.below(ORDINARY_PRODUCTS as u64))
        };
        let view = rng.below(100) < view_percent;
        let began = Instant::now();
        let sent = if view {
            http.get(format!("{base}/v1/products/{product}"))
                .send()
                .await
        } else {
            http.post(format!("{base}/v1/products/{product}/purchase"))
                .header("idempotency-key", format!("load-{index}-{n}"))
                .header("content-type", "application/json")
                .body(r#"{"quantity":1}"#)
                .send()
                .await
        };
        let kind = if view { "view" } else { "purchase" };
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.bytes().await;
                let elapsed = began.elapsed();
                if view {
                    tally.view_latency.push(elapsed);
                } else {
                    tally.purchase_latency.push(elapsed);
                }
                if status == 200 && !view && product == FLASH {
                    let bought: PurchaseResponse =
                        serde_json::from_slice(&body.expect("body")).expect("a purchase answer");
                    assert_eq!(bought.order.product, FLASH);
                    tally.flash_confirmed += 1;
                }
                if status != 200 {
                    *tally.statuses.entry((kind, status)).or_default() += 1;
                }
            }
            Err(e) => {
                let key = format!("{kind}: {e}");
                *tally.transport_errors.entry(key).or_default() += 1;
            }
        }
    }
    tally
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank].as_secs_f64() * 1000.0
}

fn report(kind: &str, latencies: &mut [Duration], seconds: f64) {
    latencies.sort();
    println!(
        "{kind:<9} {:>9} {:>9.0} {:>9.2} {:>9.2} {:>9.2}",
        latencies.len(),
        latencies.len() as f64 / seconds,
        percentile(latencies, 50.0),
        percentile(latencies, 99.0),
        percentile(latencies, 99.9),
    );
}

fn main() {
    let Some(options) = options() else {
        println!("load: a benchmark; run with `cargo test --release --bench load -- --bench`");
        return;
    };
    // Keep the nodes' logs to warnings: per-request logging is not what is measured.
    std::env::set_var("RUST_LOG", "warn");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let failed = runtime.block_on(run(options));
    std::process::exit(i32::from(failed));
}

async fn run(options: Options) -> bool {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_flashstock-node"));
    let layout = Layout {
        voters: 3,
        gateways: 3,
    };
    let forward_slots = options.forward_slots;
    let mut cluster = LocalCluster::temporary(binary, layout, move |config| {
        config.limits.connections_max = 10_000;
        if let Some(slots) = forward_slots {
            config.gateway.forward_connections_max = slots;
        }
    })
    .expect("lay out");
    cluster
        .start_and_form(Duration::from_secs(60))
        .await
        .expect("form the cluster");
    let shop = cluster.shop_client();
    let create = |id: String, stock: u64| CreateProductRequest {
        name: format!("Product {id}"),
        id,
        price_cents: 4900,
        stock,
    };
    shop.create_product(&create(FLASH.into(), options.flash_stock))
        .await
        .expect("create the flash-sale product");
    for i in 0..ORDINARY_PRODUCTS {
        shop.create_product(&create(format!("item-{i}"), 1_000_000_000))
            .await
            .expect("create a product");
    }
    let gateways: Vec<String> = cluster
        .gateway_ids()
        .iter()
        .map(|id| cluster.public_url(*id))
        .collect();
    // Every gateway knows every product before the clients start.
    for url in &gateways {
        let one = flashstock_client::ShopClient::new(vec![url.clone()]);
        while one
            .product(&format!("item-{}", ORDINARY_PRODUCTS - 1))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    println!(
        "flashstock load: {} clients (one connection each) over {} gateways, {} s, {}% views, \
         the rest purchases, half of them on one product with stock {}; {} cores shared by 6 \
         nodes and the clients",
        options.clients,
        gateways.len(),
        options.seconds,
        options.view_percent,
        options.flash_stock,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let start = Arc::new(Barrier::new(options.clients + 1));
    let mut tasks = tokio::task::JoinSet::new();
    let connecting = Instant::now();
    for index in 0..options.clients {
        let base = gateways[index % gateways.len()].clone();
        let duration = Duration::from_secs(options.seconds);
        tasks.spawn(client(
            index,
            base,
            start.clone(),
            duration,
            options.view_percent,
        ));
    }
    // Wait for every client to connect, then measure from the release of the barrier.
    start.wait().await;
    println!(
        "all clients connected in {:.1} s",
        connecting.elapsed().as_secs_f64()
    );
    let began = Instant::now();
    let mut tally = Tally::default();
    while let Some(done) = tasks.join_next().await {
        tally.merge(done.expect("client task"));
    }
    let seconds = began.elapsed().as_secs_f64();
    println!(
        "\n{:<9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "kind", "requests", "per s", "p50 ms", "p99 ms", "p99.9 ms"
    );
    report("views", &mut tally.view_latency, seconds);
    report("purchases", &mut tally.purchase_latency, seconds);

    let mut failed = false;
    println!("\nanswers other than 200:");
    for ((kind, status), count) in &tally.statuses {
        let expected = *kind == "purchase" && *status == 409;
        println!(
            "  {kind:<9} {status}: {count}{}",
            if expected {
                " (sold out: expected)"
            } else {
                ""
            }
        );
        failed |= !expected;
    }
    for (error, count) in &tally.transport_errors {
        println!("  transport error x{count}: {error}");
        failed = true;
    }

    // The flash sale on every replica: exactly the stock sold, conservation, and what the
    // clients were told.
    let voters = cluster.voter_client();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("leader");
    let last = voters
        .status(&cluster.addr(leader))
        .await
        .expect("status")
        .last_log_index
        .unwrap_or(0);
    println!("\nflash sale, per node (leader's last log index {last}):");
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    for id in ids {
        cluster
            .wait_applied(id, last, Duration::from_secs(60))
            .await
            .expect("replica catches up");
        let product = voters
            .product(&cluster.addr(id), FLASH)
            .await
            .expect("read")
            .items
            .remove(0);
        let ok = product.is_conserved()
            && product.sold == tally.flash_confirmed
            && product.sold <= options.flash_stock;
        println!(
            "  node {id:>3}: stock {} sold {} (clients saw {} confirmed) {}",
            product.stock,
            product.sold,
            tally.flash_confirmed,
            if ok { "ok" } else { "MISMATCH" }
        );
        failed |= !ok;
    }
    println!("{}", if failed { "FAILED" } else { "ok" });
    drop(cluster);
    failed
}
