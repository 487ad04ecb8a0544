//! The default of every optional key, and the fixed bounds values are checked
//! against. This is the only place either is written down.

// ---- [raft] ----

/// `raft.heartbeat_interval_ms`: how often the leader sends heartbeats.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 100;
/// `raft.election_timeout_min_ms`: lower end of the randomized election timeout.
pub const DEFAULT_ELECTION_TIMEOUT_MIN_MS: u64 = 600;
/// `raft.election_timeout_max_ms`: upper end of the randomized election timeout.
pub const DEFAULT_ELECTION_TIMEOUT_MAX_MS: u64 = 1200;
/// `raft.snapshot_every_logs`: build a snapshot after this many log entries
/// since the last one. A snapshot copies the whole state machine (catalog,
/// unarchived orders, idempotency records), so building one often costs more
/// than keeping the log: with 5000 the leader spent a visible share of its CPU
/// building snapshots under a sustained flash sale.
pub const DEFAULT_SNAPSHOT_EVERY_LOGS: u64 = 100_000;
/// `raft.logs_to_keep_after_snapshot`: log entries kept behind a snapshot so
/// slightly lagging followers can catch up without a snapshot transfer.
pub const DEFAULT_LOGS_TO_KEEP_AFTER_SNAPSHOT: u64 = 1000;
/// `raft.rpc_timeout_ms`: timeout of one Raft RPC between voters.
pub const DEFAULT_RPC_TIMEOUT_MS: u64 = 2000;
/// `raft.snapshot_chunk_timeout_ms`: how long the leader waits for the answer to
/// one chunk of a snapshot it sends. The last chunk is answered only once the
/// member has installed the whole snapshot, which takes seconds for a large
/// state on a busy disk (1.3 s for 134 MB on an idle one); a timeout makes the
/// leader start the whole transfer again, so one too short never lets a member
/// catch up while writes keep coming.
pub const DEFAULT_SNAPSHOT_CHUNK_TIMEOUT_MS: u64 = 30_000;
/// `raft.idempotency_window_ms`: how long a purchase's idempotency record is
/// kept (24 hours).
pub const DEFAULT_IDEMPOTENCY_WINDOW_MS: u64 = 86_400_000;
/// `raft.commit_timeout_ms`: how long a voter waits for a proposed entry to
/// commit and apply before it answers "outcome unknown". Within one forward
/// attempt, so that the gateway hears the voter's own answer.
pub const DEFAULT_COMMIT_TIMEOUT_MS: u64 = 2000;
/// `raft.learner_append_interval_ms`: the least time between two appends a leader sends a
/// learner (a gateway) whose stream is busy. A learner's log counts for no commit, so its
/// appends may wait: entries of a few milliseconds travel together, and the learner appends
/// and applies a few hundred times a second, not once per entry. A gateway's replica is then
/// up to this much older (its `x-staleness-ms` says how old).
pub const DEFAULT_LEARNER_APPEND_INTERVAL_MS: u64 = 5;
/// Largest `raft.learner_append_interval_ms`, as a fraction of `raft.heartbeat_interval_ms`
/// (openraft 0.9 gives one append its heartbeat interval to be answered, the wait included).
pub const LEARNER_APPEND_INTERVAL_HEARTBEAT_DIVISOR: u64 = 4;

// ---- [limits] ----

/// `limits.body_bytes_max`: largest accepted HTTP request body (1 MiB).
pub const DEFAULT_BODY_BYTES_MAX: usize = 1_048_576;
/// `limits.commands_per_entry_max`: most commands one Raft log entry may carry.
pub const DEFAULT_COMMANDS_PER_ENTRY_MAX: usize = 1024;
/// `limits.purchase_quantity_max`: largest quantity one purchase may ask for.
pub const DEFAULT_PURCHASE_QUANTITY_MAX: u32 = 1000;
/// `limits.connections_max`: most concurrent connections on a gateway's public
/// listener.
pub const DEFAULT_CONNECTIONS_MAX: usize = 10_000;
/// `limits.internal_connections_max`: most concurrent connections on a node's
/// internal listener. Its honest clients are few (peers, each gateway's
/// `gateway.forward_connections_max` forwarders, probes, operators' tools).
pub const DEFAULT_INTERNAL_CONNECTIONS_MAX: usize = 4096;
/// `limits.streams_max`: most event streams one gateway holds at once. Every
/// stock change is written to every stream, so streams cost CPU in proportion
/// to the sale; 6000 leaves 4000 of the default connections for requests.
pub const DEFAULT_STREAMS_MAX: usize = 6000;
/// `limits.stream_lifetime_ms`: how long an event stream lasts (ten minutes)
/// before the gateway ends it and the browser reconnects.
pub const DEFAULT_STREAM_LIFETIME_MS: u64 = 600_000;
/// `limits.header_read_timeout_ms`: how long a request head may take to arrive
/// complete once its first byte has. An honest head arrives in one packet.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 5000;
/// `limits.idle_timeout_ms`: how long a connection may wait for the first byte
/// of its next request. Our own HTTP clients drop pooled connections sooner
/// (`flashstock_client::POOL_IDLE_TIMEOUT`), so they never send a request
/// on a connection the server is closing.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 20_000;
/// `limits.idle_timeout_under_pressure_ms`: the idle timeout while a listener
/// holds at least 90% of its connection cap.
pub const DEFAULT_IDLE_TIMEOUT_UNDER_PRESSURE_MS: u64 = 1000;
/// `limits.request_timeout_ms`: the longest one request may take, head to end
/// of answer, event streams excepted; a backstop above every designed wait.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 60_000;
/// `limits.body_read_timeout_ms`: how long a request body may take to arrive
/// before the gateway answers 408.
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 5000;
/// `limits.client_retry_horizon_ms`: the longest a client may keep retrying one
/// idempotency key (one hour) and still get the first outcome back; the
/// idempotency window must outlast it.
pub const DEFAULT_CLIENT_RETRY_HORIZON_MS: u64 = 3_600_000;
/// `limits.client_purchase_rate_per_s`: purchases per second one client may
/// send to one gateway on average. A buyer buys a few times in a sale, and
/// retries with the same key count too; 5 a second is far above that and far
/// below what one machine can send.
pub const DEFAULT_CLIENT_PURCHASE_RATE_PER_S: u32 = 5;
/// `limits.client_purchase_burst_max`: purchases one client may send at once,
/// e.g. a family behind one home router at the start of a sale.
pub const DEFAULT_CLIENT_PURCHASE_BURST_MAX: u32 = 20;
/// `limits.client_view_rate_per_s`: views per second one client may ask of one
/// gateway. A product page costs about five requests (page, style, script,
/// stock, event stream), and views cost about a static response.
pub const DEFAULT_CLIENT_VIEW_RATE_PER_S: u32 = 50;
/// `limits.client_view_burst_max`: views one client may ask at once.
pub const DEFAULT_CLIENT_VIEW_BURST_MAX: u32 = 200;
/// `limits.rate_clients_max`: clients each rate table remembers; about 2 MiB a
/// table.
pub const DEFAULT_RATE_CLIENTS_MAX: usize = 65_536;

// ---- [gateway] ----

/// `gateway.batch_wait_us`: how long a gateway waits for more purchases to
/// fill a batch, only while other batches are in flight; a batch alone (light
/// load) leaves at once with what is queued.
pub const DEFAULT_BATCH_WAIT_US: u64 = 500;
/// `gateway.batch_items_max`: most purchases in one forwarded batch.
pub const DEFAULT_BATCH_ITEMS_MAX: usize = 256;
/// `gateway.queue_max`: pending purchases before the gateway sheds load with 503.
pub const DEFAULT_QUEUE_MAX: usize = 8192;
/// `gateway.queue_per_client_max`: pending purchases of one client in a
/// gateway's queue. An honest client has one or two in flight; 64 leaves room
/// for a small office behind one address while 128 flooders are needed to
/// fill the default queue.
pub const DEFAULT_QUEUE_PER_CLIENT_MAX: usize = 64;
/// `gateway.forward_timeout_ms`: the whole budget of one forwarded batch,
/// every attempt and pause included, before the gateway answers 503 or 504.
pub const DEFAULT_FORWARD_TIMEOUT_MS: u64 = 3000;
/// `gateway.forward_attempt_timeout_ms`: one HTTP exchange of a gateway with a
/// voter (one attempt of a forwarded batch, one read-index call); an attempt
/// is also cut at what is left of `gateway.forward_timeout_ms`.
pub const DEFAULT_FORWARD_ATTEMPT_TIMEOUT_MS: u64 = 2000;
/// `gateway.linearizable_read_timeout_ms`: how long a `consistency=linearizable`
/// read may take to learn the leader's commit index and to apply up to it.
pub const DEFAULT_LINEARIZABLE_READ_TIMEOUT_MS: u64 = 5000;
/// `gateway.ready_leader_silence_ms`: longest time a gateway goes without an
/// append or heartbeat from a leader and still answers ready. Above a leader
/// election (a crash costs about 1.4 s measured, `raft.election_timeout_max_ms`
/// 1.2 s of it), so an ordinary failover does not take every gateway out of
/// rotation at once; far below what a shopper would call stale.
pub const DEFAULT_READY_LEADER_SILENCE_MS: u64 = 5000;
/// `gateway.ready_lag_entries_max`: most log entries a gateway's replica may
/// trail the leader's commit index by and still answer ready. A batch of
/// purchases is one entry; a replica keeping up trails by a handful.
pub const DEFAULT_READY_LAG_ENTRIES_MAX: u64 = 1000;
/// `gateway.page_request_timeout_ms`: how long the shop page waits for one
/// purchase request before it takes the gateway for gone and asks another
/// with the same idempotency key. A live gateway answers a purchase within
/// its `gateway.forward_timeout_ms` (3 s by default: confirmed, refused, or
/// 504 at the end of its budget); twice that leaves room for a queue and a
/// slow phone network, while a buyer whose gateway froze waits 6 s, not the
/// minute of `limits.request_timeout_ms`.
pub const DEFAULT_PAGE_REQUEST_TIMEOUT_MS: u64 = 6000;
/// `gateway.forward_connections_max`: most batches a gateway has in flight to
/// the leader at once (each on its own connection). Fewer slots make bigger
/// batches: with 6000 clients on one machine, 8 slots confirmed purchases at a
/// median of 121 ms against 760 ms with 64 (loadgen/benches/load.rs).
pub const DEFAULT_FORWARD_CONNECTIONS_MAX: usize = 8;

// ---- [archive] ----

/// `archive.pool_size`: connections one voter opens to the archive database.
/// The archiver writes one batch at a time and operators' reports are rare, so
/// a handful is plenty.
pub const DEFAULT_ARCHIVE_POOL_SIZE: usize = 4;
/// `archive.batch_max`: most orders written in one archive transaction.
pub const DEFAULT_ARCHIVE_BATCH_MAX: usize = 1000;
/// `archive.interval_ms`: shortest time between two archive batches.
pub const DEFAULT_ARCHIVE_INTERVAL_MS: u64 = 100;
/// `archive.retention_ms`: how long archived orders stay readable in the state
/// machine (one hour), for order pages and retries that look them up.
pub const DEFAULT_ARCHIVE_RETENTION_MS: u64 = 3_600_000;
/// `archive.timeout_ms`: deadline of one database step.
pub const DEFAULT_ARCHIVE_TIMEOUT_MS: u64 = 10_000;
/// `archive.retry_min_ms`: first wait after a failed archive step.
pub const DEFAULT_ARCHIVE_RETRY_MIN_MS: u64 = 200;
/// `archive.retry_max_ms`: longest wait between two archive attempts.
pub const DEFAULT_ARCHIVE_RETRY_MAX_MS: u64 = 10_000;
/// `tls.reload_check_ms`: certificate files are checked for a change every 10 s.
pub const DEFAULT_TLS_RELOAD_CHECK_MS: u64 = 10_000;
/// Bounds of `tls.reload_check_ms`: from a tenth of a second to an hour.
pub const TLS_RELOAD_CHECK_MS_LOWEST: u64 = 100;
pub const TLS_RELOAD_CHECK_MS_HIGHEST: u64 = 3_600_000;

// ---- [checkout] ----

/// `checkout.hold_ttl_ms`: how long a hold keeps its stock (ten minutes): time
/// for a buyer to pay, short enough that an abandoned cart gives its stock
/// back within the sale.
pub const DEFAULT_HOLD_TTL_MS: u64 = 600_000;
/// `checkout.cart_lines_max`: most lines (distinct products) in one cart or
/// hold.
pub const DEFAULT_CART_LINES_MAX: usize = 20;
/// `checkout.cancel_window_ms`: how long a buyer may cancel an order (thirty
/// minutes).
pub const DEFAULT_CANCEL_WINDOW_MS: u64 = 1_800_000;
/// `checkout.cart_decision_ms`: how long a cart across Raft groups keeps its
/// stock held while its gateway decides it (thirty seconds): far longer than
/// the gateway's forwarding timeouts, short enough that a gateway stopped
/// halfway holds nothing back for long.
pub const DEFAULT_CART_DECISION_MS: u64 = 30_000;

// ---- bounds checked by `Config::validate` ----

/// Shortest `checkout.hold_ttl_ms`: the state machine's
/// `flashstock_api::HOLD_TTL_MS_MIN` (this crate does not depend on the API
/// crate; the node checks at compile time that the two agree).
pub const HOLD_TTL_MS_LOWEST: u64 = 1_000;
/// Longest `checkout.hold_ttl_ms` (one hour): `flashstock_api::HOLD_TTL_MS_MAX`.
pub const HOLD_TTL_MS_HIGHEST: u64 = 3_600_000;
/// Largest `checkout.cart_lines_max`: `flashstock_api::CART_LINES_LIMIT`.
pub const CART_LINES_MAX_HIGHEST: usize = 100;

/// Most Raft groups a cluster may have (`cluster.groups`): an order id names
/// its group in 6 bits (`flashstock_api::placement::GROUPS_MAX`).
pub const GROUPS_MAX: u16 = 64;
/// Largest `limits.commands_per_entry_max` of a cluster of several groups:
/// an order id names its command's place in the entry in 10 bits
/// (`flashstock_api::placement::GROUP_SLOTS`).
pub const GROUP_COMMANDS_PER_ENTRY_MAX: usize = 1024;

/// Most voters a cluster may have. Odd, and small: every write waits for a
/// majority of them.
pub const VOTERS_MAX: usize = 7;
/// Most connections the whole cluster may open to one database (the problem's
/// C). Every voter may hold its pool at once (an old leader that has not yet
/// learnt it was deposed still holds its own), so the bound is
/// `VOTERS_MAX x archive.pool_size`.
pub const ARCHIVE_CLUSTER_CONNECTIONS_MAX: usize = 300;
/// Largest `archive.pool_size`.
pub const ARCHIVE_POOL_SIZE_HIGHEST: usize = ARCHIVE_CLUSTER_CONNECTIONS_MAX / VOTERS_MAX;
/// Largest `archive.batch_max`.
pub const ARCHIVE_BATCH_MAX_HIGHEST: usize = 10_000;

/// Most entries of `gateway.public_origins`: a cluster has a handful of
/// gateways, and every origin is written into each page's
/// Content-Security-Policy.
pub const PUBLIC_ORIGINS_MAX: usize = 16;
/// Longest `gateway.page_request_timeout_ms`: a buyer should not wait longer
/// than a minute for a frozen gateway before another is asked.
pub const PAGE_REQUEST_TIMEOUT_MS_HIGHEST: u64 = 60_000;
/// Fewest characters in a secret of `cluster.voter_secrets`, `cluster.gateway_secrets`,
/// `cluster.operator_secrets`, and in `cluster.admin_token`.
pub const SECRET_CHARS_MIN: usize = 16;
/// Most entries in one role's credential list: the current one and the one being rolled over,
/// with room for a second rollover before the first is finished. Each call is checked against
/// every entry of every list, so the lists stay short.
pub const CREDENTIALS_PER_ROLE_MAX: usize = 4;
/// `raft.election_timeout_min_ms` must be at least this many heartbeat intervals.
pub const ELECTION_TO_HEARTBEAT_RATIO_MIN: u64 = 3;
/// Shortest `raft.idempotency_window_ms`.
pub const IDEMPOTENCY_WINDOW_MS_MIN: u64 = 1000;
/// Smallest `limits.body_bytes_max` (1 KiB).
pub const BODY_BYTES_MAX_LOWEST: usize = 1024;
/// Largest `limits.body_bytes_max` (64 MiB).
pub const BODY_BYTES_MAX_HIGHEST: usize = 64 * 1024 * 1024;
/// Largest `limits.commands_per_entry_max`.
pub const COMMANDS_PER_ENTRY_MAX_HIGHEST: usize = 65_535;
/// Most entries in `limits.trusted_sources`: each request is checked against
/// every entry.
pub const TRUSTED_SOURCES_MAX: usize = 256;
/// Largest `limits.client_purchase_rate_per_s` and `limits.client_view_rate_per_s`.
pub const CLIENT_RATE_PER_S_HIGHEST: u32 = 1_000_000;
/// Largest `limits.client_purchase_burst_max` and `limits.client_view_burst_max`.
pub const CLIENT_BURST_MAX_HIGHEST: u32 = 1_000_000;
/// Smallest `limits.rate_clients_max`.
pub const RATE_CLIENTS_MAX_LOWEST: usize = 1024;
/// Largest `limits.rate_clients_max` (about 128 MiB a table).
pub const RATE_CLIENTS_MAX_HIGHEST: usize = 4_194_304;
/// Shortest `limits.stream_lifetime_ms`: a stream must outlive the reconnect
/// it causes.
pub const STREAM_LIFETIME_MS_LOWEST: u64 = 1000;
/// The longest an internal admin call waits by design, in milliseconds: adding
/// a learner checks that the membership is settled (up to 4 s), waits for the
/// change (up to 10 s) and for the learner to catch up (up to 30 s). Shortest
/// `limits.request_timeout_ms`; the node checks its own waits against it.
pub const ADMIN_CALL_WAIT_MS_MAX: u64 = 50_000;
/// Largest integer TOML can hold; bigger values could not be written back.
pub const TOML_INTEGER_MAX: u64 = i64::MAX as u64;

// The defaults must satisfy the rules they are checked against.
const _: () = assert!(DEFAULT_HEARTBEAT_INTERVAL_MS >= 1);
const _: () = assert!(
    DEFAULT_ELECTION_TIMEOUT_MIN_MS
        >= ELECTION_TO_HEARTBEAT_RATIO_MIN * DEFAULT_HEARTBEAT_INTERVAL_MS
);
const _: () = assert!(DEFAULT_ELECTION_TIMEOUT_MAX_MS > DEFAULT_ELECTION_TIMEOUT_MIN_MS);
const _: () = assert!(DEFAULT_SNAPSHOT_EVERY_LOGS >= 1);
const _: () = assert!(DEFAULT_RPC_TIMEOUT_MS >= 1);
const _: () = assert!(DEFAULT_SNAPSHOT_CHUNK_TIMEOUT_MS >= DEFAULT_RPC_TIMEOUT_MS);
const _: () = assert!(
    DEFAULT_LEARNER_APPEND_INTERVAL_MS
        <= DEFAULT_HEARTBEAT_INTERVAL_MS / LEARNER_APPEND_INTERVAL_HEARTBEAT_DIVISOR
);
// A member's server answers a chunk within its request backstop.
const _: () = assert!(DEFAULT_SNAPSHOT_CHUNK_TIMEOUT_MS < DEFAULT_REQUEST_TIMEOUT_MS);
const _: () = assert!(DEFAULT_IDEMPOTENCY_WINDOW_MS >= IDEMPOTENCY_WINDOW_MS_MIN);
const _: () = assert!(
    DEFAULT_BODY_BYTES_MAX >= BODY_BYTES_MAX_LOWEST
        && DEFAULT_BODY_BYTES_MAX <= BODY_BYTES_MAX_HIGHEST
);
const _: () = assert!(
    DEFAULT_COMMANDS_PER_ENTRY_MAX >= 1
        && DEFAULT_COMMANDS_PER_ENTRY_MAX <= COMMANDS_PER_ENTRY_MAX_HIGHEST
);
const _: () = assert!(DEFAULT_PURCHASE_QUANTITY_MAX >= 1);
const _: () = assert!(DEFAULT_CONNECTIONS_MAX >= 1);
const _: () = assert!(DEFAULT_INTERNAL_CONNECTIONS_MAX >= 1);
const _: () = assert!(DEFAULT_STREAMS_MAX < DEFAULT_CONNECTIONS_MAX);
const _: () = assert!(DEFAULT_STREAM_LIFETIME_MS >= STREAM_LIFETIME_MS_LOWEST);
const _: () = assert!(DEFAULT_HEADER_READ_TIMEOUT_MS >= 1);
const _: () = assert!(
    DEFAULT_IDLE_TIMEOUT_UNDER_PRESSURE_MS >= 1
        && DEFAULT_IDLE_TIMEOUT_UNDER_PRESSURE_MS <= DEFAULT_IDLE_TIMEOUT_MS
);
// The request backstop is above every wait a handler does by design.
const _: () = assert!(DEFAULT_REQUEST_TIMEOUT_MS >= ADMIN_CALL_WAIT_MS_MAX);
const _: () = assert!(
    DEFAULT_REQUEST_TIMEOUT_MS
        > DEFAULT_BODY_READ_TIMEOUT_MS
            + if DEFAULT_FORWARD_TIMEOUT_MS > DEFAULT_LINEARIZABLE_READ_TIMEOUT_MS {
                DEFAULT_FORWARD_TIMEOUT_MS
            } else {
                DEFAULT_LINEARIZABLE_READ_TIMEOUT_MS
            }
);
const _: () = assert!(DEFAULT_REQUEST_TIMEOUT_MS > DEFAULT_ARCHIVE_TIMEOUT_MS);
const _: () = assert!(DEFAULT_BODY_READ_TIMEOUT_MS >= 1);
const _: () = assert!(DEFAULT_LINEARIZABLE_READ_TIMEOUT_MS >= 1);
const _: () = assert!(DEFAULT_READY_LEADER_SILENCE_MS > DEFAULT_ELECTION_TIMEOUT_MAX_MS);
const _: () = assert!(DEFAULT_READY_LAG_ENTRIES_MAX >= 1);
// The timeout chain `Config::validate` checks: a voter answers within one
// attempt; attempts fit in the forward budget; a client retries a key longer
// than one forward; and the key is remembered longer than any client retries
// it, or a late retry would buy twice.
const _: () = assert!(
    DEFAULT_COMMIT_TIMEOUT_MS >= 1
        && DEFAULT_COMMIT_TIMEOUT_MS <= DEFAULT_FORWARD_ATTEMPT_TIMEOUT_MS
);
const _: () = assert!(DEFAULT_FORWARD_ATTEMPT_TIMEOUT_MS < DEFAULT_FORWARD_TIMEOUT_MS);
const _: () = assert!(DEFAULT_FORWARD_TIMEOUT_MS < DEFAULT_CLIENT_RETRY_HORIZON_MS);
const _: () = assert!(DEFAULT_CLIENT_RETRY_HORIZON_MS < DEFAULT_IDEMPOTENCY_WINDOW_MS);
const _: () = assert!(DEFAULT_BATCH_ITEMS_MAX >= 1);
const _: () = assert!(DEFAULT_BATCH_ITEMS_MAX <= DEFAULT_COMMANDS_PER_ENTRY_MAX);
const _: () = assert!(DEFAULT_QUEUE_MAX >= DEFAULT_BATCH_ITEMS_MAX);
const _: () = assert!(DEFAULT_FORWARD_TIMEOUT_MS >= 1);
const _: () = assert!(DEFAULT_FORWARD_CONNECTIONS_MAX >= 1);
const _: () = assert!(
    DEFAULT_ARCHIVE_POOL_SIZE >= 1 && DEFAULT_ARCHIVE_POOL_SIZE <= ARCHIVE_POOL_SIZE_HIGHEST
);
const _: () = assert!(
    DEFAULT_ARCHIVE_BATCH_MAX >= 1 && DEFAULT_ARCHIVE_BATCH_MAX <= ARCHIVE_BATCH_MAX_HIGHEST
);
const _: () = assert!(ARCHIVE_POOL_SIZE_HIGHEST * VOTERS_MAX <= ARCHIVE_CLUSTER_CONNECTIONS_MAX);
const _: () = assert!(DEFAULT_ARCHIVE_TIMEOUT_MS >= 1);
const _: () = assert!(
    DEFAULT_ARCHIVE_RETRY_MIN_MS >= 1
        && DEFAULT_ARCHIVE_RETRY_MAX_MS >= DEFAULT_ARCHIVE_RETRY_MIN_MS
);
const _: () = assert!(
    DEFAULT_CLIENT_PURCHASE_RATE_PER_S >= 1
        && DEFAULT_CLIENT_PURCHASE_RATE_PER_S <= CLIENT_RATE_PER_S_HIGHEST
);
const _: () = assert!(
    DEFAULT_CLIENT_VIEW_RATE_PER_S >= 1
        && DEFAULT_CLIENT_VIEW_RATE_PER_S <= CLIENT_RATE_PER_S_HIGHEST
);
const _: () = assert!(
    DEFAULT_CLIENT_PURCHASE_BURST_MAX >= 1
        && DEFAULT_CLIENT_PURCHASE_BURST_MAX <= CLIENT_BURST_MAX_HIGHEST
);
const _: () = assert!(
    DEFAULT_CLIENT_VIEW_BURST_MAX >= 1 && DEFAULT_CLIENT_VIEW_BURST_MAX <= CLIENT_BURST_MAX_HIGHEST
);
const _: () = assert!(
    DEFAULT_RATE_CLIENTS_MAX >= RATE_CLIENTS_MAX_LOWEST
        && DEFAULT_RATE_CLIENTS_MAX <= RATE_CLIENTS_MAX_HIGHEST
);
// One client's share of the queue is a share: several clients fit in it.
const _: () =
    assert!(DEFAULT_QUEUE_PER_CLIENT_MAX >= 1 && DEFAULT_QUEUE_PER_CLIENT_MAX < DEFAULT_QUEUE_MAX);
const _: () = assert!(
    DEFAULT_HOLD_TTL_MS >= HOLD_TTL_MS_LOWEST && DEFAULT_HOLD_TTL_MS <= HOLD_TTL_MS_HIGHEST
);
const _: () =
    assert!(DEFAULT_CART_LINES_MAX >= 1 && DEFAULT_CART_LINES_MAX <= CART_LINES_MAX_HIGHEST);
const _: () = assert!(DEFAULT_CANCEL_WINDOW_MS >= 1);
