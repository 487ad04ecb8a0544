//! How fresh this node's replica is, as seen from the leader's appends and heartbeats.
//!
//! A follower or learner cannot know what the leader commits right now; it knows what the
//! leader had committed when its last append or heartbeat arrived (`leader_commit` in every
//! append). The internal Raft handler records each one the node accepts ([`Freshness::contact`]);
//! a stale leader's append, refused with a higher vote, is not a contact.
//!
//! From those samples:
//! - **staleness**: the time since the latest contact whose `leader_commit` this replica has
//!   applied. A view read now holds every change the leader had committed at that moment, so it
//!   is at most that old (plus one network delay, the append's trip). Unknown until the first
//!   such contact since the node started.
//! - **silence**: the time since the last contact of any kind.
//! - **lag**: how many entries the replica's applied index trails the `leader_commit` of the
//!   last contact.
//!
//! Gateways answer `/v1/ready` from these ([`crate::gateway`], `gateway.ready_leader_silence_ms`,
//! `gateway.ready_lag_entries_max`) and put the staleness on every view
//! ([`flashstock_api::STALENESS_HEADER`]).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most commit samples waiting for the replica to apply them. When the replica trails by more
/// samples than this, newer ones are not kept: the staleness then only errs on the old side.
const PENDING_MAX: usize = 1024;

/// The replica's freshness, from the leader's contacts.
#[derive(Debug, Default)]
pub struct Freshness {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// When the last accepted append or snapshot chunk arrived.
    last_contact: Option<Instant>,
    /// The leader's commit index in the last accepted append.
    leader_commit: u64,
    /// The latest moment at which the replica is known to have applied everything the leader
    /// had committed.
    fresh_at: Option<Instant>,
    /// Contacts whose commit index the replica had not applied yet, as `(commit, arrived)`,
    /// both strictly increasing front to back.
    pending: VecDeque<(u64, Instant)>,
}

/// One reading of [`Freshness`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreshnessView {
    /// How old a view read now may be; `None` before the first contact whose commit index the
    /// replica applied.
    pub staleness: Option<Duration>,
    /// Time since the last contact with a leader; `None` before the first.
    pub silence: Option<Duration>,
    /// Entries the applied index trails the last known leader commit index by.
    pub lag_entries: u64,
}

impl FreshnessView {
    /// The less fresh of two views in each measure: the view of a replica of several groups,
    /// from its groups' views. Unknown staleness or silence wins.
    pub fn least_fresh(self, other: FreshnessView) -> FreshnessView {
        let worst = |a: Option<Duration>, b: Option<Duration>| a.zip(b).map(|(a, b)| a.max(b));
        FreshnessView {
            staleness: worst(self.staleness, other.staleness),
            silence: worst(self.silence, other.silence),
            lag_entries: self.lag_entries.max(other.lag_entries),
        }
    }
}

impl Freshness {
    pub fn new() -> Freshness {
        Freshness::default()
    }

    /// A leader's append (or heartbeat) was accepted at `now`, carrying its commit index;
    /// `applied` is this replica's applied index at that moment.
    pub fn contact(&self, leader_commit: Option<u64>, applied: u64, now: Instant) {
        let mut inner = self.lock();
        // Appends are handled concurrently: one that arrived earlier may be recorded later.
        if inner.last_contact.is_some_and(|last| last > now) {
            return;
        }
        inner.last_contact = Some(now);
        let commit = leader_commit.unwrap_or(0);
        inner.leader_commit = commit;
        // A later sample with a commit index no higher makes the earlier ones useless: once
        // the replica reaches it, it is fresh as of the later moment.
        while inner.pending.back().is_some_and(|(c, _)| *c >= commit) {
            inner.pending.pop_back();
        }
        if commit <= applied {
            // Every sample left has a lower commit index, applied too.
            inner.pending.clear();
            inner.fresh_at = Some(now);
        } else if inner.pending.len() < PENDING_MAX {
            inner.pending.push_back((commit, now));
        }
    }

    /// A leader's snapshot chunk was accepted: the leader is in contact, and says nothing of
    /// its commit index.
    pub fn snapshot_contact(&self, now: Instant) {
        let mut inner = self.lock();
        inner.last_contact = inner.last_contact.max(Some(now));
    }

    /// The freshness of a view read now, at `applied`.
    pub fn view(&self, applied: u64, now: Instant) -> FreshnessView {
        let mut inner = self.lock();
        while let Some(&(commit, arrived)) = inner.pending.front() {
            if commit > applied {
                break;
            }
            inner.fresh_at = Some(arrived);
            inner.pending.pop_front();
        }
        let since = |moment: Option<Instant>| moment.map(|t| now.saturating_duration_since(t));
        FreshnessView {
            staleness: since(inner.fresh_at),
            silence: since(inner.last_contact),
            lag_entries: inner.leader_commit.saturating_sub(applied),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is a few numbers, valid after any panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn unknown_until_the_first_contact_is_applied() {
        let freshness = Freshness::new();
        let t0 = Instant::now();
        let view = freshness.view(0, t0);
        assert_eq!(view.staleness, None);
        assert_eq!(view.silence, None);
        freshness.contact(Some(10), 5, t0);
        let view = freshness.view(5, t0 + ms(30));
        assert_eq!(view.staleness, None);
        assert_eq!(view.silence, Some(ms(30)));
        assert_eq!(view.lag_entries, 5);
        // Once applied, fresh as of that contact, not as of the read.
        let view = freshness.view(10, t0 + ms(50));
        assert_eq!(view.staleness, Some(ms(50)));
        assert_eq!(view.lag_entries, 0);
    }

    #[test]
    fn heartbeats_keep_an_idle_replica_fresh() {
        let freshness = Freshness::new();
        let t0 = Instant::now();
        for i in 0..10 {
            freshness.contact(Some(7), 7, t0 + ms(100 * i));
        }
        assert_eq!(freshness.view(7, t0 + ms(920)).staleness, Some(ms(20)));
    }

    #[test]
    fn staleness_grows_while_no_leader_is_heard() {
        let freshness = Freshness::new();
        let t0 = Instant::now();
        freshness.contact(Some(7), 7, t0);
        let view = freshness.view(7, t0 + ms(4000));
        assert_eq!(view.staleness, Some(ms(4000)));
        assert_eq!(view.silence, Some(ms(4000)));
    }

    #[test]
    fn a_replica_behind_is_as_stale_as_the_last_contact_it_caught_up_with() {
        let freshness = Freshness::new();
        let t0 = Instant::now();
        freshness.contact(Some(10), 10, t0);
        freshness.contact(Some(20), 12, t0 + ms(100));
        freshness.contact(Some(30), 15, t0 + ms(200));
        // Still short of 20: fresh as of t0 only.
        assert_eq!(freshness.view(19, t0 + ms(250)).staleness, Some(ms(250)));
        assert_eq!(freshness.view(19, t0 + ms(250)).lag_entries, 11);
        // Reached 20, not 30.
        assert_eq!(freshness.view(25, t0 + ms(250)).staleness, Some(ms(150)));
        assert_eq!(freshness.view(30, t0 + ms(250)).staleness, Some(ms(50)));
    }

    #[test]
    fn a_lower_commit_from_a_new_leader_replaces_the_higher_samples() {
        let freshness = Freshness::new();
        let t0 = Instant::now();
        freshness.contact(Some(10), 10, t0);
        freshness.contact(Some(30), 10, t0 + ms(100));
        // A new leader that has not committed its first entry yet reports a lower index.
        freshness.contact(Some(25), 10, t0 + ms(200));
        assert_eq!(freshness.view(25, t0 + ms(300)).staleness, Some(ms(100)));
    }

    #[test]
    fn an_append_recorded_after_a_later_one_changes_nothing() {
        let freshness = Freshness::new();
        let t0 = Instant::now();
        freshness.contact(Some(20), 20, t0 + ms(100));
        freshness.contact(Some(10), 20, t0);
        let view = freshness.view(20, t0 + ms(150));
        assert_eq!(view.staleness, Some(ms(50)));
        assert_eq!(view.silence, Some(ms(50)));
        assert_eq!(view.lag_entries, 0);
    }

    #[test]
    fn a_snapshot_is_contact_but_not_freshness() {
        let freshness = Freshness::new();
        let t0 = Instant::now();
        freshness.snapshot_contact(t0);
        let view = freshness.view(0, t0 + ms(10));
        assert_eq!(view.silence, Some(ms(10)));
        assert_eq!(view.staleness, None);
    }
}
