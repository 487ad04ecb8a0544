//! Attack: one source sends purchases as fast as it can, from many connections at once, while
//! 100 honest buyers, each from an address of its own, buy the same product through the same
//! gateway. The honest buyers must get no 503 and no 429: every purchase of theirs is confirmed
//! (or, had the stock run out, definitely refused as `insufficient_stock`); the flood gets 429
//! `rate_limited` with `Retry-After`.
//!
//! Twice: with the default limits, where the flood meets its rate limit at the edge; and with
//! the rate limit lifted and a small queue, where only the forwarder's fair queue (a share per
//! client, batches served round robin) stands between the flood and the honest buyers: without
//! it, the flood alone would fill the queue and push them into 503 `overloaded`.
//!
//! The attacker leaves from `127.0.2.1`, buyer `i` from `127.0.1.i`; the local cluster trusts
//! only `127.0.0.1`, where the test's own set-up calls come from. Figures (the buyers' success
//! rate and latency percentiles, the flood's answers by status) are printed, not asserted.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_config::Config;
use common::formed;
use flashstock_api::{ErrorBody, ErrorCode};
use flashstock_deploy::local::LocalCluster;
use reqwest::StatusCode;

const PRODUCT: &str = "drop";
/// Far more than the flood and the buyers can buy in the test: the buyers' answers stay
/// confirmations.
const STOCK: u64 = 1_000_000;
const HONEST_BUYERS: u8 = 100;
/// Purchases of each buyer: 3 s of buying, or the longer mode's hold
/// ([`common::attack_hold`]).
fn purchases_per_buyer() -> usize {
    let hold = common::attack_hold(BUYER_PAUSE * 6);
    (hold.as_millis() / BUYER_PAUSE.as_millis()).max(1) as usize
}
/// A buyer's pause between two purchases: the buyers' phase, and the flood, last seconds.
const BUYER_PAUSE: Duration = Duration::from_millis(500);
const FLOOD_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 2, 1);
/// The bound of every HTTP exchange of the test.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The bound of the honest buyers' whole phase, beyond their buying time.
const BUYERS_TIMEOUT: Duration = Duration::from_secs(40);

fn buyer_ip(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, i + 1))
}

/// With the default limits, the flood meets its purchase rate limit at the edge; its views are
/// counted apart and still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_from_one_source_is_rate_limited_and_honest_buyers_never_see_503() {
    let cluster = one_gateway(|_| {}).await;
    let gateway = cluster.public_url(cluster.gateway_ids()[0]);
    let report = flood_against_honest_buyers(&gateway, 64).await;
    report.print("default limits");
    report.assert_fair();

    // Its purchases are refused, yet a view from the same source is served: counted apart.
    let flooder = http_from(IpAddr::V4(FLOOD_SOURCE), 1);
    let view = flooder
        .get(format!("{gateway}/v1/products/{PRODUCT}"))
        .send()
        .await
        .expect("a view");
    assert_eq!(view.status(), StatusCode::OK, "views are counted apart");
}

/// With the rate limit lifted and a queue smaller than the flood, the fair queue alone keeps
/// the honest buyers out of 503: the flood holds at most its share, and gets 429 beyond it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_past_the_rate_limit_holds_only_its_share_of_the_queue() {
    let cluster = one_gateway(|config| {
        config.limits.client_purchase_rate_per_s =
            cluster_config::defaults::CLIENT_RATE_PER_S_HIGHEST;
        config.limits.client_purchase_burst_max =
            cluster_config::defaults::CLIENT_BURST_MAX_HIGHEST;
        config.gateway.queue_max = 128;
        config.gateway.batch_items_max = 64;
        config.gateway.queue_per_client_max = 16;
        // One batch in flight at a time: requests pile up in the queue meanwhile.
        config.gateway.forward_connections_max = 1;
    })
    .await;
    // At most 16 of the flood and one of each buyer wait at once: 116 fit in 128. Without the
    // share, the flood's 200 connections alone would keep the queue full.
    const _: () = assert!(16 + HONEST_BUYERS as usize <= 128);
    let gateway = cluster.public_url(cluster.gateway_ids()[0]);
    let report = flood_against_honest_buyers(&gateway, 200).await;
    report.print("rate limit lifted, queue of 128, share of 16");
    report.assert_fair();
}

/// Three voters and one gateway, formed, with the product in stock.
async fn one_gateway(tweak: impl Fn(&mut Config)) -> LocalCluster {
    let cluster = formed(3, 1, tweak).await;
    cluster
        .shop_client()
        .create_product(&common::product(PRODUCT, STOCK))
        .await
        .expect("create the product");
    cluster
}

/// An HTTP client whose connections leave from `ip`.
fn http_from(ip: IpAddr, connections: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip)
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .build()
        .expect("an HTTP client")
}

/// One purchase's answer: its status and error code.
async fn buy(
    http: &reqwest::Client,
    gateway: &str,
    key: &str,
) -> Result<(StatusCode, Option<ErrorCode>, bool), reqwest::Error> {
    let response = http
        .post(format!("{gateway}/v1/products/{PRODUCT}/purchase"))
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(r#"{"quantity":1}"#)
        .send()
        .await?;
    let status = response.status();
    let retry_after = response.headers().contains_key("retry-after");
    let code = if status.is_success() {
        let _ = response.bytes().await?;
        None
    } else {
        Some(response.json::<ErrorBody>().await?.code)
    };
    Ok((status, code, retry_after))
}

#[derive(Default)]
struct Report {
    /// Every honest purchase: its answer (status and code, or the transport error) and latency.
    honest: Vec<(String, Duration)>,
    /// The flood's answers: `status code` (or the transport error) and how many.
    flood: BTreeMap<String, u64>,
    /// Flood answers of 429 without `Retry-After` or with another code than `rate_limited`.
    flood_malformed_429: u64,
    flood_seconds: f64,
}

impl Report {
    fn print(&self, scenario: &str) {
        let confirmed = self.honest.iter().filter(|(a, _)| a == "200").count();
        let mut latencies: Vec<Duration> = self.honest.iter().map(|(_, l)| *l).collect();
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).max(1) - 1];
        let mut answers: BTreeMap<&str, usize> = BTreeMap::new();
        for (answer, _) in &self.honest {
            *answers.entry(answer).or_default() += 1;
        }
        let flood_total: u64 = self.flood.values().sum();
        println!(
            "{scenario}: honest buyers: {} purchases, success rate {:.1}% ({confirmed} confirmed), \
             answers {answers:?}, latency p50 {:?} p99 {:?} max {:?}",
            self.honest.len(),
            100.0 * confirmed as f64 / self.honest.len() as f64,
            at(0.50),
            at(0.99),
            at(1.0),
        );
        println!(
            "{scenario}: flood: {flood_total} requests in {:.1} s ({:.0}/s), by status {:?}",
            self.flood_seconds,
            flood_total as f64 / self.flood_seconds,
            self.flood,
        );
    }

    fn assert_fair(&self) {
        assert_eq!(
            self.honest.len(),
            HONEST_BUYERS as usize * purchases_per_buyer(),
            "every honest purchase was answered"
        );
        for (answer, _) in &self.honest {
            assert!(
                answer == "200" || answer == "409 insufficient_stock",
                "an honest buyer got {answer}: neither confirmed nor definitely sold out"
            );
        }
        let limited = self.flood.get("429 rate_limited").copied().unwrap_or(0);
        assert!(limited > 0, "the flood got no 429: {:?}", self.flood);
        assert_eq!(
            self.flood_malformed_429, 0,
            "every 429 carries Retry-After and the code rate_limited"
        );
    }
}

/// Flood the gateway from [`FLOOD_SOURCE`] over `connections` connections; once it is refused,
/// let the honest buyers buy; then stop the flood.
async fn flood_against_honest_buyers(gateway: &str, connections: usize) -> Report {
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new((BTreeMap::<String, u64>::new(), 0u64)));
    let flooder = http_from(IpAddr::V4(FLOOD_SOURCE), connections);
    let started = Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    for task in 0..connections {
        let (stop, answers, flooder) = (stop.clone(), answers.clone(), flooder.clone());
        let gateway = gateway.to_owned();
        flood.spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("flood-{task}-{n}");
                let answer = buy(&flooder, &gateway, &key).await;
                let mut answers = answers.lock().unwrap();
                let label = match answer {
                    Ok((status, code, retry_after)) => {
                        if status == StatusCode::TOO_MANY_REQUESTS
                            && (!retry_after || code != Some(ErrorCode::RateLimited))
                        {
                            answers.1 += 1;
                        }
                        label(status, code)
                    }
                    Err(error) => format!("error {}", error_kind(&error)),
                };
                *answers.0.entry(label).or_default() += 1;
            }
        });
    }

    // The attack in full swing: the flood is being refused.
    let swing_deadline = Instant::now() + REQUEST_TIMEOUT;
    while answers
        .lock()
        .unwrap()
        .0
        .keys()
        .all(|l| !l.starts_with("429"))
        && Instant::now() < swing_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut buyers = tokio::task::JoinSet::new();
    for i in 0..HONEST_BUYERS {
        let http = http_from(buyer_ip(i), 1);
        let gateway = gateway.to_owned();
        buyers.spawn(async move {
            let mut answers = Vec::new();
            for n in 0..purchases_per_buyer() {
                let key = format!("honest-{i}-{n}");
                let sent = Instant::now();
                let answer = match buy(&http, &gateway, &key).await {
                    Ok((status, code, _)) => label(status, code),
                    Err(error) => format!("error {}", error_kind(&error)),
                };
                answers.push((answer, sent.elapsed()));
                tokio::time::sleep(BUYER_PAUSE).await;
            }
            answers
        });
    }
    let mut report = Report::default();
    let buying = BUYER_PAUSE * purchases_per_buyer() as u32;
    let bought = tokio::time::timeout(BUYERS_TIMEOUT + buying, async {
        while let Some(answers) = buyers.join_next().await {
            report.honest.extend(answers.expect("a buyer task"));
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    // Each flood task ends after its exchange in progress, within the request timeout.
    let _ = tokio::time::timeout(REQUEST_TIMEOUT * 2, async {
        while flood.join_next().await.is_some() {}
    })
    .await;
    flood.abort_all();
    bought.expect("the honest buyers finished in time");
    report.flood_seconds = started.elapsed().as_secs_f64();
    let (flood_answers, malformed) = std::mem::take(&mut *answers.lock().unwrap());
    report.flood = flood_answers;
    report.flood_malformed_429 = malformed;
    report
}

fn label(status: StatusCode, code: Option<ErrorCode>) -> String {
    match code {
        Some(code) => format!("{} {code}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

fn error_kind(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_decode() {
        "decode"
    } else {
        "other"
    }
}
