//! The operations view: the cluster at a glance and a per-second history of purchases, served as
//! JSON at `GET /v1/ops/cluster` and drawn by the `/ops` page.
//!
//! **Cluster.** The gateway asks every member of the Raft membership it knows (voters and
//! learners, from its own Raft metrics) for `/admin/status`, with the gateway credential and a short
//! timeout ([`PROBE_TIMEOUT`]); a member that does not answer in time is reported down. One probe
//! round serves every viewer for [`PROBE_FRESH`]: concurrent requests wait for the round in
//! flight instead of starting their own, so the probes cost the same for one viewer or a hundred.
//! The page is public, so the answer holds health, never internal text: internal addresses are
//! left out, a member that is down gets a fixed reason, and the archive's last error is given
//! by its stable kind ([`ArchiveErrorKind`]: `database_unavailable`, `timeout`, `conflict`, ...), never by
//! its message, which may name database users, hosts and tables. Operators read the message on
//! the authenticated `GET /admin/status` (`stockctl archive status`).
//!
//! **History.** A sampler task keeps the last [`HISTORY_SECONDS`] seconds in a bounded ring:
//! each second, the confirmed purchases of the whole cluster (the difference of the replicated
//! `orders_placed` counter, read from this gateway's replica) and this gateway's purchase
//! latency (from the Prometheus histogram of the purchase route: the mean, and the 99th
//! percentile interpolated within its buckets). It stops when the node shuts down.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use flashstock_api::{ArchiveErrorKind, ArchiveStatus, ErrorCode, NodeRole, NodeStatus, RaftState};
use flashstock_client::VoterClient;
use prometheus::core::Metric;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::Gateway;
use crate::api_error::ApiError;
use crate::NodeState;

/// How long one status probe may take; below the page's one-second refresh.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
/// How long one round of probes answers every viewer.
pub const PROBE_FRESH: Duration = Duration::from_millis(500);
/// Seconds of history kept: ten minutes.
pub const HISTORY_SECONDS: usize = 600;
/// The route whose latency the history follows, as the metrics middleware labels it.
const PURCHASE_ROUTE: &str = "/v1/products/{id}/purchase";

const _: () = assert!(PROBE_FRESH.as_millis() < PROBE_TIMEOUT.as_millis());

/// The answer of `GET /v1/ops/cluster`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    /// The gateway that answered.
    pub gateway: u64,
    /// When the probes ran, milliseconds since the Unix epoch.
    pub probed_at_ms: u64,
    /// The leader, as the answering members see it (the highest term wins).
    pub leader: Option<u64>,
    /// Every member of the membership, voters first, in id order.
    pub nodes: Vec<NodeHealth>,
    /// The order archive as the leader reports it; absent when no voter reports one.
    pub archive: Option<ArchiveHealth>,
    /// Per-second samples, oldest first (only those after `since`, when asked).
    pub history: Vec<Sample>,
}

/// The order archive in the public view: [`ArchiveStatus`] without its error message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveHealth {
    pub enabled: bool,
    pub active: bool,
    pub cursor: Option<flashstock_api::OrderId>,
    pub backlog: u64,
    pub orders_placed: u64,
    pub orders_held: u64,
    /// The kind of the archiver's last error, if its last attempt failed.
    pub last_error_kind: Option<ArchiveErrorKind>,
    pub last_batch_at_ms: Option<u64>,
}

impl ArchiveHealth {
    pub fn of(status: &ArchiveStatus) -> ArchiveHealth {
        ArchiveHealth {
            enabled: status.enabled,
            active: status.active,
            cursor: status.cursor,
            backlog: status.backlog,
            orders_placed: status.orders_placed,
            orders_held: status.orders_held,
            // An archiver from before the kind existed: the message's presence is all we say.
            last_error_kind: status.last_error_kind.or_else(|| {
                status
                    .last_error
                    .as_ref()
                    .map(|_| ArchiveErrorKind::DatabaseError)
            }),
            last_batch_at_ms: status.last_batch_at_ms,
        }
    }
}

/// One member of the cluster, as its probe found it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeHealth {
    pub id: u64,
    /// Its place in the membership.
    pub membership: Membership,
    /// Whether it answered its status probe in time.
    pub up: bool,
    /// Why it is reported down: not accepting connections, no answer in time, or an error code.
    pub error: Option<String>,
    /// Its configured role, when it answered.
    pub role: Option<NodeRole>,
    /// Its Raft state, when it answered.
    pub state: Option<RaftState>,
    pub term: Option<u64>,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// Entries it is behind the leader's last log index, as the leader reports it.
    pub lag: Option<u64>,
}

/// A member's place in the membership: `voter` or `learner` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    Voter,
    /// A gateway, or a voter being added.
    Learner,
}

impl Membership {
    pub fn as_str(self) -> &'static str {
        match self {
            Membership::Voter => "voter",
            Membership::Learner => "learner",
        }
    }
}

/// One second of history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// The end of the second, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Orders confirmed in the whole cluster during this second.
    pub purchases: u64,
    /// Purchase requests this gateway answered during this second.
    pub requests: u64,
    /// Their mean latency, in milliseconds; absent without requests.
    pub latency_mean_ms: Option<f64>,
    /// Their 99th percentile latency, in milliseconds, interpolated within histogram buckets.
    pub latency_p99_ms: Option<f64>,
}

/// What the operations view keeps between requests.
pub struct Ops {
    probes: VoterClient,
    last_round: tokio::sync::Mutex<Option<(Instant, Arc<Round>)>>,
    history: Arc<Mutex<VecDeque<Sample>>>,
}

/// One round of probes.
struct Round {
    probed_at_ms: u64,
    leader: Option<u64>,
    nodes: Vec<NodeHealth>,
    archive: Option<ArchiveHealth>,
}

impl Ops {
    /// Start the sampler, which runs until `stopping` turns true.
    pub fn start(node: &Arc<NodeState>, stopping: watch::Receiver<bool>) -> Ops {
        let config = &node.config;
        let probes = VoterClient::new(Vec::new(), node.credentials.own_secret(), PROBE_TIMEOUT)
            .with_local_address(config.source_ip())
            .with_tls(node.tls.client());
        let history = Arc::new(Mutex::new(VecDeque::with_capacity(HISTORY_SECONDS)));
        tokio::spawn(sample(node.clone(), history.clone(), stopping));
        Ops {
            probes,
            last_round: tokio::sync::Mutex::new(None),
            history,
        }
    }

    /// The cluster now (at most [`PROBE_FRESH`] old), with the history after `since_ms`.
    pub async fn view(&self, node: &NodeState, since_ms: u64) -> ClusterView {
        let round = self.round(node).await;
        let history = self
            .history
            .lock()
            .expect("the history lock is never poisoned")
            .iter()
            .filter(|sample| sample.at_ms > since_ms)
            .copied()
            .collect();
        ClusterView {
            gateway: node.id,
            probed_at_ms: round.probed_at_ms,
            leader: round.leader,
            nodes: round.nodes.clone(),
            archive: round.archive.clone(),
            history,
        }
    }

    /// The last round of probes if it is fresh, else a new one. Holding the lock while probing
    /// makes concurrent callers share the round.
    async fn round(&self, node: &NodeState) -> Arc<Round> {
        let mut last = self.last_round.lock().await;
        if let Some((at, round)) = last.as_ref() {
            if at.elapsed() < PROBE_FRESH {
                return round.clone();
            }
        }
        let round = Arc::new(self.probe(node).await);
        *last = Some((Instant::now(), round.clone()));
        round
    }

    async fn probe(&self, node: &NodeState) -> Round {
        let members: Vec<(u64, String, bool)> = {
            let metrics = node.group0().raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership();
            let voters: Vec<u64> = membership.voter_ids().collect();
            membership
                .nodes()
                .map(|(id, member)| (*id, member.addr.clone(), voters.contains(id)))
                .collect()
        };
        let probes = members.iter().map(|(_, addr, _)| self.probes.status(addr));
        let answers = futures::future::join_all(probes).await;
        let statuses: Vec<&NodeStatus> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
        let leader = statuses
            .iter()
            .filter(|status| status.state == RaftState::Leader)
            .max_by_key(|status| status.term)
            .copied();
        let mut nodes: Vec<NodeHealth> = members
            .iter()
            .zip(&answers)
            .map(|((id, _, voter), answer)| health(*id, *voter, answer, leader))
            .collect();
        nodes.sort_by_key(|node| (node.membership, node.id));
        Round {
            probed_at_ms: crate::now_ms(),
            leader: leader
                .map(|status| status.id)
                .or_else(|| statuses.iter().find_map(|status| status.leader)),
            nodes,
            archive: leader.and_then(|status| status.archive.as_ref().map(ArchiveHealth::of)),
        }
    }
}

fn health(
    id: u64,
    voter: bool,
    answer: &Result<NodeStatus, flashstock_client::Error>,
    leader: Option<&NodeStatus>,
) -> NodeHealth {
    let membership = if voter {
        Membership::Voter
    } else {
        Membership::Learner
    };
    match answer {
        Ok(status) => NodeHealth {
            id,
            membership,
            up: true,
            error: None,
            role: Some(status.role),
            state: Some(status.state),
            term: Some(status.term),
            last_log_index: status.last_log_index,
            committed_index: status.committed_index,
            applied_index: status.applied_index,
            lag: leader.and_then(|leader| {
                if leader.id == id {
                    Some(0)
                } else {
                    leader
                        .replication
                        .iter()
                        .find(|peer| peer.id == id)
                        .map(|peer| peer.lag)
                }
            }),
        },
        Err(e) => NodeHealth {
            id,
            membership,
            up: false,
            error: Some(down_reason(e)),
            role: None,
            state: None,
            term: None,
            last_log_index: None,
            committed_index: None,
            applied_index: None,
            lag: None,
        },
    }
}

/// Why a probe failed, without the message: it names internal addresses, and the page is public.
fn down_reason(error: &flashstock_client::Error) -> String {
    use flashstock_client::Error;
    match error {
        Error::Api { code, .. } | Error::Refused { code, .. } => match code {
            ErrorCode::Unreachable => "not accepting connections".into(),
            ErrorCode::Unavailable => {
                format!("no answer (waited up to {} ms)", PROBE_TIMEOUT.as_millis())
            }
            code => format!("answered {code}"),
        },
        Error::OutcomeUnknown { .. } => "no answer".into(),
    }
}

#[derive(Deserialize)]
pub struct ViewQuery {
    /// Only history samples after this time (milliseconds since the Unix epoch).
    since: Option<u64>,
}

/// `GET /v1/ops/cluster[?since=MS]`.
pub async fn cluster(
    State(gateway): State<Arc<Gateway>>,
    query: Result<Query<ViewQuery>, QueryRejection>,
) -> Result<Json<ClusterView>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let since = query.since.unwrap_or(0);
    // The document's int64, which a client generated from it can send.
    if since > i64::MAX as u64 {
        return Err(ApiError::invalid(format!(
            "since must be from 0 to {}",
            i64::MAX
        )));
    }
    let view = gateway.ops.view(&gateway.node, since).await;
    Ok(Json(view))
}

/// Cumulative counters of the purchase route's latency histogram at one instant.
struct LatencyTotals {
    count: u64,
    sum_seconds: f64,
    /// `(upper bound in seconds, cumulative count)` per bucket, in bound order.
    buckets: Vec<(f64, u64)>,
}

impl LatencyTotals {
    fn read(node: &NodeState) -> LatencyTotals {
        let metric = node
            .metrics
            .latency
            .with_label_values(&[PURCHASE_ROUTE, "POST"])
            .metric();
        let histogram = metric.get_histogram();
        LatencyTotals {
            count: histogram.get_sample_count(),
            sum_seconds: histogram.get_sample_sum(),
            buckets: histogram
                .get_bucket()
                .iter()
                .map(|bucket| (bucket.upper_bound(), bucket.cumulative_count()))
                .collect(),
        }
    }
}

/// Requests, mean and 99th percentile (milliseconds) between two readings of the histogram.
fn latency_between(
    before: &LatencyTotals,
    after: &LatencyTotals,
) -> (u64, Option<f64>, Option<f64>) {
    let count = after.count.saturating_sub(before.count);
    if count == 0 {
        return (0, None, None);
    }
    let mean = (after.sum_seconds - before.sum_seconds) / count as f64 * 1000.0;
    // The rank of the 99th percentile, then the bucket it falls in, interpolated linearly
    // between the bucket's bounds (as Prometheus' histogram_quantile does).
    let rank = count as f64 * 0.99;
    let mut lower_bound = 0.0;
    let mut below = 0u64;
    let mut p99 = None;
    for ((bound, total_after), (_, total_before)) in after.buckets.iter().zip(&before.buckets) {
        let cumulative = total_after.saturating_sub(*total_before);
        if cumulative as f64 >= rank {
            let in_bucket = (cumulative - below).max(1) as f64;
            let fraction = (rank - below as f64) / in_bucket;
            p99 = Some((lower_bound + (bound - lower_bound) * fraction) * 1000.0);
            break;
        }
        lower_bound = *bound;
        below = cumulative;
    }
    // Beyond the last bucket: the largest bound is all that is known.
    let p99 = p99.or(Some(lower_bound * 1000.0));
    (count, Some(mean), p99)
}

/// Each second, append a [`Sample`] to the ring, until the node stops.
async fn sample(
    node: Arc<NodeState>,
    history: Arc<Mutex<VecDeque<Sample>>>,
    mut stopping: watch::Receiver<bool>,
) {
    // Every group's orders: the shop's rate.
    let orders_placed = |node: &NodeState| {
        node.groups.iter().try_fold(0u64, |placed, group| {
            let meta = group.reader.inventory_meta().ok()?;
            Some(placed + meta.orders_placed)
        })
    };
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut placed_before = orders_placed(&node);
    let mut latency_before = LatencyTotals::read(&node);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopping.wait_for(|stopping| *stopping) => return,
        }
        let placed = orders_placed(&node);
        let latency = LatencyTotals::read(&node);
        let (requests, latency_mean_ms, latency_p99_ms) =
            latency_between(&latency_before, &latency);
        let sample = Sample {
            at_ms: crate::now_ms(),
            purchases: match (placed_before, placed) {
                (Some(before), Some(now)) => now.saturating_sub(before),
                _ => 0,
            },
            requests,
            latency_mean_ms,
            latency_p99_ms,
        };
        placed_before = placed.or(placed_before);
        latency_before = latency;
        let mut history = history.lock().expect("the history lock is never poisoned");
        if history.len() == HISTORY_SECONDS {
            history.pop_front();
        }
        history.push_back(sample);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(buckets: &[(f64, u64)], sum_seconds: f64) -> LatencyTotals {
        LatencyTotals {
            count: buckets.last().map_or(0, |b| b.1),
            sum_seconds,
            buckets: buckets.to_vec(),
        }
    }

    /// The public view keeps the archive's health and drops its error message.
    #[test]
    fn the_public_archive_view_has_no_error_text() {
        let status = ArchiveStatus {
            enabled: true,
            active: true,
            cursor: None,
            backlog: 7,
            orders_placed: 9,
            orders_held: 9,
            last_error: Some(
                "archive database error: FATAL: password authentication failed for user \"archiver\""
                    .into(),
            ),
            last_error_kind: Some(ArchiveErrorKind::DatabaseError),
            last_batch_at_ms: None,
        };
        let public = serde_json::to_string(&ArchiveHealth::of(&status)).unwrap();
        assert!(!public.contains("archiver"), "{public}");
        assert!(!public.contains("password"), "{public}");
        assert!(
            public.contains(r#""last_error_kind":"database_error""#),
            "{public}"
        );
        assert!(public.contains(r#""backlog":7"#), "{public}");
    }

    #[test]
    fn latency_of_a_second_comes_from_the_histogram_difference() {
        let before = totals(&[(0.01, 5), (0.1, 5), (1.0, 5)], 0.02);
        // 100 more requests: 90 under 10 ms, 10 between 10 and 100 ms, 1 s in total.
        let after = totals(&[(0.01, 95), (0.1, 105), (1.0, 105)], 1.02);
        let (requests, mean, p99) = latency_between(&before, &after);
        assert_eq!(requests, 100);
        assert!((mean.unwrap() - 10.0).abs() < 1e-9);
        // Rank 99 is the 9th of the 10 requests in the (10 ms, 100 ms] bucket.
        assert!((p99.unwrap() - 91.0).abs() < 1e-9, "{p99:?}");
        assert_eq!(latency_between(&after, &after), (0, None, None));
    }
}
