//! The `upgrade` fault's watch over the cluster version during a rolling upgrade.
//!
//! A rolling upgrade restarts every node with the new release's binary, one at a time, in the
//! order of a rolling restart. Until the last node runs the new release, an older one is still a
//! member, so the cluster version must not move: a raised version could put into the log what
//! that node cannot read. Once every node runs the new release, the leader must raise it to the
//! new release's ([`CLUSTER_VERSION`], which this harness is built with) within
//! [`SWITCH_WAIT`]. Anything else is a problem of the fault, which fails the run.

use std::time::{Duration, Instant};

use flashstock_api::{NodeStatus, CLUSTER_VERSION, CLUSTER_VERSION_BASE};
use flashstock_deploy::local::LocalCluster;

use crate::Error;

/// How long the leader may take to raise the cluster version once every node runs the new
/// release: it checks every second, and a node just restarted must answer first.
pub const SWITCH_WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// What a rolling upgrade saw of the cluster version.
pub struct Watch {
    /// The cluster version before the first node was upgraded.
    before: u32,
    /// What went wrong: the fault's problems.
    pub problems: Vec<String>,
}

impl Watch {
    /// Read the cluster version the old release runs.
    pub async fn start(cluster: &LocalCluster) -> Result<Watch, Error> {
        let statuses = statuses(cluster).await;
        if statuses.is_empty() {
            return Err(Error::Harness(
                "no node answered before the rolling upgrade".into(),
            ));
        }
        Ok(Watch {
            before: cluster_version(&statuses),
            problems: Vec::new(),
        })
    }

    /// Before node `id` is restarted with the new release: it still runs the old one, so the
    /// cluster version must be where it was.
    pub async fn before_restart(&mut self, cluster: &LocalCluster, id: u64) -> String {
        let now = cluster_version(&statuses(cluster).await);
        if now != self.before {
            self.problems.push(format!(
                "the cluster version went from {} to {now} while node {id} still ran the \
                 previous release",
                self.before
            ));
        }
        format!("upgrading node {id}: cluster version {now}")
    }

    /// After the last node: every node must run the new release, and the cluster version go up
    /// to the new release's. The figures, as one line.
    pub async fn finish(&mut self, cluster: &LocalCluster) -> String {
        let began = Instant::now();
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        let mut last = Vec::new();
        while began.elapsed() < SWITCH_WAIT {
            last = statuses(cluster).await;
            let switched = last.len() == ids.len()
                && last
                    .iter()
                    .all(|status| status.cluster_version == Some(CLUSTER_VERSION));
            if switched {
                return format!(
                    "cluster version {} -> {CLUSTER_VERSION} on every node {} ms after the last \
                     node was back",
                    self.before,
                    began.elapsed().as_millis()
                );
            }
            tokio::time::sleep(POLL).await;
        }
        let old: Vec<u64> = last
            .iter()
            .filter(|status| supports(status) < CLUSTER_VERSION)
            .map(|status| status.id)
            .collect();
        let versions: Vec<(u64, Option<u32>)> = last
            .iter()
            .map(|status| (status.id, status.cluster_version))
            .collect();
        let problem = format!(
            "the cluster version did not reach {CLUSTER_VERSION} on every node within \
             {SWITCH_WAIT:?} of the last upgrade: (node, version) {versions:?}; nodes still on a \
             release without it: {old:?}"
        );
        self.problems.push(problem.clone());
        problem
    }
}

/// The status of every node that answers.
async fn statuses(cluster: &LocalCluster) -> Vec<NodeStatus> {
    let client = cluster.voter_client();
    let mut statuses = Vec::new();
    for id in cluster.nodes.keys() {
        if let Ok(status) = client.status(&cluster.addr(*id)).await {
            statuses.push(status);
        }
    }
    statuses
}

/// The cluster version the nodes have applied: the highest any reports (a release before
/// cluster versions reports none, and runs the first).
fn cluster_version(statuses: &[NodeStatus]) -> u32 {
    statuses
        .iter()
        .map(|status| status.cluster_version.unwrap_or(CLUSTER_VERSION_BASE))
        .max()
        .unwrap_or(CLUSTER_VERSION_BASE)
}

/// The newest cluster version a node's release runs.
fn supports(status: &NodeStatus) -> u32 {
    status
        .release
        .as_ref()
        .map_or(CLUSTER_VERSION_BASE, |release| release.cluster_version_max)
}
