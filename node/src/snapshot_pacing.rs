//! When a node builds a snapshot: not while the leader is feeding a member one.
//!
//! openraft 0.9.25 purges the leader's log behind each new snapshot at once, unless a replication
//! task is reading those entries. A member being sent a snapshot reads none: when the leader
//! builds a newer snapshot meanwhile, it purges the entries that member needs next, and the
//! member, its install done, is sent the newer snapshot, and so on. Whenever sending and
//! installing a snapshot takes longer than the leader takes to write `raft.snapshot_every_logs`
//! entries, the member never catches up while writes keep coming. A 20-minute fault run found
//! it: with a snapshot every 500 entries and a state of 160 MiB, a restarted gateway installed
//! 122 snapshots in a row, about one every 5.5 s, and caught up only when the load stopped,
//! 678 s later.
//!
//! So openraft's own policy is off (`SnapshotPolicy::Never`) and every node asks for a snapshot
//! itself, every [`CHECK_EVERY`], once [`snapshot_threshold`] entries were applied since
//! the last one ([`due`]). A leader waits while a member's matched index is below its last
//! purged entry (that member needs a snapshot, and is being sent one), until both [`WAIT_FACTOR`]
//! times the threshold of entries and [`WAIT_AT_LEAST`] have passed; past both (a member that is
//! down for good, say), it builds anyway, so the log stays bounded. Followers and learners build
//! at the threshold: their purges strand nobody. A candidate does not build: it may be the
//! leader a moment later, and its members would then need what it purged.
//!
//! The time bound came from another 20-minute fault run (one group, a snapshot every 500
//! entries): a voter back from a partition needed a snapshot; shipping and installing one took
//! 10 to 12 s, while 4 thresholds of entries took the leader about 10 s to write, so the leader
//! built and purged again just before each install ended, and the voter installed four
//! snapshots in a row (50 s) before it could follow the log. The first of the four was built by
//! the leader-to-be while it was still a candidate.

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use raft_store::NodeId;
use tokio::sync::watch;

use crate::NodeState;

/// How often a node looks at whether a snapshot is due.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);
/// How long a leader may put off a snapshot for a member being fed one, in thresholds of
/// entries, and at the least [`WAIT_AT_LEAST`]: the log then holds at most this many thresholds
/// of entries, or what the leader writes in that time if it is more.
pub const WAIT_FACTOR: u64 = 4;
/// How long a leader may put off a snapshot for a member being fed one, at the least: long
/// enough to ship and install a snapshot of a large state, whatever the threshold (in the fault
/// run that found it, a state of about 270 000 orders took 8 to 12 s to ship and install on one
/// shared 2-core machine). With the default threshold (100 000 entries) the entries' bound is
/// the larger one at any rate this cluster writes.
pub const WAIT_AT_LEAST: Duration = Duration::from_secs(120);

/// Entries between two snapshots on node `id`: `every` plus up to 5/12 of it, by the id. Every
/// node applies the same log: with one threshold, all six would build at the same index, each
/// reading its whole state and writing it to disk at once, on the same machine in tests and in
/// the same second in production. Spread, the builds start at different entries and drift
/// further apart (their periods differ).
pub fn snapshot_threshold(every: u64, id: u64) -> u64 {
    every.saturating_add(every / 12 * (id % 6))
}

/// What a node is in its group, as far as snapshots go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    /// A follower or a learner: it purges only what it applied, and nobody reads its log.
    Follower,
    /// A candidate, or a node shutting down: it builds nothing.
    Other,
}

/// What a node knows, from its Raft metrics and its own clock, when it decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub applied: u64,
    /// Index of the last entry in the current snapshot (0 with none).
    pub snapshot: u64,
    /// Index of the last purged entry, if any was purged.
    pub purged: Option<u64>,
    /// On a leader, every member's matched index (`None`: nothing matched yet); empty otherwise.
    pub matched: Vec<(NodeId, Option<u64>)>,
    pub role: Role,
    /// How long the leader has been putting off a due snapshot (zero when it is not).
    pub waited: Duration,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Fewer than the threshold of entries since the last snapshot.
    NotYet,
    Build,
    /// Due, but `member` needs entries the leader purged: it is being sent a snapshot.
    Wait {
        member: NodeId,
    },
}

/// Whether a snapshot is due: see the module documentation.
pub fn due(facts: &Facts, threshold: u64) -> Decision {
    let since = facts.applied.saturating_sub(facts.snapshot);
    if since < threshold || facts.role == Role::Other {
        return Decision::NotYet;
    }
    let waited_enough =
        since >= threshold.saturating_mul(WAIT_FACTOR) && facts.waited >= WAIT_AT_LEAST;
    if facts.role == Role::Follower || waited_enough {
        return Decision::Build;
    }
    let Some(purged) = facts.purged else {
        return Decision::Build;
    };
    let fed = facts
        .matched
        .iter()
        .find(|(_, matched)| matched.is_none_or(|index| index < purged));
    match fed {
        Some((member, _)) => Decision::Wait { member: *member },
        None => Decision::Build,
    }
}

fn facts(metrics: &openraft::RaftMetrics<NodeId, raft_store::Node>, waited: Duration) -> Facts {
    let index = |id: &Option<openraft::LogId<NodeId>>| id.map(|id| id.index);
    let role = match metrics.state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower | ServerState::Learner => Role::Follower,
        ServerState::Candidate | ServerState::Shutdown => Role::Other,
    };
    let matched = match (&metrics.replication, role) {
        (Some(replication), Role::Leader) => replication
            .iter()
            .filter(|(member, _)| **member != metrics.id)
            .map(|(member, matched)| (*member, index(matched)))
            .collect(),
        _ => Vec::new(),
    };
    Facts {
        applied: index(&metrics.last_applied).unwrap_or(0),
        snapshot: index(&metrics.snapshot).unwrap_or(0),
        purged: index(&metrics.purged),
        matched,
        role,
        waited,
    }
}

/// On every node, for as long as it runs: ask openraft for a snapshot when one is [`due`].
pub async fn build_when_due(
    state: Arc<NodeState>,
    group: u16,
    mut stopping: watch::Receiver<bool>,
) {
    let group = &state.groups[usize::from(group)];
    let threshold = snapshot_threshold(state.config.raft.snapshot_every_logs, state.id);
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut waiting_for = None;
    // Since when the leader has put off a due snapshot.
    let mut waiting_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopping.changed() => return,
        }
        let waited = waiting_since.map_or(Duration::ZERO, |since| since.elapsed());
        let facts = facts(&group.raft.metrics().borrow(), waited);
        match due(&facts, threshold) {
            Decision::NotYet => {
                waiting_for = None;
                waiting_since = None;
            }
            Decision::Wait { member } => {
                waiting_since.get_or_insert_with(tokio::time::Instant::now);
                if waiting_for != Some(member) {
                    tracing::info!(
                        member,
                        applied = facts.applied,
                        snapshot = facts.snapshot,
                        "snapshot due, put off while member {member} is sent one (its entries \
                         are purged here)"
                    );
                    waiting_for = Some(member);
                }
            }
            Decision::Build => {
                waiting_for = None;
                waiting_since = None;
                // openraft ignores the request while a build is under way; an error means the
                // core stopped, which the node's shutdown handles.
                let _ = group.raft.trigger().snapshot().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(applied: u64, snapshot: u64, purged: u64, matched: &[Option<u64>]) -> Facts {
        Facts {
            applied,
            snapshot,
            purged: Some(purged),
            matched: (2..).zip(matched.iter().copied()).collect(),
            role: Role::Leader,
            waited: Duration::ZERO,
        }
    }

    #[test]
    fn a_snapshot_is_due_at_the_threshold() {
        let caught_up = [Some(1_150), Some(1_140)];
        assert_eq!(
            due(&leader(1_099, 600, 550, &caught_up), 500),
            Decision::NotYet
        );
        assert_eq!(
            due(&leader(1_100, 600, 550, &caught_up), 500),
            Decision::Build
        );
    }

    #[test]
    fn a_leader_waits_while_a_member_needs_purged_entries_then_builds_past_the_bound() {
        // Member 3 matched entry 400, the log starts after 550: it is being sent a snapshot.
        let fed = [Some(1_150), Some(400)];
        assert_eq!(
            due(&leader(1_100, 600, 550, &fed), 500),
            Decision::Wait { member: 3 }
        );
        let nothing_yet = [Some(1_150), None];
        assert_eq!(
            due(&leader(1_100, 600, 550, &nothing_yet), 500),
            Decision::Wait { member: 3 }
        );
        // At the purge point is enough: the next entry it needs is still there.
        assert_eq!(
            due(&leader(1_100, 600, 550, &[Some(550)]), 500),
            Decision::Build
        );
        // The log is bounded: past WAIT_FACTOR thresholds and WAIT_AT_LEAST it builds anyway.
        let long_wait = |applied| Facts {
            waited: WAIT_AT_LEAST,
            ..leader(applied, 600, 550, &fed)
        };
        assert_eq!(
            due(&long_wait(600 + 500 * WAIT_FACTOR), 500),
            Decision::Build
        );
        // Either bound alone is not enough: a member whose snapshot takes longer to ship and
        // install than the leader takes to write WAIT_FACTOR thresholds is still waited for.
        assert_eq!(
            due(&leader(600 + 500 * WAIT_FACTOR, 600, 550, &fed), 500),
            Decision::Wait { member: 3 }
        );
        assert_eq!(
            due(&long_wait(600 + 500 * WAIT_FACTOR - 1), 500),
            Decision::Wait { member: 3 }
        );
    }

    #[test]
    fn a_candidate_builds_nothing() {
        // It may lead a moment later; its members would need what it purged.
        let candidate = Facts {
            role: Role::Other,
            matched: Vec::new(),
            ..leader(100_000, 600, 550, &[])
        };
        assert_eq!(due(&candidate, 500), Decision::NotYet);
    }

    #[test]
    fn followers_and_a_leader_that_never_purged_build_at_the_threshold() {
        let follower = Facts {
            role: Role::Follower,
            matched: Vec::new(),
            ..leader(1_100, 600, 550, &[])
        };
        assert_eq!(due(&follower, 500), Decision::Build);
        let never_purged = Facts {
            purged: None,
            ..leader(1_100, 600, 0, &[None])
        };
        assert_eq!(due(&never_purged, 500), Decision::Build);
    }

    #[test]
    fn six_nodes_build_snapshots_at_six_different_thresholds() {
        let mut thresholds: Vec<u64> = (1..=6).map(|id| snapshot_threshold(100_000, id)).collect();
        thresholds.sort();
        thresholds.dedup();
        assert_eq!(thresholds.len(), 6);
        assert_eq!(thresholds[0], 100_000);
        assert!(thresholds[5] <= 100_000 + 100_000 * 5 / 12);
        assert_eq!(snapshot_threshold(1, 3), 1, "small thresholds stay as set");
    }
}
