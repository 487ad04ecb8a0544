//! A cluster of real node processes on loopback.
//!
//! Each node gets its own loopback address, `127.0.0.<id>` (ids up to 254), and binds its outgoing
//! connections to it too, so a fault-injection harness can cut the links between two nodes by
//! address (e.g. with iptables on `lo`) while both keep running.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_config::{Config, Role};
use flashstock_api::NodeAddr;
use flashstock_client::{ShopClient, TlsConfig, VoterClient};
use flashstock_host::Signal;

use crate::netns::NodeNetwork;

/// How long a node may take to answer its health check after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one readiness poll may take to connect.
const READY_POLL_CONNECT: Duration = Duration::from_secs(2);
/// How often readiness and cluster conditions are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
    #[error("config error: {0}")]
    Config(#[from] cluster_config::ConfigError),
    #[error("{0}")]
    Timeout(String),
    /// A leader that had to stay did not ([`LocalCluster::expect_leader_stays`]).
    #[error("{0}")]
    LeaderChanged(String),
    #[error("client error: {0}")]
    Client(#[from] flashstock_client::Error),
    #[error("TLS: {0}")]
    Tls(#[from] flashstock_tls::Error),
}

/// One node of the cluster, running or not.
pub struct LocalNode {
    pub id: u64,
    pub role: Role,
    /// The address other nodes and clients use for the internal API (Raft, admin, writes): the
    /// listen address, or a proxy's in front of it (`node.advertise`).
    pub addr: SocketAddr,
    /// The internal listener's own address.
    pub listen: SocketAddr,
    /// A gateway's public API address.
    pub public_addr: Option<SocketAddr>,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
}

impl LocalNode {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// The processes of one cluster, killed when dropped.
pub struct LocalCluster {
    binary: PathBuf,
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    /// The voters' credential (Raft RPCs, internal commands); in `dir/voter-secret`.
    pub voter_secret: String,
    /// The gateways' credential (forwarding public commands); in `dir/gateway-secret`.
    pub gateway_secret: String,
    /// The operators' credential (the admin API, what stockctl sends); in
    /// `dir/operator-secret`.
    pub operator_secret: String,
    /// The bearer token of the public admin API.
    pub admin_token: String,
    pub nodes: BTreeMap<u64, LocalNode>,
    /// Where the nodes run: loopback, or a namespace each.
    pub network: NodeNetwork,
    http: reqwest::Client,
    /// Set by [`LocalCluster::enable_tls`].
    tls: Option<LocalTls>,
    /// Set by [`LocalCluster::set_cpu_budget`]: every node started since runs on it.
    cpu_budget: Option<flashstock_host::CpuBudget>,
    /// Set by [`LocalCluster::set_gateway_cpu_budget`]: the gateways' instead.
    gateway_cpu_budget: Option<flashstock_host::CpuBudget>,
    /// How many Raft groups the nodes run (`cluster.groups` of their configs).
    pub groups: u16,
}

/// The certificates of a cluster laid out with TLS, in `dir/tls`.
pub struct LocalTls {
    /// The cluster's CA: every node's internal certificate and the gateways' public ones.
    pub ca_path: PathBuf,
    /// What an operator (stockctl, the harness's admin calls) presents to the internal
    /// listeners.
    pub operator: Arc<flashstock_tls::Identity>,
    /// The operator's client config (mutual TLS).
    pub operator_client: TlsConfig,
    /// A shop client's config: trusts the CA, presents nothing.
    pub shop_client: TlsConfig,
}

/// The `flashstock-node` binary next to the running executable's build directory, for tests and
/// tools of other packages than `flashstock-node` (which have `CARGO_BIN_EXE_flashstock-node`).
/// `FLASHSTOCK_NODE_BIN` overrides it.
pub fn node_binary() -> Result<PathBuf, Error> {
    if let Ok(path) = std::env::var("FLASHSTOCK_NODE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    // target/release/deps/test-xxxx or target/release/tool: look in both directories.
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("flashstock-node");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::Io(std::io::Error::other(format!(
        "flashstock-node not found near {}: run `cargo build --release --workspace --bins` first",
        exe.display()
    ))))
}

/// Lowest and highest port [`free_port`] hands out: below Linux's ephemeral range (32768 and
/// up), so that outgoing connections, which take ephemeral ports, never race a node for its
/// listening port between the check and the node's bind.
const PORT_MIN: u16 = 12_000;
const PORT_MAX: u16 = 32_000;

/// Find a port on loopback that is free now, outside the ephemeral range. Processes start at
/// different points of the range and move on with a counter, so concurrent test runs rarely
/// try the same port, and a port found taken is skipped.
pub fn free_port(ip: Ipv4Addr) -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(PORT_MAX - PORT_MIN);
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = PORT_MIN + offset as u16;
        if TcpListener::bind((ip, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::other("no free port on loopback"))
}

/// What cluster to lay out.
pub struct Layout {
    pub voters: u64,
    pub gateways: u64,
}

impl LocalCluster {
    /// Lay out a cluster in a new temporary directory: configs with free ports, one data
    /// directory per node. `tweak` may change each node's config before it is written.
    pub fn temporary(
        binary: &Path,
        layout: Layout,
        tweak: impl Fn(&mut Config),
    ) -> Result<LocalCluster, Error> {
        LocalCluster::temporary_on(binary, layout, NodeNetwork::Loopback, tweak)
    }

    /// [`LocalCluster::temporary`], with the nodes on `network`.
    pub fn temporary_on(
        binary: &Path,
        layout: Layout,
        network: NodeNetwork,
        tweak: impl Fn(&mut Config),
    ) -> Result<LocalCluster, Error> {
        let temp = tempfile::Builder::new().prefix("flashstock-").tempdir()?;
        let mut cluster = LocalCluster::lay_out_on(binary, temp.path(), layout, network, tweak)?;
        cluster._temp = Some(temp);
        Ok(cluster)
    }

    /// Lay out a cluster in `dir`, or reuse the configs already there (so a restarted launcher
    /// resumes the same cluster on the same ports).
    pub fn lay_out(
        binary: &Path,
        dir: &Path,
        layout: Layout,
        tweak: impl Fn(&mut Config),
    ) -> Result<LocalCluster, Error> {
        LocalCluster::lay_out_on(binary, dir, layout, NodeNetwork::Loopback, tweak)
    }

    /// [`LocalCluster::lay_out`], with the nodes on `network`.
    pub fn lay_out_on(
        binary: &Path,
        dir: &Path,
        layout: Layout,
        network: NodeNetwork,
        tweak: impl Fn(&mut Config),
    ) -> Result<LocalCluster, Error> {
        std::fs::create_dir_all(dir)?;
        if dir.join("cluster-secret").exists() {
            // Its configs hold the one `cluster.secret` that role credentials replaced.
            return Err(Error::Io(std::io::Error::other(format!(
                "{} was laid out with one cluster secret, before credentials per role: \
                 delete it to lay out a new cluster there",
                dir.display()
            ))));
        }
        let secrets = Secrets {
            voter: role_secret(dir, "voter")?,
            gateway: role_secret(dir, "gateway")?,
            operator: role_secret(dir, "operator")?,
        };
        let ids: Vec<(u64, Role)> = (1..=layout.voters)
            .map(|i| (i, Role::Voter))
            .chain((1..=layout.gateways).map(|i| (100 + i, Role::Gateway)))
            .collect();
        let mut nodes = BTreeMap::new();
        let mut voters = Vec::new();
        let mut texts = Vec::new();
        let mut groups = 1;
        for (id, role) in &ids {
            let config_path = dir.join(format!("node-{id}.toml"));
            let text = match std::fs::read_to_string(&config_path) {
                Ok(existing) => existing,
                Err(_) => default_config_text(*id, *role, dir, &secrets, &network)?,
            };
            let config = Config::from_toml_str(&text)?;
            if *role == Role::Voter {
                voters.push((*id, config.advertise_addr()));
            }
            texts.push((*id, *role, config_path, config));
        }
        // Every gateway's page fails over across all the gateways' public origins.
        let origins: Vec<String> = texts
            .iter()
            .filter_map(|(_, _, _, config)| config.gateway.public_listen)
            .map(|addr| format!("http://{addr}"))
            .collect();
        for (id, role, config_path, mut config) in texts {
            if role == Role::Gateway {
                config.gateway.public_origins = origins.clone();
            }
            config.cluster.voters = voters
                .iter()
                .map(|(id, addr)| cluster_config::Peer {
                    id: *id,
                    addr: addr.clone(),
                })
                .collect();
            tweak(&mut config);
            groups = config.cluster.groups;
            std::fs::write(&config_path, config.to_toml_string())?;
            nodes.insert(
                id,
                LocalNode {
                    id,
                    role,
                    // The address other nodes use: the listen address, or what fronts it.
                    addr: config
                        .advertise_addr()
                        .parse()
                        .unwrap_or(config.node.listen),
                    listen: config.node.listen,
                    public_addr: config.gateway.public_listen,
                    data_dir: config.node.data_dir.clone(),
                    log_path: dir.join(format!("node-{id}.log")),
                    config_path,
                    child: None,
                },
            );
        }
        Ok(LocalCluster {
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            _temp: None,
            admin_token: admin_token(&secrets),
            voter_secret: secrets.voter,
            gateway_secret: secrets.gateway,
            operator_secret: secrets.operator,
            nodes,
            network,
            http: reqwest::Client::new(),
            tls: None,
            cpu_budget: None,
            gateway_cpu_budget: None,
            groups,
        })
    }

    /// Turn on TLS everywhere before the nodes start: mutual TLS between nodes, HTTPS on the
    /// gateways' public listeners. Makes a CA in `dir/tls` (or reuses the one there), a
    /// certificate per node for its addresses and one for the operator, and writes `[tls]` into
    /// every node's config. This cluster's clients then speak TLS.
    pub fn enable_tls(&mut self) -> Result<(), Error> {
        use flashstock_tls::authority::{Authority, CA_CERT_FILE};
        let dir = self.dir.join("tls");
        let authority = match Authority::open(&dir) {
            Ok(authority) => authority,
            Err(_) => {
                let authority = Authority::new("flashstock local cluster CA")?;
                authority.save(&dir)?;
                authority
            }
        };
        let ca_path = dir.join(CA_CERT_FILE);
        for node in self.nodes.values() {
            // What peers dial (the advertised address, maybe a proxy's), what the node binds,
            // and its public address.
            let mut addresses = vec!["localhost".to_owned()];
            let ips = [Some(node.addr), Some(node.listen), node.public_addr];
            for ip in ips.into_iter().flatten().map(|addr| addr.ip().to_string()) {
                if !addresses.contains(&ip) {
                    addresses.push(ip);
                }
            }
            let name = format!("node-{}", node.id);
            let (cert, key) = authority.issue(&name, &addresses)?.save(&dir, &name)?;
            let mut config = Config::load(&node.config_path)?;
            config.tls.internal_ca_path = Some(ca_path.clone());
            config.tls.internal_cert_path = Some(cert.clone());
            config.tls.internal_key_path = Some(key.clone());
            if node.role == Role::Gateway {
                config.tls.public_cert_path = Some(cert);
                config.tls.public_key_path = Some(key);
                // Pages are now served over HTTPS: so are the origins they fail over across.
                for origin in &mut config.gateway.public_origins {
                    if let Some(rest) = origin.strip_prefix("http://") {
                        *origin = format!("https://{rest}");
                    }
                }
            }
            std::fs::write(&node.config_path, config.to_toml_string())?;
        }
        let (cert, key) = authority.issue("operator", &[])?.save(&dir, "operator")?;
        let operator = flashstock_tls::Identity::load(flashstock_tls::Files {
            cert,
            key,
            ca: Some(ca_path.clone()),
        })?;
        let operator_client = Arc::new(operator.client_config()?);
        let shop_client = Arc::new(flashstock_tls::trusting(&ca_path)?);
        self.http =
            flashstock_client::http_builder(READY_POLL_CONNECT, None, Some(&operator_client))
                .build()
                .expect("a client of a rustls config always builds");
        self.tls = Some(LocalTls {
            ca_path,
            operator,
            operator_client,
            shop_client,
        });
        Ok(())
    }

    /// The certificates, when [`LocalCluster::enable_tls`] turned TLS on.
    pub fn tls(&self) -> Option<&LocalTls> {
        self.tls.as_ref()
    }

    /// The config of clients of the gateways' public API: `Some` with TLS on.
    pub fn shop_tls(&self) -> Option<TlsConfig> {
        self.tls.as_ref().map(|tls| tls.shop_client.clone())
    }

    /// The config of an operator's clients of the internal API: `Some` with TLS on.
    pub fn operator_tls(&self) -> Option<TlsConfig> {
        self.tls.as_ref().map(|tls| tls.operator_client.clone())
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn voter_ids(&self) -> Vec<u64> {
        self.ids_with(Role::Voter)
    }

    pub fn gateway_ids(&self) -> Vec<u64> {
        self.ids_with(Role::Gateway)
    }

    fn ids_with(&self, role: Role) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|node| node.role == role)
            .map(|node| node.id)
            .collect()
    }

    pub fn addr(&self, id: u64) -> String {
        self.nodes[&id].addr.to_string()
    }

    /// A client of the voters' internal API, with the operator credential (what stockctl
    /// sends): admin calls, replica reads and public commands.
    pub fn voter_client(&self) -> VoterClient {
        self.voter_client_with(&self.operator_secret)
    }

    /// A client of the voters' internal API that sends `secret` (e.g. a gateway's, to check
    /// what that role may do).
    pub fn voter_client_with(&self, secret: &str) -> VoterClient {
        let endpoints = self.voter_ids().iter().map(|id| self.addr(*id)).collect();
        VoterClient::new(endpoints, secret, Duration::from_secs(10)).with_tls(self.operator_tls())
    }

    /// A gateway's public base URL, e.g. `http://127.0.0.101:8081` (`https` with TLS on).
    pub fn public_url(&self, id: u64) -> String {
        let addr = self.nodes[&id]
            .public_addr
            .expect("a gateway has a public address");
        format!("{}://{addr}", self.scheme())
    }

    /// Every gateway's public base URL, in id order.
    pub fn gateway_urls(&self) -> Vec<String> {
        self.gateway_ids()
            .iter()
            .map(|id| self.public_url(*id))
            .collect()
    }

    /// A client of the public API over every gateway, with the admin token.
    pub fn shop_client(&self) -> ShopClient {
        ShopClient::new(self.gateway_urls())
            .with_admin_token(&self.admin_token)
            .with_tls(self.shop_tls())
    }

    /// Add every gateway as a learner of every group (it then receives the logs), through each
    /// group's leader. Returns once each has caught up. Adding a learner that is already one is
    /// harmless.
    pub async fn add_gateways(&self, timeout: Duration) -> Result<(), Error> {
        for group in 0..self.groups {
            self.add_gateways_to(group, timeout).await?;
        }
        Ok(())
    }

    /// [`LocalCluster::add_gateways`], to Raft group `group` only.
    pub async fn add_gateways_to(&self, group: u16, timeout: Duration) -> Result<(), Error> {
        let client = self.voter_client().for_group(group);
        for id in self.gateway_ids() {
            let deadline = Instant::now() + timeout;
            loop {
                let leader = self
                    .wait_for_group_leader_among(group, &self.voter_ids(), timeout)
                    .await?;
                match client
                    .add_learner(&self.addr(leader), id, &self.addr(id))
                    .await
                {
                    Ok(_) => break,
                    // Leadership may move while the learner is added: try again, in time.
                    Err(_) if Instant::now() < deadline => tokio::time::sleep(POLL_INTERVAL).await,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// The node binary nodes start with.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Run `binary` for every node started from now on (a rolling upgrade); running nodes keep
    /// theirs until restarted.
    pub fn set_binary(&mut self, binary: &Path) {
        self.binary = binary.to_owned();
    }

    /// Start a node's process (logs appended to its log file) and wait until it answers.
    pub async fn start(&mut self, id: u64) -> Result<(), Error> {
        self.spawn(id)?;
        self.wait_ready(id).await
    }

    /// Hold every node started from now on to a CPU budget of its own (a cgroup each, named
    /// `node-<id>`), as if each ran on a server of its own.
    pub fn set_cpu_budget(&mut self, budget: flashstock_host::CpuBudget) {
        self.cpu_budget = Some(budget);
    }

    /// The CPU budget the nodes run on, if any.
    pub fn cpu_budget(&self) -> Option<&flashstock_host::CpuBudget> {
        self.cpu_budget.as_ref()
    }

    /// Hold the gateways started from now on to `budget` instead of the one of
    /// [`LocalCluster::set_cpu_budget`] (e.g. to make the voters the ceiling).
    pub fn set_gateway_cpu_budget(&mut self, budget: flashstock_host::CpuBudget) {
        self.gateway_cpu_budget = Some(budget);
    }

    /// The CPU budget node `id` runs on, if any.
    pub fn cpu_budget_of(&self, id: u64) -> Option<&flashstock_host::CpuBudget> {
        match self.nodes.get(&id).map(|node| node.role) {
            Some(Role::Gateway) => self
                .gateway_cpu_budget
                .as_ref()
                .or(self.cpu_budget.as_ref()),
            _ => self.cpu_budget.as_ref(),
        }
    }

    /// Start a node's process without waiting for it (e.g. one this cluster's clients cannot
    /// reach, to check that it cannot join).
    pub fn spawn(&mut self, id: u64) -> Result<(), Error> {
        let node = self.nodes.get_mut(&id).expect("known node id");
        assert!(node.child.is_none(), "node {id} is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)?;
        // In a process group of its own: Ctrl-C in the terminal reaches the launcher, which
        // stops the nodes in order, not every node at once.
        let mut command = match self.network.namespace(id) {
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", &ns]).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        // The fields themselves, not `cpu_budget_of`: `node` still borrows `self.nodes`.
        let budget = match node.role {
            Role::Gateway => self
                .gateway_cpu_budget
                .as_ref()
                .or(self.cpu_budget.as_ref()),
            Role::Voter => self.cpu_budget.as_ref(),
        };
        if let Some(budget) = budget {
            // A server of its own with this budget would have that many cores, and the node's
            // runtime would start one worker thread per core. Placed in its cgroup only once
            // started, the node would see every core of this machine instead, and its workers
            // would wake one another for work its quota lets only one of them do.
            let cores = budget.cores().ceil().max(1.0) as u32;
            command.env("TOKIO_WORKER_THREADS", cores.to_string());
        }
        let child = command
            .process_group(0)
            .arg("--config")
            .arg(&node.config_path)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        // `ip netns exec` execs the node in place: the child's id is the node's.
        if let Some(budget) = budget {
            if let Err(e) = budget.place(&format!("node-{id}"), child.id()) {
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Io(std::io::Error::other(format!(
                    "node {id}: its CPU budget: {e}"
                ))));
            }
        }
        node.child = Some(child);
        Ok(())
    }

    pub async fn start_all(&mut self) -> Result<(), Error> {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.start(id).await?;
        }
        Ok(())
    }

    /// Poll the node's health endpoint until it answers, or its process exits.
    pub async fn wait_ready(&mut self, id: u64) -> Result<(), Error> {
        let url = format!("{}://{}/health", self.scheme(), self.addr(id));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(response) = self.http.get(&url).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            let node = self.nodes.get_mut(&id).expect("known node id");
            if let Some(child) = node.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    node.child = None;
                    return Err(Error::Timeout(format!(
                        "node {id} exited with {status} before it was ready; log:\n{}",
                        self.log_tail(id)
                    )));
                }
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!(
                    "node {id} not ready within {READY_TIMEOUT:?}; log:\n{}",
                    self.log_tail(id)
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The last lines of a node's log, to explain a failure.
    pub fn log_tail(&self, id: u64) -> String {
        let path = &self.nodes[&id].log_path;
        // A device (a test's `/dev/full`) may read without end.
        if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
            return format!("(the log, {}, is not a file)", path.display());
        }
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Wait until node `id`'s process exits on its own; its exit status.
    pub async fn wait_exit(
        &mut self,
        id: u64,
        timeout: Duration,
    ) -> Result<std::process::ExitStatus, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let node = self.nodes.get_mut(&id).expect("known node id");
            let Some(child) = node.child.as_mut() else {
                return Err(Error::Timeout(format!("node {id} is not running")));
            };
            if let Some(status) = child.try_wait()? {
                node.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!(
                    "node {id} still runs after {timeout:?}; log:\n{}",
                    self.log_tail(id)
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// SIGKILL a node: no drain, no flush. What it acknowledged must survive anyway.
    pub fn kill(&mut self, id: u64) -> Result<(), Error> {
        let node = self.nodes.get_mut(&id).expect("known node id");
        if let Some(mut child) = node.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM a node and wait for it to exit; returns whether it exited successfully.
    pub fn terminate(&mut self, id: u64) -> Result<bool, Error> {
        let node = self.nodes.get_mut(&id).expect("known node id");
        let Some(mut child) = node.child.take() else {
            return Ok(true);
        };
        signal(child.id(), Signal::Term)?;
        Ok(child.wait()?.success())
    }

    /// SIGSTOP or SIGCONT a node: a paused node holds its connections but answers nothing.
    pub fn pause(&mut self, id: u64, paused: bool) -> Result<(), Error> {
        if let Some(pid) = self.nodes[&id].pid() {
            signal(pid, if paused { Signal::Stop } else { Signal::Cont })?;
        }
        Ok(())
    }

    /// Copy a stopped node's data directory to `to`: a backup, as the RUNBOOK takes one.
    pub fn back_up(&self, id: u64, to: &Path) -> Result<(), Error> {
        let node = &self.nodes[&id];
        assert!(node.child.is_none(), "stop node {id} before backing it up");
        copy_dir(&node.data_dir, to)
    }

    /// Replace a stopped node's data directory with a copy of the backup `from`.
    pub fn restore_from(&mut self, id: u64, from: &Path) -> Result<(), Error> {
        self.wipe(id)?;
        copy_dir(from, &self.nodes[&id].data_dir)
    }

    /// Delete a stopped node's data directory, as if its disk were replaced.
    pub fn wipe(&mut self, id: u64) -> Result<(), Error> {
        let node = &self.nodes[&id];
        assert!(node.child.is_none(), "stop node {id} before wiping it");
        match std::fs::remove_dir_all(&node.data_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Initialize the Raft group with every voter, through the first voter.
    pub async fn init(&self) -> Result<(), Error> {
        let voters: Vec<NodeAddr> = self
            .voter_ids()
            .iter()
            .map(|id| NodeAddr {
                id: *id,
                addr: self.addr(*id),
            })
            .collect();
        let first = self.addr(voters[0].id);
        match self.voter_client().init(&first, voters).await {
            Ok(_) => Ok(()),
            Err(flashstock_client::Error::Api {
                code: flashstock_api::ErrorCode::AlreadyInitialized,
                ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Wait until the running voters agree on one leader; returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, Error> {
        self.wait_for_leader_among(&self.voter_ids(), timeout).await
    }

    /// [`LocalCluster::wait_for_leader`], asking only the voters `ids` (e.g. leaving out one
    /// that is out of the membership and knows no leader).
    pub async fn wait_for_leader_among(
        &self,
        ids: &[u64],
        timeout: Duration,
    ) -> Result<u64, Error> {
        self.wait_for_group_leader_among(0, ids, timeout).await
    }

    /// [`LocalCluster::wait_for_leader_among`], for Raft group `group`.
    pub async fn wait_for_group_leader_among(
        &self,
        group: u16,
        ids: &[u64],
        timeout: Duration,
    ) -> Result<u64, Error> {
        let client = self.voter_client().for_group(group);
        let deadline = Instant::now() + timeout;
        loop {
            let mut leaders = Vec::new();
            for &id in ids {
                if !self.nodes[&id].is_running() {
                    continue;
                }
                if let Ok(status) = client.status(&self.addr(id)).await {
                    leaders.push(status.leader);
                }
            }
            if let Some(Some(leader)) = leaders.first() {
                let agreed = leaders.iter().all(|l| *l == Some(*leader));
                if agreed && self.nodes.get(leader).is_some_and(LocalNode::is_running) {
                    return Ok(*leader);
                }
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!(
                    "no agreed leader of group {group} within {timeout:?}: {leaders:?}"
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Ask every voter for its status every 20 ms for `span`, and fail at the first
    /// answer of a voter at another term than `term`, or of `leader` no longer leading: a leader
    /// that must stay, as when a voter comes back from a partition or a restart. A voter that
    /// does not answer is skipped. Returns how many rounds the voters answered.
    pub async fn expect_leader_stays(
        &self,
        leader: u64,
        term: u64,
        span: Duration,
    ) -> Result<usize, Error> {
        let client = self.voter_client();
        let began = Instant::now();
        let mut rounds = 0;
        while began.elapsed() < span {
            for id in self.voter_ids() {
                let Ok(status) = client.status(&self.addr(id)).await else {
                    continue;
                };
                let lost = id == leader && status.state != flashstock_api::RaftState::Leader;
                if status.term != term || lost {
                    return Err(Error::LeaderChanged(format!(
                        "{:?} in, node {id} is {:?} at term {} (leader {:?}): node {leader} no \
                         longer leads at term {term}",
                        began.elapsed(),
                        status.state,
                        status.term,
                        status.leader
                    )));
                }
            }
            rounds += 1;
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Ok(rounds)
    }

    /// Start every node, initialize the voters, add the gateways as learners: a whole running
    /// cluster. Safe to run on a cluster that was initialized before (it resumes).
    pub async fn start_and_form(&mut self, timeout: Duration) -> Result<u64, Error> {
        for id in self.voter_ids() {
            self.start(id).await?;
        }
        self.init().await?;
        let leader = self.wait_for_leader(timeout).await?;
        for id in self.gateway_ids() {
            self.start(id).await?;
        }
        self.add_gateways(timeout).await?;
        Ok(leader)
    }

    /// Wait until a node has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64, timeout: Duration) -> Result<(), Error> {
        self.wait_applied_in(0, id, index, timeout).await
    }

    /// [`LocalCluster::wait_applied`], in Raft group `group`.
    pub async fn wait_applied_in(
        &self,
        group: u16,
        id: u64,
        index: u64,
        timeout: Duration,
    ) -> Result<(), Error> {
        let client = self.voter_client().for_group(group);
        let deadline = Instant::now() + timeout;
        loop {
            let status = client.status(&self.addr(id)).await;
            if let Ok(status) = &status {
                if status.applied_index.unwrap_or(0) >= index {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!(
                    "node {id} did not apply {index} of group {group} within {timeout:?}: \
                     {status:?}"
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn signal(pid: u32, signal: Signal) -> Result<(), Error> {
    Ok(flashstock_host::signal(pid, signal)?)
}

/// The credential of each role.
struct Secrets {
    voter: String,
    gateway: String,
    operator: String,
}

/// The secret of `role` kept in `dir/ROLE-secret`, made up and written there the first time.
fn role_secret(dir: &Path, role: &str) -> Result<String, Error> {
    let secret_path = dir.join(format!("{role}-secret"));
    if let Ok(secret) = std::fs::read_to_string(&secret_path) {
        return Ok(secret.trim().to_owned());
    }
    let secret = format!(
        "local-{role}-{}-{}",
        std::process::id(),
        free_port(Ipv4Addr::LOCALHOST)?
    );
    let secret = format!("{secret:0<32}");
    std::fs::write(&secret_path, &secret)?;
    Ok(secret)
}

/// The public admin API's bearer token: derived from the operator secret, so a rerun in the
/// same directory keeps it.
fn admin_token(secrets: &Secrets) -> String {
    format!("{}-admin", secrets.operator)
}

/// The loopback address of node `id`: `127.0.0.<id>`.
pub fn node_ip(id: u64) -> Ipv4Addr {
    NodeNetwork::Loopback.ip(id)
}

/// A node's configuration: on loopback, with ports found free now; in a namespace of its own,
/// on the ports of a real server.
fn default_config_text(
    id: u64,
    role: Role,
    dir: &Path,
    secrets: &Secrets,
    network: &NodeNetwork,
) -> Result<String, Error> {
    let ip = network.ip(id);
    let port = || match network {
        NodeNetwork::Loopback => free_port(ip),
        NodeNetwork::Namespaces { .. } => Ok(crate::netns::INTERNAL_PORT),
    };
    let public_port = || match network {
        NodeNetwork::Loopback => free_port(ip),
        NodeNetwork::Namespaces { .. } => Ok(crate::netns::PUBLIC_PORT),
    };
    let listen = format!("{ip}:{}", port()?);
    let data_dir = dir.join(format!("data-{id}"));
    let (role_name, gateway) = match role {
        Role::Voter => ("voter", String::new()),
        Role::Gateway => (
            "gateway",
            format!(
                "\n[limits]\ntrusted_sources = [\"{}\"]\n\n[gateway]\npublic_listen = \"{ip}:{}\"\n",
                network.clients_ip(),
                public_port()?
            ),
        ),
    };
    // Each node holds in clear only the credential it sends; the others as digests.
    let digest = cluster_config::secret_digest;
    let (voter, gateway_secret) = match role {
        Role::Voter => (secrets.voter.clone(), digest(&secrets.gateway)),
        Role::Gateway => (digest(&secrets.voter), secrets.gateway.clone()),
    };
    let operator = digest(&secrets.operator);
    let token = admin_token(secrets);
    Ok(format!(
        "[node]\nid = {id}\nrole = \"{role_name}\"\nlisten = \"{listen}\"\ndata_dir = {data_dir:?}\n\n\
         [cluster]\nvoter_secrets = [\"{voter}\"]\ngateway_secrets = [\"{gateway_secret}\"]\n\
         operator_secrets = [\"{operator}\"]\nadmin_token = \"{token}\"\n{gateway}"
    ))
}

/// Copy the directory tree `from` to `to` (created).
fn copy_dir(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
