//! `flashstock-local [--dir DIR]`: a whole flashstock cluster on this machine, in one command.
//!
//! Lays out (or reuses) three voters and three gateways in `DIR` (default `.local-cluster` in the
//! repository), starts them as real `flashstock-node` processes on loopback, forms the Raft group,
//! loads the demo catalog through the public API, prints where everything is and how to use it,
//! then waits for Ctrl-C or SIGTERM and stops every node with SIGTERM: gateways first, then
//! voters. A rerun with the same `DIR` resumes the same cluster, on the same ports, with its data.
//!
//! Ctrl-C in a terminal signals the whole foreground process group. So that the nodes do not all
//! receive it at once (and stop in no particular order), the launcher runs in two processes: the
//! one started from the terminal only forwards SIGINT and SIGTERM to a supervisor it starts in a
//! process group of its own, which runs the nodes (they inherit that group) and stops them in
//! order. The supervisor also stops the cluster if the first process disappears.
//!
//! The order archive is off unless asked for: `--archive-url URL` points the voters at an
//! existing PostgreSQL database, `--with-archive` starts a PostgreSQL server of its own in
//! `DIR/postgres` (Debian's `postgresql` package) and stops it last.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use cluster_config::{Config, Role};
use flashstock_api::{CreateProductRequest, NodeStatus};
use flashstock_client::{ShopClient, ShopError};
use flashstock_deploy::local::{node_binary, Layout, LocalCluster};
use flashstock_deploy::postgres::{Postgres, PostgresOptions};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Set in the supervisor's environment: the process id of the launcher that started it.
const SUPERVISED_ENV: &str = "FLASHSTOCK_LOCAL_SUPERVISOR_OF";
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the supervisor checks that the nodes still answer.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// The demo catalog, compiled in, used when deploy/demo-catalog.json cannot be found.
const EMBEDDED_CATALOG: &str = include_str!("../../demo-catalog.json");

/// Runs a local flashstock cluster (3 voters, 3 gateways) with a demo catalog until Ctrl-C.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Directory of the cluster's configs, data and logs. Reused on a rerun, so the same cluster
    /// resumes on the same ports. Default: .local-cluster in the repository.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Demo products to create, a JSON array of {"id", "name", "price_cents", "stock"}. Default:
    /// deploy/demo-catalog.json in the repository.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Seconds the cluster may take to form (elect a leader, add the gateways).
    #[arg(long, default_value_t = 60)]
    form_timeout_secs: u64,
    /// Archive confirmed orders in this PostgreSQL database (a libpq URL,
    /// e.g. postgres://user:password@127.0.0.1:5432/shop). Default: the archive is off.
    #[arg(
        long,
        env = "FLASHSTOCK_ARCHIVE_URL",
        value_name = "URL",
        conflicts_with = "with_archive"
    )]
    archive_url: Option<String>,
    /// Start a PostgreSQL server for the archive in DIR/postgres (kept between runs).
    #[arg(long)]
    with_archive: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match std::env::var(SUPERVISED_ENV) {
        Ok(parent) => {
            let parent = parent.parse().unwrap_or(0);
            runtime(4).block_on(supervise(args, parent))
        }
        Err(_) => runtime(1).block_on(forward_signals()),
    }
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("start the Tokio runtime")
}

fn say(message: impl std::fmt::Display) {
    println!("flashstock-local: {message}");
}

/// The process started from the terminal: start the supervisor in its own process group, pass
/// SIGINT and SIGTERM on to it, exit with its status.
async fn forward_signals() -> ExitCode {
    let mut interrupt = signal(SignalKind::interrupt()).expect("install the SIGINT handler");
    let mut terminate = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("flashstock-local: cannot find my own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let child = tokio::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(SUPERVISED_ENV, std::process::id().to_string())
        // The nodes log to files: no terminal colour codes in them.
        .env("NO_COLOR", "1")
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(false)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("flashstock-local: cannot start the supervisor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pid = child.id().expect("a child that was just spawned has an id");
    loop {
        let name = tokio::select! {
            status = child.wait() => {
                return match status {
                    Ok(status) if status.success() => ExitCode::SUCCESS,
                    Ok(status) => ExitCode::from(status.code().map_or(1, |c| c as u8)),
                    Err(e) => {
                        eprintln!("flashstock-local: lost the supervisor: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            _ = interrupt.recv() => "INT",
            _ = terminate.recv() => "TERM",
        };
        let _ = flashstock_deploy::host::signal(pid, name);
    }
}

/// Why the supervisor stops the cluster.
struct Shutdown {
    interrupt: Signal,
    terminate: Signal,
    parent: u32,
}

impl Shutdown {
    fn new(parent: u32) -> Shutdown {
        Shutdown {
            interrupt: signal(SignalKind::interrupt()).expect("install the SIGINT handler"),
            terminate: signal(SignalKind::terminate()).expect("install the SIGTERM handler"),
            parent,
        }
    }

    /// Completes on SIGINT, SIGTERM, or when the launcher that started this supervisor is gone
    /// (this process was re-parented); returns the reason.
    async fn requested(&mut self) -> &'static str {
        let mut orphaned = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return "SIGINT received",
                _ = self.terminate.recv() => return "SIGTERM received",
                _ = orphaned.tick() => {
                    if self.parent != 0 && std::os::unix::process::parent_id() != self.parent {
                        return "the launcher process is gone";
                    }
                }
            }
        }
    }
}

/// The supervisor: runs the cluster until asked to stop, then stops it in order.
async fn supervise(args: Args, parent: u32) -> ExitCode {
    let mut shutdown = Shutdown::new(parent);
    let root = repository_root();
    let dir = absolute(args.dir.unwrap_or_else(|| root.join(".local-cluster")));
    let catalog = match load_catalog(args.catalog.as_deref(), &root) {
        Ok(catalog) => catalog,
        Err(message) => {
            eprintln!("flashstock-local: {message}");
            return ExitCode::FAILURE;
        }
    };
    let binary = match node_binary() {
        Ok(binary) => binary,
        Err(e) => {
            eprintln!("flashstock-local: {e}");
            return ExitCode::FAILURE;
        }
    };
    let reused = dir.join("node-1.toml").is_file();
    let postgres = if args.with_archive {
        say(format!(
            "starting PostgreSQL for the archive in {}",
            dir.join("postgres").display()
        ));
        match Postgres::start_in(&dir.join("postgres"), PostgresOptions::default()) {
            Ok(postgres) => Some(postgres),
            Err(e) => {
                eprintln!("flashstock-local: cannot start PostgreSQL for the archive: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let archive_url = args
        .archive_url
        .clone()
        .or_else(|| postgres.as_ref().map(Postgres::url));
    let layout = Layout {
        voters: 3,
        gateways: 3,
    };
    let tweak = |config: &mut Config| config.archive.postgres_url = archive_url.clone();
    let mut cluster = match LocalCluster::lay_out(&binary, &dir, layout, tweak) {
        Ok(cluster) => cluster,
        Err(e) => {
            eprintln!(
                "flashstock-local: cannot lay out the cluster in {}: {e}",
                dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    if reused {
        say(format!(
            "resuming the cluster in {} (same configs, ports and data)",
            dir.display()
        ));
    } else {
        say(format!(
            "new cluster in {} (configs written with free ports)",
            dir.display()
        ));
    }
    if let Err(message) = check_ports(&cluster).await {
        eprintln!("flashstock-local: {message}");
        return ExitCode::FAILURE;
    }
    let admin_token = admin_token(&cluster);
    if let Some(token) = &admin_token {
        let _ = std::fs::write(dir.join("admin-token"), token);
    }

    let form_timeout = Duration::from_secs(args.form_timeout_secs);
    let started = tokio::select! {
        result = bring_up(&mut cluster, &catalog, admin_token.as_deref(), form_timeout) => result,
        reason = shutdown.requested() => Err(format!("{reason} while starting")),
    };
    if let Err(message) = started {
        eprintln!("flashstock-local: {message}");
        eprintln!("flashstock-local: stopping the nodes that were started");
        stop(&mut cluster).await;
        return ExitCode::FAILURE;
    }

    print_summary(&cluster, admin_token.as_deref(), archive_url.as_deref()).await;
    say(format!(
        "ready. Ctrl-C stops the cluster; its data stays in {} and a rerun resumes it.",
        dir.display()
    ));
    let reason = tokio::select! {
        reason = shutdown.requested() => reason,
        _ = watch(&cluster) => "unreachable",
    };
    println!();
    say(format!("{reason}: stopping gateways, then voters"));
    stop(&mut cluster).await;
    if let Some(postgres) = postgres {
        say("stopping PostgreSQL");
        drop(postgres);
    }
    say("stopped");
    ExitCode::SUCCESS
}

/// Start the nodes, form the cluster, create the demo products.
async fn bring_up(
    cluster: &mut LocalCluster,
    catalog: &[CreateProductRequest],
    admin_token: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    say(format!(
        "starting voters {}, then gateways {}",
        list(&cluster.voter_ids()),
        list(&cluster.gateway_ids())
    ));
    let leader = cluster
        .start_and_form(timeout)
        .await
        .map_err(|e| format!("the cluster did not start: {e}"))?;
    say(format!(
        "cluster formed: node {leader} leads, gateways added as learners"
    ));

    let urls: Vec<String> = cluster.gateway_urls();
    let mut shop = ShopClient::new(urls);
    if let Some(token) = admin_token {
        shop = shop.with_admin_token(token);
    }
    // Products already there (a rerun) are skipped without a write; `product_exists` covers a
    // replica that had not applied one yet.
    let mut known = std::collections::BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let page = shop
            .products(after.as_deref(), 1000)
            .await
            .map_err(|e| format!("cannot list the products: {e}"))?;
        known.extend(page.products.into_iter().map(|p| p.id));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let (mut created, mut existing) = (0, 0);
    for product in catalog {
        if known.contains(&product.id) {
            existing += 1;
            continue;
        }
        match shop.create_product(product).await {
            Ok(_) => created += 1,
            Err(ShopError::Rejected {
                code: flashstock_api::ErrorCode::ProductExists,
                ..
            }) => existing += 1,
            Err(e) => return Err(format!("cannot create demo product {:?}: {e}", product.id)),
        }
    }
    say(format!(
        "demo catalog: {created} products created, {existing} already there"
    ));

    // Let every replica apply what the leader has, so the status table and the first reads agree.
    let client = cluster.voter_client();
    if let Ok(status) = client.status(&cluster.addr(leader)).await {
        let index = status.applied_index.unwrap_or(0);
        for id in cluster.nodes.keys() {
            if let Err(e) = cluster
                .wait_applied(*id, index, Duration::from_secs(10))
                .await
            {
                say(format!("warning: {e}"));
            }
        }
    }
    Ok(())
}

/// SIGTERM every running node, gateways first, and report how each exited. A node that does not
/// exit within STOP_TIMEOUT is killed.
async fn stop(cluster: &mut LocalCluster) {
    let order: Vec<u64> = cluster
        .gateway_ids()
        .into_iter()
        .chain(cluster.voter_ids())
        .collect();
    for id in order {
        let node = &cluster.nodes[&id];
        let Some(pid) = node.pid() else { continue };
        let role = role_name(node.role);
        let log = node.log_path.display().to_string();
        let (done, watchdog) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if watchdog.recv_timeout(STOP_TIMEOUT).is_err() {
                println!(
                    "flashstock-local: {role} {id} (pid {pid}) did not stop within \
                     {STOP_TIMEOUT:?}: killing it"
                );
                let _ = flashstock_deploy::host::signal(pid, "KILL");
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
async fn watch(cluster: &LocalCluster) {
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
async fn check_ports(cluster: &LocalCluster) -> Result<(), String> {
    let client = cluster.voter_client();
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
            // Is it this very node, left running by an earlier launcher?
            let running = find_node_process(&node.config_path);
            let answers = client
                .status(&node.addr.to_string())
                .await
                .is_ok_and(|status| status.id == *id);
            return Err(match (running, answers) {
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
            });
        }
    }
    Ok(())
}

/// The pid of a running `flashstock-node --config CONFIG`, from /proc (Linux).
fn find_node_process(config: &Path) -> Option<u32> {
    let config = config.to_str()?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_node = args
            .first()
            .is_some_and(|a| a.ends_with(b"flashstock-node"));
        if is_node
            && args
                .windows(2)
                .any(|w| w[0] == b"--config" && w[1] == config.as_bytes())
        {
            return Some(pid);
        }
    }
    None
}

/// The admin token the gateways were configured with.
fn admin_token(cluster: &LocalCluster) -> Option<String> {
    let gateway = cluster.gateway_ids().first().copied()?;
    match Config::load(&cluster.nodes[&gateway].config_path) {
        Ok(config) => config.cluster.admin_token,
        Err(_) => Some(cluster.admin_token.clone()),
    }
}

/// The repository: the nearest directory up from here with deploy/demo-catalog.json, else the
/// one this binary was built from.
fn repository_root() -> PathBuf {
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            if dir.join("Cargo.toml").is_file() && dir.join("deploy/demo-catalog.json").is_file() {
                return dir.to_owned();
            }
        }
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR"));
    built_from.parent().unwrap_or(built_from).to_owned()
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

fn load_catalog(path: Option<&Path>, root: &Path) -> Result<Vec<CreateProductRequest>, String> {
    let default = root.join("deploy/demo-catalog.json");
    let (text, source) = match path {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the catalog {}: {e}", path.display()))?,
            path.display().to_string(),
        ),
        None => match std::fs::read_to_string(&default) {
            Ok(text) => (text, default.display().to_string()),
            Err(_) => (
                EMBEDDED_CATALOG.to_owned(),
                "the built-in catalog".to_owned(),
            ),
        },
    };
    let catalog: Vec<CreateProductRequest> = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{source} is not a JSON array of {{\"id\", \"name\", \"price_cents\", \"stock\"}}: {e}"
        )
    })?;
    for product in &catalog {
        flashstock_api::validate_product_id(&product.id)
            .map_err(|e| format!("{source}: product {:?}: {e}", product.id))?;
    }
    Ok(catalog)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Voter => "voter",
        Role::Gateway => "gateway",
    }
}

fn list(ids: &[u64]) -> String {
    ids.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn opt(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Where everything is, the nodes' state, and commands to paste.
async fn print_summary(cluster: &LocalCluster, admin_token: Option<&str>, archive: Option<&str>) {
    let gateways = cluster.gateway_ids();
    let voters = cluster.voter_ids();
    let gateway = cluster.public_url(gateways[0]);
    let endpoints = voters
        .iter()
        .map(|id| cluster.addr(*id))
        .collect::<Vec<_>>()
        .join(",");
    let gateway_urls = cluster.gateway_urls().join(",");
    let dir = cluster.dir.display();

    println!();
    println!("The shop, in a browser (any gateway):");
    if let Some(id) = gateways.first() {
        let url = cluster.public_url(*id);
        println!("  catalog     {url}/");
        println!("  operations  {url}/ops");
    }
    println!();
    println!("Public API (any gateway; JSON over HTTP):");
    for id in &gateways {
        println!("  gateway {id}  {}/v1/products", cluster.public_url(*id));
    }
    println!();
    println!("Internal addresses (Raft, admin API; calls need the cluster secret):");
    for (id, node) in &cluster.nodes {
        println!(
            "  {:<7} {id:<3}  {:<21}  log {}",
            role_name(node.role),
            node.addr.to_string(),
            node.log_path.display()
        );
    }
    println!();
    println!(
        "Cluster secret:  {}   (in {dir}/cluster-secret)",
        cluster.secret
    );
    match admin_token {
        Some(token) => println!(
            "Admin token:     {token}   (in {dir}/admin-token; cluster.admin_token in {dir}/node-*.toml)"
        ),
        None => println!("Admin token:     none configured: admin calls are disabled"),
    }
    match archive {
        Some(url) => println!(
            "Order archive:   on, PostgreSQL at {}   (stockctl archive status)",
            without_password(url)
        ),
        None => println!(
            "Order archive:   off (rerun with --with-archive, or --archive-url URL, to turn it on)"
        ),
    }
    println!();
    print_status_table(cluster).await;
    println!();
    println!("Try it:");
    println!("  curl -s {gateway}/v1/products");
    println!("  curl -s {gateway}/v1/products/sneaker-drop");
    println!(
        "  curl -s -X POST -H 'Idempotency-Key: demo-1' -H 'content-type: application/json' \
         -d '{{\"quantity\":1}}' {gateway}/v1/products/sneaker-drop/purchase"
    );
    println!(
        "  curl -N {}/v1/stream",
        cluster.public_url(gateways[gateways.len() - 1])
    );
    let stockctl = "cargo run --release -q -p flashstock-client --bin stockctl --";
    let secret = format!("--secret \"$(cat {dir}/cluster-secret)\"");
    println!("  {stockctl} --endpoints {endpoints} {secret} cluster status");
    let token = match admin_token {
        Some(_) => format!(" --admin-token \"$(cat {dir}/admin-token)\""),
        None => String::new(),
    };
    println!("  {stockctl} --gateways {gateway_urls}{token} product list");
    println!("  {stockctl} --gateways {gateway_urls} buy tee-black-m 2 --key demo-cli-1");
    println!();
}

async fn print_status_table(cluster: &LocalCluster) {
    let client = cluster.voter_client();
    println!(
        "  {:>4}  {:<8} {:<10} {:>5} {:>7} {:>9} {:>8}",
        "id", "role", "state", "term", "leader", "last log", "applied"
    );
    for (id, node) in &cluster.nodes {
        match client.status(&node.addr.to_string()).await {
            Ok(NodeStatus {
                role,
                state,
                term,
                leader,
                last_log_index,
                applied_index,
                ..
            }) => println!(
                "  {id:>4}  {role:<8} {state:<10} {term:>5} {:>7} {:>9} {:>8}",
                opt(leader),
                opt(last_log_index),
                opt(applied_index)
            ),
            Err(e) => println!("  {id:>4}  {:<8} unreachable: {e}", role_name(node.role)),
        }
    }
}

/// A database URL with any password replaced by `***`, for printing.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn printed_urls_hide_the_password() {
        assert_eq!(
            without_password("postgres://shop:s3cret@10.0.0.5:5432/orders"),
            "postgres://shop:***@10.0.0.5:5432/orders"
        );
        assert_eq!(
            without_password("postgres://shop@127.0.0.1/orders"),
            "postgres://shop@127.0.0.1/orders"
        );
        assert_eq!(without_password("host=db user=shop"), "host=db user=shop");
    }
}
