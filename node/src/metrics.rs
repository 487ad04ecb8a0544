//! Prometheus metrics of a node, served as text at `GET /metrics` on the internal listener.
//!
//! HTTP metrics are labelled by route template (never by raw path, so cardinality stays bounded)
//! and status; Raft's gauges are read from openraft's metrics at scrape time.

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

/// Latency buckets, in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
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
    /// Time to write one archive batch (one transaction).
    pub archive_batch_seconds: Histogram,
    archive_backlog: IntGauge,
    orders_held: IntGauge,
}

impl Metrics {
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
        let archive_batch_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "archive_batch_duration_seconds",
                "Time to write one archive batch",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
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
            Box::new(archive_batch_seconds.clone()),
            Box::new(archive_backlog.clone()),
            Box::new(orders_held.clone()),
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
            archive_batch_seconds,
            archive_backlog,
            orders_held,
        }
    }

    /// The text exposition of every metric, with Raft's gauges and the replicated counters of
    /// `meta` read now.
    pub fn render(
        &self,
        raft: &Raft,
        committed_index: u64,
        applied_index: u64,
        meta: Option<&InventoryMeta>,
    ) -> String {
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

/// Middleware: count and time every request by its route template.
pub async fn track(
    axum::extract::State(metrics): axum::extract::State<std::sync::Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .latency
        .with_label_values(&[&route, &method])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[&route, &method, response.status().as_str()])
        .inc();
    response
}
