//! The internal listener: Raft RPCs, the write endpoint, replica reads and the admin API.
//!
//! Every route but `GET /health`, `GET /ready` and `GET /metrics` requires a credential in the
//! `x-flashstock-secret` header, and each group of routes admits only some roles ([`crate::auth`]
//! has the table): an unknown secret is refused with 401 `unauthorized`, a known one outside
//! the route's roles with 403 `forbidden`, and neither changes anything. A gateway's or an
//! operator's credential may write only the public command kinds. Raft RPCs and writes carry
//! bincode bodies; admin and reads speak JSON, with errors as [`flashstock_api::ErrorBody`]
//! ([`ApiError`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use flashstock_api::{
    AddLearnerRequest, ArchiveReport, ArchiveReportQuery, ArchiveStatus, ChangeMembershipRequest,
    ElectRequest, ErrorCode, HandOffRequest, HandedOff, Hold, HoldId, InitRequest,
    MembershipChanged, NodeAddr, NodeRole, NodeStatus, OrderId, OrderWithTerms, Page,
    PeerReplication, PreVoteRequest, PreVoteResponse, ProductWithTerms, RaftState,
    ReadIndexResponse, RemoveLearnerRequest, WriteRequest,
};
use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, InitializeError, RaftError,
};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest,
};
use openraft::{BasicNode, ChangeMembers, ServerState};
use raft_store::{NodeId, TypeConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::api_error::{error, ApiError};
use crate::auth::{self, Caller};
use crate::membership::{self, Concurrent, Refusal};
use crate::network::{APPEND_PATH, ELECT_PATH, PRE_VOTE_PATH, SNAPSHOT_PATH, VOTE_PATH};
use crate::NodeState;
use flashstock_client::wire::Route;

type AppState = Arc<NodeState>;

/// Most entries one append RPC carries (openraft's `max_payload_entries`).
pub const APPEND_ENTRIES_MAX: usize = 64;
/// Bytes of one snapshot chunk (openraft's `snapshot_max_chunk_size`).
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// What a Raft RPC adds around the bodies it carries, per entry and once per RPC: log ids, the
/// proposer's clock and horizons, the vote, bincode lengths (the test below measures it).
const RAFT_FRAMING_BYTES_MAX: usize = 4096;

/// Largest Raft RPC body: an append of [`APPEND_ENTRIES_MAX`] entries, each made of one write
/// batch (at most `limits.body_bytes_max`, the write endpoint's body limit) and its framing, or
/// one snapshot chunk. A smaller limit would refuse an append of committed entries forever.
pub fn raft_body_bytes_max(body_bytes_max: usize) -> usize {
    let append =
        APPEND_ENTRIES_MAX * (body_bytes_max + RAFT_FRAMING_BYTES_MAX) + RAFT_FRAMING_BYTES_MAX;
    append.max(SNAPSHOT_CHUNK_BYTES + RAFT_FRAMING_BYTES_MAX)
}
/// Most records one read page returns.
pub const PAGE_LIMIT_MAX: usize = 1000;
/// How long a membership change may take to commit before the admin call answers that its
/// outcome is unknown.
const MEMBERSHIP_CHANGE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long adding a learner waits for it to catch up with the leader (a snapshot transfer,
/// then the log) before answering with `caught_up: false`.
const LEARNER_CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
// The longest admin call (adding a learner: the settled check, the change, the catch-up) stays
// within what `limits.request_timeout_ms` is checked against, so the backstop never cuts it.
const _: () = assert!(
    membership::PROBE_ACK_WAIT.as_millis()
        + membership::PROBE_COMMIT_WAIT.as_millis()
        + MEMBERSHIP_CHANGE_WAIT.as_millis()
        + LEARNER_CATCH_UP_WAIT.as_millis()
        <= cluster_config::defaults::ADMIN_CALL_WAIT_MS_MAX as u128
);
// A change of voters: the probe, the promoted nodes' roles, a hand-off when the leader removes
// itself, the change.
const _: () = assert!(
    membership::PROBE_ACK_WAIT.as_millis()
        + membership::PROBE_COMMIT_WAIT.as_millis()
        + membership::ROLE_CHECK_WAIT.as_millis()
        + crate::handoff::HAND_OFF_MAX.as_millis()
        + MEMBERSHIP_CHANGE_WAIT.as_millis()
        <= cluster_config::defaults::ADMIN_CALL_WAIT_MS_MAX as u128
);

/// Who may call each group of routes (the table in [`crate::auth`]).
const VOTERS: &[Caller] = &[Caller::Voter];
const EVERY_ROLE: &[Caller] = &[Caller::Voter, Caller::Gateway, Caller::Operator];
const READERS: &[Caller] = &[Caller::Voter, Caller::Operator];
const OPERATORS: &[Caller] = &[Caller::Operator];

pub fn router(state: AppState) -> Router {
    let body_bytes_max = state.config.limits.body_bytes_max;
    let permit = |allowed: &'static [Caller]| middleware::from_fn_with_state(allowed, auth::permit);
    let raft = Router::new()
        .route(APPEND_PATH, post(append))
        .route(VOTE_PATH, post(vote))
        .route(SNAPSHOT_PATH, post(install_snapshot))
        .route(ELECT_PATH, post(elect))
        .route(PRE_VOTE_PATH, post(pre_vote))
        .route_layer(permit(VOTERS))
        .layer(DefaultBodyLimit::max(raft_body_bytes_max(body_bytes_max)));
    let every_role = Router::new()
        .route(Route::Write.path(), post(write))
        .route(Route::ReadIndex.path(), post(read_index))
        .route("/admin/status", get(status))
        .route_layer(permit(EVERY_ROLE));
    let reads = Router::new()
        .route("/internal/products", get(list_products))
        .route("/internal/products/{id}", get(get_product))
        .route("/internal/orders", get(list_orders))
        .route("/internal/orders/{id}", get(get_order))
        .route("/internal/holds", get(list_holds))
        .route_layer(permit(READERS));
    let admin = Router::new()
        .route("/admin/init", post(init))
        .route("/admin/add-learner", post(add_learner))
        .route("/admin/change-membership", post(change_membership))
        .route("/admin/remove-learner", post(remove_learner))
        .route("/admin/snapshot", post(snapshot))
        .route("/admin/hand-off", post(hand_off))
        .route("/admin/archive/report", get(archive_report))
        .route_layer(permit(OPERATORS));
    let api = every_role
        .merge(reads)
        .merge(admin)
        .layer(DefaultBodyLimit::max(body_bytes_max));
    raft.merge(api)
        .layer(middleware::from_fn_with_state(
            state.credentials.clone(),
            auth::authenticate,
        ))
        .layer(middleware::from_fn(wire_version))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}

/// Refuse a request of an internal wire version this node does not speak, before anything else
/// reads it; answer every other with this node's version. A request without the header is
/// version 1, from a release before it.
async fn wire_version(request: axum::extract::Request, next: middleware::Next) -> Response {
    use flashstock_api::{WIRE_VERSION, WIRE_VERSION_HEADER, WIRE_VERSION_MIN};
    let spoken = match request.headers().get(WIRE_VERSION_HEADER) {
        None => Some(1),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok()),
    };
    if !spoken.is_some_and(|v| (WIRE_VERSION_MIN..=WIRE_VERSION).contains(&v)) {
        let given = request
            .headers()
            .get(WIRE_VERSION_HEADER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        return crate::api_error::error(
            StatusCode::BAD_REQUEST,
            ErrorCode::UnsupportedVersion,
            format!(
                "the request speaks internal wire version {given:?}; this node (flashstock {}) \
                 speaks versions {WIRE_VERSION_MIN} to {WIRE_VERSION}: upgrade the older side",
                env!("CARGO_PKG_VERSION")
            ),
        );
    }
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(WIRE_VERSION_HEADER, WIRE_VERSION.into());
    response
}

/// Whether this node can serve: 200 while its Raft core runs and it knows a leader, 503 with a
/// stable reason otherwise (`raft_stopped`, `not_ready`). Unauthenticated, like `/health`, for
/// load balancers and supervisors: a stopped Raft core's own error text (storage paths, internal
/// state) is only in the authenticated `/admin/status` (`fatal`) and the node's log.
async fn ready(State(state): State<AppState>) -> Response {
    if state.fatal.get().is_some() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::RaftStopped,
            "the Raft core stopped; the node is exiting (the error is in /admin/status)",
        );
    }
    // Every group must know a leader: a node serves them all.
    let leaders: Vec<Option<u64>> = state
        .groups
        .iter()
        .map(|group| group.raft.metrics().borrow().current_leader)
        .collect();
    match leaders.iter().position(Option::is_none) {
        None => {
            Json(serde_json::json!({ "status": "ready", "leader": leaders[0] })).into_response()
        }
        Some(group) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotReady,
            match state.groups.len() {
                1 => "this node knows no leader (not initialized, not a member yet, or an \
                      election is on)"
                    .to_owned(),
                _ => format!(
                    "this node knows no leader of Raft group {group} (not initialized, not a \
                     member yet, or an election is on)"
                ),
            },
        ),
    }
}

/// Prometheus metrics. Unauthenticated, like `/health`: they hold no secret, and scrapers send
/// no headers.
async fn metrics(State(state): State<AppState>) -> String {
    let group = state.group0();
    let committed = committed_index(group).await.unwrap_or(0);
    let meta = group.reader.inventory_meta().ok();
    let memtable_bytes = state
        .groups
        .iter()
        .map(|group| group.reader.memtable_bytes())
        .sum();
    state.metrics.render(
        &group.raft,
        committed,
        group.reader.applied_index(),
        meta.as_ref(),
        memtable_bytes,
    )
}

/// The last log index this node knows committed in `group`; `None` while Raft is shutting
/// down.
pub(crate) async fn committed_index(group: &crate::Group) -> Option<u64> {
    group
        .raft
        .with_raft_state(|raft| raft.committed.map_or(0, |id| id.index))
        .await
        .ok()
}

/// Compare secrets in time that does not depend on where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bincode_response<T: Serialize>(value: &T) -> Response {
    match bincode::serialize(value) {
        Ok(bytes) => bytes.into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            e.to_string(),
        ),
    }
}

/// The Raft group a call names ([`flashstock_api::GROUP_HEADER`]; absent: group 0). A group this
/// node does not run, a header that is no group number, or another group than 0 named by a
/// request of a wire version before groups ([`flashstock_api::WIRE_VERSION_GROUPS`]) is refused
/// with 400 `invalid_request` and reaches no handler.
pub struct CallGroup(pub u16);

impl axum::extract::FromRequestParts<AppState> for CallGroup {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Response> {
        use flashstock_api::{GROUP_HEADER, WIRE_VERSION_GROUPS, WIRE_VERSION_HEADER};
        let Some(value) = parts.headers.get(GROUP_HEADER) else {
            return Ok(CallGroup(0));
        };
        let invalid =
            |message: String| error(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message);
        let number = value
            .to_str()
            .ok()
            .and_then(|text| text.parse::<u16>().ok())
            .ok_or_else(|| invalid(format!("{GROUP_HEADER} must be a group number")))?;
        let spoken = parts
            .headers
            .get(WIRE_VERSION_HEADER)
            .and_then(|value| value.to_str().ok()?.parse::<u32>().ok())
            .unwrap_or(flashstock_api::WIRE_VERSION_BASE);
        if number != 0 && spoken < WIRE_VERSION_GROUPS {
            return Err(invalid(format!(
                "a request of internal wire version {spoken} names no group; group {number} \
                 needs version {WIRE_VERSION_GROUPS} or later"
            )));
        }
        if state.group(number).is_none() {
            return Err(invalid(format!(
                "this node runs Raft groups 0 to {}, not group {number}",
                state.groups.len() - 1
            )));
        }
        Ok(CallGroup(number))
    }
}

/// A request body in bincode. A body that does not decode is refused with 400 and reaches no
/// handler; one over the route's body limit with 413.
pub struct Bincode<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Bincode<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        bincode::deserialize(&body).map(Bincode).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidRequest,
                format!("undecodable body: {e}"),
            )
        })
    }
}

/// A leader's append or heartbeat. One this node accepts (any answer but a higher vote, which
/// says the sender is no longer leader) is a contact with a leader, recorded with the leader's
/// commit index for the replica's freshness ([`crate::freshness`]).
async fn append(
    State(state): State<AppState>,
    CallGroup(group): CallGroup,
    Bincode(request): Bincode<AppendEntriesRequest<TypeConfig>>,
) -> Response {
    let group = &state.groups[usize::from(group)];
    // The leader's commit index is as of sending, so the sample is dated when it arrived, not
    // after this node wrote the entries.
    let arrived = std::time::Instant::now();
    let leader_commit = request.leader_commit.map(|log_id| log_id.index);
    let carries_entries = !request.entries.is_empty();
    let answer = group.raft.append_entries(request).await;
    if carries_entries {
        state
            .metrics
            .stage(crate::metrics::Stage::AppendHandler, arrived.elapsed());
    }
    if matches!(&answer, Ok(response) if !matches!(response, AppendEntriesResponse::HigherVote(_)))
    {
        group
            .freshness
            .contact(leader_commit, group.reader.applied_index(), arrived);
    }
    bincode_response(&answer)
}

async fn vote(
    State(state): State<AppState>,
    CallGroup(group): CallGroup,
    Bincode(request): Bincode<VoteRequest<NodeId>>,
) -> Response {
    let group = &state.groups[usize::from(group)];
    let candidate_log = request.last_log_id;
    let candidate_term = request.vote.leader_id().term;
    let answer = group.raft.vote(request).await;
    if let Ok(refused) = &answer {
        if !refused.vote_granted && refused.last_log_id >= candidate_log {
            group.refused_candidates.record(
                candidate_term,
                refused.last_log_id,
                refused.last_log_id > candidate_log,
            );
        }
    }
    bincode_response(&answer)
}

async fn install_snapshot(
    State(state): State<AppState>,
    CallGroup(group): CallGroup,
    Bincode(request): Bincode<InstallSnapshotRequest<TypeConfig>>,
) -> Response {
    let group = &state.groups[usize::from(group)];
    let arrived = std::time::Instant::now();
    let sent_with = request.vote;
    let answer = group.raft.install_snapshot(request).await;
    // A higher vote in the answer: the sender is no longer leader.
    if matches!(&answer, Ok(response) if response.vote <= sent_with) {
        group.freshness.snapshot_contact(arrived);
    }
    bincode_response(&answer)
}

/// Propose a batch of commands as one entry. Answers 200 with a bincode
/// [`flashstock_api::WriteResponse`] once the body decodes (its variant carries the semantics),
/// but 403 `forbidden`, with nothing proposed, when a caller other than a voter sends an
/// internal command ([`flashstock_api::Op::is_internal`]): only voters move the archive cursor.
async fn write(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    CallGroup(group): CallGroup,
    Bincode(request): Bincode<WriteRequest>,
) -> Response {
    let group = &state.groups[usize::from(group)];
    if caller != Caller::Voter {
        if let Some(command) = request.commands.iter().find(|c| c.op.is_internal()) {
            return auth::forbidden(format!(
                "a {} credential may not propose {} commands: only voters propose internal commands",
                caller.as_str(),
                command.op.kind()
            ));
        }
    }
    bincode_response(&state.propose(group, request.commands).await)
}

/// Confirm leadership with a quorum and answer the index a linearizable read must wait for.
async fn read_index(
    State(state): State<AppState>,
    CallGroup(group): CallGroup,
) -> Json<ReadIndexResponse> {
    let group = &state.groups[usize::from(group)];
    let answer = match group.raft.get_read_log_id().await {
        Ok((read_log_id, _applied)) => {
            ReadIndexResponse::Index(read_log_id.map_or(0, |id| id.index))
        }
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
            ReadIndexResponse::NotLeader {
                leader: forward
                    .leader_id
                    .zip(forward.leader_node)
                    .map(|(id, node)| NodeAddr {
                        id,
                        addr: node.addr,
                    }),
            }
        }
        Err(e) => ReadIndexResponse::Unavailable {
            message: e.to_string(),
        },
    };
    Json(answer)
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    after: Option<String>,
    limit: Option<usize>,
}

impl PageQuery {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, PAGE_LIMIT_MAX)
    }
}

type Answer<T> = Result<Json<Page<T>>, ApiError>;

/// Products with their terms ([`ProductWithTerms`]: the fields of the release before, and
/// `terms` beside them).
async fn list_products(
    State(state): State<AppState>,
    CallGroup(group): CallGroup,
    Query(query): Query<PageQuery>,
) -> Answer<ProductWithTerms> {
    let group = &state.groups[usize::from(group)];
    let applied_index = group.reader.applied_index();
    let items = group
        .reader
        .product_records(query.after.as_deref(), query.limit())
        .map_err(ApiError::storage)?
        .into_iter()
        .map(|record| ProductWithTerms {
            product: record.product,
            terms: record.terms,
        })
        .collect();
    Ok(Json(Page {
        applied_index,
        items,
    }))
}

async fn get_product(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Answer<ProductWithTerms> {
    let group = state.group_of(&id);
    let applied_index = group.reader.applied_index();
    let record = group
        .reader
        .product_record(&id)
        .map_err(ApiError::storage)?;
    let record = record.ok_or_else(|| ApiError::unknown_product(&id))?;
    Ok(Json(Page {
        applied_index,
        items: vec![ProductWithTerms {
            product: record.product,
            terms: record.terms,
        }],
    }))
}

/// `after` of a page of records whose ids are numbers.
fn after_id(query: &PageQuery, what: &str) -> Result<Option<u64>, ApiError> {
    query
        .after
        .as_deref()
        .map(str::parse::<u64>)
        .transpose()
        .map_err(|_| ApiError::invalid(format!("after must be {what}")))
}

/// Orders with their terms ([`OrderWithTerms`]: lines, hold, cancellation), in log order.
async fn list_orders(
    State(state): State<AppState>,
    CallGroup(group): CallGroup,
    Query(query): Query<PageQuery>,
) -> Answer<OrderWithTerms> {
    let after = after_id(&query, "an order id")?;
    let group = &state.groups[usize::from(group)];
    let applied_index = group.reader.applied_index();
    let items = group
        .reader
        .order_records(after.map(OrderId), query.limit())
        .map_err(ApiError::storage)?
        .into_iter()
        .map(|record| OrderWithTerms {
            order: record.order,
            terms: record.terms,
        })
        .collect();
    Ok(Json(Page {
        applied_index,
        items,
    }))
}

async fn get_order(State(state): State<AppState>, Path(id): Path<u64>) -> Answer<OrderWithTerms> {
    let group = state
        .group_of_order(OrderId(id))
        .ok_or_else(|| ApiError::unknown_order(id))?;
    let applied_index = group.reader.applied_index();
    let record = group
        .reader
        .order_record(OrderId(id))
        .map_err(ApiError::storage)?;
    let record = record.ok_or_else(|| ApiError::unknown_order(id))?;
    Ok(Json(Page {
        applied_index,
        items: vec![OrderWithTerms {
            order: record.order,
            terms: record.terms,
        }],
    }))
}

/// Holds, held or finished (until forgotten past the idempotency window), in log order
/// (cluster version 2; a node of the release before has no such route).
async fn list_holds(
    State(state): State<AppState>,
    CallGroup(group): CallGroup,
    Query(query): Query<PageQuery>,
) -> Answer<Hold> {
    let after = after_id(&query, "a hold id")?;
    let group = &state.groups[usize::from(group)];
    let applied_index = group.reader.applied_index();
    let items = group
        .reader
        .holds(after.map(HoldId), query.limit())
        .map_err(ApiError::storage)?;
    Ok(Json(Page {
        applied_index,
        items,
    }))
}

/// The status document of this node, in `group`.
pub async fn node_status(state: &NodeState, group: &crate::Group) -> NodeStatus {
    let committed_index = committed_index(group).await;
    let metrics = group.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, node)| NodeAddr {
            id: *id,
            addr: node.addr.clone(),
        })
        .collect();
    let last = metrics.last_log_index.unwrap_or(0);
    let replication = metrics
        .replication
        .iter()
        .flatten()
        .filter(|(id, _)| **id != metrics.id)
        .map(|(id, matched)| {
            let matched_index = matched.map(|log_id| log_id.index);
            PeerReplication {
                id: *id,
                matched_index,
                lag: last.saturating_sub(matched_index.unwrap_or(0)),
            }
        })
        .collect();
    NodeStatus {
        id: metrics.id,
        role: match state.config.node.role {
            cluster_config::Role::Voter => NodeRole::Voter,
            cluster_config::Role::Gateway => NodeRole::Gateway,
        },
        state: raft_state(metrics.state),
        term: metrics.current_term,
        leader: metrics.current_leader,
        last_log_index: metrics.last_log_index,
        committed_index,
        // From the state machine itself: known from disk at once after a restart, and exactly
        // what reads on this node are served at.
        applied_index: Some(group.reader.applied_index()),
        snapshot_index: metrics.snapshot.map(|id| id.index),
        purged_index: metrics.purged.map(|id| id.index),
        voters,
        members,
        replication,
        millis_since_quorum_ack: metrics.millis_since_quorum_ack,
        archive: archive_status(state, group),
        membership: Some(membership::status(state.id, &metrics, committed_index)),
        fatal: state.fatal.get().cloned(),
        started_at_ms: Some(state.started_at_ms),
        release: Some(flashstock_api::ReleaseStatus::current(
            raft_store::STATE_FORMAT,
        )),
        storage: Some(group.reader.storage()),
        cluster_version: group.reader.cluster_version().ok(),
        group: Some(group.number),
        groups: Some(state.groups.len() as u16),
    }
}

fn raft_state(state: ServerState) -> RaftState {
    match state {
        ServerState::Leader => RaftState::Leader,
        ServerState::Follower => RaftState::Follower,
        ServerState::Candidate => RaftState::Candidate,
        ServerState::Learner => RaftState::Learner,
        ServerState::Shutdown => RaftState::Shutdown,
    }
}

/// The archive's status on a voter: replicated counters, and this node's archiver if it has one.
fn archive_status(state: &NodeState, group: &crate::Group) -> Option<ArchiveStatus> {
    if state.config.node.role != cluster_config::Role::Voter {
        return None;
    }
    let meta = group.reader.inventory_meta().ok()?;
    Some(crate::archive::Archive::status(
        state.archive.as_deref(),
        group.number,
        &meta,
    ))
}

/// Units sold and revenue per product over a time range, from the archive database.
async fn archive_report(
    State(state): State<AppState>,
    query: Result<Query<ArchiveReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ArchiveReport>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let Some(archive) = &state.archive else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::ArchiveDisabled,
            "this node has no archive database (archive.postgres_url is not set)",
        ));
    };
    match archive.report(query.from_ms, query.to_ms).await {
        Ok(report) => Ok(Json(report)),
        Err(crate::archive::ArchiveError::Invalid(message)) => Err(ApiError::invalid(message)),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ArchiveUnavailable,
            e.to_string(),
        )),
    }
}

async fn status(State(state): State<AppState>, CallGroup(group): CallGroup) -> Json<NodeStatus> {
    Json(node_status(&state, &state.groups[usize::from(group)]).await)
}

async fn init(State(state): State<AppState>, body: Bytes) -> Response {
    // openraft initializes only a node that is among the voters it is given, and a gateway must
    // never be one: its log is not synced (`raft_store::Durability::Learner`).
    if state.config.node.role == cluster_config::Role::Gateway {
        return error(
            StatusCode::CONFLICT,
            ErrorCode::NotAVoter,
            format!(
                "node {} is configured as a gateway and cannot be a voter; initialize the \
                 cluster on a voter",
                state.id
            ),
        );
    }
    let requested = if body.is_empty() {
        Vec::new()
    } else {
        match serde_json::from_slice::<InitRequest>(&body) {
            Ok(request) => request.voters,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidRequest,
                    e.to_string(),
                )
            }
        }
    };
    let voters: Vec<NodeAddr> = if !requested.is_empty() {
        requested
    } else if !state.config.cluster.voters.is_empty() {
        state
            .config
            .cluster
            .voters
            .iter()
            .map(|peer| NodeAddr {
                id: peer.id,
                addr: peer.addr.clone(),
            })
            .collect()
    } else {
        vec![NodeAddr {
            id: state.id,
            addr: state.config.advertise_addr(),
        }]
    };
    let members: BTreeMap<NodeId, BasicNode> = voters
        .iter()
        .map(|voter| (voter.id, BasicNode::new(&voter.addr)))
        .collect();
    // As for membership changes: the archive's connection bound assumes at most VOTERS_MAX.
    let voters_max = cluster_config::defaults::VOTERS_MAX;
    if members.len() > voters_max {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::TooManyVoters,
            format!(
                "a cluster starts with at most {voters_max} voters, not {} (the archive's connection limit assumes at most that many)",
                members.len()
            ),
        );
    }
    // Every group, with the same voters. A group initialized before (an earlier call cut short
    // after some groups) is left as it is; the call is refused as already done only when every
    // group was.
    let mut initialized = false;
    let mut already = None;
    for group in &state.groups {
        match group.raft.initialize(members.clone()).await {
            Ok(()) => initialized = true,
            Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                already.get_or_insert(e.to_string());
            }
            Err(RaftError::APIError(InitializeError::NotInMembers(e))) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidRequest,
                    e.to_string(),
                )
            }
            Err(e) => return raft_error(e),
        }
    }
    match already {
        Some(e) if !initialized => error(StatusCode::CONFLICT, ErrorCode::AlreadyInitialized, e),
        _ => Json(voters).into_response(),
    }
}

/// Map a membership change's error: "not leader" says where the leader is.
fn membership_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Response {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            refused(Refusal::NotLeader {
                leader: forward.leader_node.map(|node| node.addr),
            })
        }
        // Another change still in progress is worth retrying; the others are not.
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::InProgress(e),
        )) => refused(Refusal::InProgress {
            detail: e.to_string(),
        }),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => error(
            StatusCode::CONFLICT,
            ErrorCode::MembershipError,
            e.to_string(),
        ),
        RaftError::Fatal(e) => raft_error(e),
    }
}

/// Raft failed or is shutting down.
fn raft_error(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::RaftError,
        e.to_string(),
    )
}

/// A membership change refused before anything was proposed.
fn refused(refusal: Refusal) -> Response {
    let status = match refusal {
        Refusal::NotLeader { .. } => StatusCode::MISDIRECTED_REQUEST,
        Refusal::NoQuorum { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Refusal::InProgress { .. }
        | Refusal::MembersUnavailable { .. }
        | Refusal::LearnerBehind { .. }
        | Refusal::NotAVoterServer { .. } => StatusCode::CONFLICT,
    };
    error(status, refusal.code(), refusal.to_string())
}

/// Apply a membership change at most [`MEMBERSHIP_CHANGE_WAIT`]; past it the change may still
/// complete, and the answer says so.
async fn change_within(
    change: impl std::future::Future<
        Output = Result<
            openraft::raft::ClientWriteResponse<TypeConfig>,
            RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
        >,
    >,
) -> Result<u64, Response> {
    match tokio::time::timeout(MEMBERSHIP_CHANGE_WAIT, change).await {
        Ok(Ok(written)) => Ok(written.log_id.index),
        Ok(Err(e)) => Err(membership_error(e)),
        Err(_) => Err(change_unknown()),
    }
}

/// 504: a change proposed that did not complete within [`MEMBERSHIP_CHANGE_WAIT`].
fn change_unknown() -> Response {
    error(
        StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::OutcomeUnknown,
        format!(
            "the change was proposed and did not complete within {MEMBERSHIP_CHANGE_WAIT:?}; \
             `stockctl cluster status` shows whether it is in progress and what it waits for"
        ),
    )
}

/// Add a learner and, unless asked not to, wait (boundedly) for it to catch up, so that
/// promoting it next passes the caught-up check.
async fn add_learner(
    State(state): State<AppState>,
    CallGroup(group): CallGroup,
    Json(request): Json<AddLearnerRequest>,
) -> Response {
    let group = &state.groups[usize::from(group)];
    if request.id == 0 || request.addr.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "a learner needs an id >= 1 and an address",
        );
    }
    if let Err(refusal) = membership::ensure_leader_and_settled(&state, group).await {
        return refused(refusal);
    }
    let node = BasicNode::new(&request.addr);
    let log_index = match change_within(group.raft.add_learner(request.id, node, false)).await {
        Ok(index) => index,
        Err(response) => return response,
    };
    let caught_up = match request.no_wait {
        true => None,
        false => Some(
            membership::wait_caught_up(group, request.id, log_index, LEARNER_CATCH_UP_WAIT).await,
        ),
    };
    Json(MembershipChanged {
        log_index,
        caught_up,
    })
    .into_response()
}

/// Make exactly `request.voters` the voters, after checking that the change can complete: a
/// majority of the old voters and of the new ones up and caught up, every promoted learner
/// caught up ([`membership`]).
async fn change_membership(
    State(state): State<AppState>,
    CallGroup(group): CallGroup,
    Json(request): Json<ChangeMembershipRequest>,
) -> Response {
    let group = &state.groups[usize::from(group)];
    let voters: BTreeSet<NodeId> = request.voters.iter().copied().collect();
    if voters.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "a membership needs at least 1 voter",
        );
    }
    if voters.len() > cluster_config::defaults::VOTERS_MAX {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::TooManyVoters,
            format!(
                "a membership has at most {} voters, not {} (the archive's connection limit assumes at most that many)",
                cluster_config::defaults::VOTERS_MAX,
                voters.len()
            ),
        );
    }
    if let Err(refusal) = membership::ensure_leader_and_settled(&state, group).await {
        return refused(refusal);
    }
    let old: BTreeSet<NodeId> = {
        let metrics = group.raft.metrics();
        let metrics = metrics.borrow();
        metrics.membership_config.membership().voter_ids().collect()
    };
    let members: BTreeSet<NodeId> = old.union(&voters).copied().collect();
    let checked = match membership::healthy_members(&state, group, &members).await {
        Ok(healthy) => membership::check_change(&old, &voters, &healthy),
        Err(refusal) => Err(refusal),
    };
    if let Err(refusal) = checked {
        return refused(refusal);
    }
    let promoted: BTreeSet<NodeId> = voters.difference(&old).copied().collect();
    if let Err(refusal) = membership::ensure_voter_servers(&state, group, &promoted).await {
        return refused(refusal);
    }
    if !voters.contains(&state.id) {
        if let Some(moved) = hand_off_before_removal(&state, group, &voters, &old).await {
            return moved;
        }
    }
    // In a task of its own: the change is two entries, and a caller that goes away between
    // them must not leave the joint configuration in force. No hand-off runs meanwhile: one
    // could give leadership to a voter the change removes, which then leads until it commits
    // its own removal, and the group waits out an election.
    let owner = state.clone();
    let number = usize::from(group.number);
    let target = voters.clone();
    let change = tokio::spawn(async move {
        let group = &owner.groups[number];
        let _no_hand_off = group.handoff.no_hand_off().await;
        group.raft.change_membership(target, request.retain).await
    });
    let began = tokio::time::Instant::now();
    let changed = match tokio::time::timeout(MEMBERSHIP_CHANGE_WAIT, change).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the membership change task failed");
            Err(RaftError::Fatal(openraft::error::Fatal::Panicked))
        }
        Err(_) => return change_unknown(),
    };
    let changed = match changed {
        // Perhaps this change, its last entry proposed by the finisher of changes left halfway
        // ([`membership::finished_concurrently`]).
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::InProgress(in_progress),
        ))) => {
            let left = MEMBERSHIP_CHANGE_WAIT.saturating_sub(began.elapsed());
            match membership::finished_concurrently(&state, group, &voters, left).await {
                Concurrent::Done(log_index) => Ok(log_index),
                Concurrent::UnderWay => Err(change_unknown()),
                Concurrent::Other => Err(refused(Refusal::InProgress {
                    detail: in_progress.to_string(),
                })),
            }
        }
        other => change_within(std::future::ready(other)).await,
    };
    match changed {
        Ok(log_index) => Json(MembershipChanged {
            log_index,
            caught_up: None,
        })
        .into_response(),
        Err(response) => response,
    }
}

/// A leader asked to remove itself hands its leadership to the voter furthest along among those
/// that stay, and answers `NotLeader` naming it: the caller sends the change there, and the group
/// moves on in milliseconds instead of waiting out an election once this node has committed its
/// own removal. `None` when the hand-off failed: the change goes on here, as before.
async fn hand_off_before_removal(
    state: &NodeState,
    group: &crate::Group,
    voters: &BTreeSet<NodeId>,
    old: &BTreeSet<NodeId>,
) -> Option<Response> {
    let staying: BTreeSet<NodeId> = voters.intersection(old).copied().collect();
    let handing = crate::handoff::hand_off_among(state, group, &staying);
    let failure = match tokio::time::timeout(crate::handoff::HAND_OFF_MAX, handing).await {
        Ok(Ok(done)) => {
            let metrics = group.raft.metrics().borrow().clone();
            let addr = metrics
                .membership_config
                .membership()
                .get_node(&done.to)
                .map(|node| node.addr.clone())
                .unwrap_or_default();
            return Some(error(
                StatusCode::MISDIRECTED_REQUEST,
                ErrorCode::NotLeader,
                format!(
                    "node {} handed its leadership to node {} (in {} ms) before being removed; \
                     the leader is at {addr}: send the change there",
                    state.id, done.to, done.took_ms
                ),
            ));
        }
        Ok(Err(e)) => e.message,
        Err(_) => format!("not done within {:?}", crate::handoff::HAND_OFF_MAX),
    };
    tracing::warn!(
        id = state.id,
        group = group.number,
        error = %failure,
        "could not hand leadership off before removing this node; it removes itself as leader \
         and the group elects another once the change commits"
    );
    None
}

/// Stop replicating to a learner and drop it from the membership. Voters are removed with
/// `change-membership` instead.
async fn remove_learner(
    State(state): State<AppState>,
    CallGroup(group): CallGroup,
    Json(request): Json<RemoveLearnerRequest>,
) -> Response {
    let group = &state.groups[usize::from(group)];
    let voters: Vec<NodeId> = {
        let metrics = group.raft.metrics().borrow().clone();
        metrics.membership_config.membership().voter_ids().collect()
    };
    if voters.contains(&request.id) {
        return error(
            StatusCode::CONFLICT,
            ErrorCode::IsAVoter,
            format!(
                "node {} is a voter: demote it with change-membership first",
                request.id
            ),
        );
    }
    if let Err(refusal) = membership::ensure_leader_and_settled(&state, group).await {
        return refused(refusal);
    }
    let change = ChangeMembers::RemoveNodes(BTreeSet::from([request.id]));
    match change_within(group.raft.change_membership(change, false)).await {
        Ok(log_index) => Json(MembershipChanged {
            log_index,
            caught_up: None,
        })
        .into_response(),
        Err(response) => response,
    }
}

/// Hand leadership to another voter ([`crate::handoff`]); called on the leader.
async fn hand_off(
    State(state): State<AppState>,
    CallGroup(group): CallGroup,
    Json(request): Json<HandOffRequest>,
) -> Result<Json<HandedOff>, ApiError> {
    let group = &state.groups[usize::from(group)];
    crate::handoff::hand_off(&state, group, request.to)
        .await
        .map(Json)
}

/// The leader hands off to this voter: stand for election now.
async fn elect(
    State(state): State<AppState>,
    CallGroup(group): CallGroup,
    Json(request): Json<ElectRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    crate::handoff::stand(&state, &state.groups[usize::from(group)], request).await?;
    Ok(Json(serde_json::json!({ "standing": true })))
}

/// Answers a voter that asks, before it stands on its own, whether this one would vote for it
/// ([`crate::handoff::pre_vote`]). Changes nothing here.
async fn pre_vote(
    State(state): State<AppState>,
    CallGroup(group): CallGroup,
    Json(request): Json<PreVoteRequest>,
) -> Json<PreVoteResponse> {
    let group = &state.groups[usize::from(group)];
    let answer = crate::handoff::answer_pre_vote(&state, group, std::time::Instant::now());
    tracing::debug!(
        id = state.id,
        group = group.number,
        from = request.from,
        granted = answer.granted,
        "pre-vote"
    );
    Json(answer)
}

async fn snapshot(State(state): State<AppState>, CallGroup(group): CallGroup) -> Response {
    match state.groups[usize::from(group)]
        .raft
        .trigger()
        .snapshot()
        .await
    {
        Ok(()) => Json(serde_json::json!({ "triggered": true })).into_response(),
        Err(e) => raft_error(e),
    }
}

#[cfg(test)]
mod tests {
    use flashstock_api::{Command, Op, Proposal};
    use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};

    use super::*;

    /// An append of the largest entries a write body of `body_bytes` can propose.
    fn append_bytes(body_bytes: usize) -> (usize, usize) {
        let command = |i: usize| Command {
            key: format!("k-{i:0>120}"),
            op: Op::Purchase {
                product: format!("p-{i:0>60}"),
                quantity: 1,
                customer: Some("c".repeat(64)),
                token: None,
            },
        };
        let mut commands = Vec::new();
        let write = loop {
            commands.push(command(commands.len()));
            let write = bincode::serialize(&WriteRequest {
                commands: commands.clone(),
            })
            .unwrap();
            if write.len() > body_bytes {
                commands.pop();
                break bincode::serialize(&WriteRequest {
                    commands: commands.clone(),
                })
                .unwrap()
                .len();
            }
        };
        let log_id = |index| LogId::new(CommittedLeaderId::new(u64::MAX, u64::MAX), index);
        let entries = (0..APPEND_ENTRIES_MAX as u64)
            .map(|i| raft_store::Entry {
                log_id: log_id(u64::MAX - i),
                payload: EntryPayload::Normal(Proposal {
                    proposed_at_ms: u64::MAX,
                    forget_keys_before_ms: u64::MAX,
                    drop_archived_before_ms: u64::MAX,
                    commands: commands.clone(),
                }),
            })
            .collect();
        let request = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(u64::MAX, u64::MAX),
            prev_log_id: Some(log_id(u64::MAX)),
            entries,
            leader_commit: Some(log_id(u64::MAX)),
        };
        (write, bincode::serialize(&request).unwrap().len())
    }

    #[test]
    fn an_append_of_the_largest_entries_fits_the_raft_body_limit() {
        for body_bytes in [cluster_config::defaults::BODY_BYTES_MAX_LOWEST, 64 * 1024] {
            let (write, append) = append_bytes(body_bytes);
            assert!(write <= body_bytes && write + 600 > body_bytes);
            // Measured against a body limit of exactly this write's size: the tightest case.
            assert!(
                append <= raft_body_bytes_max(write),
                "{append} bytes for {APPEND_ENTRIES_MAX} entries of {write}-byte writes, limit {}",
                raft_body_bytes_max(write)
            );
        }
        assert!(raft_body_bytes_max(1024) > SNAPSHOT_CHUNK_BYTES);
    }
}
