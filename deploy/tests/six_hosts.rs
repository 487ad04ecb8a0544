//! `deploy/six-hosts.sh`: six network namespaces, one per server, run the cluster with the
//! six-server configuration files; a purchase goes through a gateway and is archived on server
//! 4's PostgreSQL and its synchronous standby on server 5; after server 4's is stopped and the
//! standby promoted, the next order is archived there with no configuration change; `down`
//! leaves nothing behind. Needs root and `ip` (network namespaces); CI runs as root. Whether this machine has
//! them is decided when the test is built (`build.rs`); without them cargo reports the test
//! ignored, with the reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
    let node = flashstock_deploy::local::node_binary().expect("flashstock-node is built");
    let hosts = SixHosts {
        prefix: format!("fs6t{}", std::process::id() % 100_000),
        dir: tempfile::tempdir().unwrap(),
        bin: node.parent().unwrap().to_path_buf(),
    };
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
