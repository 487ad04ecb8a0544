//! Where a write's time goes: every node's stage histograms (`flashstock_stage_duration_seconds`
//! on `GET /metrics`) read before and after a scenario, and the difference summed by role.
//!
//! The stages are the node's own (`node::metrics::Stage`): the gateway's queue and forward, the
//! leader's propose and append RPCs, a follower's or learner's append handling, and every node's
//! log append (write and fsync) and apply. Means are exact (sum over count); percentiles are the
//! upper bound of the histogram bucket they fall in (buckets double from 25 µs), so they are
//! coarse: read them as "at most".

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_config::Role;
use flashstock_deploy::local::LocalCluster;
use serde::Serialize;

/// The metric every stage is a label of.
const METRIC: &str = "flashstock_stage_duration_seconds";

/// One stage's histogram: cumulative counts by upper bound (seconds), the sum and the count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageHistogram {
    pub buckets: Vec<(f64, u64)>,
    pub sum_s: f64,
    pub count: u64,
}

impl StageHistogram {
    /// `self - before`, bucket by bucket (the same buckets: the same binary).
    fn minus(&self, before: &StageHistogram) -> StageHistogram {
        let buckets = self
            .buckets
            .iter()
            .map(|&(le, n)| {
                let was = before
                    .buckets
                    .iter()
                    .find(|(b, _)| *b == le)
                    .map_or(0, |(_, n)| *n);
                (le, n.saturating_sub(was))
            })
            .collect();
        StageHistogram {
            buckets,
            sum_s: (self.sum_s - before.sum_s).max(0.0),
            count: self.count.saturating_sub(before.count),
        }
    }

    fn add(&mut self, other: &StageHistogram) {
        for &(le, n) in &other.buckets {
            match self.buckets.iter_mut().find(|(b, _)| *b == le) {
                Some((_, total)) => *total += n,
                None => self.buckets.push((le, n)),
            }
        }
        self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        self.sum_s += other.sum_s;
        self.count += other.count;
    }

    /// The upper bound of the bucket holding quantile `q`, seconds.
    fn quantile_bound(&self, q: f64) -> Option<f64> {
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        self.buckets
            .iter()
            .find(|(_, n)| *n >= rank)
            .map(|(le, _)| *le)
    }
}

/// Every stage of one node: `stage label → histogram`.
pub type NodeStages = BTreeMap<String, StageHistogram>;

/// Read the stage histograms out of a Prometheus text exposition.
pub fn parse(text: &str) -> NodeStages {
    let mut stages: NodeStages = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(METRIC) else {
            continue;
        };
        let Some((series, value)) = rest.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let Some(stage) = label(series, "stage") else {
            continue;
        };
        let histogram = stages.entry(stage.to_owned()).or_default();
        if series.starts_with("_bucket") {
            let le = match label(series, "le") {
                Some("+Inf") => f64::INFINITY,
                Some(le) => match le.parse() {
                    Ok(le) => le,
                    Err(_) => continue,
                },
                None => continue,
            };
            histogram.buckets.push((le, value as u64));
        } else if series.starts_with("_sum") {
            histogram.sum_s = value;
        } else if series.starts_with("_count") {
            histogram.count = value as u64;
        }
    }
    for histogram in stages.values_mut() {
        histogram.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    stages
}

/// The value of `name` in a series' `{a="x",b="y"}`.
fn label<'a>(series: &'a str, name: &str) -> Option<&'a str> {
    let start = series.find(&format!("{name}=\""))? + name.len() + 2;
    let end = series[start..].find('"')? + start;
    Some(&series[start..end])
}

/// Every running node's stages, by node id. A node that does not answer is left out.
pub async fn scrape(cluster: &LocalCluster) -> BTreeMap<u64, (Role, NodeStages)> {
    let tls = cluster.operator_tls();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let http = flashstock_client::http_builder(Duration::from_secs(2), None, tls.as_ref())
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client builds");
    let mut all = BTreeMap::new();
    for node in cluster.nodes.values() {
        if !node.is_running() {
            continue;
        }
        let url = format!("{scheme}://{}/metrics", cluster.addr(node.id));
        let Ok(response) = http.get(url).send().await else {
            continue;
        };
        let Ok(text) = response.text().await else {
            continue;
        };
        all.insert(node.id, (node.role, parse(&text)));
    }
    all
}

/// One stage on one kind of node, over a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct StageRow {
    pub stage: String,
    /// `gateways` or `voters`: the nodes of that role, summed.
    pub on: String,
    pub count: u64,
    pub mean_us: f64,
    /// Upper bounds of the buckets holding the median and the 99th percentile.
    pub p50_at_most_us: Option<f64>,
    pub p99_at_most_us: Option<f64>,
}

/// What happened between two scrapes, summed by role; stages with no observation left out.
pub fn between(
    before: &BTreeMap<u64, (Role, NodeStages)>,
    after: &BTreeMap<u64, (Role, NodeStages)>,
) -> Vec<StageRow> {
    let mut summed: BTreeMap<(usize, &'static str), (String, StageHistogram)> = BTreeMap::new();
    for (id, (role, stages)) in after {
        let on = match role {
            Role::Gateway => "gateways",
            Role::Voter => "voters",
        };
        for (stage, histogram) in stages {
            let was = before
                .get(id)
                .and_then(|(_, stages)| stages.get(stage))
                .cloned()
                .unwrap_or_default();
            let delta = histogram.minus(&was);
            let order = STAGE_ORDER
                .iter()
                .position(|s| s == stage)
                .unwrap_or(STAGE_ORDER.len());
            summed
                .entry((order, on))
                .or_insert_with(|| (stage.clone(), StageHistogram::default()))
                .1
                .add(&delta);
        }
    }
    summed
        .into_iter()
        .filter(|(_, (_, h))| h.count > 0)
        .map(|((_, on), (stage, h))| StageRow {
            stage,
            on: on.to_owned(),
            count: h.count,
            mean_us: h.sum_s / h.count as f64 * 1e6,
            p50_at_most_us: h.quantile_bound(0.5).map(|s| s * 1e6),
            p99_at_most_us: h.quantile_bound(0.99).map(|s| s * 1e6),
        })
        .collect()
}

/// The stages in the order a purchase meets them.
const STAGE_ORDER: [&str; 7] = [
    "gateway_queue",
    "gateway_forward",
    "leader_propose",
    "log_append",
    "append_rpc",
    "append_handler",
    "apply",
];

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# TYPE flashstock_stage_duration_seconds histogram
flashstock_stage_duration_seconds_bucket{node=\"1\",stage=\"apply\",le=\"0.0001\"} 1
flashstock_stage_duration_seconds_bucket{node=\"1\",stage=\"apply\",le=\"0.0002\"} 2
flashstock_stage_duration_seconds_bucket{node=\"1\",stage=\"apply\",le=\"+Inf\"} 2
flashstock_stage_duration_seconds_sum{node=\"1\",stage=\"apply\"} 0.00025
flashstock_stage_duration_seconds_count{node=\"1\",stage=\"apply\"} 2
flashstock_raft_term{node=\"1\"} 3
";
    const AFTER: &str = "\
flashstock_stage_duration_seconds_bucket{node=\"1\",stage=\"apply\",le=\"0.0001\"} 1
flashstock_stage_duration_seconds_bucket{node=\"1\",stage=\"apply\",le=\"0.0002\"} 4
flashstock_stage_duration_seconds_bucket{node=\"1\",stage=\"apply\",le=\"+Inf\"} 102
flashstock_stage_duration_seconds_sum{node=\"1\",stage=\"apply\"} 1.00055
flashstock_stage_duration_seconds_count{node=\"1\",stage=\"apply\"} 102
";

    #[test]
    fn a_scenario_counts_only_what_happened_during_it() {
        let before = BTreeMap::from([(1, (Role::Voter, parse(BEFORE)))]);
        let after = BTreeMap::from([(1, (Role::Voter, parse(AFTER)))]);
        let rows = between(&before, &after);
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!((row.stage.as_str(), row.on.as_str()), ("apply", "voters"));
        assert_eq!(row.count, 100);
        assert!((row.mean_us - 10_003.0).abs() < 1.0, "{row:?}");
        // 2 of the 100 within 200 µs: the median is past the last finite bucket.
        assert_eq!(row.p50_at_most_us, Some(f64::INFINITY));
    }

    #[test]
    fn quantiles_are_bucket_bounds() {
        let histogram = StageHistogram {
            buckets: vec![(0.001, 60), (0.002, 99), (0.004, 100)],
            sum_s: 0.1,
            count: 100,
        };
        assert_eq!(histogram.quantile_bound(0.5), Some(0.001));
        assert_eq!(histogram.quantile_bound(0.99), Some(0.002));
        assert_eq!(histogram.quantile_bound(1.0), Some(0.004));
    }
}
