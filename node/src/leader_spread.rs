//! Leaders spread over the voters: in a cluster of several Raft groups, group `g` prefers the
//! voter at position `g mod V` of its voters in id order, so each of V voters leads about G / V
//! groups and no one server's CPU is the ceiling of every write.
//!
//! Elections know nothing of this: after `cluster init`, or after a voter fails and comes back,
//! one voter may lead every group. So on each voter a task per group watches the group while
//! this node leads it, and when the preferred voter has been a caught-up member for
//! [`SETTLED_CHECKS`] checks in a row, hands leadership to it with the planned hand-off of
//! [`crate::handoff`] (a few milliseconds of held-back writes, none refused or left unknown).
//! A hand-off that fails leaves leadership where it is, and the next try waits
//! [`RETRY_AFTER_FAILURE`]. A cluster of one group has no such task: whoever wins the election
//! leads, as always.

use std::time::Duration;

use openraft::ServerState;
use raft_store::NodeId;
use tokio::sync::watch;

use crate::NodeState;

/// How often a leader checks whether its group prefers another voter.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);
/// Checks in a row the preferred voter must pass (a member, its log within
/// [`CAUGHT_UP_ENTRIES`] of the leader's) before leadership moves to it: a voter that just came
/// back is given time to settle, and a flapping one never gets the group.
pub const SETTLED_CHECKS: u32 = 6;
/// How far the preferred voter's log may trail the leader's and still count as caught up.
pub const CAUGHT_UP_ENTRIES: u64 = 64;
/// Pause after a failed hand-off before the group tries again.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// The voter that group `group` prefers as its leader, among `voters`: the one at position
/// `group mod voters.len()` in id order.
pub fn preferred_leader(group: u16, voters: impl IntoIterator<Item = NodeId>) -> Option<NodeId> {
    let mut voters: Vec<NodeId> = voters.into_iter().collect();
    if voters.is_empty() {
        return None;
    }
    voters.sort_unstable();
    voters.dedup();
    Some(voters[usize::from(group) % voters.len()])
}

/// On a voter of a cluster of several groups: while this node leads `group` and the group
/// prefers another voter that is caught up and settled, hand leadership to it.
pub async fn spread_when_settled(
    state: std::sync::Arc<NodeState>,
    group: u16,
    mut stopping: watch::Receiver<bool>,
) {
    let this_group = &state.groups[usize::from(group)];
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut settled = 0u32;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        let Some(target) = wanted_move(&state, this_group) else {
            settled = 0;
            continue;
        };
        settled += 1;
        if settled < SETTLED_CHECKS {
            continue;
        }
        settled = 0;
        match crate::handoff::hand_off(&state, this_group, Some(target)).await {
            Ok(done) => {
                state.metrics.leader_spread_moves.inc();
                tracing::info!(
                    group,
                    from = done.from,
                    to = done.to,
                    took_ms = done.took_ms,
                    "leadership moved to the group's preferred voter"
                );
            }
            Err(e) => {
                tracing::warn!(
                    group,
                    to = target,
                    error = %e.message,
                    "could not move leadership to the group's preferred voter; trying again later"
                );
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_AFTER_FAILURE) => {}
                    _ = stopping.wait_for(|stop| *stop) => return,
                }
            }
        }
    }
}

/// The voter this leader should hand `group` to now, if any: the group's preferred voter, when
/// it is not this node, is a voter of a settled membership, and its log is caught up.
fn wanted_move(state: &NodeState, group: &crate::Group) -> Option<NodeId> {
    let metrics = group.raft.metrics().borrow().clone();
    if metrics.state != ServerState::Leader {
        return None;
    }
    let membership = metrics.membership_config.membership();
    if membership.get_joint_config().len() > 1 {
        return None;
    }
    let target = preferred_leader(group.number, membership.voter_ids())?;
    if target == state.id {
        return None;
    }
    let matched = metrics
        .replication
        .as_ref()?
        .get(&target)
        .copied()
        .flatten()?
        .index;
    let last = metrics.last_log_index.unwrap_or(0);
    (last.saturating_sub(matched) <= CAUGHT_UP_ENTRIES).then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_prefer_the_voters_in_turn() {
        let voters = [3, 1, 2];
        let preferred: Vec<NodeId> = (0..6)
            .map(|group| preferred_leader(group, voters).unwrap())
            .collect();
        assert_eq!(preferred, [1, 2, 3, 1, 2, 3]);
        assert_eq!(preferred_leader(4, [7]), Some(7));
        assert_eq!(preferred_leader(0, []), None);
    }
}
