//! A gateway's readiness and the staleness its views carry, with real processes: a gateway cut
//! off from every voter turns not-ready within `gateway.ready_leader_silence_ms`, keeps serving
//! views, and says on each of them that they are at least that old; once the voters are back it
//! is ready and fresh again.

mod common;

use std::time::{Duration, Instant};

use common::*;
use flashstock_api::{STALENESS_HEADER, STALENESS_UNKNOWN};

/// The silence bound under test: above the default `raft.election_timeout_max_ms` (1200 ms),
/// as the configuration requires.
const SILENCE_MS: u64 = 1500;
/// What the machine may add to the bound before the gateway notices: the readiness poll below
/// (20 ms) and scheduling on a loaded two-core machine.
const NOTICE_SLACK: Duration = Duration::from_millis(1000);
const POLL: Duration = Duration::from_millis(20);

/// A view's `x-staleness-ms`, in milliseconds; `None` for `unknown`.
fn staleness(response: &reqwest::Response) -> Option<u64> {
    let value = response
        .headers()
        .get(STALENESS_HEADER)
        .unwrap_or_else(|| panic!("{} has no {STALENESS_HEADER}", response.url()))
        .to_str()
        .expect("ASCII");
    if value == STALENESS_UNKNOWN {
        None
    } else {
        Some(value.parse().expect("a number of milliseconds"))
    }
}

async fn get(http: &reqwest::Client, url: &str) -> reqwest::Response {
    http.get(url).send().await.expect("the gateway answers")
}

/// Poll `/v1/ready` until its status is `want`; returns the answer's body and when it came.
async fn wait_ready_status(
    http: &reqwest::Client,
    base: &str,
    want: u16,
) -> (serde_json::Value, Instant) {
    let deadline = Instant::now() + ELECTION_WAIT;
    loop {
        let response = get(http, &format!("{base}/v1/ready")).await;
        if response.status().as_u16() == want {
            let at = Instant::now();
            return (response.json().await.expect("JSON"), at);
        }
        assert!(
            Instant::now() < deadline,
            "/v1/ready still answers {} after {ELECTION_WAIT:?}",
            response.status()
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_cut_off_from_the_voters_turns_unready_and_says_its_views_are_stale() {
    let mut cluster = formed(3, 1, |config| {
        config.gateway.ready_leader_silence_ms = SILENCE_MS;
    })
    .await;
    cluster
        .shop_client()
        .create_product(&product("kettle", 10))
        .await
        .expect("create");
    let gateway = cluster.gateway_ids()[0];
    let base = cluster.public_url(gateway);
    let http = reqwest::Client::new();
    let product = format!("{base}/v1/products/kettle");
    let views = [
        product.clone(),
        format!("{base}/v1/products"),
        format!("{base}/"),
    ];

    // Connected: ready, and every view fresh within a heartbeat or so (well under the bound).
    let (ready, _) = wait_ready_status(&http, &base, 200).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    let deadline = Instant::now() + ELECTION_WAIT;
    while get(&http, &product).await.status() != 200 {
        assert!(
            Instant::now() < deadline,
            "kettle never reached the replica"
        );
        tokio::time::sleep(POLL).await;
    }
    // The create is applied here, so the gateway soon learns of no entry it lacks. Polled: the
    // ready answer above may have come while the create was committed but not yet applied.
    loop {
        let (ready, _) = wait_ready_status(&http, &base, 200).await;
        if ready["lag_entries"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "still behind: {ready}");
        tokio::time::sleep(POLL).await;
    }
    for url in &views {
        let response = get(&http, url).await;
        assert_eq!(response.status(), 200, "{url}");
        let age = staleness(&response).expect("known while connected");
        assert!(age < SILENCE_MS, "{url}: {age} ms stale while connected");
    }

    // Cut off: every voter paused (holding its connections, answering nothing).
    let voters = cluster.voter_ids();
    for id in &voters {
        cluster.pause(*id, true).expect("pause a voter");
    }
    let cut = Instant::now();
    let (refused, unready_at) = wait_ready_status(&http, &base, 503).await;
    let noticed = unready_at - cut;
    eprintln!("not ready {noticed:?} after the voters were paused (bound {SILENCE_MS} ms)");
    assert!(
        noticed <= Duration::from_millis(SILENCE_MS) + NOTICE_SLACK,
        "not-ready only {noticed:?} after the voters stopped (bound {SILENCE_MS} ms)"
    );
    assert_eq!(refused["code"], "not_ready", "{refused}");
    let message = refused["message"].as_str().expect("a message");
    assert!(message.starts_with("no contact with a leader"), "{message}");
    // Views are still served, from the replica, and none claims to be fresh.
    for url in &views {
        let response = get(&http, url).await;
        assert_eq!(response.status(), 200, "{url}");
        let age = staleness(&response).expect("known: it was fresh once");
        assert!(
            age >= SILENCE_MS,
            "{url}: claims {age} ms stale, {noticed:?} after the last voter went silent"
        );
    }
    // A linearizable read cannot be served without a leader: refused, not stale.
    let linear = get(&http, &format!("{product}?consistency=linearizable")).await;
    assert_eq!(linear.status(), 503);

    // The voters back: ready and fresh again, and linearizable reads work.
    for id in &voters {
        cluster.pause(*id, false).expect("resume a voter");
    }
    wait_ready_status(&http, &base, 200).await;
    let response = get(&http, &product).await;
    let age = staleness(&response).expect("known");
    assert!(age < SILENCE_MS, "{age} ms stale once reconnected");
    let deadline = Instant::now() + ELECTION_WAIT;
    loop {
        let linear = get(&http, &format!("{product}?consistency=linearizable")).await;
        if linear.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "linearizable reads still fail: {}",
            linear.status()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A gateway applies each commit some milliseconds after its leader, up to
/// `raft.learner_append_interval_ms` more while the leader paces a busy stream to it. A client
/// that saw a product created or an order placed through one gateway and then asks another
/// is answered with it all the same, not with a 404: a gateway confirms a miss with the leader
/// (a product) or waits for the entry the order's id names (an order) before denying it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_one_gateway_acknowledged_another_does_not_deny() {
    // The longest interval the configuration allows (a quarter of the heartbeat), so that the
    // other gateway lags by tens of milliseconds while the writes below keep its stream busy.
    let cluster = formed(3, 2, |config| {
        config.raft.learner_append_interval_ms = config.raft.heartbeat_interval_ms / 4;
    })
    .await;
    let gateways = cluster.gateway_urls();
    let writer = flashstock_client::ShopClient::new(vec![gateways[0].clone()])
        .with_admin_token(&cluster.admin_token);
    let http = reqwest::Client::new();
    for round in 0..30 {
        let id = format!("drop-{round:02}");
        writer
            .create_product(&product(&id, 5))
            .await
            .expect("create");
        let view = get(&http, &format!("{}/v1/products/{id}", gateways[1])).await;
        assert_eq!(
            view.status(),
            200,
            "{id}, created, viewed on the other gateway"
        );
        let order = writer.purchase(&id, 1).await.expect("purchase").order;
        let token = order.token.expect("a public purchase has a token");
        let url = format!("{}/v1/orders/{}?token={token}", gateways[1], order.id.0);
        let seen = get(&http, &url).await;
        assert_eq!(
            seen.status(),
            200,
            "order {} on the other gateway",
            order.id.0
        );
    }
}

/// Read indexes the voters have answered: their `/internal/read-index` requests, over HTTP or
/// the wire, from their metrics.
async fn read_indexes_answered(cluster: &flashstock_deploy::local::LocalCluster) -> u64 {
    let mut total = 0;
    for id in cluster.voter_ids() {
        total += metrics_text(cluster, id)
            .await
            .lines()
            .filter(|line| {
                line.starts_with("flashstock_http_requests_total{")
                    && line.contains("route=\"/internal/read-index\"")
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64;
    }
    total
}

/// Misses share their catch-ups with the leader: a flood of views of products that do not
/// exist, all at once, is answered 404, and costs the voters far fewer read indexes than one
/// each. (How many rounds it takes depends on how long the flood takes to arrive against how
/// long a round takes: 2 to 30 for 200 misses on this machine, idle or running the whole suite.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_unknown_ids_costs_the_leader_few_read_indexes() {
    const MISSES: usize = 300;
    let cluster = formed(3, 1, |config| {
        // Every miss below is from one client; the view rate is not what is under test.
        config.limits.client_view_rate_per_s = 100_000;
        config.limits.client_view_burst_max = 100_000;
    })
    .await;
    let gateway = cluster.gateway_urls()[0].clone();
    let http = reqwest::Client::new();
    let before = read_indexes_answered(&cluster).await;
    let views = (0..MISSES).map(|n| {
        let (http, url) = (http.clone(), format!("{gateway}/v1/products/nothing-{n}"));
        async move { http.get(url).send().await.expect("an answer").status() }
    });
    let statuses = futures::future::join_all(views).await;
    assert!(statuses.iter().all(|status| *status == 404), "{statuses:?}");
    let asked = read_indexes_answered(&cluster).await - before;
    assert!(
        (1..=MISSES as u64 / 2).contains(&asked),
        "{MISSES} misses at once cost the voters {asked} read indexes"
    );
}
