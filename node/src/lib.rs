//! The flashstock server. One binary, two roles, chosen by the configuration:
//!
//! - **voter**: a member of the openraft groups that hold the inventory (`cluster.groups` of
//!   them, each holding the products its placement gives it). It serves Raft's RPCs, the admin
//!   API, and the internal write endpoint that proposes a batch of commands as one log entry of
//!   the group the call names and answers with each command's outcome once the entry is
//!   committed and applied.
//! - **gateway**: a learner of every group (a local, continuously updated replica) that serves
//!   the public API.
//!
//! Components:
//! - [`api_error`]: the error answer of every JSON endpoint, with a stable code.
//! - [`network`]: Raft RPCs to peers (reqwest, bincode, persistent connections).
//! - [`internal`]: the internal listener's routes: Raft RPCs, admin, writes, replica reads. Every
//!   route but `/health`, `/ready` and `/metrics` requires a credential of a role it admits.
//! - [`auth`]: the credentials of the three roles (voter, gateway, operator) and which routes
//!   each may call.
//! - [`proposer`]: turns a batch of commands into one proposal and keeps "rejected, definitely not
//!   applied" apart from "outcome unknown" in every answer.
//! - [`gateway`]: the public API of the gateway role, its write forwarder and event stream.
//! - [`metrics`]: Prometheus metrics, at `GET /metrics` on the internal listener.
//! - [`archive`]: on voters with an archive database, copies confirmed orders to PostgreSQL
//!   exactly once while the node leads.
//! - [`freshness`]: how fresh the replica is, from the leader's appends and heartbeats (a
//!   gateway's readiness and the staleness every view carries).
//! - [`membership`]: membership changes that cannot stall the cluster (checked before proposed).
//! - [`hold_expiry`]: on the leader, an empty entry when holds are past their deadline and no
//!   other entry comes, so that their stock comes back on time.
//! - [`leader_spread`]: with several Raft groups, each group's leadership handed to its
//!   preferred voter, so that the voters share the groups' leaders.
//! - [`server`]: serves each listener's connections, each phase of a connection bounded (idle,
//!   request head, request), idle connections closed first under pressure.
//!
//! Shutdown: the shutdown future (SIGTERM or Ctrl-C in the binary) stops accepting connections,
//! lets in-flight requests finish, then shuts Raft down and closes RocksDB. If the Raft core
//! stops on its own (a fatal storage or protocol error), the node says why on `/ready` and in its
//! status for [`FATAL_EXIT_GRACE`], then shuts down the same way and [`run`] returns
//! [`StartError::RaftStopped`]: the process exits non-zero, for its supervisor to see.

pub mod api_error;
pub mod archive;
pub mod auth;
pub mod cart_parts;
pub mod cli;
pub mod cluster_version;
pub mod freshness;
pub mod gateway;
pub mod handoff;
pub mod hold_expiry;
pub mod internal;
pub mod leader_spread;
pub mod membership;
pub mod metrics;
pub mod network;
pub mod proposer;
pub mod server;
pub mod snapshot_pacing;
pub mod tls;
pub mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cluster_config::{Config, Role};
use raft_store::{NodeId, Raft, StateReader};
use tokio::net::TcpListener;

/// Deliberate bugs, to prove that the fault-injection harness catches a broken guarantee.
///
/// They exist only when this crate is built with the `unsafe-faults` feature, which only the
/// harness (jepsen-tests) enables: without it this struct is empty and no fault is compiled in
/// (`cargo build -p flashstock-node`). Even with it, the `flashstock-node` binary sets none, and
/// no configuration or environment variable can: only the harness's own binary
/// `flashstock-node-ack-before-commit` passes one in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnsafeFaults {
    /// Gateways' forwarders answer a purchase as confirmed as soon as it is queued, before it is
    /// committed, with an order the cluster never assigned.
    #[cfg(feature = "unsafe-faults")]
    pub ack_before_commit: bool,
}

impl UnsafeFaults {
    pub const NONE: UnsafeFaults = UnsafeFaults {
        #[cfg(feature = "unsafe-faults")]
        ack_before_commit: false,
    };
}

/// One Raft group as this node runs it: its openraft instance and what hangs off it.
pub struct Group {
    /// Its number: products are placed by [`flashstock_api::placement::group_of`].
    pub number: u16,
    pub raft: Raft,
    pub reader: StateReader,
    /// The replica's freshness, from the leader's appends and heartbeats.
    pub freshness: freshness::Freshness,
    /// Holds proposals back while this leader hands leadership off.
    pub handoff: handoff::Gate,
    /// The candidates this voter refused while its log was at least as long as theirs
    /// ([`handoff::stand_when_leader_silent`]).
    pub refused_candidates: handoff::Refusals,
}

/// Everything a request handler needs, shared by all of them.
pub struct NodeState {
    pub id: NodeId,
    pub config: Config,
    /// The credentials this node accepts, and the one it sends.
    pub credentials: Arc<auth::Credentials>,
    /// The Raft groups this node runs, by number (`cluster.groups` of them, never none).
    pub groups: Vec<Group>,
    pub metrics: Arc<metrics::Metrics>,
    /// The order archive; `None` on gateways and when `archive.postgres_url` is not set.
    pub archive: Option<Arc<archive::Archive>>,
    /// Always [`UnsafeFaults::NONE`] but in the fault-injection harness's test binary.
    pub unsafe_faults: UnsafeFaults,
    /// Set once if the Raft core stops on its own: why.
    pub fatal: std::sync::OnceLock<String>,
    /// Certificates of the listeners and of calls to other nodes (`[tls]`).
    pub tls: tls::NodeTls,
    /// When this process started ([`now_ms`]), in its status.
    pub started_at_ms: u64,
    /// Set when this node is asked to stop (SIGTERM, Ctrl-C), before it hands off what it leads
    /// and its listeners drain: it no longer stands for election when a leader hands off to it.
    pub stop_requested: std::sync::atomic::AtomicBool,
}

impl NodeState {
    /// A client for this node's own HTTP calls to another node's internal listener (hand-offs,
    /// pre-votes, version checks), each bounded by `timeout`, from this node's address and with
    /// its client certificate under TLS; and the URL scheme to use.
    pub fn internal_http(
        &self,
        timeout: std::time::Duration,
    ) -> Result<(reqwest::Client, &'static str), String> {
        let tls = self.tls.client();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let http = flashstock_client::http_builder(timeout, self.config.source_ip(), tls.as_ref())
            .build()
            .map_err(|e| format!("no HTTP client: {e}"))?;
        Ok((http, scheme))
    }

    /// Group `number`, if this node runs it.
    pub fn group(&self, number: u16) -> Option<&Group> {
        self.groups.get(usize::from(number))
    }

    /// The group that holds `product`.
    pub fn group_of(&self, product: &str) -> &Group {
        let groups = self.groups.len() as u16;
        &self.groups[usize::from(flashstock_api::placement::group_of(product, groups))]
    }

    /// The group that placed order `id`, if this node runs it. In a one-group cluster, group 0,
    /// whatever the id's slot ([`flashstock_api::OrderId::group`]).
    pub fn group_of_order(&self, id: flashstock_api::OrderId) -> Option<&Group> {
        match self.groups.len() {
            1 => self.groups.first(),
            _ => self.group(id.group()),
        }
    }

    /// Up to `limit` products after `after`, in id order, with their terms: from every group,
    /// each group's next `limit` after the cursor and the smallest ids of them all.
    // The state reader's own error, as every read of it gives.
    #[allow(clippy::result_large_err)]
    pub fn product_records(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<raft_store::records::ProductRecord>, openraft::StorageError<NodeId>> {
        let mut records = Vec::new();
        for group in &self.groups {
            records.extend(group.reader.product_records(after, limit)?);
        }
        if self.groups.len() > 1 {
            records.sort_unstable_by(|a, b| a.product.id.cmp(&b.product.id));
            records.truncate(limit);
        }
        Ok(records)
    }

    /// Group 0: the only group of a one-group cluster. What reads it for the whole cluster (a
    /// catalog page, the node's status) sees one group's part of a cluster of several.
    pub fn group0(&self) -> &Group {
        &self.groups[0]
    }
}

/// Where a node's RocksDB store lives: `db` in its data directory.
pub fn store_dir(config: &Config) -> std::path::PathBuf {
    config.node.data_dir.join("db")
}

/// How long a node whose Raft core stopped keeps answering `/ready` and its status with the
/// reason before it exits.
pub const FATAL_EXIT_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the store in {path}: {message}")]
    Store { path: String, message: String },
    #[error("TLS: {0}")]
    Tls(#[from] flashstock_tls::Error),
    #[error("invalid archive configuration: {0}")]
    Archive(String),
    #[error("invalid Raft configuration: {0}")]
    RaftConfig(String),
    #[error("Raft failed to start: {0}")]
    Raft(String),
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error("the Raft core stopped: {0}")]
    RaftStopped(String),
}

/// Translate our configuration into openraft's.
pub fn raft_config(config: &Config) -> Result<openraft::Config, StartError> {
    let raft = &config.raft;
    let openraft_config = openraft::Config {
        cluster_name: "flashstock".into(),
        heartbeat_interval: raft.heartbeat_interval_ms,
        election_timeout_min: raft.election_timeout_min_ms,
        election_timeout_max: raft.election_timeout_max_ms,
        // One chunk's answer; the last one's waits for the member's whole install.
        install_snapshot_timeout: raft.snapshot_chunk_timeout_ms,
        // Each node asks for its snapshots itself, when due: `snapshot_pacing`.
        snapshot_policy: openraft::SnapshotPolicy::Never,
        // Every election a voter starts on its own is started by `handoff::stand_when_leader_silent`,
        // after a pre-vote: openraft's timer would stand without one.
        enable_elect: false,
        max_in_snapshot_log_to_keep: raft.logs_to_keep_after_snapshot,
        // Keeps one append RPC's body well under the internal body limit.
        max_payload_entries: internal::APPEND_ENTRIES_MAX as u64,
        snapshot_max_chunk_size: 1024 * 1024,
        ..Default::default()
    };
    openraft_config
        .validate()
        .map_err(|e| StartError::RaftConfig(e.to_string()))
}

/// Run a node until `shutdown` completes. `listener` is the internal listener, already bound
/// (tests bind port 0 and read the address back).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    run_with_faults(config, listener, shutdown, UnsafeFaults::NONE).await
}

/// [`run`], with deliberate bugs (see [`UnsafeFaults`]); for the fault-injection harness only.
pub async fn run_with_faults(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    unsafe_faults: UnsafeFaults,
) -> Result<(), StartError> {
    let id = config.node.id;
    #[cfg(feature = "unsafe-faults")]
    if unsafe_faults != UnsafeFaults::NONE {
        tracing::warn!(
            id,
            ?unsafe_faults,
            "UNSAFE: this node breaks guarantees on purpose (fault-injection harness only)"
        );
    }
    let archive = open_archive(&config)?;
    let tls = tls::NodeTls::load(&config.tls)?;
    let credentials = Arc::new(auth::Credentials::new(&config.cluster, config.node.role));
    let metrics = Arc::new(metrics::Metrics::new(id));
    let groups = start_raft(
        &config,
        credentials.own_secret().clone(),
        tls.client(),
        metrics.clone(),
    )
    .await?;
    let state = Arc::new(NodeState {
        id,
        credentials,
        metrics,
        config,
        groups,
        archive,
        unsafe_faults,
        fatal: std::sync::OnceLock::new(),
        tls,
        started_at_ms: now_ms(),
        stop_requested: std::sync::atomic::AtomicBool::new(false),
    });

    // One shutdown signal, fanned out to both listeners, the archiver and the event streams: the
    // shutdown future (after a voter has handed off the groups it leads), or the Raft core
    // stopping on its own.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let watched = state.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown => {
                watched
                    .stop_requested
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                if watched.config.node.role == Role::Voter {
                    handoff::hand_off_before_stopping(&watched).await;
                }
            }
            reason = any_raft_stopped(&watched.groups) => {
                tracing::error!(
                    id,
                    error = %reason,
                    "the Raft core stopped; exiting in {FATAL_EXIT_GRACE:?}"
                );
                let _ = watched.fatal.set(reason);
                tokio::time::sleep(FATAL_EXIT_GRACE).await;
            }
        }
        let _ = stop.send(true);
    });
    state.tls.watch(
        id,
        Duration::from_millis(state.config.tls.reload_check_ms),
        stopping.clone(),
    );
    let archivers: Vec<_> = match &state.archive {
        Some(archive) => (0..state.groups.len() as u16)
            .map(|group| tokio::spawn(archive.clone().run(state.clone(), group, stopping.clone())))
            .collect(),
        None => Vec::new(),
    };
    for group in 0..state.groups.len() as u16 {
        spawn_group_tasks(&state, group, &stopping);
    }
    let served = serve(&state, listener, stopping).await?;
    // They stop at their next await point once `stopping` is set; a batch cut short is simply
    // written again by the next leader.
    let _ =
        tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(archivers)).await;
    tracing::info!(id, "listeners drained; shutting down Raft");
    for group in &state.groups {
        if let Err(e) = group.raft.shutdown().await {
            tracing::error!(id, group = group.number, error = %e, "Raft did not shut down cleanly");
        }
    }
    let fatal = state.fatal.get().cloned();
    drop(state);
    served.map_err(StartError::Serve)?;
    match fatal {
        Some(reason) => Err(StartError::RaftStopped(reason)),
        None => Ok(()),
    }
}

/// The tasks that look after one group on this node: snapshots when due; on a voter, membership
/// changes left halfway, leadership after a hand-off, the cluster version, holds past their
/// deadline, and with several groups, leadership moved to the group's preferred voter.
fn spawn_group_tasks(
    state: &Arc<NodeState>,
    group: u16,
    stopping: &tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(snapshot_pacing::build_when_due(
        state.clone(),
        group,
        stopping.clone(),
    ));
    if state.config.node.role == Role::Voter {
        tokio::spawn(membership::finish_halfway_changes(
            state.clone(),
            group,
            stopping.clone(),
        ));
        tokio::spawn(handoff::reclaim_when_deposed(
            state.clone(),
            group,
            stopping.clone(),
        ));
        tokio::spawn(handoff::stand_when_leader_silent(
            state.clone(),
            group,
            stopping.clone(),
        ));
        tokio::spawn(cluster_version::raise_when_supported(
            state.clone(),
            group,
            stopping.clone(),
        ));
        tokio::spawn(hold_expiry::expire_when_idle(
            state.clone(),
            group,
            stopping.clone(),
        ));
        if state.groups.len() > 1 {
            tokio::spawn(cart_parts::settle_when_decided(
                state.clone(),
                group,
                stopping.clone(),
            ));
            tokio::spawn(leader_spread::spread_when_settled(
                state.clone(),
                group,
                stopping.clone(),
            ));
        }
    }
}

/// Completes with the reason, naming the group, once any group's Raft core stops with an error.
async fn any_raft_stopped(groups: &[Group]) -> String {
    let stopped = groups.iter().map(|group| {
        Box::pin(async move {
            let reason = raft_stopped(&group.raft).await;
            match groups.len() {
                1 => reason,
                _ => format!("group {}: {reason}", group.number),
            }
        })
    });
    futures::future::select_all(stopped).await.0
}

/// Completes with the reason if the Raft core stops with an error; never after a clean
/// shutdown, which openraft reports as `Fatal::Stopped`.
async fn raft_stopped(raft: &Raft) -> String {
    let mut metrics = raft.metrics();
    let stopped = metrics
        .wait_for(
            |m| matches!(&m.running_state, Err(e) if !matches!(e, openraft::error::Fatal::Stopped)),
        )
        .await
        .ok()
        .and_then(|m| m.running_state.clone().err());
    match stopped {
        Some(fatal) => fatal.to_string(),
        None => std::future::pending().await,
    }
}

/// The order archive of a voter, if one is configured; gateways never have one.
fn open_archive(config: &Config) -> Result<Option<Arc<archive::Archive>>, StartError> {
    let id = config.node.id;
    let archive = match config.node.role {
        Role::Voter => archive::Archive::new(&config.archive).map_err(StartError::Archive)?,
        Role::Gateway => None,
    };
    match (&archive, config.node.role) {
        (Some(archive), _) => tracing::info!(id, target = %archive.describe(), "archive on"),
        (None, Role::Voter) => tracing::info!(
            id,
            "archive off: no archive.postgres_url; confirmed orders stay in the state machine"
        ),
        (None, Role::Gateway) => {}
    }
    Ok(archive)
}

/// Open the store and start Raft on each of its groups.
/// `secret`: what this node sends on Raft RPCs (its own role's credential); `tls`: the client
/// config of mutual TLS, if on; `metrics`: where the store's and the network's stages are timed.
async fn start_raft(
    config: &Config,
    secret: Arc<str>,
    tls: Option<flashstock_client::TlsConfig>,
    metrics: Arc<metrics::Metrics>,
) -> Result<Vec<Group>, StartError> {
    let db_path = store_dir(config);
    let groups = config.cluster.groups;
    // A gateway is only ever a learner: no quorum counts its log, so its appends skip the sync.
    let durability = match config.node.role {
        Role::Voter => raft_store::Durability::SharedSync,
        Role::Gateway => raft_store::Durability::Learner,
    };
    let stores = raft_store::open_groups_with(&db_path, groups, durability).map_err(|e| {
        StartError::Store {
            path: db_path.display().to_string(),
            message: e.to_string(),
        }
    })?;
    let network = network::Network::new(
        secret,
        Duration::from_millis(config.raft.rpc_timeout_ms),
        config.source_ip(),
        tls,
        config.raft.transport,
        Duration::from_millis(config.raft.learner_append_interval_ms),
        metrics.clone(),
    );
    let raft_config = Arc::new(raft_config(config)?);
    let mut groups = Vec::with_capacity(stores.len());
    for (number, (log_store, state_machine)) in (0u16..).zip(stores) {
        let (raft, reader) = start_group(
            config.node.id,
            raft_config.clone(),
            network.for_group(number),
            log_store,
            state_machine,
            &metrics,
        )
        .await?;
        groups.push(Group {
            number,
            raft,
            reader,
            freshness: freshness::Freshness::new(),
            handoff: handoff::Gate::default(),
            refused_candidates: handoff::Refusals::default(),
        });
    }
    Ok(groups)
}

/// Start Raft on one group's store.
async fn start_group(
    id: NodeId,
    raft_config: Arc<openraft::Config>,
    network: network::Network,
    log_store: raft_store::LogStore,
    state_machine: raft_store::StateMachine,
    metrics: &Arc<metrics::Metrics>,
) -> Result<(Raft, StateReader), StartError> {
    let observer: raft_store::Observer = {
        let metrics = metrics.clone();
        Arc::new(move |stage, elapsed| {
            let stage = match stage {
                raft_store::StoreStage::LogAppend => metrics::Stage::LogAppend,
                raft_store::StoreStage::Apply => metrics::Stage::Apply,
            };
            metrics.stage(stage, elapsed);
        })
    };
    let log_store = log_store.with_observer(observer.clone());
    let state_machine = state_machine.with_observer(observer);
    let reader = state_machine.reader();
    let raft = Raft::new(id, raft_config, network.clone(), log_store, state_machine)
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    network.started(&raft);
    Ok((raft, reader))
}

/// Serve the internal listener, and on a gateway the public one, until `stopping` turns true
/// and they have drained. Fails at once if the public listener cannot be bound. Both are served
/// with the bounds of [`server`]; they differ in their connection cap.
async fn serve(
    state: &Arc<NodeState>,
    listener: TcpListener,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<std::io::Result<()>, StartError> {
    use server::Listener;
    let (id, role) = (state.id, state.config.node.role);
    let addr = listener.local_addr().map_err(StartError::Serve)?;
    let internal_tls = state.tls.internal.as_ref();
    match internal_tls {
        Some(_) => tracing::info!(id, %addr, ?role, "internal listener ready (mutual TLS)"),
        None => tracing::warn!(
            id,
            %addr,
            ?role,
            "internal listener ready in PLAINTEXT: Raft, forwards and credentials cross the \
             network unencrypted; fine on loopback, set [tls] internal_* on a real network"
        ),
    }
    let public_addr = match (role, state.config.gateway.public_listen) {
        (Role::Gateway, Some(addr)) => Some(addr),
        _ => None,
    };
    // On a gateway the internal listener stops only once the public one has drained (below).
    let (stop_internal, internal_stopping) = tokio::sync::watch::channel(false);
    let internal = serve_listener(
        state,
        listener,
        internal_tls,
        internal::router(state.clone()),
        Listener::Internal,
        match public_addr {
            Some(_) => internal_stopping,
            None => stopping.clone(),
        },
    )?;
    let Some(public_addr) = public_addr else {
        return Ok(internal.await);
    };
    // Bound here, so that a port taken fails the start at once; moved to the public runtime
    // there.
    let public = listen(public_addr)
        .and_then(TcpListener::into_std)
        .map_err(|source| StartError::Listen {
            addr: public_addr,
            source,
        })?;
    let public_runtime = public_runtime().map_err(StartError::Serve)?;
    let public = public_runtime.spawn(serve_public(state.clone(), public_addr, public, stopping));
    // The replica keeps receiving the leader's appends until the gateway's clients have their
    // answers: a linearizable view or a hold's confirmation in flight waits for the replica to
    // apply an entry. With both listeners stopped at once, each such request waited out its
    // bound (5 s) and was refused, and held the gateway's stop as long (in most gateway stops of
    // a fault run's rolling restarts).
    let public = async move {
        let public = public.await;
        let _ = stop_internal.send(true);
        public
    };
    let (internal, public) = tokio::join!(internal, public);
    // The listeners have drained; what the public runtime still runs (an event stream's last
    // write, a forwarder's batch) is dropped at its next await. Waited for, on a blocking thread
    // (a runtime cannot be dropped inside another), so that every task's hold on the node's
    // state is gone before Raft shuts down and the store closes here, not on one of those
    // threads as the process exits.
    let waited =
        tokio::task::spawn_blocking(move || public_runtime.shutdown_timeout(PUBLIC_SHUTDOWN_WAIT))
            .await;
    if let Err(e) = waited {
        tracing::error!(id, error = %e, "the public runtime did not shut down");
    }
    let public = public.unwrap_or_else(|e| Ok(Err(std::io::Error::other(e))))?;
    Ok(internal.and(public))
}

/// How long a gateway's public runtime is given to drop its tasks once its listener has
/// drained: a task is dropped at its next await, so only one stuck in a blocking call is still
/// running when this passes, and it is then left behind.
const PUBLIC_SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// The runtime of a gateway's public side: the listener, its connections, their requests, and
/// the gateway's own tasks (forwarders, miss rounds), so that a purchase stays on one runtime
/// until it leaves for the leader. Thousands of client connections would otherwise share the
/// run queues of the runtime that drives the node's Raft groups, and an append from the leader
/// would wait behind them: under 6000 connections appends to each gateway timed out (openraft
/// gives one its heartbeat interval), and a gateway could fall minutes behind its leader until
/// the load stopped. The Raft groups keep the main runtime, of one worker on a gateway
/// ([`crate::cli`]), and the operating system shares the cores between the runtimes' threads.
/// Its workers are one per core (or `TOKIO_WORKER_THREADS`).
pub(crate) fn public_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name("flashstock-public")
        .enable_all()
        .build()
}

/// Serve the gateway's API on the public listener until `stopping`; runs on the public
/// runtime, so that the listener, its connections and the gateway's tasks belong to it.
async fn serve_public(
    state: Arc<NodeState>,
    public_addr: std::net::SocketAddr,
    public: std::net::TcpListener,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<std::io::Result<()>, StartError> {
    let gateway = Arc::new(gateway::Gateway::new(state.clone(), stopping.clone()));
    let public = TcpListener::from_std(public).map_err(StartError::Serve)?;
    let public_tls = state.tls.public.as_ref();
    match public_tls {
        Some(_) => tracing::info!(id = state.id, addr = %public_addr, "public API ready (HTTPS)"),
        None => tracing::warn!(
            id = state.id,
            addr = %public_addr,
            "public API ready in PLAINTEXT HTTP; set [tls] public_* (or terminate TLS in front) \
             before facing the internet"
        ),
    }
    let public = serve_listener(
        &state,
        public,
        public_tls,
        gateway::router(gateway),
        server::Listener::Public,
        stopping,
    )?;
    Ok(public.await)
}

type Served = std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// [`server::serve`] one listener, over TLS when `tls` is given.
fn serve_listener(
    state: &Arc<NodeState>,
    listener: TcpListener,
    tls: Option<&Arc<flashstock_tls::Identity>>,
    router: axum::Router,
    which: server::Listener,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<Served, StartError> {
    let listening = server::Listening {
        which,
        limits: server::Limits::of(&state.config.limits, which),
        // The wire is internal: the public listener speaks HTTP only.
        wire: (which == server::Listener::Internal).then(|| {
            wire::Admission::new(
                state.credentials.clone(),
                state.config.limits.body_bytes_max,
            )
        }),
    };
    let metrics = state.metrics.clone();
    Ok(match tls {
        Some(identity) => Box::pin(server::serve(
            listener,
            server::Tls(flashstock_tls::acceptor(identity)?),
            router,
            listening,
            metrics,
            stopping,
        )),
        None => Box::pin(server::serve(
            listener,
            server::Plaintext,
            router,
            listening,
            metrics,
            stopping,
        )),
    })
}

/// Connections the kernel queues for a listener before it accepts them. A flash sale opens
/// thousands at once; the common default of 128 or 1024 would drop SYNs and cost clients a
/// one-second retransmit. The kernel caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 8192;

/// Bind a listener with [`LISTEN_BACKLOG`].
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The checks of a background task of the node: every `every`, until the node stops. A check
/// missed while the task was busy is not made up: the next one comes `every` after it ends.
pub struct Checks {
    ticks: tokio::time::Interval,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl Checks {
    pub fn every(
        every: std::time::Duration,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Checks {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Checks { ticks, stopping }
    }

    /// Wait for the next check: `false` once the node is stopping.
    pub async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.ticks.tick() => true,
            _ = self.stopping.wait_for(|stop| *stop) => false,
        }
    }
}

/// Milliseconds since the Unix epoch, by this machine's clock. Used only by proposers: the time
/// travels in the log, and the state machine never reads a clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
