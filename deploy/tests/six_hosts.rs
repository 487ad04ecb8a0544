//! `deploy/six-hosts.sh`: six network namespaces, one per server, run the cluster with the
//! six-server configuration files; a purchase goes through a gateway, and `down` leaves nothing
//! behind. Needs root and `ip` (network namespaces); CI runs as root. Whether this machine has
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

    hosts.ok(&["down", "--dir", dir]);
    assert!(hosts.namespaces().is_empty(), "namespaces left behind");
    assert!(!Path::new(dir).exists(), "{dir} left behind");
}
