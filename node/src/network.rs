//! Raft's network: appends and votes over the internal wire ([`flashstock_client::wire`]: one
//! persistent, multiplexed binary connection per peer), snapshots and every RPC to a peer that
//! does not speak the wire over persistent HTTP/1.1 connections (reqwest). Bodies are bincode
//! either way, each call carries this node's credential (a voter's: only voters send Raft RPCs,
//! and every node admits only the voter credential on them).
//!
//! A leader paces its appends to a learner (a gateway) whose stream is busy: at most one per
//! `raft.learner_append_interval_ms`, so that the entries of those milliseconds travel, are
//! appended and are applied together (`LearnerPace`). A learner's log counts for no commit,
//! so no write waits for it; a voter's appends are never held back.
//!
//! Error mapping, as openraft expects it: a connection that cannot be made is `Unreachable`
//! (openraft backs off before the next try); any other transport failure is `Network` (it retries
//! at once); a timeout is `Timeout`; an error the peer answered is `RemoteError`.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cluster_config::Transport;
use flashstock_api::SECRET_HEADER;
use flashstock_client::wire::{CallError, Connector, Route, WireClient, WirePool};
use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use raft_store::{Node, NodeId, Raft, TypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::internal::APPEND_ENTRIES_MAX;
use crate::metrics::{Metrics, Stage};

/// Paths of the Raft RPCs on the internal listener.
pub const APPEND_PATH: &str = Route::Append.path();
pub const VOTE_PATH: &str = Route::Vote.path();
pub const SNAPSHOT_PATH: &str = "/raft/snapshot";
/// Where a leader handing off asks its successor to stand ([`crate::handoff`]).
pub const ELECT_PATH: &str = "/raft/elect";
/// Where a voter asks the others, before it stands on its own, whether they would vote
/// ([`crate::handoff`]).
pub const PRE_VOTE_PATH: &str = "/raft/pre-vote";

/// Creates one [`PeerClient`] per replication target of one Raft group; the groups' networks
/// share one connection pool per transport, so a peer gets one connection for all of them.
#[derive(Clone)]
pub struct Network {
    /// The Raft group whose messages this network carries.
    group: u16,
    http: reqwest::Client,
    /// `None` when `raft.transport` is `http`.
    wire: Option<WirePool>,
    secret: Arc<str>,
    /// `https` with mutual TLS (`tls.internal_*`), else `http`.
    scheme: &'static str,
    metrics: Arc<Metrics>,
    /// `raft.learner_append_interval_ms`.
    learner_interval: Duration,
    /// The group's Raft metrics, once started: its membership tells a learner from a voter.
    /// (The metrics, not the Raft: the Raft holds this network, and would then hold itself.)
    membership: Arc<OnceLock<Membership>>,
}

/// The group's Raft metrics, of which [`LearnerPace`] reads the membership.
type Membership = tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, Node>>;

impl Network {
    /// `local_ip`: the address outgoing connections leave from (the node's own listen address),
    /// so that peers and fault injectors can tell nodes apart by address.
    /// `tls`: this node's client config for mutual TLS; `None` speaks plaintext.
    pub fn new(
        secret: Arc<str>,
        connect_timeout: Duration,
        local_ip: Option<IpAddr>,
        tls: Option<flashstock_client::TlsConfig>,
        transport: Transport,
        learner_interval: Duration,
        metrics: Arc<Metrics>,
    ) -> Network {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let http = flashstock_client::http_builder(connect_timeout, local_ip, tls.as_ref())
            .build()
            .expect("a client of a rustls config always builds");
        let wire = (transport == Transport::Wire).then(|| {
            WirePool::new(Connector {
                secret: secret.clone(),
                connect_timeout,
                local: local_ip,
                tls,
                idle: flashstock_client::POOL_IDLE_TIMEOUT,
            })
        });
        Network {
            group: 0,
            http,
            wire,
            secret,
            scheme,
            metrics,
            learner_interval,
            membership: Arc::new(OnceLock::new()),
        }
    }
}

impl Network {
    /// The same network, carrying group `group`'s messages; [`Network::started`] tells it the
    /// group's Raft.
    pub fn for_group(&self, group: u16) -> Network {
        Network {
            group,
            membership: Arc::new(OnceLock::new()),
            ..self.clone()
        }
    }

    /// Tell this group's network its Raft, whose membership says which targets are learners.
    /// Until then no target is paced.
    pub fn started(&self, raft: &Raft) {
        let _ = self.membership.set(raft.metrics());
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            group: self.group,
            http: self.http.clone(),
            wire: self.wire.as_ref().map(|pool| pool.client(&node.addr)),
            secret: self.secret.clone(),
            target,
            base: format!("{}://{}", self.scheme, node.addr),
            metrics: self.metrics.clone(),
            pace: LearnerPace {
                interval: self.learner_interval,
                membership: self.membership.clone(),
                last_sent: None,
            },
        }
    }
}

/// How long a leader's append to one target holds its replication stream. An append to a
/// target that is a learner in the group's membership, that left less than twice `interval`
/// after the one before it (the stream is busy) and that carried less than a full append, is
/// answered to openraft no sooner than `interval` after it left: openraft sends the next only
/// then, with everything the log gained meanwhile and the commit index of that moment.
///
/// - Holding after the answer, not before the next send, keeps each append's commit index as
///   fresh as when it leaves, which the learner's freshness stamps ([`crate::freshness`])
///   rely on.
/// - An append after a quiet spell is not held, so on a quiet cluster the commit index that
///   follows an entry reaches the learner as soon as it is known (a product created is
///   visible on every gateway within milliseconds, as before); only a busy stream is paced.
/// - A voter, or a learner whose last append was full (catching up), is never held.
struct LearnerPace {
    interval: Duration,
    membership: Arc<OnceLock<Membership>>,
    /// When the last append to this target left.
    last_sent: Option<Instant>,
}

impl LearnerPace {
    /// Until when the stream to `target` is held after an append of `entries` that left at
    /// `sent`, if at all.
    fn hold_until(&mut self, target: NodeId, sent: Instant, entries: usize) -> Option<Instant> {
        let busy = self.left(sent);
        self.due(sent, entries, busy, Instant::now(), || {
            let Some(metrics) = self.membership.get() else {
                // Not started yet: treated as a voter, never held.
                return true;
            };
            let metrics = metrics.borrow();
            // The voters of every configuration, joint ones included.
            metrics
                .membership_config
                .membership()
                .voter_ids()
                .any(|id| id == target)
        })
    }

    /// Note an append that left at `sent`; whether it left within twice the interval of the
    /// one before (the stream is busy). Twice: an append that follows a held one leaves about
    /// one interval after it, and must count as busy too, or only every second append of a
    /// busy stream would be held.
    fn left(&mut self, sent: Instant) -> bool {
        let busy = self
            .last_sent
            .is_some_and(|last| sent.saturating_duration_since(last) < 2 * self.interval);
        self.last_sent = Some(sent);
        busy
    }

    /// The rule of [`LearnerPace::hold_until`] at `now`; `busy`: the append left within twice
    /// the interval of the one before; `voter` says whether the target is one (asked only when the
    /// answer matters).
    fn due(
        &self,
        sent: Instant,
        entries: usize,
        busy: bool,
        now: Instant,
        voter: impl FnOnce() -> bool,
    ) -> Option<Instant> {
        if self.interval.is_zero() || !busy || entries >= APPEND_ENTRIES_MAX {
            return None;
        }
        let due = sent + self.interval;
        (due > now && !voter()).then_some(due)
    }
}

/// Sends one group's Raft RPCs to one peer.
pub struct PeerClient {
    group: u16,
    http: reqwest::Client,
    wire: Option<Arc<WireClient>>,
    secret: Arc<str>,
    target: NodeId,
    base: String,
    metrics: Arc<Metrics>,
    pace: LearnerPace,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        action: RPCTypes,
        path: &str,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body =
            bincode::serialize(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let ttl = option.hard_ttl();
        let route = match action {
            RPCTypes::AppendEntries => Some(Route::Append),
            RPCTypes::Vote => Some(Route::Vote),
            RPCTypes::InstallSnapshot => None,
        };
        if let (Some(wire), Some(route)) = (&self.wire, route) {
            match wire.call_group(route, self.group, &body, ttl).await {
                Ok(reply) => return self.answer(path, reply.status, &reply.body),
                // An older peer: over HTTP below.
                Err(CallError::NotSpoken(_)) => {}
                Err(error @ CallError::NotSent(_)) => {
                    return Err(RPCError::Unreachable(Unreachable::new(&error)))
                }
                Err(CallError::TimedOut(_)) => {
                    return Err(RPCError::Timeout(Timeout {
                        action,
                        id: 0,
                        target: self.target,
                        timeout: ttl,
                    }))
                }
                Err(error @ CallError::Lost(_)) => {
                    return Err(RPCError::Network(NetworkError::new(&error)))
                }
            }
        }
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(SECRET_HEADER, &*self.secret);
        let response = flashstock_client::for_group(request, self.group)
            .timeout(ttl)
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e, action, ttl))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e, action, ttl))?;
        self.answer(path, status.as_u16(), &bytes)
    }

    /// The peer's answer to a call of `path`, whichever transport brought it.
    // The error is openraft's own `RPCError`, returned as `RaftNetwork` expects it.
    #[allow(clippy::result_large_err)]
    fn answer<Resp, E>(&self, path: &str, status: u16, bytes: &[u8]) -> RpcResult<Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        if !(200..300).contains(&status) {
            let message = String::from_utf8_lossy(bytes).into_owned();
            let error = std::io::Error::other(format!("{path} answered {status}: {message}"));
            return Err(RPCError::Network(NetworkError::new(&error)));
        }
        let answer: Result<Resp, RaftError<NodeId, E>> =
            bincode::deserialize(bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    fn transport_error<E: std::error::Error>(
        &self,
        error: reqwest::Error,
        action: RPCTypes,
        ttl: Duration,
    ) -> RPCError<NodeId, Node, RaftError<NodeId, E>> {
        if error.is_connect() {
            RPCError::Unreachable(Unreachable::new(&error))
        } else if error.is_timeout() {
            RPCError::Timeout(Timeout {
                action,
                id: 0,
                target: self.target,
                timeout: ttl,
            })
        } else {
            RPCError::Network(NetworkError::new(&error))
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, Infallible> {
        let sent = Instant::now();
        let entries = request.entries.len();
        let answer = self
            .call(RPCTypes::AppendEntries, APPEND_PATH, &request, &option)
            .await;
        // Heartbeats carry no entries and say nothing of a write's path.
        if entries > 0 {
            self.metrics.stage(Stage::AppendRpc, sent.elapsed());
        }
        if let Some(due) = self.pace.hold_until(self.target, sent, entries) {
            tokio::time::sleep_until(due.into()).await;
        }
        answer
    }

    async fn install_snapshot(
        &mut self,
        request: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(RPCTypes::InstallSnapshot, SNAPSHOT_PATH, &request, &option)
            .await
    }

    async fn vote(
        &mut self,
        request: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, Infallible> {
        self.call(RPCTypes::Vote, VOTE_PATH, &request, &option)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(interval_ms: u64) -> LearnerPace {
        LearnerPace {
            interval: Duration::from_millis(interval_ms),
            membership: Arc::new(OnceLock::new()),
            last_sent: None,
        }
    }

    const MS: Duration = Duration::from_millis(1);
    const BUSY: bool = true;

    #[test]
    fn a_busy_learner_that_keeps_up_is_held_until_the_interval_from_its_append() {
        let sent = Instant::now();
        assert_eq!(
            pace(5).due(sent, 3, BUSY, sent + MS, || false),
            Some(sent + 5 * MS)
        );
        assert_eq!(
            pace(5).due(sent, 3, BUSY, sent + 5 * MS, || false),
            None,
            "an answer that took the whole interval is not held"
        );
    }

    #[test]
    fn an_append_after_a_quiet_spell_is_not_held() {
        let sent = Instant::now();
        assert_eq!(pace(5).due(sent, 3, !BUSY, sent, || false), None);
    }

    #[test]
    fn a_voter_is_never_held() {
        let sent = Instant::now();
        assert_eq!(pace(5).due(sent, 3, BUSY, sent, || true), None);
    }

    #[test]
    fn a_learner_catching_up_is_not_held() {
        let sent = Instant::now();
        assert_eq!(
            pace(5).due(sent, APPEND_ENTRIES_MAX, BUSY, sent, || false),
            None,
            "a full append: behind"
        );
        assert!(pace(5)
            .due(sent, APPEND_ENTRIES_MAX - 1, BUSY, sent, || false)
            .is_some());
    }

    #[test]
    fn an_interval_of_zero_holds_nothing() {
        let sent = Instant::now();
        assert_eq!(pace(0).due(sent, 1, BUSY, sent, || false), None);
    }

    #[test]
    fn a_stream_is_busy_when_its_appends_leave_within_twice_the_interval() {
        let mut pace = pace(5);
        let first = Instant::now();
        assert!(!pace.left(first), "the first append follows nothing");
        assert!(pace.left(first + 2 * MS), "2 ms after the one before");
        assert!(!pace.left(first + 12 * MS), "10 ms after: a quiet spell");
        assert!(pace.left(first + 16 * MS));
    }

    #[test]
    fn every_append_of_a_busy_stream_is_held_not_every_second_one() {
        // Held until 5 ms after it left, the next leaves a little later: busy, held again.
        let mut pace = pace(5);
        let first = Instant::now();
        pace.left(first);
        let mut sent = first + MS;
        for _ in 0..4 {
            assert!(pace.left(sent), "an append right after a held one");
            let due = pace.due(sent, 3, true, sent, || false).expect("held");
            sent = due + MS;
        }
    }

    #[test]
    fn before_the_group_has_started_every_target_counts_as_a_voter() {
        let mut pace = pace(5);
        let first = Instant::now();
        pace.hold_until(2, first, 1);
        assert_eq!(pace.hold_until(2, first + MS, 1), None);
    }
}
