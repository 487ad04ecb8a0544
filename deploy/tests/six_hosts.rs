//! `deploy/six-hosts.sh`: six network namespaces, one per server, run the cluster with the
//! six-server configuration files; a purchase goes through a gateway and is archived on server
//! 4's PostgreSQL and its synchronous standby on server 5; after server 4's is stopped and the
//! standby promoted, the next order is archived there with no configuration change; `down`
//! leaves nothing behind. The floating public address (keepalived on the three gateway servers):
//! a client sending views and purchases to it keeps getting answers when the gateway that holds
//! it is killed, and when that gateway is cut off from the voters and turns not ready.
//! Needs root and `ip` (network namespaces); CI runs as root. Whether this machine has them is
//! decided when the test is built (`build.rs`); without them cargo reports the tests ignored,
//! with the reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flashstock_client::{new_key, RetryPolicy, ShopClient};

/// The shop's floating public address in `six-hosts.sh` and `deploy/keepalived/server-N.conf`.
const FLOATING_IP: &str = "198.18.0.10";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("six-hosts.sh")
}

struct SixHosts {
    prefix: String,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl SixHosts {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(script())
            .args(args)
            .env("SIX_HOSTS_PREFIX", &self.prefix)
            .env("FLASHSTOCK_BIN_DIR", &self.bin)
            .output()
            .expect("run six-hosts.sh")
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "six-hosts.sh {args:?}: {}\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn namespaces(&self) -> Vec<String> {
        let output = Command::new("ip").args(["netns", "list"]).output().unwrap();
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .filter(|name| name.starts_with(&format!("{}-", self.prefix)))
            .map(str::to_owned)
            .collect()
    }
}

impl SixHosts {
    /// A fresh set of namespaces under a prefix of this process, its directory in a temporary one.
    fn new(tag: &str) -> SixHosts {
        let node = flashstock_deploy::local::node_binary().expect("flashstock-node is built");
        SixHosts {
            prefix: format!("fs6{tag}{}", std::process::id() % 100_000),
            dir: tempfile::tempdir().unwrap(),
            bin: node.parent().unwrap().to_path_buf(),
        }
    }

    /// The gateway servers that hold the floating address (one, but for a moment while it moves).
    fn holders(&self) -> Vec<u8> {
        let holders = self.ok(&["holder"]);
        holders.lines().map(|n| n.parse().unwrap()).collect()
    }

    /// The gateway server that holds the floating address; panics unless exactly one does.
    fn holder(&self) -> u8 {
        let holders = self.holders();
        assert_eq!(
            holders.len(),
            1,
            "servers holding {FLOATING_IP}: {holders:?}"
        );
        holders[0]
    }

    /// Run `ip ARGS` in server `n`'s namespace.
    fn ip_on(&self, n: u8, args: &[&str]) {
        let output = Command::new("ip")
            .args(["-n", &format!("{}-server{n}", self.prefix)])
            .args(args)
            .output()
            .expect("run ip");
        assert!(
            output.status.success(),
            "ip {args:?} on server {n}: {output:?}"
        );
    }
}

impl Drop for SixHosts {
    fn drop(&mut self) {
        let dir = self.dir.path().to_str().unwrap().to_owned();
        let _ = self.run(&["down", "--dir", &dir]);
    }
}

/// The newest PostgreSQL's binaries (Debian's layout).
fn pg_bin() -> String {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Debian's postgresql package")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    format!(
        "/usr/lib/postgresql/{}/bin",
        versions.last().expect("a version")
    )
}

/// Poll `check` every 200 ms for up to 60 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
#[cfg_attr(
    not(network_namespaces),
    ignore = "network namespaces need root and iproute2 (ip), which this machine lacked when the \
              test was built; as root, deploy/test.sh installs iproute2 and the test then runs"
)]
fn six_namespaces_run_the_cluster_sell_and_clean_up() {
    assert!(
        flashstock_deploy::host::is_root(),
        "network namespaces need root (this test was built as root, but runs as another user)"
    );
    let hosts = SixHosts::new("t");
    let dir = hosts.dir.path().join("cluster");
    let dir = dir.to_str().unwrap();

    let up = hosts.ok(&["up", "--dir", dir]);
    assert!(up.contains("ready."), "{up}");
    let namespaces = hosts.namespaces();
    assert_eq!(
        namespaces.len(),
        8,
        "six servers, the switch, the client: {namespaces:?}"
    );
    for ns in &namespaces {
        let routes = Command::new("ip")
            .args(["-n", ns, "route", "show", "default"])
            .output()
            .unwrap();
        assert!(routes.stdout.is_empty(), "{ns} has a default route");
    }

    let status = hosts.ok(&["stockctl", "--output", "json", "cluster", "status"]);
    let statuses: Vec<serde_json::Value> = serde_json::from_str(&status).unwrap();
    assert_eq!(statuses.len(), 6, "{status}");
    assert!(statuses
        .iter()
        .all(|s| s["leader"] == statuses[0]["leader"]));

    let bought = hosts.ok(&["stockctl", "--output", "json", "buy", "sneaker-drop", "2"]);
    let bought: serde_json::Value = serde_json::from_str(&bought).unwrap();
    assert_eq!(bought["order"]["remaining"], 48, "{bought}");
    // Another gateway, on another server, sees it.
    // Over HTTPS, checked against the cluster's CA; plaintext HTTP gets no answer.
    let ca = format!("{dir}/tls/ca.pem");
    let view = hosts.ok(&[
        "exec",
        "curl",
        "-sf",
        "--cacert",
        &ca,
        "https://198.18.0.6:8080/v1/products/sneaker-drop?consistency=linearizable",
    ]);
    let view: serde_json::Value = serde_json::from_str(&view).unwrap();
    assert_eq!(view["product"]["stock"], 48, "{view}");
    let plaintext = hosts.run(&[
        "exec",
        "curl",
        "-sf",
        "http://198.18.0.6:8080/v1/products/sneaker-drop",
    ]);
    assert!(!plaintext.status.success(), "plaintext HTTP was answered");

    // The archive: server 4's PostgreSQL with server 5's as its synchronous standby; the order
    // is on both.
    let sql = |server: u8, query: &str| {
        hosts
            .ok(&[
                "exec",
                "psql",
                "-h",
                &format!("198.18.0.{server}"),
                "-U",
                "flashstock",
                "-d",
                "flashstock",
                "-Atc",
                query,
            ])
            .trim()
            .to_owned()
    };
    assert_eq!(
        sql(4, "SELECT sync_state FROM pg_stat_replication"),
        "sync",
        "server 5 streams synchronously"
    );
    assert_eq!(sql(5, "SELECT pg_is_in_recovery()"), "t");
    let order_id = bought["order"]["id"].as_u64().expect("an order id");
    let archived = |server: u8, id: u64| {
        sql(
            server,
            &format!("SELECT count(*) FROM flashstock_orders WHERE order_id = {id}"),
        ) == "1"
    };
    eventually("the order archived on server 4", || archived(4, order_id));
    assert!(
        archived(5, order_id),
        "an archived row is on the standby too"
    );

    // Server 4's PostgreSQL lost; the standby promoted as the runbook says: the archive moves
    // there with no change to the voters' configuration.
    let pg_ctl = format!("{}/pg_ctl", pg_bin());
    let primary = format!("{dir}/postgres/data");
    let stopped = Command::new("runuser")
        .args([
            "-u",
            "postgres",
            "--",
            &pg_ctl,
            "-D",
            &primary,
            "-m",
            "immediate",
            "stop",
        ])
        .output()
        .expect("run pg_ctl");
    assert!(stopped.status.success(), "{stopped:?}");
    assert_eq!(sql(5, "SELECT pg_promote()"), "t");
    sql(5, "ALTER SYSTEM SET synchronous_standby_names = ''");
    sql(5, "SELECT pg_reload_conf()");
    let bought = hosts.ok(&["stockctl", "--output", "json", "buy", "tee", "1"]);
    let bought: serde_json::Value = serde_json::from_str(&bought).unwrap();
    let order_id = bought["order"]["id"].as_u64().expect("an order id");
    eventually("the order archived on the promoted server 5", || {
        archived(5, order_id)
    });

    hosts.ok(&["down", "--dir", dir]);
    assert!(hosts.namespaces().is_empty(), "namespaces left behind");
    assert!(!Path::new(dir).exists(), "{dir} left behind");
}

/// One call of the client behind the floating address: when it returned, what it was, and its
/// error if it got no answer within its retries.
struct Call {
    at: Instant,
    purchase: bool,
    error: Option<String>,
}

/// A buyer in the client namespace: one call at a time to the floating address, three views then
/// a purchase, 100 ms apart (within the per-client rates of the shipped configs), until `stop`.
/// Each purchase has its own idempotency key and is retried with the same key (every 50 to
/// 300 ms, each exchange bounded by 1 s) when the connection fails, the gateway is unavailable
/// or the outcome is unknown; views are retried the same way. At most one call is in flight, so
/// retries stay within the per-client purchase rate.
fn buyer(
    namespace: String,
    ca: PathBuf,
    product: &'static str,
    stop: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<Call>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        // This thread's sockets are the client's, on 198.18.0.100; the test's stay outside.
        flashstock_deploy::host::enter_network_namespace(&namespace)
            .expect("enter the client namespace");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let tls = flashstock_tls::trusting(&ca).expect("the cluster's CA");
            let shop = ShopClient::new(vec![format!("https://{FLOATING_IP}:8080")])
                .with_tls(Some(Arc::new(tls)))
                .with_timeout(Duration::from_secs(1))
                .with_retry(RetryPolicy {
                    // About a minute: far past any move of the address, far within
                    // limits.client_retry_horizon_ms (an hour).
                    attempts: 200,
                    backoff: Duration::from_millis(50),
                    backoff_max: Duration::from_millis(300),
                });
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let purchase = n.is_multiple_of(4);
                let result = if purchase {
                    shop.purchase_with_key(&new_key(), product, 1)
                        .await
                        .map(drop)
                } else {
                    shop.product(product).await.map(drop)
                };
                calls.lock().unwrap().push(Call {
                    at: Instant::now(),
                    purchase,
                    error: result.err().map(|e| e.to_string()),
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    })
}

/// The longest time without an answer around `[from, to]`: between consecutive answered calls,
/// counting from the last answer before `from` to the first after `to`.
fn longest_gap(calls: &[Call], from: Instant, to: Instant) -> Duration {
    let answered: Vec<Instant> = calls
        .iter()
        .filter(|call| call.error.is_none())
        .map(|call| call.at)
        .collect();
    answered
        .windows(2)
        .filter(|pair| pair[1] > from && pair[0] < to)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or_default()
}

/// Wait until the buyer has `more` answered calls after `since`.
fn answered_after(calls: &Mutex<Vec<Call>>, since: Instant, more: usize) {
    eventually(
        "the buyer gets answers through the floating address",
        || {
            let calls = calls.lock().unwrap();
            calls
                .iter()
                .filter(|call| call.at > since && call.error.is_none())
                .count()
                >= more
        },
    );
}

#[test]
#[cfg_attr(
    not(network_namespaces),
    ignore = "network namespaces need root and iproute2 (ip), which this machine lacked when the \
              test was built; as root, deploy/test.sh installs iproute2 and the test then runs"
)]
fn the_floating_address_moves_off_a_killed_or_unready_gateway() {
    assert!(
        flashstock_deploy::host::is_root(),
        "network namespaces need root (this test was built as root, but runs as another user)"
    );
    let hosts = SixHosts::new("f");
    let dir = hosts.dir.path().join("cluster");
    let dir = dir.to_str().unwrap();
    let up = hosts.ok(&["up", "--dir", dir]);
    assert!(
        up.contains(&format!("floating address {FLOATING_IP} on server")),
        "{up}"
    );
    let first = hosts.holder();
    assert!(
        (4..=6).contains(&first),
        "held by server {first}, not a gateway"
    );

    const PRODUCT: &str = "floating-address";
    const STOCK: u64 = 1000;
    hosts.ok(&[
        "stockctl",
        "product",
        "create",
        PRODUCT,
        "--name",
        "Floating address test",
        "--price-cents",
        "100",
        "--stock",
        &STOCK.to_string(),
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let client = buyer(
        format!("{}-client", hosts.prefix),
        PathBuf::from(format!("{dir}/tls/ca.pem")),
        PRODUCT,
        stop.clone(),
        calls.clone(),
    );
    let started = Instant::now();
    answered_after(&calls, started, 20);

    // The holder's gateway killed outright: its keepalived's check fails, the address moves.
    let pid: u32 = std::fs::read_to_string(format!("{dir}/server-{first}/node.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let killed_at = Instant::now();
    flashstock_deploy::host::signal(pid, flashstock_deploy::host::Signal::Kill)
        .expect("kill the holder's gateway");
    eventually("another gateway server takes the floating address", || {
        let holders = hosts.holders();
        holders.len() == 1 && holders[0] != first
    });
    let second = hosts.holder();
    let moved_at = Instant::now();
    // The dead gateway cannot answer: every answer from here on is another gateway's.
    answered_after(&calls, moved_at, 20);

    // The new holder cut off from the voters, both ways (blackhole routes on each side): it
    // hears from no leader, turns not ready within gateway.ready_leader_silence_ms, and its
    // keepalived gives the address to the one gateway left.
    let third = (4..=6u8).find(|n| *n != first && *n != second).unwrap();
    let cut_at = Instant::now();
    for voter in 1..=3u8 {
        hosts.ip_on(
            second,
            &["route", "add", "blackhole", &format!("198.18.0.{voter}/32")],
        );
        hosts.ip_on(
            voter,
            &[
                "route",
                "add",
                "blackhole",
                &format!("198.18.0.{second}/32"),
            ],
        );
    }
    eventually(
        "the cut-off gateway's server gives the floating address up",
        || hosts.holders() == [third],
    );
    let not_ready = hosts.ok(&[
        "exec",
        "curl",
        "-s",
        "--cacert",
        &format!("{dir}/tls/ca.pem"),
        &format!("https://198.18.0.{second}:8080/v1/ready"),
    ]);
    assert!(not_ready.contains("not_ready"), "{not_ready}");
    let moved_again_at = Instant::now();
    answered_after(&calls, moved_again_at, 20);
    stop.store(true, Ordering::Relaxed);
    client.join().expect("the buyer thread");

    let calls = std::mem::take(&mut *calls.lock().unwrap());
    let failed: Vec<&String> = calls.iter().filter_map(|c| c.error.as_ref()).collect();
    assert!(failed.is_empty(), "calls without an answer: {failed:?}");
    let kill_gap = longest_gap(&calls, killed_at, moved_at);
    let unready_gap = longest_gap(&calls, cut_at, moved_again_at);
    let purchases = calls.iter().filter(|c| c.purchase).count() as u64;
    println!(
        "floating address: {} calls ({purchases} purchases), all answered; gateway {first} \
         killed: the address on {second} after {:.1} s, longest gap without an answer {:.2} s; \
         gateway {second} cut off from the voters: the address on {third} after {:.1} s, \
         longest gap {:.2} s",
        calls.len(),
        (moved_at - killed_at).as_secs_f64(),
        kill_gap.as_secs_f64(),
        (moved_again_at - cut_at).as_secs_f64(),
        unready_gap.as_secs_f64(),
    );
    assert!(
        kill_gap < Duration::from_secs(10),
        "longest gap after the kill: {kill_gap:?}"
    );
    assert!(
        unready_gap < Duration::from_secs(10),
        "longest gap after the cut: {unready_gap:?}"
    );

    // Each purchase bought once, retries included: the stock fell by exactly their number.
    let view = hosts.ok(&[
        "exec",
        "curl",
        "-sf",
        "--cacert",
        &format!("{dir}/tls/ca.pem"),
        &format!("https://{FLOATING_IP}:8080/v1/products/{PRODUCT}?consistency=linearizable"),
    ]);
    let view: serde_json::Value = serde_json::from_str(&view).unwrap();
    assert_eq!(view["product"]["stock"], STOCK - purchases, "{view}");

    hosts.ok(&["down", "--dir", dir]);
    assert!(hosts.namespaces().is_empty(), "namespaces left behind");
}
