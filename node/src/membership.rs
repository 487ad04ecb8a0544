//! Membership changes that cannot stall the cluster.
//!
//! Raft changes the voters through a joint configuration: until the change completes, every
//! entry, the change's own included, needs a majority of the old voters *and* a majority of the
//! new ones. If either side has no majority of members that can answer, nothing commits again
//! until enough of them return, and no other change can be made meanwhile (openraft refuses a
//! change while the last one is uncommitted). A 20-minute fault run once stalled for good this
//! way: `ReplaceAllVoters({2, 3})` was proposed while node 3 could not answer.
//!
//! So, before a change of voters, the leader checks through Raft itself that each side has a
//! majority of members that are up and caught up: it commits an empty entry (a probe) and waits
//! briefly for the members to acknowledge it. A member that acknowledged the probe holds the
//! whole log up to the probe, so it is caught up by construction, and it answered moments ago.
//! A change that fails the check is refused, naming the members missing, and nothing is proposed.
//! A learner that did not acknowledge the probe is not promoted. This is etcd's "strict
//! reconfiguration check", made with the log's own acknowledgements instead of a separate health
//! probe.
//!
//! A change can still stall if a member fails in the few milliseconds between the check and the
//! commit. It then shows in the status ([`status`]: both voter sets and the members the entry
//! waits for) and completes as soon as enough of those members answer again; see the runbook.

use std::collections::BTreeSet;
use std::time::Duration;

use flashstock_api::{ErrorCode, MembershipStatus, NodeRole};
use openraft::RaftMetrics;
use raft_store::{Node, NodeId};

use crate::internal::committed_index;
use crate::{Group, NodeState};

/// How long members have to acknowledge the probe entry. A member that cannot append one small
/// entry in this time is not one a change should depend on.
pub const PROBE_ACK_WAIT: Duration = Duration::from_secs(1);
/// How long committing the probe entry itself may take.
pub const PROBE_COMMIT_WAIT: Duration = Duration::from_secs(3);

/// How long a node to promote has to say which role it is configured with.
pub const ROLE_CHECK_WAIT: Duration = Duration::from_secs(2);

/// Why a membership change was refused before anything was proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// This node does not lead; the change must go to the leader.
    NotLeader { leader: Option<String> },
    /// The last change is not committed yet.
    InProgress { detail: String },
    /// A voter set of the change has no majority of members that are up and caught up.
    MembersUnavailable {
        missing: Vec<NodeId>,
        detail: String,
    },
    /// A learner to promote is not caught up with the leader.
    LearnerBehind { learners: Vec<NodeId> },
    /// The probe entry did not commit: the current voters have no majority.
    NoQuorum { detail: String },
    /// A node to promote is not configured as a voter, or did not say what it is.
    NotAVoterServer { nodes: Vec<(NodeId, String)> },
}

impl Refusal {
    /// The stable error code of the refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::NotLeader { .. } => ErrorCode::NotLeader,
            Refusal::InProgress { .. } => ErrorCode::MembershipChangeInProgress,
            Refusal::MembersUnavailable { .. } => ErrorCode::MembersUnavailable,
            Refusal::LearnerBehind { .. } => ErrorCode::LearnerBehind,
            Refusal::NoQuorum { .. } => ErrorCode::NoQuorum,
            Refusal::NotAVoterServer { .. } => ErrorCode::NotAVoter,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotLeader { leader } => write!(
                f,
                "this node is not the leader; the leader is at {}",
                leader.as_deref().unwrap_or("unknown")
            ),
            Refusal::InProgress { detail } => {
                write!(f, "another membership change is in progress: {detail}")
            }
            Refusal::MembersUnavailable { missing, detail } => write!(
                f,
                "refused: {detail}; not up or not caught up: {}. Nothing was changed; \
                 bring them back or choose a change that does not need them",
                ids(missing)
            ),
            Refusal::LearnerBehind { learners } => write!(
                f,
                "refused: learner {} has not caught up with the leader; wait until \
                 `stockctl cluster status` shows its lag near 0, then promote it",
                ids(learners)
            ),
            Refusal::NoQuorum { detail } => write!(
                f,
                "refused: the current voters could not commit a probe entry ({detail}); \
                 nothing was changed"
            ),
            Refusal::NotAVoterServer { nodes } => {
                let parts: Vec<String> = nodes
                    .iter()
                    .map(|(id, what)| format!("node {id} {what}"))
                    .collect();
                write!(
                    f,
                    "refused: only a node configured as a voter (node.role = \"voter\") can \
                     be made one; {}. Nothing was changed",
                    parts.join("; ")
                )
            }
        }
    }
}

fn ids(ids: &[NodeId]) -> String {
    let parts: Vec<String> = ids.iter().map(u64::to_string).collect();
    parts.join(", ")
}

fn set(ids: &BTreeSet<NodeId>) -> String {
    let parts: Vec<String> = ids.iter().map(u64::to_string).collect();
    format!("{{{}}}", parts.join(", "))
}

/// The members of `voters` missing for a majority of it, given which members are healthy;
/// empty when a majority is healthy.
pub fn missing_for_majority(voters: &BTreeSet<NodeId>, healthy: &BTreeSet<NodeId>) -> Vec<NodeId> {
    let up = voters.intersection(healthy).count();
    if up > voters.len() / 2 {
        Vec::new()
    } else {
        voters.difference(healthy).copied().collect()
    }
}

/// Check that the joint configuration `old` + `new` can commit with the `healthy` members, and
/// that every voter added by the change is healthy (caught up).
pub fn check_change(
    old: &BTreeSet<NodeId>,
    new: &BTreeSet<NodeId>,
    healthy: &BTreeSet<NodeId>,
) -> Result<(), Refusal> {
    let mut missing: BTreeSet<NodeId> = missing_for_majority(old, healthy).into_iter().collect();
    missing.extend(missing_for_majority(new, healthy));
    if !missing.is_empty() {
        return Err(Refusal::MembersUnavailable {
            missing: missing.into_iter().collect(),
            detail: format!(
                "the change needs a majority of the voters {} and of {} up and caught up \
                 until it completes",
                set(old),
                set(new)
            ),
        });
    }
    let behind: Vec<NodeId> = new
        .difference(old)
        .filter(|id| !healthy.contains(id))
        .copied()
        .collect();
    if !behind.is_empty() {
        return Err(Refusal::LearnerBehind { learners: behind });
    }
    Ok(())
}

/// The last log index each member has acknowledged, as the leader's replication metrics say.
fn matched(metrics: &RaftMetrics<NodeId, Node>, id: NodeId) -> Option<u64> {
    if id == metrics.id {
        return metrics.last_log_index;
    }
    let replication = metrics.replication.as_ref()?;
    replication.get(&id)?.map(|log_id| log_id.index)
}

/// The members of `members` that hold the log up to `index`, as the leader knows it.
fn holding(
    metrics: &RaftMetrics<NodeId, Node>,
    members: &BTreeSet<NodeId>,
    index: u64,
) -> BTreeSet<NodeId> {
    members
        .iter()
        .filter(|id| matched(metrics, **id).is_some_and(|m| m >= index))
        .copied()
        .collect()
}

/// Refuse at once if this node is not the leader or the last change is not committed.
pub async fn ensure_leader_and_settled(state: &NodeState, group: &Group) -> Result<(), Refusal> {
    let metrics = group.raft.metrics().borrow().clone();
    if metrics.current_leader != Some(state.id) {
        let membership = metrics.membership_config.membership();
        let leader = metrics
            .current_leader
            .and_then(|id| membership.get_node(&id).map(|node| node.addr.clone()));
        return Err(Refusal::NotLeader { leader });
    }
    let view = status(state.id, &metrics, committed_index(group).await);
    if !view.committed || view.configs.len() > 1 {
        let waiting = if view.waiting_for.is_empty() {
            String::new()
        } else {
            format!("; it waits for {}", ids(&view.waiting_for))
        };
        return Err(Refusal::InProgress {
            detail: format!(
                "the membership at index {} ({}) is not committed yet{waiting}",
                view.log_index.unwrap_or(0),
                describe_configs(&view.configs)
            ),
        });
    }
    Ok(())
}

/// Commit an empty entry and return the members of `members` that acknowledged it within
/// [`PROBE_ACK_WAIT`]: those that are up and hold the whole log.
pub async fn healthy_members(
    state: &NodeState,
    group: &Group,
    members: &BTreeSet<NodeId>,
) -> Result<BTreeSet<NodeId>, Refusal> {
    let proposal = state.proposal(Vec::new());
    let written =
        match tokio::time::timeout(PROBE_COMMIT_WAIT, group.raft.client_write(proposal)).await {
            Ok(Ok(written)) => written,
            Ok(Err(e)) => {
                return Err(Refusal::NoQuorum {
                    detail: e.to_string(),
                })
            }
            Err(_) => {
                return Err(Refusal::NoQuorum {
                    detail: format!("not committed within {PROBE_COMMIT_WAIT:?}"),
                })
            }
        };
    let index = written.log_id.index;
    let mut watch = group.raft.metrics();
    let deadline = tokio::time::Instant::now() + PROBE_ACK_WAIT;
    loop {
        let acked = holding(&watch.borrow_and_update(), members, index);
        if acked.len() == members.len() {
            return Ok(acked);
        }
        match tokio::time::timeout_at(deadline, watch.changed()).await {
            Ok(Ok(())) => {}
            // Deadline, or Raft shutting down: whoever answered by now is all there is.
            _ => return Ok(holding(&group.raft.metrics().borrow(), members, index)),
        }
    }
}

/// Wait up to `wait` until member `id` holds the log up to `index`; whether it did.
pub async fn wait_caught_up(group: &Group, id: NodeId, index: u64, wait: Duration) -> bool {
    let one = BTreeSet::from([id]);
    let mut watch = group.raft.metrics();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if !holding(&watch.borrow_and_update(), &one, index).is_empty() {
            return true;
        }
        match tokio::time::timeout_at(deadline, watch.changed()).await {
            Ok(Ok(())) => {}
            _ => return false,
        }
    }
}

/// The membership as node `id` follows it, given its metrics and the last index it knows
/// committed.
pub fn status(
    id: NodeId,
    metrics: &RaftMetrics<NodeId, Node>,
    committed_index: Option<u64>,
) -> MembershipStatus {
    let stored = &metrics.membership_config;
    let membership = stored.membership();
    let log_index = stored.log_id().map(|id| id.index);
    let committed = match (log_index, committed_index) {
        (None, _) => true,
        (Some(at), Some(committed)) => at <= committed,
        (Some(_), None) => false,
    };
    let configs: Vec<BTreeSet<NodeId>> = membership.get_joint_config().to_vec();
    let voters: BTreeSet<NodeId> = configs.iter().flatten().copied().collect();
    let waiting_for = match (committed, log_index) {
        (false, Some(at)) if metrics.current_leader == Some(id) => voters
            .difference(&holding(metrics, &voters, at))
            .copied()
            .collect(),
        _ => Vec::new(),
    };
    MembershipStatus {
        log_index,
        committed,
        configs: configs
            .iter()
            .map(|config| config.iter().copied().collect())
            .collect(),
        learners: membership.learner_ids().collect(),
        waiting_for,
    }
}

/// What became of a change to some voters that openraft refused because another change was in
/// progress, as the membership shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrent {
    /// Exactly those voters, committed at this log index: the change the caller asked for is
    /// made, whoever proposed its last entry.
    Done(u64),
    /// A configuration toward those voters is in force and not yet complete.
    UnderWay,
    /// The membership moves toward other voters: the change was not made.
    Other,
}

/// What the membership `view` says of a change to `voters`; `None` while it is under way.
fn concurrent_outcome(view: &MembershipStatus, voters: &BTreeSet<NodeId>) -> Option<Concurrent> {
    let toward = view
        .configs
        .last()
        .is_some_and(|last| last.iter().copied().collect::<BTreeSet<_>>() == *voters);
    match (toward, view.committed, view.configs.len()) {
        (false, _, _) => Some(Concurrent::Other),
        (true, true, 1) => Some(Concurrent::Done(view.log_index.unwrap_or(0))),
        (true, _, _) => None,
    }
}

/// After openraft refused a change to `voters` as "another change in progress": whether that
/// other change is this one, waiting up to `wait` for it to complete.
///
/// openraft makes a change in two entries and proposes the second from the caller's own future;
/// [`finish_halfway_changes`] proposes the same second entry when it finds the joint
/// configuration left alone. If the finisher comes first, the caller's second entry is refused
/// as "in progress" although its change is being made: reading that as a refusal would tell an
/// operator that nothing changed when the voters did. So the caller's change counts as done when
/// the membership becomes exactly `voters`, committed, however its last entry was proposed.
pub async fn finished_concurrently(
    state: &NodeState,
    group: &Group,
    voters: &BTreeSet<NodeId>,
    wait: Duration,
) -> Concurrent {
    let mut watch = group.raft.metrics();
    // The whole look is bounded, the read of the committed index (a call to the Raft core)
    // included: past `wait`, or with Raft shutting down, the change is still under way.
    let settled = tokio::time::timeout(wait, async {
        loop {
            let metrics = watch.borrow_and_update().clone();
            let view = status(state.id, &metrics, committed_index(group).await);
            if let Some(outcome) = concurrent_outcome(&view, voters) {
                return outcome;
            }
            if watch.changed().await.is_err() {
                return Concurrent::UnderWay;
            }
        }
    });
    settled.await.unwrap_or(Concurrent::UnderWay)
}

/// How often the leader looks for a change left halfway.
const HALFWAY_CHECK_EVERY: Duration = Duration::from_millis(500);

/// On the leader, finish any change left halfway, for as long as the node runs.
///
/// openraft makes a change in two entries: the joint configuration, then, once that is
/// committed, the new voters alone. The second is proposed by the future that asked for the
/// change; if that future is dropped in between (its caller timed out or went away, or the leader
/// changed), the joint configuration stays in force, every commit keeps needing both majorities,
/// and every later change is refused as "in progress". This task proposes the second entry
/// whenever it finds the same committed joint configuration on the leader at two checks in a
/// row. Once is not enough: the change's own future proposes the second entry a moment after
/// the joint one commits, and a finisher that raced it made that future fail with "a change is
/// in progress" although the change went through, so its caller saw an unknown outcome (found
/// by the fault harness; the admin call now also counts such a finish as its own, with
/// [`finished_concurrently`]). Former voters that the new configuration leaves out are removed, as
/// `stockctl cluster remove` removes them.
pub async fn finish_halfway_changes(
    state: std::sync::Arc<NodeState>,
    group: u16,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let group = &state.groups[usize::from(group)];
    // The log index of the committed joint configuration the last check found, if any.
    let mut seen_joint: Option<u64> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HALFWAY_CHECK_EVERY) => {}
            _ = stopping.wait_for(|stopping| *stopping) => return,
        }
        let metrics = group.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(state.id) {
            seen_joint = None;
            continue;
        }
        let view = status(state.id, &metrics, committed_index(group).await);
        let (true, [_, last]) = (view.committed, view.configs.as_slice()) else {
            seen_joint = None;
            continue;
        };
        if seen_joint != view.log_index {
            seen_joint = view.log_index;
            continue;
        }
        let voters: BTreeSet<NodeId> = last.iter().copied().collect();
        tracing::warn!(
            configs = %describe_configs(&view.configs),
            "a membership change was left halfway; finishing it"
        );
        let change = group.raft.change_membership(voters, false);
        match tokio::time::timeout(PROBE_COMMIT_WAIT, change).await {
            Ok(Ok(written)) => tracing::info!(
                log_index = written.log_id.index,
                "membership change finished"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not finish the membership change"),
            Err(_) => tracing::warn!("finishing the membership change did not commit in time"),
        }
    }
}

/// `{1, 2, 3}`, or `{1, 2, 3} and {2, 3}` in the joint phase.
pub fn describe_configs(configs: &[Vec<NodeId>]) -> String {
    let sets: Vec<String> = configs
        .iter()
        .map(|config| format!("{{{}}}", ids(config)))
        .collect();
    sets.join(" and ")
}

/// Refuse to promote a node that is not configured as a voter. A gateway is only ever a learner,
/// and its appends are not synced (`raft_store::Durability::Learner`): its acknowledgements must
/// never count toward a quorum. Each node of `promoted` is asked for its status at the address
/// the membership holds for it; one that does not answer within [`ROLE_CHECK_WAIT`] is not
/// promoted either. A node the membership does not know is left to Raft's own refusal.
pub async fn ensure_voter_servers(
    state: &NodeState,
    group: &Group,
    promoted: &BTreeSet<NodeId>,
) -> Result<(), Refusal> {
    let addresses: Vec<(NodeId, String)> = {
        let metrics = group.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        promoted
            .iter()
            .filter_map(|id| membership.get_node(id).map(|node| (*id, node.addr.clone())))
            .collect()
    };
    if addresses.is_empty() {
        return Ok(());
    }
    let client = flashstock_client::VoterClient::new(
        Vec::new(),
        state.credentials.own_secret(),
        ROLE_CHECK_WAIT,
    )
    .with_local_address(state.config.source_ip())
    .with_tls(state.tls.client());
    let asks = addresses.iter().map(|(id, addr)| {
        let client = &client;
        async move {
            let answer = tokio::time::timeout(ROLE_CHECK_WAIT, client.status(addr)).await;
            (*id, answer)
        }
    });
    let refused: Vec<(NodeId, String)> = futures::future::join_all(asks)
        .await
        .into_iter()
        .filter_map(|(id, answer)| match answer {
            Ok(Ok(status)) if status.id == id && status.role == NodeRole::Voter => None,
            Ok(Ok(status)) if status.id != id => Some((
                id,
                format!(
                    "is not who answers at its address (node {} does)",
                    status.id
                ),
            )),
            Ok(Ok(status)) => Some((id, format!("is configured as a {}", status.role))),
            Ok(Err(e)) => Some((id, format!("did not say its role ({e})"))),
            Err(_) => Some((
                id,
                format!("did not say its role within {ROLE_CHECK_WAIT:?}"),
            )),
        })
        .collect();
    match refused.is_empty() {
        true => Ok(()),
        false => Err(Refusal::NotAVoterServer { nodes: refused }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[u64]) -> BTreeSet<u64> {
        list.iter().copied().collect()
    }

    #[test]
    fn a_majority_of_each_side_must_be_healthy() {
        let old = ids(&[1, 2, 3]);
        // The stall of the 20-minute run: {1,2,3} -> {2,3} while 3 could not answer.
        let refused = check_change(&old, &ids(&[2, 3]), &ids(&[1, 2])).unwrap_err();
        assert_eq!(
            refused,
            Refusal::MembersUnavailable {
                missing: vec![3],
                detail: refused_detail(&refused),
            }
        );
        // Removing the member that is down leaves a healthy majority on both sides.
        assert_eq!(check_change(&old, &ids(&[1, 2]), &ids(&[1, 2])), Ok(()));
        // Adding a fourth voter: {1,2,3,4} needs 3 of 4.
        assert!(check_change(&old, &ids(&[1, 2, 3, 4]), &ids(&[1, 2, 4])).is_ok());
        assert!(check_change(&old, &ids(&[1, 2, 3, 4]), &ids(&[1, 4])).is_err());
    }

    #[test]
    fn a_learner_is_promoted_only_when_caught_up() {
        let refused = check_change(
            &ids(&[1, 2, 3]),
            &ids(&[1, 2, 3, 4, 5]),
            &ids(&[1, 2, 3, 4]),
        )
        .unwrap_err();
        assert_eq!(refused, Refusal::LearnerBehind { learners: vec![5] });
        assert_eq!(refused.code(), ErrorCode::LearnerBehind);
    }

    #[test]
    fn the_missing_members_are_named() {
        assert_eq!(
            missing_for_majority(&ids(&[1, 2, 3]), &ids(&[1])),
            vec![2, 3]
        );
        assert!(missing_for_majority(&ids(&[1, 2, 3]), &ids(&[1, 3])).is_empty());
        assert_eq!(
            describe_configs(&[vec![1, 2, 3], vec![2, 3]]),
            "{1, 2, 3} and {2, 3}"
        );
    }

    #[test]
    fn a_change_finished_by_another_entry_counts_as_made() {
        let view = |configs: &[&[u64]], committed: bool| MembershipStatus {
            log_index: Some(40),
            committed,
            configs: configs.iter().map(|config| config.to_vec()).collect(),
            learners: Vec::new(),
            waiting_for: Vec::new(),
        };
        let voters = ids(&[2, 3]);
        // The finisher's last entry committed: the change is made.
        assert_eq!(
            concurrent_outcome(&view(&[&[2, 3]], true), &voters),
            Some(Concurrent::Done(40))
        );
        // Still joint, or the last entry not committed yet: wait.
        assert_eq!(
            concurrent_outcome(&view(&[&[1, 2, 3], &[2, 3]], true), &voters),
            None
        );
        assert_eq!(concurrent_outcome(&view(&[&[2, 3]], false), &voters), None);
        // Another change altogether: this one was not made.
        assert_eq!(
            concurrent_outcome(&view(&[&[1, 2, 3], &[1, 2]], true), &voters),
            Some(Concurrent::Other)
        );
        assert_eq!(
            concurrent_outcome(&view(&[&[1, 2, 3]], true), &voters),
            Some(Concurrent::Other)
        );
    }

    fn refused_detail(refusal: &Refusal) -> String {
        match refusal {
            Refusal::MembersUnavailable { detail, .. } => detail.clone(),
            other => panic!("unexpected {other:?}"),
        }
    }
}
