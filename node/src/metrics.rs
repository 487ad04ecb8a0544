//! Prometheus metrics of a node, served as text at `GET /metrics` on the internal listener.
//!
//! Every label value comes from a fixed set, whatever a client sends, so that no request can
//! create series: HTTP metrics are labelled by route template (`unmatched` for any other path),
//! method (the [`KNOWN_METHODS`], else `other`) and status; connection metrics by listener and
//! close reason. Raft's gauges are read from openraft's metrics at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use raft_store::inventory::InventoryMeta;
use raft_store::Raft;

/// Log lines this process could not write (a full disk, a closed pipe): counted here by the log
/// writer, which drops them rather than stop the node, and served as `log_lines_lost_total`.
pub static LOG_LINES_LOST: AtomicU64 = AtomicU64::new(0);

/// Latency buckets, in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Buckets of the purchase path's stages, in seconds: 25 µs to 1.6 s, doubling.
const STAGE_BUCKETS: &[f64] = &[
    0.000025, 0.00005, 0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256,
    0.0512, 0.1024, 0.2048, 0.4096, 0.8192, 1.6384,
];

/// A stage of a write's path through the cluster, timed by [`Metrics::stage`]: the breakdown of
/// where a purchase's time goes (docs/BENCHMARKS.md, "The purchase path, stage by stage").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Gateway: a command waiting in the forward queue until a batch takes it.
    GatewayQueue,
    /// Gateway: a batch sent to the leader until its definite answer (retries included).
    GatewayForward,
    /// Leader: an entry proposed until applied here (append, replication, commit, apply).
    LeaderPropose,
    /// Leader: an append RPC with entries to one follower or learner, until its answer.
    AppendRpc,
    /// Follower or learner: an append RPC with entries handled (its log write and fsync).
    AppendHandler,
    /// Every node: the log write and fsync of one append.
    LogAppend,
    /// Every node: applying a run of committed entries to the state machine.
    Apply,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::GatewayQueue,
        Stage::GatewayForward,
        Stage::LeaderPropose,
        Stage::AppendRpc,
        Stage::AppendHandler,
        Stage::LogAppend,
        Stage::Apply,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::GatewayQueue => "gateway_queue",
            Stage::GatewayForward => "gateway_forward",
            Stage::LeaderPropose => "leader_propose",
            Stage::AppendRpc => "append_rpc",
            Stage::AppendHandler => "append_handler",
            Stage::LogAppend => "log_append",
            Stage::Apply => "apply",
        }
    }
}

/// Batch size buckets, in commands.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub batch_size: Histogram,
    pub queued: IntGauge,
    term: IntGauge,
    last_log_index: IntGauge,
    committed_index: IntGauge,
    applied_index: IntGauge,
    replication_lag: IntGaugeVec,
    /// Orders this node's archiver wrote to the archive database.
    pub archive_orders: IntCounter,
    /// Failed archive steps on this node.
    pub archive_errors: IntCounter,
    /// Archive steps halted by a row of the archive that differs from the order with its id.
    pub archive_conflicts: IntCounter,
    /// Elections this voter started after being deposed with no leader in sight
    /// ([`crate::handoff::reclaim_when_deposed`]).
    pub reclaims: IntCounter,
    /// Elections this voter started because it refused a candidate with a shorter log once its
    /// leader had gone silent ([`crate::handoff::stand_when_leader_silent`]).
    pub longer_log_stands: IntCounter,
    /// Those of [`Self::longer_log_stands`] that this voter won at the term it stood at.
    pub longer_log_stands_won: IntCounter,
    /// Elections this voter started because no leader was heard from past the lease
    /// ([`crate::handoff::stand_when_leader_silent`]).
    pub leaderless_stands: IntCounter,
    /// Those of [`Self::leaderless_stands`] that this voter won at the term it stood at.
    pub leaderless_stands_won: IntCounter,
    /// Stands this voter did not start because a majority of the voters still heard from a
    /// leader, or did not answer ([`crate::handoff::pre_vote`]).
    pub pre_votes_refused: IntCounter,
    /// Groups this voter handed to their preferred voter ([`crate::leader_spread`]).
    pub leader_spread_moves: IntCounter,
    log_lines_lost: IntCounter,
    /// Time to write one archive batch (one transaction).
    pub archive_batch_seconds: Histogram,
    /// Time spent in each [`Stage`] of the write path, indexed by the stage.
    stages: [Histogram; Stage::ALL.len()],
    archive_backlog: IntGauge,
    orders_held: IntGauge,
    memtable_bytes: IntGauge,
    /// Connections open now, by listener (`public`, `internal`).
    pub connections_open: IntGaugeVec,
    /// Connections the server closed, by listener and reason (idle, header or request timeout).
    pub connections_closed: IntCounterVec,
    /// Event streams open now on this gateway.
    pub streams_open: IntGauge,
    /// Event streams refused because `limits.streams_max` were open.
    pub streams_refused: IntCounter,
}

/// The methods that get their own label value; any other is counted as `other`.
pub const KNOWN_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// The `method` label of a request: one of [`KNOWN_METHODS`], else `other`.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|known| **known == method.as_str())
        .copied()
        .unwrap_or("other")
}

impl Metrics {
    /// Count `elapsed` in `stage`.
    pub fn stage(&self, stage: Stage, elapsed: std::time::Duration) {
        self.stages[stage as usize].observe(elapsed.as_secs_f64());
    }

    pub fn new(node_id: u64) -> Metrics {
        let registry = Registry::new_custom(
            Some("flashstock".into()),
            Some([("node".to_string(), node_id.to_string())].into()),
        )
        .expect("valid registry labels");
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )
        .expect("valid metric");
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("gateway_batch_commands", "Commands per forwarded batch")
                .buckets(BATCH_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let queued = IntGauge::new("gateway_queued_commands", "Commands waiting for a batch")
            .expect("valid metric");
        let term = IntGauge::new("raft_term", "Current Raft term").expect("valid metric");
        let last_log_index =
            IntGauge::new("raft_last_log_index", "Last log index").expect("valid metric");
        let committed_index =
            IntGauge::new("raft_committed_index", "Last log index known committed")
                .expect("valid metric");
        let applied_index =
            IntGauge::new("raft_applied_index", "Last applied log index").expect("valid metric");
        let replication_lag = IntGaugeVec::new(
            Opts::new(
                "raft_replication_lag_entries",
                "On the leader: entries each peer is behind the leader's last log index",
            ),
            &["peer"],
        )
        .expect("valid metric");
        let archive_orders = IntCounter::new(
            "archive_orders_written_total",
            "Orders this node's archiver wrote to the archive database",
        )
        .expect("valid metric");
        let archive_errors =
            IntCounter::new("archive_errors_total", "Failed archive steps on this node")
                .expect("valid metric");
        let archive_conflicts = IntCounter::new(
            "archive_conflicts_total",
            "Archive steps halted because the archive holds a different row with an order's id",
        )
        .expect("valid metric");
        let reclaims = IntCounter::new(
            "raft_reclaims_total",
            "Elections started after this voter was deposed by a higher term with no leader in sight",
        )
        .expect("valid metric");
        let longer_log_stands = IntCounter::new(
            "raft_longer_log_stands_total",
            "Elections started because this voter refused a candidate with a shorter log while its leader was silent",
        )
        .expect("valid metric");
        let longer_log_stands_won = IntCounter::new(
            "raft_longer_log_stands_won_total",
            "Elections started for the longer log that this voter won at the term it stood at",
        )
        .expect("valid metric");
        let leaderless_stands = IntCounter::new(
            "raft_leaderless_stands_total",
            "Elections started because this voter heard from no leader past the lease",
        )
        .expect("valid metric");
        let leaderless_stands_won = IntCounter::new(
            "raft_leaderless_stands_won_total",
            "Elections started for want of a leader that this voter won at the term it stood at",
        )
        .expect("valid metric");
        let pre_votes_refused = IntCounter::new(
            "raft_pre_votes_refused_total",
            "Stands not started because a majority of the voters still heard from a leader",
        )
        .expect("valid metric");
        let leader_spread_moves = IntCounter::new(
            "raft_leader_spread_moves_total",
            "Raft groups this voter handed to their preferred voter, to spread leaders",
        )
        .expect("valid metric");
        let log_lines_lost = IntCounter::new(
            "log_lines_lost_total",
            "Log lines this node could not write (disk full, pipe closed) and dropped",
        )
        .expect("valid metric");
        let archive_batch_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "archive_batch_duration_seconds",
                "Time to write one archive batch",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let stages = HistogramVec::new(
            HistogramOpts::new(
                "stage_duration_seconds",
                "Time spent in each stage of the write path",
            )
            .buckets(STAGE_BUCKETS.to_vec()),
            &["stage"],
        )
        .expect("valid metric");
        let stage_histograms = Stage::ALL.map(|stage| stages.with_label_values(&[stage.as_str()]));
        let archive_backlog = IntGauge::new(
            "archive_backlog_orders",
            "Confirmed orders not in the archive yet (replicated count)",
        )
        .expect("valid metric");
        let orders_held = IntGauge::new(
            "state_orders_held",
            "Orders the state machine holds: the archive backlog and archived orders within the retention",
        )
        .expect("valid metric");
        let memtable_bytes = IntGauge::new(
            "store_memtable_bytes",
            format!(
                "Bytes of RocksDB memtables this node's store holds, every group (a gateway's at \
                 most {} MiB)",
                raft_store::LEARNER_MEMTABLE_BYTES_MAX >> 20
            ),
        )
        .expect("valid metric");
        let connections_open = IntGaugeVec::new(
            Opts::new(
                "http_connections_open",
                "HTTP connections open now, by listener",
            ),
            &["listener"],
        )
        .expect("valid metric");
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "http_connections_closed_total",
                "HTTP connections the server closed, by listener and reason",
            ),
            &["listener", "reason"],
        )
        .expect("valid metric");
        let streams_open =
            IntGauge::new("gateway_streams_open", "Event streams open now").expect("valid metric");
        let streams_refused = IntCounter::new(
            "gateway_streams_refused_total",
            "Event streams refused because limits.streams_max were open",
        )
        .expect("valid metric");
        for listener in [
            crate::server::Listener::Public,
            crate::server::Listener::Internal,
        ] {
            connections_open.with_label_values(&[listener.as_str()]);
            for reason in crate::server::CloseReason::ALL {
                connections_closed.with_label_values(&[listener.as_str(), reason.as_str()]);
            }
        }
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(batch_size.clone()),
            Box::new(queued.clone()),
            Box::new(term.clone()),
            Box::new(last_log_index.clone()),
            Box::new(committed_index.clone()),
            Box::new(applied_index.clone()),
            Box::new(replication_lag.clone()),
            Box::new(archive_orders.clone()),
            Box::new(archive_errors.clone()),
            Box::new(archive_conflicts.clone()),
            Box::new(reclaims.clone()),
            Box::new(longer_log_stands.clone()),
            Box::new(longer_log_stands_won.clone()),
            Box::new(leaderless_stands.clone()),
            Box::new(leaderless_stands_won.clone()),
            Box::new(pre_votes_refused.clone()),
            Box::new(leader_spread_moves.clone()),
            Box::new(log_lines_lost.clone()),
            Box::new(archive_batch_seconds.clone()),
            Box::new(stages.clone()),
            Box::new(archive_backlog.clone()),
            Box::new(orders_held.clone()),
            Box::new(memtable_bytes.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_closed.clone()),
            Box::new(streams_open.clone()),
            Box::new(streams_refused.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            latency,
            batch_size,
            queued,
            term,
            last_log_index,
            committed_index,
            applied_index,
            replication_lag,
            archive_orders,
            archive_errors,
            archive_conflicts,
            reclaims,
            longer_log_stands,
            longer_log_stands_won,
            leaderless_stands,
            leaderless_stands_won,
            pre_votes_refused,
            leader_spread_moves,
            log_lines_lost,
            archive_batch_seconds,
            stages: stage_histograms,
            archive_backlog,
            orders_held,
            memtable_bytes,
            connections_open,
            connections_closed,
            streams_open,
            streams_refused,
        }
    }

    /// The text exposition of every metric, with Raft's gauges, the replicated counters of
    /// `meta` and the store's `memtable_bytes` read now.
    pub fn render(
        &self,
        raft: &Raft,
        committed_index: u64,
        applied_index: u64,
        meta: Option<&InventoryMeta>,
        memtable_bytes: u64,
    ) -> String {
        self.memtable_bytes.set(memtable_bytes as i64);
        let lost = LOG_LINES_LOST.load(Ordering::Relaxed);
        self.log_lines_lost
            .inc_by(lost.saturating_sub(self.log_lines_lost.get()));
        if let Some(meta) = meta {
            self.archive_backlog.set(meta.archive_backlog() as i64);
            self.orders_held.set(meta.orders_held() as i64);
        }
        let metrics = raft.metrics().borrow().clone();
        self.term.set(metrics.current_term as i64);
        self.committed_index.set(committed_index as i64);
        self.last_log_index
            .set(metrics.last_log_index.unwrap_or(0) as i64);
        self.applied_index.set(applied_index as i64);
        self.replication_lag.reset();
        let last = metrics.last_log_index.unwrap_or(0);
        for (peer, matched) in metrics.replication.iter().flatten() {
            let matched = matched.map_or(0, |id| id.index);
            self.replication_lag
                .with_label_values(&[&peer.to_string()])
                .set(last.saturating_sub(matched) as i64);
        }
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("text encoding never fails");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}

/// Middleware: count and time every request by its route template and method, both from fixed
/// sets (a route template is one the router was built with, never the raw path).
pub async fn track(
    axum::extract::State(metrics): axum::extract::State<std::sync::Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let answer = Answer::begin(&request);
    let response = next.run(request).await;
    answer.end(&metrics, &response);
    response
}

/// One request being answered, as [`track`] counts it: its route template, its method, and when
/// it began. For a middleware that does more than count.
pub struct Answer {
    route: Option<MatchedPath>,
    method: &'static str,
    started: Instant,
}

impl Answer {
    pub fn begin(request: &Request) -> Answer {
        Answer {
            // A matched path is a shared string: cloning it allocates nothing.
            route: request.extensions().get::<MatchedPath>().cloned(),
            method: method_label(request.method()),
            started: Instant::now(),
        }
    }

    /// Count and time `response`.
    pub fn end(self, metrics: &Metrics, response: &Response) {
        let route = self.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        metrics
            .latency
            .with_label_values(&[route, self.method])
            .observe(self.started.elapsed().as_secs_f64());
        metrics
            .requests
            .with_label_values(&[route, self.method, response.status().as_str()])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Method;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    fn series(metrics: &Metrics) -> usize {
        metrics
            .registry
            .gather()
            .iter()
            .map(|family| family.get_metric().len())
            .sum()
    }

    /// Random methods and paths, before any authentication, add no series: past the first
    /// request of each (route, known method, status), the count stays put.
    #[tokio::test]
    async fn random_methods_and_paths_add_no_series() {
        let metrics = Arc::new(Metrics::new(1));
        let router = Router::new()
            .route("/v1/products/{id}", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(metrics.clone(), track));
        let send = |method: &str, path: String| {
            let request = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).expect("a valid token"))
                .uri(path)
                .body(Body::empty())
                .expect("a valid request");
            router.clone().oneshot(request)
        };
        // Warm up every series the random requests below can reach.
        for method in ["GET", "POST", "BREW"] {
            send(method, "/v1/products/a".into()).await.unwrap();
            send(method, "/nowhere".into()).await.unwrap();
        }
        let before = series(&metrics);
        // A small deterministic generator: random-looking, yet the same on every run.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..500 {
            let method = format!("M{:X}", next());
            let path = format!("/{:x}/{i}", next());
            send(&method, path).await.unwrap();
            send(&method, format!("/v1/products/{:x}", next()))
                .await
                .unwrap();
        }
        assert_eq!(series(&metrics), before, "random requests added series");
        let text = String::from_utf8({
            let mut out = Vec::new();
            TextEncoder::new()
                .encode(&metrics.registry.gather(), &mut out)
                .unwrap();
            out
        })
        .unwrap();
        assert!(!text.contains("BREW") && !text.contains("M1"), "{text}");
        assert!(text.contains(r#"method="other""#), "{text}");
    }
}
