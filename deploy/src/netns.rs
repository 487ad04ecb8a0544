//! Nodes on a private network of their own: one Linux network namespace per node, joined by a
//! bridge, addresses from 198.18.0.0/15 (the range set aside for benchmarks), no default route.
//!
//! A process first moves itself into a private network namespace ([`run_in_private_network`]
//! re-executes it under `unshare --net`), so that nothing it sends can reach the machine's own
//! network: the bridge, and so every node, is reachable from that namespace only. Then
//! [`PrivateNetwork::create`] makes one named namespace per node, with a veth pair whose outer
//! end is on the bridge. The process itself is `198.18.0.254` on the bridge. Dropping the
//! [`PrivateNetwork`] deletes the node namespaces; the private namespace itself ends with the
//! process.
//!
//! Needs root and iproute2 (`ip`), and util-linux (`unshare`).

use std::net::Ipv4Addr;
use std::process::{Command, ExitCode};

use flashstock_host::Signal;

/// Set in the environment of the re-executed process: it runs in its private namespace.
const INSIDE_ENV: &str = "FLASHSTOCK_PRIVATE_NETWORK";
/// Prefix length of 198.18.0.0/15.
const PREFIX_LEN: u8 = 15;
/// The bridge in the private namespace.
const BRIDGE: &str = "fsbr0";

/// Where the nodes of a cluster live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeNetwork {
    /// Node `id` on `127.0.0.<id>`, ports found free at run time.
    Loopback,
    /// Node `id` in the namespace `<prefix>-<id>` on `198.18.0.<id>`, on the same ports as a
    /// real server (each namespace has every port to itself).
    Namespaces { prefix: String },
}

/// The internal port of a node in its own namespace.
pub const INTERNAL_PORT: u16 = 7000;
/// The public port of a gateway in its own namespace.
pub const PUBLIC_PORT: u16 = 8080;

impl NodeNetwork {
    /// The address of node `id` (1 to 253).
    pub fn ip(&self, id: u64) -> Ipv4Addr {
        let last = u8::try_from(id)
            .ok()
            .filter(|n| (1..=253).contains(n))
            .expect("node ids are 1 to 253");
        match self {
            NodeNetwork::Loopback => Ipv4Addr::new(127, 0, 0, last),
            NodeNetwork::Namespaces { .. } => Ipv4Addr::new(198, 18, 0, last),
        }
    }

    /// The address the tools on this machine reach the gateways from (the load generator, the
    /// fault harness's clients, tests, a browser): `127.0.0.1` on loopback (the kernel's source
    /// for any `127.0.0.N`), [`HOST_IP`] from the bridge. The local clusters' gateways trust it
    /// (`limits.trusted_sources`), since every one of these tools sends the traffic of many
    /// clients from it; any other address is rate-limited per client as on real servers.
    pub fn clients_ip(&self) -> Ipv4Addr {
        match self {
            NodeNetwork::Loopback => Ipv4Addr::LOCALHOST,
            NodeNetwork::Namespaces { .. } => HOST_IP,
        }
    }

    /// The namespace node `id` runs in, if any.
    pub fn namespace(&self, id: u64) -> Option<String> {
        match self {
            NodeNetwork::Loopback => None,
            NodeNetwork::Namespaces { prefix } => Some(format!("{prefix}-{id}")),
        }
    }

    /// One line for reports: which network the run used.
    pub fn describe(&self) -> String {
        match self {
            NodeNetwork::Loopback => {
                "loopback: node N on 127.0.0.N, outgoing sockets bound to it".into()
            }
            NodeNetwork::Namespaces { .. } => format!(
                "namespaces: node N in its own network namespace on 198.18.0.N/{PREFIX_LEN}, \
                 joined by a bridge in a private namespace, no default route anywhere"
            ),
        }
    }
}

/// The address of this process on the bridge of its [`PrivateNetwork`].
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);

/// Run the rest of this program inside a private network namespace: the first call re-executes
/// the current executable, with the same arguments, under `unshare --net` and returns its exit
/// code (`Some`); inside, it returns `None` after checking that the namespace has no default
/// route and bringing its loopback up.
pub fn run_in_private_network() -> Result<Option<ExitCode>, String> {
    if std::env::var_os(INSIDE_ENV).is_some() {
        if !output(&["ip", "route", "show", "default"])?
            .trim()
            .is_empty()
        {
            return Err("the private network namespace has a default route; refusing".into());
        }
        run(&["ip", "link", "set", "lo", "up"])?;
        return Ok(None);
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my executable: {e}"))?;
    let status = Command::new("unshare")
        .args(["--net", "--fork", "--"])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(INSIDE_ENV, "1")
        .status()
        .map_err(|e| format!("unshare: {e}"))?;
    Ok(Some(match status.code() {
        Some(code) => ExitCode::from(code as u8),
        None => ExitCode::FAILURE,
    }))
}

/// Whether this process can make namespaces: root, with `ip` and `unshare` installed.
pub fn available() -> Result<(), String> {
    if !flashstock_host::is_root() {
        return Err("not running as root".into());
    }
    for tool in ["ip", "unshare"] {
        let found = Command::new(tool).arg("-V").output().is_ok();
        if !found {
            return Err(format!("{tool} is not installed"));
        }
    }
    Ok(())
}

/// The namespaces of one cluster's nodes and the bridge joining them; deleted on drop.
pub struct PrivateNetwork {
    pub network: NodeNetwork,
    namespaces: Vec<String>,
}

impl PrivateNetwork {
    /// Create the bridge (with [`HOST_IP`] on it) and one namespace per node id. Must run inside
    /// the private namespace of [`run_in_private_network`]; refuses when this namespace, or any
    /// it made, has a default route.
    pub fn create(prefix: &str, ids: &[u64]) -> Result<PrivateNetwork, String> {
        if !output(&["ip", "route", "show", "default"])?
            .trim()
            .is_empty()
        {
            return Err(
                "this network namespace has a default route: run inside a private one".into(),
            );
        }
        let network = NodeNetwork::Namespaces {
            prefix: prefix.to_owned(),
        };
        let mut made = PrivateNetwork {
            network: network.clone(),
            namespaces: Vec::new(),
        };
        run(&["ip", "link", "add", BRIDGE, "type", "bridge"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{HOST_IP}/{PREFIX_LEN}"),
            "dev",
            BRIDGE,
        ])?;
        run(&["ip", "link", "set", BRIDGE, "up"])?;
        for id in ids {
            let ns = network.namespace(*id).expect("namespaces network");
            run(&["ip", "netns", "add", &ns])?;
            made.namespaces.push(ns.clone());
            let veth = format!("fsv{id}");
            run(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            run(&["ip", "link", "set", &veth, "master", BRIDGE, "up"])?;
            let address = format!("{}/{PREFIX_LEN}", network.ip(*id));
            run(&["ip", "-n", &ns, "addr", "add", &address, "dev", "eth0"])?;
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            if !output(&["ip", "-n", &ns, "route", "show", "default"])?
                .trim()
                .is_empty()
            {
                return Err(format!("namespace {ns} has a default route; refusing"));
            }
        }
        Ok(made)
    }
}

impl Drop for PrivateNetwork {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            // Whatever still runs there goes with it.
            if let Ok(pids) = output(&["ip", "netns", "pids", ns]) {
                for pid in pids.split_whitespace().filter_map(|pid| pid.parse().ok()) {
                    let _ = flashstock_host::signal(pid, Signal::Kill);
                }
            }
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
    }
}

fn run(args: &[&str]) -> Result<(), String> {
    output(args).map(drop)
}

fn output(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
