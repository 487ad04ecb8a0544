//! The configuration schema: one struct per TOML table.
//!
//! Every struct rejects unknown keys. Sections marked "optional" may be left
//! out entirely, and any key inside them may be left out; missing keys take
//! the value from [`crate::defaults`].

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::defaults::*;
use crate::SourceRange;

/// Identifies a node in the cluster; valid ids start at 1.
pub type NodeId = u64;

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs Raft on RocksDB and votes in elections.
    Voter,
    /// Serves the public HTTP API and forwards writes to the voters.
    Gateway,
}

/// The whole configuration of one node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[node]`: who this node is and where it listens. Required.
    pub node: NodeSection,
    /// `[cluster]`: what every node of the cluster shares. Required.
    pub cluster: ClusterSection,
    /// `[raft]`: Raft timing and log compaction. Optional.
    #[serde(default)]
    pub raft: RaftSection,
    /// `[limits]`: bounds on requests and their contents. Optional.
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[gateway]`: public HTTP and batching. Optional; only read, and only
    /// validated, when `node.role = "gateway"`, but for its timeouts, which
    /// every node checks against the idempotency window.
    #[serde(default)]
    pub gateway: GatewaySection,
    /// `[archive]`: the order archive in PostgreSQL. Optional; without
    /// `archive.postgres_url` the archive is off.
    #[serde(default)]
    pub archive: ArchiveSection,
    /// `[tls]`: TLS between nodes and on the public listener. Optional;
    /// without it the node speaks plaintext HTTP and says so at start.
    #[serde(default)]
    pub tls: TlsSection,
    /// `[checkout]`: holds, carts and cancellations through the public API.
    /// Optional; read by gateways, checked in every file. Left out of a
    /// written file while it holds the defaults: 0.1.0 refuses a file with a
    /// section it does not know, and a rolling upgrade runs 0.1.0 nodes with
    /// the new release's files until every node is upgraded.
    #[serde(default, skip_serializing_if = "CheckoutSection::is_default")]
    pub checkout: CheckoutSection,
}

/// `[node]`: the identity and addresses of this node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// `node.id`: unique in the cluster, at least 1. Required.
    pub id: NodeId,
    /// `node.role`: `"voter"` or `"gateway"`. Required.
    pub role: Role,
    /// `node.listen`: internal (Raft and admin) listen address, e.g.
    /// `"127.0.0.1:7101"`. Port 0 picks a free port, but then `node.advertise`
    /// must be set. Required.
    pub listen: SocketAddr,
    /// `node.advertise`: the `"host:port"` other nodes use to reach this node.
    /// Optional; defaults to `node.listen`, which then must have a non-zero
    /// port and a specific (not unspecified) IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// `node.data_dir`: where the node keeps its state. Required, non-empty.
    pub data_dir: PathBuf,
}

/// `[cluster]`: settings every node of the cluster shares.
///
/// Credentials, one list per role, sent in the `x-flashstock-secret` header (see
/// `docs/ARCHITECTURE.md`, "Credentials"). An entry is a secret (at least
/// [`SECRET_CHARS_MIN`] characters) or its digest, `"sha256:<64 lowercase hex>"`
/// ([`crate::secret_digest`]): a node accepts a credential when it matches any
/// entry of a list, and sends the first entry of its own role's list, which must
/// be a secret. A gateway faces the internet, so it holds the voters' and the
/// operators' credentials only as digests: it can check them, never send them.
/// During a rollover a list holds the new and the old entry (deploy/RUNBOOK.md).
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// `cluster.voter_secrets`: the voters' credential, for Raft RPCs (which
    /// gateways, as learners, receive too), replica reads and internal
    /// commands (the archive cursor). Voters send the first. Required: 1 to
    /// [`CREDENTIALS_PER_ROLE_MAX`] entries; digests only on gateways.
    pub voter_secrets: Vec<String>,
    /// `cluster.gateway_secrets`: the gateways' credential, for forwarding
    /// public commands (purchases, product creation, restocks), read-index
    /// calls and status probes. Gateways send the first. Required: 1 to
    /// [`CREDENTIALS_PER_ROLE_MAX`] entries.
    pub gateway_secrets: Vec<String>,
    /// `cluster.operator_secrets`: the operators' credential (stockctl), for
    /// the admin API (`/admin/*`), replica reads and public commands. No node
    /// sends it. Required: 1 to [`CREDENTIALS_PER_ROLE_MAX`] entries; digests
    /// only on gateways.
    pub operator_secrets: Vec<String>,
    /// `cluster.voters`: the initial voters used by `init`. Optional, default
    /// empty; at most [`VOTERS_MAX`] entries, ids unique and at least 1,
    /// addresses `"host:port"`.
    /// A voter need not list itself: it may join later as a learner.
    #[serde(default)]
    pub voters: Vec<Peer>,
    /// `cluster.admin_token`: bearer token for public admin HTTP calls (create
    /// product, restock). Optional; if set, at least [`SECRET_CHARS_MIN`]
    /// characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// `cluster.groups`: how many Raft groups hold the shop, each with its own
    /// leader, log and snapshots, all on the same voters; products are placed
    /// by a hash of their id. Optional, default 1; from 1 to [`GROUPS_MAX`].
    /// Every node of a cluster must say the same, and it is fixed once the
    /// cluster holds data: a store of more groups than configured is refused.
    /// With more than one, `limits.commands_per_entry_max` is at most
    /// [`GROUP_COMMANDS_PER_ENTRY_MAX`].
    #[serde(default = "default_groups", skip_serializing_if = "is_one_group")]
    pub groups: u16,
}

fn default_groups() -> u16 {
    1
}

fn is_one_group(groups: &u16) -> bool {
    *groups == 1
}

/// Shows everything but the secrets, so a logged config leaks nothing.
impl fmt::Debug for ClusterSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |list: &Vec<String>| format!("[<redacted>; {}]", list.len());
        f.debug_struct("ClusterSection")
            .field("voter_secrets", &redacted(&self.voter_secrets))
            .field("gateway_secrets", &redacted(&self.gateway_secrets))
            .field("operator_secrets", &redacted(&self.operator_secrets))
            .field("voters", &self.voters)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("groups", &self.groups)
            .finish()
    }
}

/// One entry of `cluster.voters`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// The voter's `node.id`.
    pub id: NodeId,
    /// The voter's advertised `"host:port"`.
    pub addr: String,
}

/// `[raft]`: Raft timing and log compaction. Each field defaults to the
/// constant named in its doc.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftSection {
    /// How often the leader sends heartbeats; at least 1. Also how long openraft 0.9 waits for
    /// one AppendEntries answer: set it above the worst round trip between voters plus a
    /// follower's fsync, or replication stops while the network is that slow.
    /// Default [`DEFAULT_HEARTBEAT_INTERVAL_MS`].
    pub heartbeat_interval_ms: u64,
    /// Lower end of the election timeout; at least
    /// [`ELECTION_TO_HEARTBEAT_RATIO_MIN`] heartbeat intervals.
    /// Default [`DEFAULT_ELECTION_TIMEOUT_MIN_MS`].
    pub election_timeout_min_ms: u64,
    /// Upper end of the election timeout; above `election_timeout_min_ms`.
    /// Default [`DEFAULT_ELECTION_TIMEOUT_MAX_MS`].
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many log entries since the last, plus up to 5/12 of it by
    /// the node's id (so that the nodes do not all build at the same entry); at least 1.
    /// Default [`DEFAULT_SNAPSHOT_EVERY_LOGS`].
    pub snapshot_every_logs: u64,
    /// Log entries kept behind a snapshot; 0 allowed.
    /// Default [`DEFAULT_LOGS_TO_KEEP_AFTER_SNAPSHOT`].
    pub logs_to_keep_after_snapshot: u64,
    /// Timeout of one Raft RPC (a snapshot's chunks have their own,
    /// `snapshot_chunk_timeout_ms`); at least 1. Default [`DEFAULT_RPC_TIMEOUT_MS`].
    pub rpc_timeout_ms: u64,
    /// How long the leader waits for the answer to one chunk of a snapshot it
    /// sends; the last chunk is answered once the member has installed the
    /// whole snapshot. At least `rpc_timeout_ms`, below
    /// `limits.request_timeout_ms`. Default [`DEFAULT_SNAPSHOT_CHUNK_TIMEOUT_MS`]; left out
    /// of a written file when it is the default, so that older releases (which do not know
    /// the key) can read the file.
    #[serde(skip_serializing_if = "is_default_snapshot_chunk_timeout")]
    pub snapshot_chunk_timeout_ms: u64,
    /// How long a purchase's idempotency record is kept; at least
    /// [`IDEMPOTENCY_WINDOW_MS_MIN`], and above `limits.client_retry_horizon_ms`.
    /// Default [`DEFAULT_IDEMPOTENCY_WINDOW_MS`].
    pub idempotency_window_ms: u64,
    /// How long a voter waits for a proposed entry to commit and apply before
    /// answering "outcome unknown"; from 1 to `gateway.forward_attempt_timeout_ms`.
    /// Default [`DEFAULT_COMMIT_TIMEOUT_MS`].
    pub commit_timeout_ms: u64,
    /// How this node sends the calls on a write's path (Raft's appends and votes, a gateway's
    /// forwarded batches): `wire` (a persistent, multiplexed binary connection per peer; a peer
    /// that does not speak it is reached over HTTP) or `http` (one HTTP/1.1 exchange per call,
    /// as releases before the wire did). Every node serves both. Default `wire`; left out of a
    /// written file when it is the default, so that older releases can read the file.
    #[serde(skip_serializing_if = "Transport::is_default")]
    pub transport: Transport,
    /// On a leader: the least time between two append RPCs to a learner (a gateway) whose
    /// stream is busy (its appends leave within twice this of each other); entries of that time go
    /// in one append, and the learner's replica is up to that much older. 0 sends each at
    /// once. An append after a quiet spell, and one to a learner behind (its last append
    /// full), are not held. From 0 to `heartbeat_interval_ms` /
    /// [`LEARNER_APPEND_INTERVAL_HEARTBEAT_DIVISOR`]. Default
    /// [`DEFAULT_LEARNER_APPEND_INTERVAL_MS`]; left out of a written file when it is the
    /// default, so that older releases can read the file.
    #[serde(skip_serializing_if = "is_default_learner_append_interval")]
    pub learner_append_interval_ms: u64,
}

/// `raft.transport`: see [`RaftSection::transport`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Wire,
    Http,
}

fn is_default_learner_append_interval(ms: &u64) -> bool {
    *ms == DEFAULT_LEARNER_APPEND_INTERVAL_MS
}

fn is_default_snapshot_chunk_timeout(ms: &u64) -> bool {
    *ms == DEFAULT_SNAPSHOT_CHUNK_TIMEOUT_MS
}

impl Transport {
    fn is_default(&self) -> bool {
        *self == Transport::default()
    }
}

impl Default for RaftSection {
    fn default() -> Self {
        RaftSection {
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            election_timeout_min_ms: DEFAULT_ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max_ms: DEFAULT_ELECTION_TIMEOUT_MAX_MS,
            snapshot_every_logs: DEFAULT_SNAPSHOT_EVERY_LOGS,
            logs_to_keep_after_snapshot: DEFAULT_LOGS_TO_KEEP_AFTER_SNAPSHOT,
            rpc_timeout_ms: DEFAULT_RPC_TIMEOUT_MS,
            snapshot_chunk_timeout_ms: DEFAULT_SNAPSHOT_CHUNK_TIMEOUT_MS,
            idempotency_window_ms: DEFAULT_IDEMPOTENCY_WINDOW_MS,
            commit_timeout_ms: DEFAULT_COMMIT_TIMEOUT_MS,
            transport: Transport::Wire,
            learner_append_interval_ms: DEFAULT_LEARNER_APPEND_INTERVAL_MS,
        }
    }
}

/// `[limits]`: bounds on requests and their contents. Each field defaults to
/// the constant named in its doc.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest accepted HTTP request body; from [`BODY_BYTES_MAX_LOWEST`] to
    /// [`BODY_BYTES_MAX_HIGHEST`]. Default [`DEFAULT_BODY_BYTES_MAX`].
    pub body_bytes_max: usize,
    /// Most commands in one Raft log entry; from 1 to
    /// [`COMMANDS_PER_ENTRY_MAX_HIGHEST`]. Default [`DEFAULT_COMMANDS_PER_ENTRY_MAX`].
    pub commands_per_entry_max: usize,
    /// Largest quantity one purchase may ask for; at least 1.
    /// Default [`DEFAULT_PURCHASE_QUANTITY_MAX`].
    pub purchase_quantity_max: u32,
    /// Most concurrent connections on a gateway's public listener; at least 1.
    /// Further connections wait in the kernel's listen backlog. Default
    /// [`DEFAULT_CONNECTIONS_MAX`].
    pub connections_max: usize,
    /// Most concurrent connections on every node's internal listener (Raft
    /// RPCs, forwarded writes, admin, probes, health checks); at least 1.
    /// Default [`DEFAULT_INTERNAL_CONNECTIONS_MAX`].
    pub internal_connections_max: usize,
    /// Most event streams (`GET /v1/stream`) a gateway holds at once; from 0
    /// (streams off) to `connections_max - 1`, so that streams never take every
    /// connection from buyers. A stream over it is refused at once with 503
    /// `overloaded` and `Retry-After`. Default [`DEFAULT_STREAMS_MAX`].
    pub streams_max: usize,
    /// How long an event stream lasts before the gateway ends it; at least
    /// [`STREAM_LIFETIME_MS_LOWEST`]. Browsers reconnect on their own and
    /// re-read the state. Default [`DEFAULT_STREAM_LIFETIME_MS`].
    pub stream_lifetime_ms: u64,
    /// On every listener: how long a request head may take to arrive complete,
    /// from its first byte; past it the connection is closed. At least 1.
    /// Default [`DEFAULT_HEADER_READ_TIMEOUT_MS`].
    pub header_read_timeout_ms: u64,
    /// On every listener: how long a connection may wait for the first byte of
    /// a request, after it is accepted or after its previous response; past it
    /// the connection is closed. At least 1. Default
    /// [`DEFAULT_IDLE_TIMEOUT_MS`].
    pub idle_timeout_ms: u64,
    /// [`LimitsSection::idle_timeout_ms`] while a listener holds
    /// at least 90% of its connection cap, so that idle connections make room
    /// for working ones first; from 1 to `idle_timeout_ms`. Default
    /// [`DEFAULT_IDLE_TIMEOUT_UNDER_PRESSURE_MS`].
    pub idle_timeout_under_pressure_ms: u64,
    /// On every listener: the longest one request may take, from its head to
    /// the end of its answer (event streams excepted: they end at
    /// `stream_lifetime_ms`). A backstop above every wait a handler does by
    /// design: at least [`ADMIN_CALL_WAIT_MS_MAX`], above
    /// `body_read_timeout_ms` plus the longer of `gateway.forward_timeout_ms`
    /// and `gateway.linearizable_read_timeout_ms`, and above
    /// `archive.timeout_ms`. Default [`DEFAULT_REQUEST_TIMEOUT_MS`].
    pub request_timeout_ms: u64,
    /// How long a request body may take to arrive before the gateway answers
    /// 408; at least 1. Default [`DEFAULT_BODY_READ_TIMEOUT_MS`].
    pub body_read_timeout_ms: u64,
    /// The longest a client may keep retrying one idempotency key and still get
    /// the first outcome back: above `gateway.forward_timeout_ms`, below
    /// `raft.idempotency_window_ms`. Clients (the client library, stockctl, the
    /// shop page) must give a key up within it. Default
    /// [`DEFAULT_CLIENT_RETRY_HORIZON_MS`].
    pub client_retry_horizon_ms: u64,
    /// Client addresses exempt from the per-address rate limits and from the
    /// per-client share of the purchase queue: a shop's own backend, a NAT, a
    /// load generator, which speak for many people from one address. Each entry
    /// is an address or a CIDR range (`"203.0.113.7"`, `"10.0.0.0/8"`,
    /// `"2001:db8::/48"`); at most [`TRUSTED_SOURCES_MAX`] entries. Purchases
    /// from a trusted source that name a `customer` are limited per customer
    /// instead, at the purchase rate below. `X-Forwarded-For` is never read:
    /// the client is the TCP peer. Default empty: nobody is trusted.
    pub trusted_sources: Vec<SourceRange>,
    /// Purchases a client may send per second, on average, to one gateway
    /// (a client is its address, an IPv6 /64 counting as one; or a customer of
    /// a trusted source); beyond it the gateway answers 429 `rate_limited`
    /// with `Retry-After`, before the request is read or queued. From 1 to
    /// [`CLIENT_RATE_PER_S_HIGHEST`]. Default
    /// [`DEFAULT_CLIENT_PURCHASE_RATE_PER_S`].
    pub client_purchase_rate_per_s: u32,
    /// Purchases a client may send at once after a quiet spell, above its
    /// rate; from 1 to [`CLIENT_BURST_MAX_HIGHEST`]. Default
    /// [`DEFAULT_CLIENT_PURCHASE_BURST_MAX`].
    pub client_purchase_burst_max: u32,
    /// Views (API reads, pages, assets, event streams; not `/v1/health`,
    /// `/v1/ready`, `/v1/openapi.json`) a client may ask per second of one
    /// gateway, counted apart from its purchases; from 1 to
    /// [`CLIENT_RATE_PER_S_HIGHEST`]. Default [`DEFAULT_CLIENT_VIEW_RATE_PER_S`].
    pub client_view_rate_per_s: u32,
    /// Views a client may ask at once after a quiet spell, above its rate;
    /// from 1 to [`CLIENT_BURST_MAX_HIGHEST`]. Default
    /// [`DEFAULT_CLIENT_VIEW_BURST_MAX`].
    pub client_view_burst_max: u32,
    /// Clients each rate table of a gateway remembers (one table for
    /// purchases, one for views, one for customers of trusted sources), which
    /// bounds their memory. When a table is full, a new client is still
    /// admitted: room is made by forgetting clients whose allowance has
    /// refilled, else the one with the most allowance left. Forgetting a
    /// client only gives it a full allowance, so filling the table can lock
    /// nobody out, and a flooder (no allowance left) is forgotten last. From
    /// [`RATE_CLIENTS_MAX_LOWEST`] to [`RATE_CLIENTS_MAX_HIGHEST`]. Default
    /// [`DEFAULT_RATE_CLIENTS_MAX`].
    pub rate_clients_max: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            body_bytes_max: DEFAULT_BODY_BYTES_MAX,
            commands_per_entry_max: DEFAULT_COMMANDS_PER_ENTRY_MAX,
            purchase_quantity_max: DEFAULT_PURCHASE_QUANTITY_MAX,
            connections_max: DEFAULT_CONNECTIONS_MAX,
            internal_connections_max: DEFAULT_INTERNAL_CONNECTIONS_MAX,
            streams_max: DEFAULT_STREAMS_MAX,
            stream_lifetime_ms: DEFAULT_STREAM_LIFETIME_MS,
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            idle_timeout_under_pressure_ms: DEFAULT_IDLE_TIMEOUT_UNDER_PRESSURE_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            body_read_timeout_ms: DEFAULT_BODY_READ_TIMEOUT_MS,
            client_retry_horizon_ms: DEFAULT_CLIENT_RETRY_HORIZON_MS,
            trusted_sources: Vec::new(),
            client_purchase_rate_per_s: DEFAULT_CLIENT_PURCHASE_RATE_PER_S,
            client_purchase_burst_max: DEFAULT_CLIENT_PURCHASE_BURST_MAX,
            client_view_rate_per_s: DEFAULT_CLIENT_VIEW_RATE_PER_S,
            client_view_burst_max: DEFAULT_CLIENT_VIEW_BURST_MAX,
            rate_clients_max: DEFAULT_RATE_CLIENTS_MAX,
        }
    }
}

/// `[gateway]`: public HTTP and purchase batching; only meaningful when
/// `node.role = "gateway"`. Each field but `public_listen` defaults to the
/// constant named in its doc.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySection {
    /// Public HTTP listen address; required for gateways, and distinct from
    /// `node.listen`. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_listen: Option<SocketAddr>,
    /// How long to wait for more purchases to fill a batch, only while other
    /// batches are in flight (a batch alone leaves at once); 0 never waits.
    /// Default [`DEFAULT_BATCH_WAIT_US`].
    pub batch_wait_us: u64,
    /// Most purchases in one forwarded batch; from 1 to
    /// `limits.commands_per_entry_max`. Default [`DEFAULT_BATCH_ITEMS_MAX`].
    pub batch_items_max: usize,
    /// Pending purchases before shedding load with 503; at least
    /// `batch_items_max`. Default [`DEFAULT_QUEUE_MAX`].
    pub queue_max: usize,
    /// Pending purchases of one client (see `limits.trusted_sources` for who
    /// is one client) in this gateway's queue; beyond it that client alone gets
    /// 429 `rate_limited`, and the queue is served round robin across clients,
    /// so a flooder cannot push others into 503. A trusted source's purchases
    /// without a `customer` are one client without this bound. At least 1; a
    /// value above `queue_max` acts as `queue_max`. Default
    /// [`DEFAULT_QUEUE_PER_CLIENT_MAX`].
    pub queue_per_client_max: usize,
    /// The whole budget of one forwarded batch, every attempt and pause
    /// included; above `forward_attempt_timeout_ms`, below
    /// `limits.client_retry_horizon_ms`. Default [`DEFAULT_FORWARD_TIMEOUT_MS`].
    pub forward_timeout_ms: u64,
    /// One HTTP exchange with a voter: an attempt of a forwarded batch (also cut
    /// at what is left of `forward_timeout_ms`) or a read-index call; at least
    /// `raft.commit_timeout_ms`, below `forward_timeout_ms`.
    /// Default [`DEFAULT_FORWARD_ATTEMPT_TIMEOUT_MS`].
    pub forward_attempt_timeout_ms: u64,
    /// How long a `consistency=linearizable` read may take to learn the
    /// leader's commit index and apply up to it; at least 1.
    /// Default [`DEFAULT_LINEARIZABLE_READ_TIMEOUT_MS`].
    pub linearizable_read_timeout_ms: u64,
    /// `/v1/ready` answers 503 `not_ready` once this gateway has gone this
    /// long without an append or heartbeat from a leader; greater than
    /// `raft.election_timeout_max_ms`, so that an ordinary election does not
    /// make it unready. Default [`DEFAULT_READY_LEADER_SILENCE_MS`].
    pub ready_leader_silence_ms: u64,
    /// `/v1/ready` answers 503 `not_ready` while this gateway's replica trails
    /// the leader's commit index (as of the leader's last append or
    /// heartbeat) by more than this many log entries; at least 1.
    /// Default [`DEFAULT_READY_LAG_ENTRIES_MAX`].
    pub ready_lag_entries_max: u64,
    /// Most connections kept open to the voters; at least 1.
    /// Default [`DEFAULT_FORWARD_CONNECTIONS_MAX`].
    pub forward_connections_max: usize,
    /// The public origins (`scheme://host[:port]`, as a browser writes them:
    /// lower case, no path, no trailing slash) of every gateway of the cluster,
    /// this one's included, and of any shared address pages are served from.
    /// The shop page is told them and fails over across them (another gateway
    /// when its own stops answering); the public API grants CORS to exactly
    /// these origins, and pages allow connections to them. Every gateway holds
    /// the same list; adding or removing a gateway updates it on all of them.
    /// At most [`PUBLIC_ORIGINS_MAX`], no duplicates. Default empty: pages talk
    /// to the gateway that served them only, and no origin gets CORS.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub public_origins: Vec<String>,
    /// How long the shop page waits for one purchase request (and for an event
    /// stream to open) before it takes the gateway for gone and asks another
    /// with the same idempotency key; above `gateway.forward_timeout_ms`, so a
    /// live gateway answers first, and at most
    /// [`PAGE_REQUEST_TIMEOUT_MS_HIGHEST`]. Default
    /// [`DEFAULT_PAGE_REQUEST_TIMEOUT_MS`].
    pub page_request_timeout_ms: u64,
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            public_listen: None,
            batch_wait_us: DEFAULT_BATCH_WAIT_US,
            batch_items_max: DEFAULT_BATCH_ITEMS_MAX,
            queue_max: DEFAULT_QUEUE_MAX,
            queue_per_client_max: DEFAULT_QUEUE_PER_CLIENT_MAX,
            forward_timeout_ms: DEFAULT_FORWARD_TIMEOUT_MS,
            forward_attempt_timeout_ms: DEFAULT_FORWARD_ATTEMPT_TIMEOUT_MS,
            linearizable_read_timeout_ms: DEFAULT_LINEARIZABLE_READ_TIMEOUT_MS,
            ready_leader_silence_ms: DEFAULT_READY_LEADER_SILENCE_MS,
            ready_lag_entries_max: DEFAULT_READY_LAG_ENTRIES_MAX,
            forward_connections_max: DEFAULT_FORWARD_CONNECTIONS_MAX,
            public_origins: Vec::new(),
            page_request_timeout_ms: DEFAULT_PAGE_REQUEST_TIMEOUT_MS,
        }
    }
}

/// `[archive]`: the order archive. The current leader copies confirmed orders
/// to PostgreSQL in batches and then replicates how far it got, so every order
/// reaches the archive exactly once. Each field but `postgres_url` defaults to
/// the constant named in its doc.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveSection {
    /// The archive database, as a libpq URL
    /// (`postgres://user:password@host:port/dbname`) or key=value string.
    /// Default none: the archive is off, and orders stay in the state machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_url: Option<String>,
    /// Most connections this node opens to the archive database; from 1 to
    /// [`ARCHIVE_POOL_SIZE_HIGHEST`], so that [`VOTERS_MAX`] voters never hold
    /// more than [`ARCHIVE_CLUSTER_CONNECTIONS_MAX`] together.
    /// Default [`DEFAULT_ARCHIVE_POOL_SIZE`].
    pub pool_size: usize,
    /// Most orders written in one transaction; from 1 to
    /// [`ARCHIVE_BATCH_MAX_HIGHEST`]. Default [`DEFAULT_ARCHIVE_BATCH_MAX`].
    pub batch_max: usize,
    /// Shortest time between two batches, so that orders coalesce; 0 writes
    /// as soon as an order is applied. Default [`DEFAULT_ARCHIVE_INTERVAL_MS`].
    pub interval_ms: u64,
    /// How long archived orders stay readable in the state machine before
    /// they are dropped. Default [`DEFAULT_ARCHIVE_RETENTION_MS`].
    pub retention_ms: u64,
    /// Deadline of one database step (connect, migrate, write a batch); at
    /// least 1. Default [`DEFAULT_ARCHIVE_TIMEOUT_MS`].
    pub timeout_ms: u64,
    /// First wait after a failure; doubled after each further failure. At
    /// least 1. Default [`DEFAULT_ARCHIVE_RETRY_MIN_MS`].
    pub retry_min_ms: u64,
    /// Longest wait between two attempts; at least `retry_min_ms`.
    /// Default [`DEFAULT_ARCHIVE_RETRY_MAX_MS`].
    pub retry_max_ms: u64,
    /// PEM file of the CA that the archive database's certificate chains to.
    /// When set, the archiver connects with TLS and checks the server's
    /// certificate against it (set `sslmode=require` in `postgres_url` so that
    /// a server without TLS is refused). Default none: no TLS to PostgreSQL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_ca_path: Option<PathBuf>,
}

impl ArchiveSection {
    /// True when an archive database is configured.
    pub fn enabled(&self) -> bool {
        self.postgres_url.is_some()
    }
}

impl Default for ArchiveSection {
    fn default() -> Self {
        ArchiveSection {
            postgres_url: None,
            pool_size: DEFAULT_ARCHIVE_POOL_SIZE,
            batch_max: DEFAULT_ARCHIVE_BATCH_MAX,
            interval_ms: DEFAULT_ARCHIVE_INTERVAL_MS,
            retention_ms: DEFAULT_ARCHIVE_RETENTION_MS,
            timeout_ms: DEFAULT_ARCHIVE_TIMEOUT_MS,
            retry_min_ms: DEFAULT_ARCHIVE_RETRY_MIN_MS,
            retry_max_ms: DEFAULT_ARCHIVE_RETRY_MAX_MS,
            postgres_ca_path: None,
        }
    }
}

/// Shows everything but the database URL, which may hold a password.
impl fmt::Debug for ArchiveSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveSection")
            .field(
                "postgres_url",
                &self.postgres_url.as_ref().map(|_| "<redacted>"),
            )
            .field("pool_size", &self.pool_size)
            .field("batch_max", &self.batch_max)
            .field("interval_ms", &self.interval_ms)
            .field("retention_ms", &self.retention_ms)
            .field("timeout_ms", &self.timeout_ms)
            .field("retry_min_ms", &self.retry_min_ms)
            .field("retry_max_ms", &self.retry_max_ms)
            .field("postgres_ca_path", &self.postgres_ca_path)
            .finish()
    }
}

/// `[checkout]`: what a gateway sends with the checkout commands of the
/// public API (cluster version 2): how long a hold keeps its stock, how many
/// lines one cart or hold may carry, how long a buyer may cancel an order.
/// Each field defaults to the constant named in its doc. Like `[limits]`,
/// every gateway of a cluster is meant to hold the same values.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckoutSection {
    /// How long a hold (`POST /v1/holds`) keeps its stock for the buyer
    /// before it expires and the stock is available again, unless confirmed
    /// or released first; from [`HOLD_TTL_MS_LOWEST`] to
    /// [`HOLD_TTL_MS_HIGHEST`] (the state machine's own bounds). Default
    /// [`DEFAULT_HOLD_TTL_MS`].
    pub hold_ttl_ms: u64,
    /// Most lines (distinct products) in one cart (`POST /v1/checkout`) or
    /// hold; from 1 to [`CART_LINES_MAX_HIGHEST`] (the state machine's own
    /// bound). More is refused with 400 before anything is proposed. Default
    /// [`DEFAULT_CART_LINES_MAX`].
    pub cart_lines_max: usize,
    /// How long after it was placed a buyer may cancel an order with its
    /// token (`POST /v1/orders/{id}/cancel`); later, 409
    /// `cancel_window_passed`. Admins cancel without a window. At least 1.
    /// An order dropped from the state machine (archived, past
    /// `archive.retention_ms`) cannot be cancelled at all. Default
    /// [`DEFAULT_CANCEL_WINDOW_MS`].
    pub cancel_window_ms: u64,
    /// A cluster of several Raft groups (`cluster.groups`): how long a cart
    /// whose products lie in several groups keeps its stock held while its
    /// gateway decides it (the time to live of the cart's primary part). A
    /// gateway that stops halfway leaves that stock held this long; the
    /// leaders then release it. From [`HOLD_TTL_MS_LOWEST`] to
    /// [`HOLD_TTL_MS_HIGHEST`]. Default [`DEFAULT_CART_DECISION_MS`]; not
    /// written at the default, so a file that sets the section's other keys
    /// still reads in the release before.
    #[serde(skip_serializing_if = "is_default_cart_decision")]
    pub cart_decision_ms: u64,
}

fn is_default_cart_decision(ms: &u64) -> bool {
    *ms == DEFAULT_CART_DECISION_MS
}

impl CheckoutSection {
    /// Whether every field holds its default (the section is then not written).
    pub fn is_default(&self) -> bool {
        self == &CheckoutSection::default()
    }
}

impl Default for CheckoutSection {
    fn default() -> Self {
        CheckoutSection {
            hold_ttl_ms: DEFAULT_HOLD_TTL_MS,
            cart_lines_max: DEFAULT_CART_LINES_MAX,
            cancel_window_ms: DEFAULT_CANCEL_WINDOW_MS,
            cart_decision_ms: DEFAULT_CART_DECISION_MS,
        }
    }
}

/// `[tls]`: TLS on a node's listeners and on its calls to other nodes, with
/// certificates in PEM files that the node reads again when they change (see
/// `deploy/RUNBOOK.md`, "TLS"). Every path is optional; a group of keys is set
/// whole or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// `tls.internal_ca_path`: the cluster's CA. With `internal_cert_path` and
    /// `internal_key_path`, turns on mutual TLS for the internal listener and
    /// for every call to another node: each side presents its certificate and
    /// requires the other's to chain to this CA. Every node of a cluster sets
    /// the three or none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_ca_path: Option<PathBuf>,
    /// `tls.internal_cert_path`: this node's certificate (then intermediates),
    /// valid for the host of its `node.advertise` address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_cert_path: Option<PathBuf>,
    /// `tls.internal_key_path`: that certificate's private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_key_path: Option<PathBuf>,
    /// `tls.public_cert_path`: a gateway's certificate for HTTPS on
    /// `gateway.public_listen` (the one browsers check: from a public CA, or
    /// the shop's own). With `public_key_path`; gateways only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_cert_path: Option<PathBuf>,
    /// `tls.public_key_path`: that certificate's private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key_path: Option<PathBuf>,
    /// How often the node checks whether its certificate files changed; a
    /// change serves from the next connection on. From
    /// [`TLS_RELOAD_CHECK_MS_LOWEST`] to [`TLS_RELOAD_CHECK_MS_HIGHEST`].
    /// Default [`DEFAULT_TLS_RELOAD_CHECK_MS`].
    pub reload_check_ms: u64,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            internal_ca_path: None,
            internal_cert_path: None,
            internal_key_path: None,
            public_cert_path: None,
            public_key_path: None,
            reload_check_ms: DEFAULT_TLS_RELOAD_CHECK_MS,
        }
    }
}

impl TlsSection {
    /// True when calls between nodes use mutual TLS.
    pub fn internal(&self) -> bool {
        self.internal_ca_path.is_some()
    }

    /// True when a gateway's public listener speaks HTTPS.
    pub fn public(&self) -> bool {
        self.public_cert_path.is_some()
    }

    /// The scheme of this cluster's internal URLs.
    pub fn internal_scheme(&self) -> &'static str {
        if self.internal() {
            "https"
        } else {
            "http"
        }
    }
}
