//! The `upgrade` fault's watch over the cluster version during a rolling upgrade.
//!
//! A rolling upgrade restarts every node with the new release's binary, one at a time, in the
//! order of a rolling restart. Until the last node runs the new release, an older one is still a
//! member, so the cluster version must not move: a raised version could put into the log what
//! that node cannot read. Once every node runs the new release, the leader must raise it to the
//! new release's ([`CLUSTER_VERSION`], which this harness is built with) within
//! [`SWITCH_WAIT`]. Anything else is a problem of the fault, which fails the run.
//!
//! In the order of a rolling restart the leader is upgraded last, so the new release would not
//! lead while an old node remains, and a leader that raised the version too early would go
//! unseen. So leadership is handed to each voter as it is upgraded, while another voter still
//! runs the old release, and held there for [`NEW_LEADER_HOLD`] (several of the leader's
//! checks): the new release leads while old nodes are members, as after any failover during an
//! upgrade; once two of three voters are new, a version raised too early would commit.
//!
//! The first voter upgraded is also rolled back once before it leads: restarted with the old
//! release's binary, caught up, then upgraded again. Before the switch that must work: nothing
//! the new release stored may be unreadable to the old one.

use std::time::{Duration, Instant};

use flashstock_api::{NodeStatus, CLUSTER_VERSION, CLUSTER_VERSION_BASE};
use flashstock_deploy::local::LocalCluster;

use crate::Error;

/// How long the leader may take to raise the cluster version once every node runs the new
/// release: it checks every second, and a node just restarted must answer first.
pub const SWITCH_WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
/// How long the first upgraded voter leads before the upgrade goes on: several of the leader's
/// checks of the members' releases (every second).
pub const NEW_LEADER_HOLD: Duration = Duration::from_millis(3500);

/// What a rolling upgrade saw of the cluster version.
pub struct Watch {
    /// The cluster version before the first node was upgraded.
    before: u32,
    /// What went wrong: the fault's problems.
    pub problems: Vec<String>,
    /// The hand-offs of leadership to upgraded voters.
    pub handed_off: Vec<String>,
    /// Voters upgraded so far.
    voters_upgraded: usize,
    /// The old release's binary, and the version its nodes report.
    old_binary: std::path::PathBuf,
    old_version: String,
    /// The rollback of the first upgraded voter, once done.
    pub rolled_back: Option<String>,
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
        let old_version = statuses[0].release.as_ref().map_or_else(
            || "a release before versions".to_owned(),
            |r| r.version.clone(),
        );
        Ok(Watch {
            old_binary: cluster.binary().to_owned(),
            old_version,
            rolled_back: None,
            before: cluster_version(&statuses),
            problems: Vec::new(),
            handed_off: Vec::new(),
            voters_upgraded: 0,
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

    /// After node `id` runs the new release: if it is a voter and another voter still runs the
    /// old release, hand leadership to it and let it lead for [`NEW_LEADER_HOLD`]. What
    /// happened, if anything.
    pub async fn after_restart(&mut self, cluster: &mut LocalCluster, id: u64) -> Option<String> {
        if cluster.nodes[&id].role != cluster_config::Role::Voter {
            return None;
        }
        self.voters_upgraded += 1;
        if self.voters_upgraded == cluster.voter_ids().len() {
            return None;
        }
        if self.rolled_back.is_none() {
            let text = match self.roll_back_and_forward(cluster, id).await {
                Ok(text) => text,
                Err(e) => {
                    let text = format!("rolling node {id} back and forward FAILED: {e}");
                    self.problems.push(text.clone());
                    text
                }
            };
            self.rolled_back = Some(text);
        }
        let leader = match cluster.wait_for_leader(SWITCH_WAIT).await {
            Ok(leader) => leader,
            Err(e) => {
                let text = format!("no leader to hand off from: {e}");
                self.problems.push(text.clone());
                self.handed_off.push(text.clone());
                return Some(text);
            }
        };
        let text = match cluster
            .voter_client()
            .hand_off(&cluster.addr(leader), Some(id))
            .await
        {
            Ok(h) => format!(
                "hand-off {} -> {} (upgraded) in {} ms; it leads while older nodes are members",
                h.from, h.to, h.took_ms
            ),
            Err(e) => {
                self.problems.push(format!(
                    "handing leadership to upgraded node {id} failed: {e}"
                ));
                format!("hand-off to upgraded node {id} FAILED: {e}")
            }
        };
        self.handed_off.push(text.clone());
        tokio::time::sleep(NEW_LEADER_HOLD).await;
        Some(text)
    }

    /// Restart voter `id`, which runs the new release, with the old one; check that it came
    /// back on the old release and caught up; then upgrade it again. What happened.
    async fn roll_back_and_forward(
        &mut self,
        cluster: &mut LocalCluster,
        id: u64,
    ) -> Result<String, Error> {
        let new_binary = cluster.binary().to_owned();
        let others: Vec<u64> = cluster
            .voter_ids()
            .into_iter()
            .filter(|v| *v != id)
            .collect();
        let began = Instant::now();
        cluster.set_binary(&self.old_binary);
        let back = restart_caught_up(cluster, &others, id).await;
        cluster.set_binary(&new_binary);
        back?;
        let runs = cluster
            .voter_client()
            .status(&cluster.addr(id))
            .await
            .ok()
            .and_then(|status| status.release)
            .map_or_else(|| "a release before versions".to_owned(), |r| r.version);
        if runs != self.old_version {
            return Err(Error::Harness(format!(
                "node {id} was rolled back to {} but reports {runs}",
                self.old_version
            )));
        }
        let rolled_back_ms = began.elapsed().as_millis();
        let began = Instant::now();
        restart_caught_up(cluster, &others, id).await?;
        Ok(format!(
            "node {id} rolled back to {} (its store, written by the new release, opened; caught \
             up after {rolled_back_ms} ms) and upgraded again ({} ms)",
            self.old_version,
            began.elapsed().as_millis()
        ))
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
            .filter(|status| status.supported_cluster_version() < CLUSTER_VERSION)
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

/// Stop node `id` with SIGTERM, start it, and wait until it caught up with `others`' leader.
async fn restart_caught_up(
    cluster: &mut LocalCluster,
    others: &[u64],
    id: u64,
) -> Result<(), Error> {
    if !cluster.terminate(id)? {
        return Err(Error::Harness(format!(
            "node {id} exited unsuccessfully on SIGTERM"
        )));
    }
    cluster.start(id).await?;
    super::wait_caught_up(cluster, others, id).await
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
        .map(NodeStatus::applied_cluster_version)
        .max()
        .unwrap_or(CLUSTER_VERSION_BASE)
}
