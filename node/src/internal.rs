//! The internal listener: Raft RPCs, the write endpoint, replica reads and the admin API.
//!
//! Every route but `GET /health` and `GET /metrics` requires the cluster secret in the
//! `x-flashstock-secret` header; without it the request is refused with 401 and changes nothing. Raft RPCs and writes
//! carry bincode bodies; admin and reads speak JSON, with errors as
//! [`flashstock_api::ErrorBody`] ([`ApiError`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flashstock_api::{
    AddLearnerRequest, ArchiveReport, ArchiveReportQuery, ArchiveStatus, ChangeMembershipRequest,
    ErrorCode, InitRequest, NodeAddr, NodeRole, NodeStatus, Order, OrderId, Page, PeerReplication,
    Product, RaftState, ReadIndexResponse, RemoveLearnerRequest, WriteRequest, SECRET_HEADER,
};
use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, InitializeError, RaftError,
};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{BasicNode, ChangeMembers, ServerState};
use raft_store::{NodeId, TypeConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::api_error::{error, ApiError};
use crate::network::{APPEND_PATH, SNAPSHOT_PATH, VOTE_PATH};
use crate::NodeState;

type AppState = Arc<NodeState>;

/// Largest Raft RPC body: 64 entries of at most a few hundred KiB, or one 1 MiB snapshot chunk,
/// with room to spare.
const RAFT_BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Most records one read page returns.
pub const PAGE_LIMIT_MAX: usize = 1000;

pub fn router(state: AppState) -> Router {
    let body_bytes_max = state.config.limits.body_bytes_max;
    let raft = Router::new()
        .route(APPEND_PATH, post(append))
        .route(VOTE_PATH, post(vote))
        .route(SNAPSHOT_PATH, post(install_snapshot))
        .layer(DefaultBodyLimit::max(RAFT_BODY_BYTES_MAX));
    let api = Router::new()
        .route("/internal/write", post(write))
        .route("/internal/read-index", post(read_index))
        .route("/internal/products", get(list_products))
        .route("/internal/products/{id}", get(get_product))
        .route("/internal/orders", get(list_orders))
        .route("/internal/orders/{id}", get(get_order))
        .route("/admin/status", get(status))
        .route("/admin/init", post(init))
        .route("/admin/add-learner", post(add_learner))
        .route("/admin/change-membership", post(change_membership))
        .route("/admin/remove-learner", post(remove_learner))
        .route("/admin/snapshot", post(snapshot))
        .route("/admin/archive/report", get(archive_report))
        .layer(DefaultBodyLimit::max(body_bytes_max));
    raft.merge(api)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_secret,
        ))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}

/// Prometheus metrics. Unauthenticated, like `/health`: they hold no secret, and scrapers send
/// no headers.
async fn metrics(State(state): State<AppState>) -> String {
    let committed = committed_index(&state).await.unwrap_or(0);
    let meta = state.reader.inventory_meta().ok();
    state.metrics.render(
        &state.raft,
        committed,
        state.reader.applied_index(),
        meta.as_ref(),
    )
}

/// The last log index this node knows committed; `None` while Raft is shutting down.
async fn committed_index(state: &NodeState) -> Option<u64> {
    state
        .raft
        .with_raft_state(|raft| raft.committed.map_or(0, |id| id.index))
        .await
        .ok()
}

/// Refuse any request without the cluster secret, before it reaches a handler.
async fn require_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let given = headers
        .get(SECRET_HEADER)
        .map(|value| value.as_bytes())
        .unwrap_or_default();
    if !constant_time_eq(given, state.config.cluster.secret.as_bytes()) {
        return error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            format!("missing or wrong {SECRET_HEADER} header"),
        );
    }
    next.run(request).await
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

async fn append(
    State(state): State<AppState>,
    Bincode(request): Bincode<AppendEntriesRequest<TypeConfig>>,
) -> Response {
    bincode_response(&state.raft.append_entries(request).await)
}

async fn vote(
    State(state): State<AppState>,
    Bincode(request): Bincode<VoteRequest<NodeId>>,
) -> Response {
    bincode_response(&state.raft.vote(request).await)
}

async fn install_snapshot(
    State(state): State<AppState>,
    Bincode(request): Bincode<InstallSnapshotRequest<TypeConfig>>,
) -> Response {
    bincode_response(&state.raft.install_snapshot(request).await)
}

/// Propose a batch of commands as one entry. Always answers 200 with a bincode
/// [`flashstock_api::WriteResponse`] once the body decodes: its variant carries the semantics.
async fn write(State(state): State<AppState>, Bincode(request): Bincode<WriteRequest>) -> Response {
    bincode_response(&state.propose(request.commands).await)
}

/// Confirm leadership with a quorum and answer the index a linearizable read must wait for.
async fn read_index(State(state): State<AppState>) -> Json<ReadIndexResponse> {
    let answer = match state.raft.get_read_log_id().await {
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

async fn list_products(
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Answer<Product> {
    let applied_index = state.reader.applied_index();
    let items = state
        .reader
        .products(query.after.as_deref(), query.limit())
        .map_err(ApiError::storage)?;
    Ok(Json(Page {
        applied_index,
        items,
    }))
}

async fn get_product(State(state): State<AppState>, Path(id): Path<String>) -> Answer<Product> {
    let applied_index = state.reader.applied_index();
    let product = state.reader.product(&id).map_err(ApiError::storage)?;
    let product = product.ok_or_else(|| ApiError::unknown_product(&id))?;
    Ok(Json(Page {
        applied_index,
        items: vec![product],
    }))
}

async fn list_orders(
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Answer<Order> {
    let after = query
        .after
        .as_deref()
        .map(str::parse::<u64>)
        .transpose()
        .map_err(|_| ApiError::invalid("after must be an order id"))?;
    let applied_index = state.reader.applied_index();
    let items = state
        .reader
        .orders(after.map(OrderId), query.limit())
        .map_err(ApiError::storage)?;
    Ok(Json(Page {
        applied_index,
        items,
    }))
}

async fn get_order(State(state): State<AppState>, Path(id): Path<u64>) -> Answer<Order> {
    let applied_index = state.reader.applied_index();
    let order = state.reader.order(OrderId(id)).map_err(ApiError::storage)?;
    let order = order.ok_or_else(|| ApiError::unknown_order(id))?;
    Ok(Json(Page {
        applied_index,
        items: vec![order],
    }))
}

/// The status document of this node.
pub async fn node_status(state: &NodeState) -> NodeStatus {
    let committed_index = committed_index(state).await;
    let metrics = state.raft.metrics().borrow().clone();
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
        applied_index: Some(state.reader.applied_index()),
        snapshot_index: metrics.snapshot.map(|id| id.index),
        purged_index: metrics.purged.map(|id| id.index),
        voters,
        members,
        replication,
        millis_since_quorum_ack: metrics.millis_since_quorum_ack,
        archive: archive_status(state),
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
fn archive_status(state: &NodeState) -> Option<ArchiveStatus> {
    if state.config.node.role != cluster_config::Role::Voter {
        return None;
    }
    let meta = state.reader.inventory_meta().ok()?;
    Some(crate::archive::Archive::status(
        state.archive.as_deref(),
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

async fn status(State(state): State<AppState>) -> Json<NodeStatus> {
    Json(node_status(&state).await)
}

async fn init(State(state): State<AppState>, body: Bytes) -> Response {
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
    match state.raft.initialize(members).await {
        Ok(()) => Json(voters).into_response(),
        Err(RaftError::APIError(InitializeError::NotAllowed(e))) => error(
            StatusCode::CONFLICT,
            ErrorCode::AlreadyInitialized,
            e.to_string(),
        ),
        Err(RaftError::APIError(InitializeError::NotInMembers(e))) => error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            e.to_string(),
        ),
        Err(e) => raft_error(e),
    }
}

/// Map a membership change's error: "not leader" says where the leader is.
fn membership_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Response {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            let leader = forward
                .leader_node
                .map_or_else(|| "unknown".to_string(), |node| node.addr);
            error(
                StatusCode::MISDIRECTED_REQUEST,
                ErrorCode::NotLeader,
                format!("this node is not the leader; the leader is at {leader}"),
            )
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            // Another change still in progress is worth retrying; the others are not.
            let code = match e {
                ChangeMembershipError::InProgress(_) => ErrorCode::MembershipChangeInProgress,
                _ => ErrorCode::MembershipError,
            };
            error(StatusCode::CONFLICT, code, e.to_string())
        }
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

async fn add_learner(
    State(state): State<AppState>,
    Json(request): Json<AddLearnerRequest>,
) -> Response {
    if request.id == 0 || request.addr.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "a learner needs an id >= 1 and an address",
        );
    }
    // Blocks until the learner has caught up, so that promoting it next is safe and quick.
    match state
        .raft
        .add_learner(request.id, BasicNode::new(&request.addr), true)
        .await
    {
        Ok(written) => {
            Json(serde_json::json!({ "log_index": written.log_id.index })).into_response()
        }
        Err(e) => membership_error(e),
    }
}

async fn change_membership(
    State(state): State<AppState>,
    Json(request): Json<ChangeMembershipRequest>,
) -> Response {
    let voters: BTreeSet<NodeId> = request.voters.iter().copied().collect();
    if voters.is_empty() || voters.len() > cluster_config::defaults::VOTERS_MAX {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            format!(
                "a membership needs 1 to {} voters (the archive's connection limit assumes at most that many)",
                cluster_config::defaults::VOTERS_MAX
            ),
        );
    }
    match state.raft.change_membership(voters, request.retain).await {
        Ok(written) => {
            Json(serde_json::json!({ "log_index": written.log_id.index })).into_response()
        }
        Err(e) => membership_error(e),
    }
}

/// Stop replicating to a learner and drop it from the membership. Voters are removed with
/// `change-membership` instead.
async fn remove_learner(
    State(state): State<AppState>,
    Json(request): Json<RemoveLearnerRequest>,
) -> Response {
    let voters: Vec<NodeId> = {
        let metrics = state.raft.metrics().borrow().clone();
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
    let change = ChangeMembers::RemoveNodes(BTreeSet::from([request.id]));
    match state.raft.change_membership(change, false).await {
        Ok(written) => {
            Json(serde_json::json!({ "log_index": written.log_id.index })).into_response()
        }
        Err(e) => membership_error(e),
    }
}

async fn snapshot(State(state): State<AppState>) -> Response {
    match state.raft.trigger().snapshot().await {
        Ok(()) => Json(serde_json::json!({ "triggered": true })).into_response(),
        Err(e) => raft_error(e),
    }
}
