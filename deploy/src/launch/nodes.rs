//! The nodes' processes while the launcher runs them: their ports checked free before they
//! start, a watch on them while they run, and the ordered stop.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use flashstock_host::Signal;

use super::{role_name, say};
use crate::local::{LocalCluster, LocalNode};

/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the supervisor checks that the nodes still answer.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// SIGTERM every running node, gateways first, one after another, then the voters all at once,
/// and report how each exited. A node that does not exit within STOP_TIMEOUT is killed.
///
/// The voters stop together: a voter stopping alone hands the groups it leads to another voter,
/// which is what a planned restart wants, but here each would hand them to the next one to stop
/// (1.3 s for three voters, one after another). A voter that is stopping refuses to stand, so
/// the hand-offs between voters stopping together fail at once and nobody waits.
pub async fn stop(cluster: &mut LocalCluster) {
    for id in cluster.gateway_ids() {
        stop_one(cluster, id);
    }
    let voters = cluster.voter_ids();
    for id in &voters {
        if let Some(pid) = cluster.nodes[id].pid() {
            let _ = flashstock_host::signal(pid, Signal::Term);
        }
    }
    for id in voters {
        stop_one(cluster, id);
    }
}

/// SIGTERM node `id` (again, for a voter already sent one) and wait for it to exit, killing it
/// past STOP_TIMEOUT; say how it exited.
fn stop_one(cluster: &mut LocalCluster, id: u64) {
    let node = &cluster.nodes[&id];
    let Some(pid) = node.pid() else { return };
    let role = role_name(node.role);
    let log = node.log_path.display().to_string();
    let (done, watchdog) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if watchdog.recv_timeout(STOP_TIMEOUT).is_err() {
            println!(
                "flashstock-local: {role} {id} (pid {pid}) did not stop within \
                 {STOP_TIMEOUT:?}: killing it"
            );
            let _ = flashstock_host::signal(pid, Signal::Kill);
        }
    });
    // Blocks this thread only: the supervisor's future runs on the thread of `block_on`.
    let result = cluster.terminate(id);
    let _ = done.send(());
    match result {
        Ok(true) => say(format!("{role} {id} (pid {pid}) exited cleanly")),
        Ok(false) => say(format!(
            "{role} {id} (pid {pid}) exited with an error (or had died); {log} ends with: {}",
            last_line(&cluster.nodes[&id].log_path)
        )),
        Err(e) => say(format!("{role} {id} (pid {pid}): could not stop it: {e}")),
    }
}

/// The last non-empty line of a file, to say in one line why a node failed.
fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "(nothing logged)".to_owned())
}

/// Report nodes that stop answering, and that answer again, until the future is dropped.
pub async fn watch(cluster: &LocalCluster) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("an HTTP client without TLS always builds");
    let mut up: BTreeMap<u64, bool> = cluster.nodes.keys().map(|id| (*id, true)).collect();
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        for (id, node) in &cluster.nodes {
            let url = format!("http://{}/health", node.addr);
            let answers = http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            let was_up = up.insert(*id, answers).unwrap_or(true);
            if was_up && !answers {
                say(format!(
                    "warning: {} {id} no longer answers at {}; see {}",
                    role_name(node.role),
                    node.addr,
                    node.log_path.display()
                ));
            } else if !was_up && answers {
                say(format!("{} {id} answers again", role_name(node.role)));
            }
        }
    }
}

/// Every address a node will listen on must be free. A reused config keeps its ports, so another
/// process may have taken one since; name the node and the port.
pub async fn check_ports(cluster: &LocalCluster) -> Result<(), String> {
    for (id, node) in &cluster.nodes {
        let mut addrs = vec![("internal", node.addr)];
        if let Some(public) = node.public_addr {
            addrs.push(("public API", public));
        }
        for (what, addr) in addrs {
            let Err(e) = TcpListener::bind(addr) else {
                continue;
            };
            let role = role_name(node.role);
            let config = node.config_path.display();
            if e.kind() != std::io::ErrorKind::AddrInUse {
                return Err(format!(
                    "{role} {id} cannot listen on {addr} ({what} address, from {config}): {e}"
                ));
            }
            return Err(port_taken(cluster, node, what, addr).await);
        }
    }
    Ok(())
}

/// Why `addr` of `node` is taken, and what to do about it.
async fn port_taken(
    cluster: &LocalCluster,
    node: &LocalNode,
    what: &str,
    addr: SocketAddr,
) -> String {
    let (id, role, config) = (node.id, role_name(node.role), node.config_path.display());
    // Is it this very node, left running by an earlier launcher?
    let running = find_node_process(&node.config_path);
    let answers = cluster
        .voter_client()
        .status(&node.addr.to_string())
        .await
        .is_ok_and(|status| status.id == id);
    match (running, answers) {
        (Some(pid), _) => format!(
            "{role} {id} is already running (pid {pid}, --config {config}) and holds \
             {addr}: another flashstock-local is using this directory, or an earlier \
             one was killed. Stop it (kill {pid}) and rerun."
        ),
        (None, true) => format!(
            "{role} {id} of this cluster already answers on {addr}: another \
             flashstock-local is using this directory. Stop it and rerun."
        ),
        (None, false) => format!(
            "{role} {id} cannot listen on {addr} ({what} address, from {config}): the \
             port is taken by another process. Free it (e.g. `ss -ltnp 'sport = :{port}'` \
             shows who holds it), or start a new cluster with --dir ANOTHER_DIR.",
            port = addr.port()
        ),
    }
}

/// The pid of a running `flashstock-node --config CONFIG`.
fn find_node_process(config: &Path) -> Option<u32> {
    let config = config.to_str()?.as_bytes();
    flashstock_host::pids().into_iter().find(|pid| {
        flashstock_host::process::cmdline(*pid).is_some_and(|args| {
            args.first()
                .is_some_and(|a| a.ends_with(b"flashstock-node"))
                && args
                    .windows(2)
                    .any(|w| w[0] == b"--config" && w[1] == config)
        })
    })
}
