//! `stockctl cluster hand-off` and `stockctl cluster rolling-restart`: planned restarts that no
//! purchase notices.
//!
//! A hand-off asks the leader to give leadership to another voter (the node side is
//! `flashstock_node::handoff`): writes wait a few milliseconds instead of the seconds of an
//! election after a crash. A rolling restart restarts every member one at a time, in the order
//! that keeps the shop serving: the gateways first (clients retry on another), then the
//! followers, the leader last, after handing leadership off. Before each voter it checks that
//! every other voter is caught up, so a majority stays up; after each node it waits until the
//! node answers with a new start time and has caught up with the leader.

use std::time::{Duration, Instant};

use flashstock_api::{ErrorCode, HandedOff, NodeStatus, RaftState};
use flashstock_client::{log_lag, VoterClient, CAUGHT_UP_LAG_MAX};
use serde::Serialize;

use crate::cluster::{
    answered, cluster_version_line, cluster_versions, find_leader, member_addr, node_status,
    probe_all, release_line, POLL_INTERVAL,
};
use crate::context::Context;
use crate::error::CliError;
use crate::output::{emit, Table};

pub async fn hand_off(
    ctx: &Context,
    client: &VoterClient,
    to: Option<u64>,
) -> Result<(), CliError> {
    let (_, addr) = find_leader(ctx, client).await?;
    let handed = client.hand_off(&addr, to).await?;
    emit(ctx.output, &handed, || {
        let mut table = Table::new(&["FROM", "TO", "TERM", "TOOK_MS"]);
        table.push(vec![
            handed.from.to_string(),
            handed.to.to_string(),
            handed.term.to_string(),
            handed.took_ms.to_string(),
        ]);
        table
    });
    Ok(())
}

/// One node of a rolling restart, as reported at the end.
#[derive(Debug, Serialize)]
struct Restarted {
    id: u64,
    role: &'static str,
    /// Set when the node led (group 0, the only group of a cluster of one): the hand-off before
    /// its restart.
    handed_off: Option<HandedOff>,
    /// With several Raft groups: the hand-off of every other group the node led.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    other_groups_handed_off: Vec<GroupHandedOff>,
    /// From the restart's start until the node answered, new, and caught up.
    back_after_ms: u64,
}

/// The hand-off of one Raft group's leadership.
#[derive(Debug, Serialize)]
struct GroupHandedOff {
    group: u16,
    #[serde(flatten)]
    handed: HandedOff,
}

/// The order of a rolling restart: learners (the gateways), then followers, the leader last;
/// by id within each. `only`: restrict to these ids (kept in the same order).
fn restart_order(leader: &NodeStatus, only: &[u64]) -> Vec<(u64, &'static str)> {
    let wanted = |id: &u64| only.is_empty() || only.contains(id);
    let mut order: Vec<(u64, &'static str)> = Vec::new();
    let mut learners: Vec<u64> = leader
        .members
        .iter()
        .map(|member| member.id)
        .filter(|id| !leader.voters.contains(id))
        .collect();
    learners.sort_unstable();
    order.extend(
        learners
            .into_iter()
            .filter(wanted)
            .map(|id| (id, "gateway")),
    );
    let mut followers: Vec<u64> = leader
        .voters
        .iter()
        .copied()
        .filter(|id| *id != leader.id)
        .collect();
    followers.sort_unstable();
    order.extend(followers.into_iter().filter(wanted).map(|id| (id, "voter")));
    if wanted(&leader.id) {
        order.push((leader.id, "voter"));
    }
    order
}

/// `{id}`, `{addr}` and `{host}` of `template`, for node `id` at `addr`.
fn command_for(template: &str, id: u64, addr: &str) -> String {
    let host = addr
        .rsplit_once(':')
        .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(addr);
    template
        .replace("{id}", &id.to_string())
        .replace("{addr}", addr)
        .replace("{host}", host)
}

pub async fn rolling_restart(
    ctx: &Context,
    client: &VoterClient,
    command: Option<String>,
    restart_wait: Duration,
    only: Vec<u64>,
) -> Result<(), CliError> {
    let (leader, _) = find_leader(ctx, client).await?;
    if let Some(unknown) = only
        .iter()
        .find(|id| !leader.members.iter().any(|member| member.id == **id))
    {
        return Err(CliError::failed(
            ErrorCode::UnknownNode,
            format!("node {unknown} is not a member"),
        ));
    }
    let order = restart_order(&leader, &only);
    // A node restarts every group it runs: each check and hand-off is done in every group.
    let groups: Vec<VoterClient> = match leader.group_count() {
        1 => vec![client.clone()],
        count => (0..count).map(|group| client.for_group(group)).collect(),
    };
    let total = order.len();
    let mut done = Vec::new();
    for (step, (id, role)) in order.into_iter().enumerate() {
        let say = |text: String| eprintln!("stockctl: node {}/{total}: {text}", step + 1);
        let ctx = ctx.for_step(restart_wait);
        let (leader, _) = find_leader(&ctx, client).await?;
        let addr = member_addr(&leader, id).ok_or_else(|| {
            CliError::failed(
                ErrorCode::UnknownNode,
                format!("the leader knows no address of node {id}"),
            )
        })?;
        if role == "voter" {
            for group in &groups {
                wait_others_caught_up(&ctx, group, id).await?;
            }
        }
        let before = client.status(&addr).await?.started_at_ms;
        let started = Instant::now();
        let mut handed_off = None;
        let mut other_groups_handed_off = Vec::new();
        // A gateway leads nothing: only a voter has leaderships to hand off.
        for group in groups.iter().filter(|_| role == "voter") {
            let (leader, leader_addr) = find_leader(&ctx, group).await?;
            if leader.id != id {
                continue;
            }
            let handed = group.hand_off(&leader_addr, None).await?;
            let of = match groups.len() {
                1 => String::new(),
                _ => format!(" group {}", group.group()),
            };
            say(format!(
                "node {id} led{of}: handed leadership to node {} in {} ms",
                handed.to, handed.took_ms
            ));
            match group.group() {
                0 => handed_off = Some(handed),
                number => other_groups_handed_off.push(GroupHandedOff {
                    group: number,
                    handed,
                }),
            }
        }
        match &command {
            Some(template) => {
                let line = command_for(template, id, &addr);
                say(format!("restarting node {id} ({role}, {addr}): {line}"));
                run_restart(&line, ctx.remaining()).await?;
            }
            None => say(format!(
                "restart node {id} ({role}, {addr}) now; waiting up to {restart_wait:?} for it \
                 to come back and catch up"
            )),
        }
        for group in &groups {
            wait_back(&ctx, group, id, &addr, before).await?;
        }
        let back_after_ms = started.elapsed().as_millis() as u64;
        say(format!(
            "node {id} is back and caught up after {:.1} s",
            back_after_ms as f64 / 1000.0
        ));
        done.push(Restarted {
            id,
            role,
            handed_off,
            other_groups_handed_off,
            back_after_ms,
        });
    }
    report_versions(ctx, client).await;
    emit(ctx.output, &done, || {
        let mut table = Table::new(&["ID", "ROLE", "HANDED_OFF_TO", "HAND_OFF_MS", "BACK_AFTER_S"]);
        for node in &done {
            // With several groups, each hand-off names its group: `g1:3`.
            let mut handed: Vec<(Option<u16>, &HandedOff)> = Vec::new();
            let several = !node.other_groups_handed_off.is_empty();
            if let Some(h) = &node.handed_off {
                handed.push((several.then_some(0), h));
            }
            handed.extend(
                node.other_groups_handed_off
                    .iter()
                    .map(|g| (Some(g.group), &g.handed)),
            );
            let column = |field: fn(&HandedOff) -> u64| match handed.is_empty() {
                true => "-".to_owned(),
                false => handed
                    .iter()
                    .map(|(group, h)| match group {
                        Some(group) => format!("g{group}:{}", field(h)),
                        None => field(h).to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            };
            table.push(vec![
                node.id.to_string(),
                node.role.to_owned(),
                column(|h| h.to),
                column(|h| h.took_ms),
                format!("{:.1}", node.back_after_ms as f64 / 1000.0),
            ]);
        }
        table
    });
    Ok(())
}

/// How long a rolling restart waits at its end for the leader to raise the cluster version, once
/// every node runs a release that supports a newer one (the leader checks every second).
const CLUSTER_VERSION_WAIT: Duration = Duration::from_secs(15);

/// After the last node, on stderr: what the nodes run now, and the cluster version. When the
/// restart was an upgrade that let the cluster version go up, waits (a bounded time) until the
/// leader has raised it, so the line says where it ended.
async fn report_versions(ctx: &Context, client: &VoterClient) {
    let Ok(endpoints) = ctx.endpoints() else {
        return;
    };
    let deadline = Instant::now() + CLUSTER_VERSION_WAIT;
    loop {
        let probes = probe_all(client, endpoints).await;
        let statuses: Vec<&NodeStatus> = answered(&probes).collect();
        let pending =
            cluster_versions(&statuses).is_some_and(|(running, every, _)| every > running);
        if !pending || Instant::now() >= deadline {
            for line in release_line(&statuses)
                .into_iter()
                .chain(cluster_version_line(&statuses))
            {
                eprintln!("stockctl: {line}");
            }
            return;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Run one restart command through `sh -c`, at most `wait`.
async fn run_restart(line: &str, wait: Duration) -> Result<(), CliError> {
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", line])
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CliError::failed(ErrorCode::Internal, format!("cannot run sh: {e}")))?;
    match tokio::time::timeout(wait, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(CliError::failed(
            ErrorCode::NotRestarted,
            format!("`{line}` failed ({status}); the rolling restart stops here"),
        )),
        Ok(Err(e)) => Err(CliError::failed(
            ErrorCode::NotRestarted,
            format!("`{line}` could not be waited for: {e}"),
        )),
        Err(_) => Err(CliError::failed(
            ErrorCode::NotRestarted,
            format!("`{line}` did not finish within {wait:?}; the rolling restart stops here"),
        )),
    }
}

/// Before a voter restarts: every other voter trails the leader by at most
/// [`CAUGHT_UP_LAG_MAX`], so the rest still make a majority that has everything.
async fn wait_others_caught_up(
    ctx: &Context,
    client: &VoterClient,
    id: u64,
) -> Result<(), CliError> {
    loop {
        let (leader, _) = find_leader(ctx, client).await?;
        let behind: Vec<u64> = leader
            .voters
            .iter()
            .copied()
            .filter(|voter| *voter != id && *voter != leader.id)
            .filter(|voter| log_lag(&leader, *voter).is_none_or(|lag| lag > CAUGHT_UP_LAG_MAX))
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() + POLL_INTERVAL > ctx.deadline {
            return Err(CliError::failed(
                ErrorCode::MembersUnavailable,
                format!(
                    "voters {behind:?} are not caught up with the leader: restarting node {id} \
                     now could leave no majority; nothing was restarted"
                ),
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Poll until node `id` answers at `addr` with a start time other than `before` and trails
/// the leader by at most [`CAUGHT_UP_LAG_MAX`] entries.
async fn wait_back(
    ctx: &Context,
    client: &VoterClient,
    id: u64,
    addr: &str,
    before: Option<u64>,
) -> Result<(), CliError> {
    loop {
        let last = match node_status(client, id, addr).await? {
            Ok(status) if status.started_at_ms == before => "not restarted yet".to_owned(),
            Ok(status) => match find_leader(ctx, client).await {
                Ok((leader, _)) if leader.id == id && status.state == RaftState::Leader => {
                    return Ok(())
                }
                Ok((leader, _)) => match log_lag(&leader, id) {
                    Some(lag) if lag <= CAUGHT_UP_LAG_MAX => return Ok(()),
                    Some(lag) => format!("back, {lag} entries behind the leader"),
                    None => "back, not replicated to yet".to_owned(),
                },
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() + POLL_INTERVAL > ctx.deadline {
            return Err(CliError::failed(
                ErrorCode::NotRestarted,
                format!(
                    "node {id} did not come back and catch up within {:?}: {last}; the rolling \
                     restart stops here",
                    ctx.timeout
                ),
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashstock_api::{NodeAddr, NodeRole};

    #[test]
    fn gateways_first_then_followers_the_leader_last() {
        let status = NodeStatus {
            id: 2,
            role: NodeRole::Voter,
            state: RaftState::Leader,
            term: 3,
            leader: Some(2),
            last_log_index: Some(10),
            committed_index: Some(10),
            applied_index: Some(10),
            snapshot_index: None,
            purged_index: None,
            voters: vec![1, 2, 3],
            members: [5, 1, 4, 2, 3]
                .iter()
                .map(|id| NodeAddr {
                    id: *id,
                    addr: format!("10.0.0.{id}:7000"),
                })
                .collect(),
            replication: Vec::new(),
            millis_since_quorum_ack: None,
            archive: None,
            membership: None,
            fatal: None,
            started_at_ms: None,
            release: None,
            storage: None,
            cluster_version: None,
            group: None,
            groups: None,
        };
        let ids = |order: Vec<(u64, &str)>| order.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(ids(restart_order(&status, &[])), [4, 5, 1, 3, 2]);
        assert_eq!(ids(restart_order(&status, &[2, 5])), [5, 2]);
    }

    #[test]
    fn commands_name_the_node() {
        let line = command_for(
            "ssh {host} systemctl restart node-{id} # {addr}",
            3,
            "10.0.0.3:7000",
        );
        assert_eq!(
            line,
            "ssh 10.0.0.3 systemctl restart node-3 # 10.0.0.3:7000"
        );
        assert_eq!(command_for("{host}", 1, "[::1]:7000"), "::1");
    }
}
