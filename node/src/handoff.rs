//! Planned leader hand-off: moving leadership to another voter before the leader is stopped, so
//! that a planned restart costs a few milliseconds of held-back writes instead of the election
//! that a crash costs (the followers wait out their leader lease, then one stands).
//!
//! openraft 0.9.25 has no leadership transfer, but what it has is enough:
//! - A follower refuses to vote while its leader lease runs (it is renewed by every append and
//!   heartbeat), so the other follower will not vote for the successor. The leader's own vote,
//!   though, was last changed when it was elected: once it has led for longer than the lease
//!   (`raft.election_timeout_max_ms`), it grants a vote to a candidate with a higher term whose
//!   log is at least as long as its own, and steps down. The successor's own vote and the
//!   leader's make a majority of three.
//! - So the leader holds new proposals back ([`Gate`]), waits until none is in flight and the
//!   successor has matched its whole log, then asks the successor to stand
//!   ([`flashstock_api::ElectRequest`], `Raft::trigger().elect()` there), and waits until the
//!   successor leads. Held-back proposals then go on, are refused with `NotLeader` naming the
//!   successor, and the gateways send them there: definitely not applied here, so no purchase
//!   fails or ends unknown because of a hand-off.
//!
//! Safety does not rest on any of this: the successor wins only through Raft's own vote rules. If
//! a step times out, proposals go on and leadership stays, or moves through an ordinary election.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use flashstock_api::{
    ElectRequest, ErrorBody, ErrorCode, HandedOff, PreVoteRequest, PreVoteResponse, SECRET_HEADER,
};
use futures::StreamExt;
use openraft::raft::VoteRequest;
use openraft::{LogId, ServerState, Vote};
use raft_store::NodeId;
use tokio::sync::watch;

use crate::api_error::ApiError;
use crate::{Group, NodeState};

/// Longest wait for every proposal in flight to be applied and the successor to match the log.
const DRAIN_MAX: Duration = Duration::from_millis(1000);
/// Longest wait for the successor to win once asked to stand.
const ELECT_MAX: Duration = Duration::from_millis(2000);
/// Longest a proposal is held back by a hand-off: every step of one, and a margin.
pub const HOLD_MAX: Duration = Duration::from_millis(3200);
/// Longest a hand-off waits for another one, or a membership change, to finish first.
const BUSY_MAX: Duration = Duration::from_secs(5);
/// How often the hand-off checks its conditions while it waits.
const POLL: Duration = Duration::from_millis(1);
/// Margin past the leader lease before the leader asks for votes it must grant.
const LEASE_MARGIN: Duration = Duration::from_millis(50);

/// Holds new proposals back during a hand-off, and counts those in flight.
pub struct Gate {
    closed: watch::Sender<bool>,
    in_flight: AtomicUsize,
    /// One hand-off at a time.
    running: tokio::sync::Mutex<()>,
}

/// What the vote handler tells [`stand_when_leader_silent`] of the candidates this voter refused
/// while its log was at least as long as theirs.
#[derive(Default)]
pub struct Refusals {
    /// Woken when the refused candidate's log was shorter.
    shorter: tokio::sync::Notify,
    latest: std::sync::Mutex<Option<Refused>>,
}

/// The highest term of a candidate refused, this voter's last log id then, and when.
#[derive(Clone, Copy, Debug)]
struct Refused {
    term: u64,
    last_log_id: Option<LogId<NodeId>>,
    at: Instant,
}

impl Refusals {
    /// Records that this voter, its log ending at `last_log_id`, refused a candidate of `term`
    /// whose log is no longer than its own (`shorter` if it is shorter, which wakes the task
    /// that stands).
    ///
    /// Keeps the highest term refused, with the time and log id of the latest refusal: a refusal
    /// of a lower term after the leader was heard from must still count as one after that
    /// contact (the voter stands above every candidate it refused, the latest included), and the
    /// log id must be this voter's latest, the one its own vote at that term is checked against.
    pub fn record(&self, term: u64, last_log_id: Option<LogId<NodeId>>, shorter: bool) {
        {
            let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
            let term = latest.map_or(term, |seen| seen.term.max(term));
            *latest = Some(Refused {
                term,
                last_log_id,
                at: Instant::now(),
            });
        }
        if shorter {
            self.shorter.notify_one();
        }
    }

    /// The latest refusal, if it came after `contact`, the leader's last; forgotten either way.
    fn take_after(&self, contact: Option<Instant>) -> Option<Refused> {
        let refused = self
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        contact
            .is_none_or(|contact| refused.at > contact)
            .then_some(refused)
    }
}

/// A proposal in flight; dropped when it has its answer.
pub struct InFlight<'a>(&'a Gate);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            closed: watch::channel(false).0,
            in_flight: AtomicUsize::new(0),
            running: tokio::sync::Mutex::new(()),
        }
    }
}

impl Gate {
    /// Count one proposal in flight, first waiting (at most [`HOLD_MAX`]) while a hand-off holds
    /// proposals back. Counting before looking at the gate, and the hand-off closing the gate
    /// before looking at the count (both sequentially consistent), means that no proposal slips
    /// past a hand-off that saw none in flight.
    pub async fn enter(&self) -> InFlight<'_> {
        let deadline = tokio::time::Instant::now() + HOLD_MAX;
        loop {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            if !*self.closed.borrow() {
                return InFlight(self);
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let mut open = self.closed.subscribe();
            let waited = tokio::time::timeout_at(deadline, open.wait_for(|closed| !closed)).await;
            if waited.is_err() {
                // A hand-off that outlives its own bounds must not stop writes: go on.
                self.in_flight.fetch_add(1, Ordering::SeqCst);
                return InFlight(self);
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Keep hand-offs of this group from starting while the guard lives (one running finishes
    /// first): a membership change holds it, so that leadership does not move to a voter the
    /// change is about to remove while the change's entries are in flight.
    pub async fn no_hand_off(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.running.lock().await
    }
}

/// Closes the gate while it lives.
struct Closed<'a>(&'a Gate);

impl<'a> Closed<'a> {
    fn new(gate: &'a Gate) -> Closed<'a> {
        gate.closed.send_replace(true);
        Closed(gate)
    }
}

impl Drop for Closed<'_> {
    fn drop(&mut self) {
        self.0.closed.send_replace(false);
    }
}

fn failed(message: String) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::HandOffFailed,
        message,
    )
}

/// On the leader: hand leadership to `to`, or to the voter furthest along.
pub async fn hand_off(
    state: &NodeState,
    group: &Group,
    to: Option<NodeId>,
) -> Result<HandedOff, ApiError> {
    let successor = match to {
        Some(id) => Successor::Named(id),
        None => Successor::FurthestAlong(None),
    };
    hand_off_to(state, group, successor).await
}

/// On the leader: hand leadership to the voter furthest along among `among` (voters other than
/// this one; the others are left out).
pub async fn hand_off_among(
    state: &NodeState,
    group: &Group,
    among: &BTreeSet<NodeId>,
) -> Result<HandedOff, ApiError> {
    hand_off_to(state, group, Successor::FurthestAlong(Some(among))).await
}

/// Whom a hand-off goes to.
enum Successor<'a> {
    /// The voter named.
    Named(NodeId),
    /// The voter furthest along (the lowest id among equals), among these voters only if given.
    FurthestAlong(Option<&'a BTreeSet<NodeId>>),
}

async fn hand_off_to(
    state: &NodeState,
    group: &Group,
    successor: Successor<'_>,
) -> Result<HandedOff, ApiError> {
    let Ok(_one_at_a_time) = tokio::time::timeout(BUSY_MAX, group.handoff.running.lock()).await
    else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::MembershipChangeInProgress,
            format!(
                "another hand-off or a membership change of this group has run for over \
                 {BUSY_MAX:?}; try again once it completes"
            ),
        ));
    };
    let metrics = group.raft.metrics().borrow().clone();
    if metrics.state != ServerState::Leader {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::NotLeader,
            format!(
                "node {} is not the leader (the leader is {:?}); ask the leader",
                state.id, metrics.current_leader
            ),
        ));
    }
    let membership = metrics.membership_config.membership();
    if membership.get_joint_config().len() > 1 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::MembershipChangeInProgress,
            "a membership change is in progress; hand off once it completes",
        ));
    }
    let matched = |metrics: &openraft::RaftMetrics<NodeId, raft_store::Node>, id: NodeId| {
        metrics
            .replication
            .as_ref()
            .and_then(|peers| peers.get(&id).copied().flatten())
            .map(|log_id| log_id.index)
    };
    let others: Vec<NodeId> = membership
        .voter_ids()
        .filter(|id| *id != state.id)
        .filter(|id| match successor {
            Successor::FurthestAlong(Some(among)) => among.contains(id),
            _ => true,
        })
        .collect();
    let target = match successor {
        Successor::Named(id) if id == state.id => {
            return Err(ApiError::invalid(format!("node {id} already leads")))
        }
        Successor::Named(id) if !others.contains(&id) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::NotAVoter,
                format!("node {id} is not a voter; the voters are {others:?} and this leader"),
            ))
        }
        Successor::Named(id) => id,
        // Furthest along first; the lowest id among equals, so the choice is predictable.
        Successor::FurthestAlong(among) => *others
            .iter()
            .max_by_key(|id| (matched(&metrics, **id), std::cmp::Reverse(**id)))
            .ok_or_else(|| {
                let message = match among {
                    None => "this leader is the only voter: there is no one to hand to".into(),
                    Some(among) => format!("no voter among {among:?} other than this leader"),
                };
                ApiError::new(StatusCode::CONFLICT, ErrorCode::NoSuccessor, message)
            })?,
    };
    let Some(node) = membership.get_node(&target).cloned() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::UnknownNode,
            format!("node {target} has no address in the membership"),
        ));
    };

    // This leader grants the successor's vote only once its own lease has run out.
    let lease = Duration::from_millis(state.config.raft.election_timeout_max_ms) + LEASE_MARGIN;
    let led_for = group
        .raft
        .with_raft_state(|st| st.vote_last_modified().map(|at| at.elapsed()))
        .await
        .map_err(|e| failed(format!("the Raft core stopped: {e}")))?
        .unwrap_or(lease);
    if led_for < lease {
        tokio::time::sleep(lease - led_for).await;
    }

    let started = Instant::now();
    let closed = Closed::new(&group.handoff);
    // Replicate at once rather than at the next heartbeat: the successor matches sooner.
    let _ = group.raft.trigger().heartbeat().await;
    let drained_by = started + DRAIN_MAX;
    let last_log_index = loop {
        let metrics = group.raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            return Err(failed(format!(
                "node {} stopped leading during the hand-off (the leader is now {:?})",
                state.id, metrics.current_leader
            )));
        }
        let last = metrics.last_log_index.unwrap_or(0);
        if group.handoff.in_flight() == 0 && matched(&metrics, target) == Some(last) {
            break last;
        }
        if Instant::now() >= drained_by {
            return Err(failed(format!(
                "node {target} did not match the leader's log (index {last}, it has {:?}) within \
                 {DRAIN_MAX:?}; leadership stays with node {}",
                matched(&metrics, target),
                state.id
            )));
        }
        tokio::time::sleep(POLL).await;
    };

    if let Err((code, message)) =
        ask_to_stand(state, group.number, &node.addr, last_log_index).await
    {
        let mut error = failed(format!(
            "node {target} was asked to stand and {message}; leadership stays with node {} \
             unless `stockctl cluster status` shows otherwise",
            state.id
        ));
        if code == Some(ErrorCode::NodeStopping) {
            error.code = ErrorCode::NodeStopping;
        }
        return Err(error);
    }
    let elected_by = Instant::now() + ELECT_MAX;
    loop {
        let metrics = group.raft.metrics().borrow().clone();
        if metrics.current_leader == Some(target) && metrics.state != ServerState::Leader {
            let took_ms = started.elapsed().as_millis() as u64;
            drop(closed);
            tracing::info!(
                from = state.id,
                to = target,
                term = metrics.current_term,
                took_ms,
                "leadership handed off"
            );
            return Ok(HandedOff {
                from: state.id,
                to: target,
                term: metrics.current_term,
                took_ms,
            });
        }
        if Instant::now() >= elected_by {
            return Err(failed(format!(
                "node {target} stood but was not seen leading within {ELECT_MAX:?} (state \
                 {:?}, leader {:?}); an ordinary election settles it: see `stockctl cluster \
                 status`",
                metrics.state, metrics.current_leader
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Longest a hand-off is waited for where it is one step of something else (a stop, a removal
/// of the leader): one hand-off's own bounds ([`HOLD_MAX`] and the wait for its lease), which run
/// side by side for several groups at a stop.
pub const HAND_OFF_MAX: Duration = Duration::from_secs(5);

/// On a voter asked to stop (SIGTERM, Ctrl-C), before its listeners drain: hand every group it
/// leads to another voter, as `stockctl cluster hand-off` does before a planned restart, so that
/// a plain `systemctl stop` of a leader holds its groups' writes back for milliseconds instead of
/// the drain and then an election (the followers wait out their lease on a leader that no longer
/// reads calls). Skipped for a group whose other voters have not acknowledged this leader within
/// an election timeout (nobody alive to hand to: they are down, or stopped first), or that has
/// no other voter; a hand-off that fails leaves the group to an ordinary election once this node
/// is gone, as a crash would.
pub async fn hand_off_before_stopping(state: &NodeState) {
    let recent_ms = state.config.raft.election_timeout_min_ms;
    let leading = state.groups.iter().filter(|group| {
        let metrics = group.raft.metrics().borrow().clone();
        metrics.state == ServerState::Leader
            && metrics
                .millis_since_quorum_ack
                .is_some_and(|ms| ms <= recent_ms)
            && metrics
                .membership_config
                .membership()
                .voter_ids()
                .any(|id| id != state.id)
    });
    let handing = leading.map(|group| async move {
        let failure = match tokio::time::timeout(HAND_OFF_MAX, hand_off(state, group, None)).await {
            Ok(Ok(_)) => return,
            // Stopped together with this one (the whole cluster, say): nothing to hand to.
            Ok(Err(e)) if e.code == ErrorCode::NodeStopping => {
                tracing::info!(
                    id = state.id,
                    group = group.number,
                    "not handing leadership off before stopping: the voter furthest along is \
                     stopping too"
                );
                return;
            }
            Ok(Err(e)) => e.message,
            Err(_) => format!("not done within {HAND_OFF_MAX:?}"),
        };
        tracing::warn!(
            id = state.id,
            group = group.number,
            error = %failure,
            "could not hand leadership off before stopping; the group elects another leader \
             once this node is gone"
        );
    });
    futures::future::join_all(handing).await;
}

/// Ask voter `addr` to stand for election in `group`; `Err` says what happened, with the code of
/// its refusal when it refused.
async fn ask_to_stand(
    state: &NodeState,
    group: u16,
    addr: &str,
    last_log_index: u64,
) -> Result<(), (Option<ErrorCode>, String)> {
    let timeout = Duration::from_millis(state.config.raft.rpc_timeout_ms);
    let (http, scheme) = state
        .internal_http(timeout)
        .map_err(|e| (None, format!("could not be reached ({e})")))?;
    let request = ElectRequest {
        from: state.id,
        last_log_index,
    };
    let call = http
        .post(format!("{scheme}://{addr}{}", crate::network::ELECT_PATH))
        .header(SECRET_HEADER, &**state.credentials.own_secret());
    let response = flashstock_client::for_group(call, group)
        .timeout(timeout)
        .json(&request)
        .send()
        .await
        .map_err(|e| (None, format!("did not answer ({e})")))?;
    if response.status().is_success() {
        return Ok(());
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let code = serde_json::from_str::<ErrorBody>(&body)
        .ok()
        .map(|refusal| refusal.code);
    Err((code, format!("refused: {status} {body}")))
}

/// On the successor: stand for election now, once this node's log reaches the leader's.
pub async fn stand(
    state: &NodeState,
    group: &Group,
    request: ElectRequest,
) -> Result<(), ApiError> {
    let wait_until = Instant::now() + Duration::from_millis(200);
    loop {
        // A node on its way out would take the group with it: it hands off what it leads
        // before it stops, and a group handed to it meanwhile would wait out an election.
        if state.stop_requested.load(Ordering::SeqCst) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::NodeStopping,
                format!("node {} is stopping", state.id),
            ));
        }
        let metrics = group.raft.metrics().borrow().clone();
        if metrics.state == ServerState::Leader {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::HandOffFailed,
                format!("node {} already leads", state.id),
            ));
        }
        if !metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == state.id)
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::NotAVoter,
                format!("node {} is not a voter", state.id),
            ));
        }
        if metrics.last_log_index.unwrap_or(0) >= request.last_log_index {
            break;
        }
        if Instant::now() >= wait_until {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::HandOffFailed,
                format!(
                    "node {}'s log ends at {:?}, before the leader's {}",
                    state.id, metrics.last_log_index, request.last_log_index
                ),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    tracing::info!(
        id = state.id,
        from = request.from,
        "standing for election: the leader hands off"
    );
    group
        .raft
        .trigger()
        .elect()
        .await
        .map_err(|e| failed(format!("the Raft core stopped: {e}")))
}

/// How many heartbeat intervals a deposed leader waits to hear of a new leader before it stands
/// again: a new leader's first append comes within one.
const RECLAIM_AFTER_HEARTBEATS: u32 = 2;

/// On a voter: stand again at once when this node was deposed as leader and no new leader
/// appears, instead of waiting out an election timeout.
///
/// A voter that stood at a higher term nobody granted deposes the leader with the first answer
/// it gives it. Since the pre-vote ([`pre_vote`]) a voter of this release stands only once a
/// majority has lost the leader, but one of an older release, during a rolling upgrade, still
/// stands on openraft's timer, cut off or not. Nobody could then win until some voter's election
/// timer fired: the returning voter cannot (its log is behind), and the followers still hold
/// their lease on the old leader, so nothing commits for 0.7 to 1.5 s (one harness run with
/// partitions, before the pre-vote). The deposed leader is the best candidate there is (its log
/// is the longest), and the returning voter grants it a vote at once (its own vote is only a
/// candidate's, which no lease protects): with its own, a majority of three. So, two heartbeats
/// after stepping down with no leader known, it stands, without a pre-vote: the other follower
/// still holds its lease on this very leader and would refuse one.
///
/// Only when it stepped down for no known successor and not during a hand-off ([`Gate`]): a
/// leader deposed by a legitimate election hears from the winner within one heartbeat. Safety
/// does not rest on this: an election is safe whenever it starts. At most one election per
/// step-down, so it cannot start a duel of its own.
pub async fn reclaim_when_deposed(
    state: std::sync::Arc<NodeState>,
    group: u16,
    mut stopping: watch::Receiver<bool>,
) {
    let group = &state.groups[usize::from(group)];
    let wait =
        Duration::from_millis(state.config.raft.heartbeat_interval_ms) * RECLAIM_AFTER_HEARTBEATS;
    let mut server = group.raft.server_metrics();
    let mut was_leader = false;
    loop {
        tokio::select! {
            changed = server.changed() => if changed.is_err() { return },
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        let leading = server.borrow_and_update().state == ServerState::Leader;
        if leading {
            was_leader = true;
            continue;
        }
        if !std::mem::take(&mut was_leader) || *group.handoff.closed.borrow() {
            continue;
        }
        tokio::time::sleep(wait).await;
        let leaderless = {
            let now = server.borrow_and_update();
            // Elected again meanwhile: the change is seen here, so remember it here.
            was_leader = now.state == ServerState::Leader;
            now.state == ServerState::Follower
                && now.current_leader.is_none()
                && now
                    .membership_config
                    .membership()
                    .voter_ids()
                    .any(|id| id == state.id)
        };
        if leaderless && !*group.handoff.closed.borrow() {
            tracing::info!(
                id = state.id,
                "deposed by a higher term with no leader in sight: standing again"
            );
            state.metrics.reclaims.inc();
            if let Err(e) = group.raft.trigger().elect().await {
                tracing::warn!(id = state.id, error = %e, "could not stand again");
            }
        }
    }
}

/// On a voter: every election of `group` this voter starts on its own. openraft's timer is off
/// (`enable_elect: false` in [`crate::raft_config`]), so that no voter raises its term without
/// first learning that a majority of the voters has lost the leader too ([`pre_vote`]); this task
/// decides when to stand instead, checking every heartbeat interval:
///
/// - **No leader past the lease.** While this voter follows a leader (its vote is committed),
///   it stands once that leader has been silent for the lease (`raft.election_timeout_max_ms`,
///   during which no voter grants a vote), a margin, and a random part of up to half
///   `raft.election_timeout_min_ms` (so that two followers rarely stand at once): a leader's
///   crash costs 1.25 to 1.65 s, against openraft's 1.8 to 2.4 s (the lease plus the node's
///   election timeout, and 2.4 s more if it ever lost an election to a longer log).
/// - **No leader after a vote.** Once it has voted for a candidate, or stood itself, and no
///   leader came of it (no lease runs then), it stands again after `raft.election_timeout_min_ms`
///   and the random part: a split election is retried, as openraft's timer would.
/// - **Nothing heard since it started.** A voter that restarts stands after the random part
///   only, as openraft does at its first tick: when every voter restarted, one leads at once;
///   when the others still have a leader, they refuse its pre-vote and it raises nothing.
/// - **The longer log.** A leader that dies with an entry in flight leaves one follower with
///   that entry and one without. If the one without stands first, the other refuses it (its log
///   is longer) and it cannot win; the one with the entry is the only voter that can. So once
///   the vote handler has refused a shorter log ([`crate::Group::refused_candidates`]) and no
///   leader has been heard from since, this voter stands past the lease without the random
///   part, and again whenever it refuses a shorter log after its last stand: a candidate that
///   learns of a higher vote of its own term from an answer takes it and becomes a follower, so
///   a voter with the longer log whose request reached a shorter-logged candidate of a higher id
///   only after that one stood at the same term was left following a candidate that cannot win
///   (seed 4125: 5.4 s without a leader for a group).
///
/// Before every stand it asks the other voters for a pre-vote; refused, it tries again after
/// `raft.election_timeout_min_ms` and the random part, or sooner, once the leases it was refused
/// for have run out for a majority (each refusal says how long its own has left). It stands at a term above any candidate it
/// refused since the leader's last contact (`rise_to`), so that its vote request outranks theirs.
/// The silence is the time since the replica's last accepted append from a leader, or since this
/// node's vote last changed or it last became a follower, if later. A node on its way out does
/// not stand. Safety does not rest on this: an election is safe whenever it starts.
pub async fn stand_when_leader_silent(
    state: std::sync::Arc<NodeState>,
    group: u16,
    mut stopping: watch::Receiver<bool>,
) {
    let group = &state.groups[usize::from(group)];
    let raft = &state.config.raft;
    let timeout_min = Duration::from_millis(raft.election_timeout_min_ms);
    // The margin: openraft dates the lease from its own handling of the last append.
    let past_lease = Duration::from_millis(raft.election_timeout_max_ms) + LEASE_MARGIN;
    let spread_ms = (raft.election_timeout_min_ms / 2).max(1);
    let random_part = || Duration::from_millis(getrandom::u64().unwrap_or(0) % spread_ms);
    let heartbeat = Duration::from_millis(raft.heartbeat_interval_ms);
    let mut ticks = tokio::time::interval(heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When this voter last refused a candidate with a shorter log.
    let mut refused_shorter: Option<Instant> = None;
    // When this voter last asked for a pre-vote, and when it may ask again (a refused pre-vote
    // or a stand that did not win: an election timeout and the random part later).
    let mut tried: Option<Instant> = None;
    let mut retry_at: Option<Instant> = None;
    let mut jitter = random_part();
    let started = Instant::now();
    let mut follower_since = started;
    let mut was_follower = true;
    let mut vote = group.raft.metrics().borrow().vote;
    let mut vote_since = started;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = group.refused_candidates.shorter.notified() => {
                refused_shorter = Some(Instant::now());
            }
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        let now = Instant::now();
        let (follower, vote_now) = {
            let metrics = group.raft.metrics();
            let metrics = metrics.borrow();
            (metrics.state == ServerState::Follower, metrics.vote)
        };
        if follower && !was_follower {
            follower_since = now;
        }
        was_follower = follower;
        if vote_now != vote {
            vote = vote_now;
            vote_since = now;
        }
        let leader_silence = group
            .freshness
            .view(group.reader.applied_index(), now)
            .silence;
        let since_change = now.saturating_duration_since(follower_since.max(vote_since));
        let silence = leader_silence.map_or(since_change, |heard| heard.min(since_change));
        let contact = now.checked_sub(silence);
        // A leader heard from after the refusal is alive, or was elected meanwhile.
        if refused_shorter.is_some_and(|at| contact.is_some_and(|contact| contact > at)) {
            refused_shorter = None;
        }
        let base =
            if leader_silence.is_none() && since_change >= now.saturating_duration_since(started) {
                Duration::ZERO
            } else if vote.is_committed() {
                past_lease
            } else {
                timeout_min
            };
        if silence < base {
            jitter = random_part();
        }
        let due = match refused_shorter {
            Some(_) => base,
            None => base + jitter,
        };
        let refused_since = refused_shorter.is_some_and(|at| tried.is_none_or(|tried| at > tried));
        let waiting = retry_at.is_some_and(|at| now < at) && !refused_since;
        if silence < due || waiting || !may_stand(&state, group) {
            continue;
        }
        tried = Some(now);
        retry_at = Some(now + timeout_min + random_part());
        if let Err(leases_end) = pre_vote(&state, group, timeout_min / 2).await {
            state.metrics.pre_votes_refused.inc();
            // Refused for leases that run out soon (a leader that died a heartbeat before this
            // voter last heard from it): ask again then, not an election timeout later.
            if let Some(leases_end) = leases_end {
                let soon = (leases_end + LEASE_MARGIN).max(heartbeat);
                retry_at = retry_at.map(|at| at.min(Instant::now() + soon));
            }
            continue;
        }
        // Another voter may have stood meanwhile and had this one's vote (seed 4129: twice, a
        // voter granted a candidate's vote during its own pre-vote, then stood one term above
        // and deposed that candidate the moment it had won, 200 ms until its reclaim): it is
        // the candidate's election now.
        if group.raft.metrics().borrow().vote != vote {
            continue;
        }
        let refused = group.refused_candidates.take_after(contact);
        let (stands, won) = if refused_shorter.take().is_some() {
            tracing::info!(
                id = state.id,
                group = group.number,
                candidate_term = refused.map(|r| r.term),
                "refused a candidate with a shorter log and the leader is silent past its lease: \
                 standing"
            );
            (
                &state.metrics.longer_log_stands,
                &state.metrics.longer_log_stands_won,
            )
        } else {
            tracing::info!(
                id = state.id,
                group = group.number,
                silent_ms = silence.as_millis() as u64,
                candidate_term = refused.map(|r| r.term),
                "no leader heard from: standing"
            );
            (
                &state.metrics.leaderless_stands,
                &state.metrics.leaderless_stands_won,
            )
        };
        stands.inc();
        tokio::select! {
            won_it = stand_on_own(&state, group, refused, timeout_min) => {
                if won_it {
                    won.inc();
                }
            }
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        // The stand changed the vote when it started, not at the next tick: an election that
        // made no leader is retried an election timeout after it started, and the random part.
        let vote_now = group.raft.metrics().borrow().vote;
        if vote_now != vote {
            vote = vote_now;
            vote_since = now;
        }
        retry_at = Some(Instant::now() + random_part());
    }
}

/// Whether a majority of `group`'s voters (of each configuration, during a membership change),
/// this one included, would vote for it now: asked of the others at once, each answer awaited
/// for at most `wait`. A voter that does not answer, or answers an error (one of an older
/// release, which has no pre-vote), counts as refusing. Refused, it says how soon a majority
/// would grant if the refusals were for leases that run out (each voter says when its own does),
/// or `None` if not even then.
///
/// Without it (openraft 0.9.25 has no PreVote), a voter cut off from the others, or paused, or
/// restarted while they still had a leader, stood at a higher term that nobody granted; back in
/// touch, its first answer to the leader carried that term and the leader stepped down, and the
/// group had no leader until one stood again (a twenty-minute fault run of three groups, seed
/// 4128: 101 such reclaims, one of them 3.0 s without a confirmed purchase). Only the lease is
/// asked about, not the log: a candidate with a shorter log is refused by the vote itself, and
/// that refusal is what makes the voter with the longer log stand at once.
pub async fn pre_vote(
    state: &NodeState,
    group: &Group,
    wait: Duration,
) -> Result<(), Option<Duration>> {
    let membership = group
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .clone();
    let configs = membership.get_joint_config().clone();
    let majority_of_each = |granted: &BTreeSet<NodeId>| {
        configs
            .iter()
            .all(|voters| voters.intersection(granted).count() * 2 > voters.len())
    };
    let mut granted = BTreeSet::from([state.id]);
    if majority_of_each(&granted) {
        return Ok(());
    }
    let (http, scheme) = match state.internal_http(wait) {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(id = state.id, error = %e, "could not ask for a pre-vote");
            return Err(None);
        }
    };
    let request = PreVoteRequest { from: state.id };
    let mut asking: futures::stream::FuturesUnordered<_> = membership
        .voter_ids()
        .filter(|id| *id != state.id)
        .filter_map(|id| Some((id, membership.get_node(&id)?.addr.clone())))
        .map(|(id, addr)| {
            let call = http
                .post(format!(
                    "{scheme}://{addr}{}",
                    crate::network::PRE_VOTE_PATH
                ))
                .header(SECRET_HEADER, &**state.credentials.own_secret());
            let call = flashstock_client::for_group(call, group.number)
                .timeout(wait)
                .json(&request)
                .send();
            async move {
                let answer = async {
                    call.await?
                        .error_for_status()?
                        .json::<PreVoteResponse>()
                        .await
                }
                .await;
                (id, answer)
            }
        })
        .collect();
    let mut refusals = Vec::new();
    // When each voter that refused for its lease would grant: their leases run out then.
    let mut lease_ends = BTreeMap::new();
    while let Some((id, answer)) = asking.next().await {
        match answer {
            Ok(answer) if answer.granted => {
                granted.insert(id);
                if majority_of_each(&granted) {
                    return Ok(());
                }
            }
            Ok(answer) => {
                refusals.push(format!(
                    "{id}: follows {:?}, lease left {:?} ms",
                    answer.leader, answer.lease_left_ms
                ));
                if let Some(left) = answer.lease_left_ms {
                    lease_ends.insert(id, Duration::from_millis(left));
                }
            }
            Err(e) => refusals.push(format!("{id}: {e}")),
        }
    }
    tracing::info!(
        id = state.id,
        group = group.number,
        refusals = refusals.join("; "),
        "a majority of the voters still has a leader, or did not answer: not standing"
    );
    Err(majority_after_leases(&configs, &granted, &lease_ends))
}

/// How soon a majority of each configuration in `configs` would grant a pre-vote: `granted`
/// have, and each voter of `lease_ends` will once its lease runs out, after its duration. `None`
/// if some configuration lacks a majority even then (voters that did not answer).
fn majority_after_leases(
    configs: &[BTreeSet<NodeId>],
    granted: &BTreeSet<NodeId>,
    lease_ends: &BTreeMap<NodeId, Duration>,
) -> Option<Duration> {
    let mut wait_for = Duration::ZERO;
    for voters in configs {
        let have = voters.intersection(granted).count();
        let need = (voters.len() / 2 + 1).saturating_sub(have);
        let mut ends: Vec<Duration> = voters
            .iter()
            .filter_map(|id| lease_ends.get(id).copied())
            .collect();
        ends.sort_unstable();
        if let Some(at) = need.checked_sub(1) {
            wait_for = wait_for.max(*ends.get(at)?);
        }
    }
    Some(wait_for)
}

/// This voter's answer to a pre-vote in `group` at `now`: refused while it leads, or while it
/// follows a leader heard from within the lease, as its vote would be (openraft refuses a vote
/// while the lease of a committed vote runs).
pub fn answer_pre_vote(state: &NodeState, group: &Group, now: Instant) -> PreVoteResponse {
    let lease = Duration::from_millis(state.config.raft.election_timeout_max_ms);
    let metrics = group.raft.metrics().borrow().clone();
    let silence = group
        .freshness
        .view(group.reader.applied_index(), now)
        .silence;
    let leads = metrics.state == ServerState::Leader;
    let lease_left = silence
        .filter(|_| metrics.vote.is_committed() && !leads)
        .and_then(|silence| lease.checked_sub(silence))
        .filter(|left| !left.is_zero());
    PreVoteResponse {
        granted: !leads && lease_left.is_none(),
        leader: metrics.current_leader,
        lease_left_ms: lease_left.map(|left| left.as_millis() as u64 + 1),
    }
}

/// Stands for election in `group`, above the candidate refused if any, and returns whether this
/// voter won at the term it stood at, waiting at most `wait` for the outcome.
async fn stand_on_own(
    state: &NodeState,
    group: &Group,
    refused: Option<Refused>,
    wait: Duration,
) -> bool {
    let before = match refused {
        Some(refused) => rise_to(state, group, refused).await,
        None => group.raft.metrics().borrow().current_term,
    };
    if let Err(e) = group.raft.trigger().elect().await {
        tracing::warn!(id = state.id, error = %e, "could not stand");
        return false;
    }
    won_at(state, group, before + 1, wait).await
}

/// Raises this voter's term to that of the candidate it refused, so that its election, one term
/// higher, outranks that candidate's. Returns the voter's term after.
///
/// openraft 0.9.25 leaves a voter's term as it was when it refuses a vote request (for a shorter
/// log, or while its lease runs), so its next election would be at the candidate's own term at
/// best, and openraft breaks a
/// tie of terms by node id (`LeaderId` orders by term, then node): where the candidate has the
/// higher id, it keeps its own vote and refuses this voter's, and neither wins until one of
/// them stands again, an election timeout later (seed 4123, a leader killed: 4.1 s without a
/// confirmed purchase). So the voter first votes for itself at the candidate's term, as a
/// candidate of that term that asked no one: its own vote request, through the same checks as
/// any other (a higher or equal vote, a log at least as long as its own, no leader's lease
/// running). Raft's rule of one vote per term holds: the voter had voted for no one at that term,
/// having refused the candidate. If the vote is refused, it stands from where it is.
async fn rise_to(state: &NodeState, group: &Group, refused: Refused) -> u64 {
    let term = group.raft.metrics().borrow().current_term;
    if term >= refused.term {
        return term;
    }
    let own = VoteRequest::new(Vote::new(refused.term, state.id), refused.last_log_id);
    match group.raft.vote(own).await {
        Ok(answer) if answer.vote_granted => answer.vote.leader_id().term,
        Ok(answer) => {
            tracing::info!(
                id = state.id,
                group = group.number,
                vote = %answer.vote,
                "could not take the refused candidate's term: standing from this one"
            );
            term.max(answer.vote.leader_id().term)
        }
        Err(e) => {
            tracing::warn!(id = state.id, error = %e, "could not take the refused candidate's term");
            term
        }
    }
}

/// Whether this voter leads `group` at `term`, the term it stood at, within `wait`: an election
/// that did not split.
async fn won_at(state: &NodeState, group: &Group, term: u64, wait: Duration) -> bool {
    let id = state.id;
    group
        .raft
        .wait(Some(wait))
        .metrics(
            // A leader known at the term, a later term, or this node a follower at the term (it
            // took a higher vote of the same term from an answer): decided. (Before the election
            // starts, the metrics may still name the old leader, at an earlier term.)
            |m| {
                m.current_term > term
                    || (m.current_term == term
                        && (m.current_leader.is_some() || m.state == ServerState::Follower))
            },
            "the election's outcome",
        )
        .await
        .is_ok_and(|m| m.current_term == term && m.current_leader == Some(id))
}

/// Whether this node may stand in `group` on its own initiative: a follower or a candidate (not
/// the leader), a voter of the group, and not on its way out.
fn may_stand(state: &NodeState, group: &Group) -> bool {
    let metrics = group.raft.metrics().borrow().clone();
    let voter = metrics
        .membership_config
        .membership()
        .voter_ids()
        .any(|id| id == state.id);
    matches!(
        metrics.state,
        ServerState::Follower | ServerState::Candidate
    ) && voter
        && !state.stop_requested.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn a_refusal_for_a_lease_about_to_run_out_is_asked_again_then() {
        // Three voters: this one (1) and one more grant make a majority.
        let configs = [ids(&[1, 2, 3])];
        let leases = BTreeMap::from([(2, ms(40)), (3, ms(900))]);
        assert_eq!(
            majority_after_leases(&configs, &ids(&[1]), &leases),
            Some(ms(40))
        );
        // Voter 3 does not answer: voter 2's lease alone decides.
        let leases = BTreeMap::from([(2, ms(40))]);
        assert_eq!(
            majority_after_leases(&configs, &ids(&[1]), &leases),
            Some(ms(40))
        );
        // Neither says when it would grant (the leader itself, or no answer): not soon.
        assert_eq!(
            majority_after_leases(&configs, &ids(&[1]), &BTreeMap::new()),
            None
        );
    }

    #[test]
    fn five_voters_wait_for_the_second_lease_to_run_out() {
        let configs = [ids(&[1, 2, 3, 4, 5])];
        let leases = BTreeMap::from([(2, ms(300)), (3, ms(10)), (4, ms(700))]);
        assert_eq!(
            majority_after_leases(&configs, &ids(&[1]), &leases),
            Some(ms(300))
        );
        assert_eq!(
            majority_after_leases(&configs, &ids(&[1, 5]), &leases),
            Some(ms(10))
        );
    }

    #[test]
    fn a_joint_configuration_needs_a_majority_of_each() {
        // Old voters {1, 2, 3}, new {1, 4, 5}: 4 says nothing, so the new one has no majority.
        let configs = [ids(&[1, 2, 3]), ids(&[1, 4, 5])];
        let leases = BTreeMap::from([(2, ms(50)), (5, ms(500))]);
        assert_eq!(
            majority_after_leases(&configs, &ids(&[1]), &leases),
            Some(ms(500))
        );
        let leases = BTreeMap::from([(2, ms(50))]);
        assert_eq!(majority_after_leases(&configs, &ids(&[1]), &leases), None);
    }
}
