//! Raising the cluster version once every member can follow it.
//!
//! The cluster version ([`flashstock_api::CLUSTER_VERSION`]) says what may go into the log and
//! the state. A release that brings a new version writes what the version before it reads until
//! the cluster version is raised, so nodes of both releases run side by side during a rolling
//! upgrade. The leader raises it: every [`CHECK_EVERY`] it asks every member of the membership,
//! learners included, for its status, and once each one reports a release that runs a newer
//! version ([`flashstock_api::ReleaseStatus::cluster_version_max`]; a release before cluster
//! versions reports none and runs 1), it proposes [`Op::SetClusterVersion`] with the lowest of
//! them. A member that does not answer holds the switch back: it may run an old release.
//!
//! The command is applied in log order like every other, so every replica switches at the same
//! index, and it never goes down: after it, a server can no longer go back to the older release
//! (that release refuses the newer state format with a message naming both).

use std::sync::Arc;
use std::time::Duration;

use flashstock_api::{
    Command, NodeStatus, Op, Outcome, WriteResponse, CLUSTER_VERSION, CLUSTER_VERSION_BASE,
    SECRET_HEADER,
};
use openraft::ServerState;
use tokio::sync::watch;

use crate::{Group, NodeState};

/// How often the leader checks whether the cluster version can go up.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// On a voter, for as long as it runs: whenever it leads and this release runs a newer cluster
/// version than the cluster does, raise the cluster version as far as every member supports.
pub async fn raise_when_supported(
    state: Arc<NodeState>,
    group: u16,
    mut stopping: watch::Receiver<bool>,
) {
    let group = &state.groups[usize::from(group)];
    let mut waiting_for = String::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        let running = match group.reader.cluster_version() {
            Ok(version) => version,
            Err(e) => {
                tracing::warn!(id = state.id, error = %e, "cannot read the cluster version");
                continue;
            }
        };
        if running >= CLUSTER_VERSION {
            // Applied here, so in the log for good: nothing left for this release to do.
            return;
        }
        if group.raft.metrics().borrow().state != ServerState::Leader {
            continue;
        }
        let supported = match supported_by_every_member(&state, group).await {
            Ok(version) => version,
            Err(why) => {
                if why != waiting_for {
                    tracing::info!(
                        id = state.id,
                        running,
                        "the cluster version stays at {running}: {why}"
                    );
                    waiting_for = why;
                }
                continue;
            }
        };
        if supported <= running {
            continue;
        }
        tracing::info!(
            id = state.id,
            from = running,
            to = supported,
            "every member runs a release that supports cluster version {supported}: raising it"
        );
        let command = Command {
            key: format!("cluster-version-{supported}"),
            op: Op::SetClusterVersion { version: supported },
        };
        match state.propose(group, vec![command]).await {
            WriteResponse::Applied {
                log_index,
                outcomes,
            } => match outcomes.first().map(Outcome::first) {
                Some(Outcome::ClusterVersion { version }) => tracing::info!(
                    id = state.id,
                    log_index,
                    "the cluster runs cluster version {version}"
                ),
                other => tracing::warn!(
                    id = state.id,
                    ?other,
                    "raising the cluster version was answered unexpectedly"
                ),
            },
            other => tracing::info!(
                id = state.id,
                ?other,
                "raising the cluster version did not complete; trying again"
            ),
        }
    }
}

/// The newest cluster version every member of the membership runs, or why that is not known
/// (a member did not answer).
async fn supported_by_every_member(state: &NodeState, group: &Group) -> Result<u32, String> {
    let members: Vec<(u64, String)> = {
        let metrics = group.raft.metrics().borrow().clone();
        metrics
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != state.id)
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect()
    };
    let timeout = Duration::from_millis(state.config.raft.rpc_timeout_ms);
    let (http, scheme) = state.internal_http(timeout)?;
    let mut supported = CLUSTER_VERSION;
    let mut behind = Vec::new();
    for (id, addr) in members {
        let status: NodeStatus = http
            .get(format!("{scheme}://{addr}/admin/status"))
            .header(SECRET_HEADER, &**state.credentials.own_secret())
            .timeout(timeout)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("member {id} did not answer ({e})"))?
            .json()
            .await
            .map_err(|e| format!("member {id} answered an unreadable status ({e})"))?;
        let runs = status.supported_cluster_version();
        if runs < CLUSTER_VERSION {
            behind.push(id);
        }
        supported = supported.min(runs);
    }
    if supported == CLUSTER_VERSION_BASE && !behind.is_empty() {
        return Err(format!("members {behind:?} run an older release"));
    }
    Ok(supported)
}
