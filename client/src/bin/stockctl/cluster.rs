//! `stockctl cluster ...`: status, initialization, membership changes and snapshots, over the
//! nodes' internal admin API (`/admin/*`, authenticated with the operator secret).
//!
//! Only the leader accepts membership changes, so each change first finds it: every endpoint's
//! status names a leader id, and the members list gives that node's address. The change itself is
//! computed from the leader's own view of the membership, and recomputed if leadership moves
//! before it is accepted.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use flashstock_api::{ErrorCode, NodeAddr, NodeStatus, RaftState};
use flashstock_client::{CatchUp, VoterClient};
use serde::Serialize;

use crate::args::ClusterCommand;
use crate::context::Context;
use crate::error::CliError;
use crate::output::{emit, opt, Table};

/// Pause between polls while waiting for a leader or a snapshot.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How to look at the cluster after a change whose outcome is unknown.
const CHECK_STATUS: &str = "check with `stockctl cluster status`";

pub async fn run(ctx: &Context, command: ClusterCommand) -> Result<(), CliError> {
    let client = ctx.voter_client()?;
    // A membership is each group's own: without --group, a change goes to every group, one
    // after the other.
    let changes_membership = matches!(
        command,
        ClusterCommand::AddLearner { .. }
            | ClusterCommand::Promote { .. }
            | ClusterCommand::Remove { .. }
    );
    if let ClusterCommand::ReplaceDisk { id, restart_wait } = command {
        // One disk holds every group, whatever --group says: each step is done in every group
        // before the next, so the node is wiped only once it is out of all of them.
        let probes = probe_all(&client, ctx.endpoints()?).await;
        let groups = answered(&probes).map(NodeStatus::group_count).max();
        let clients: Vec<VoterClient> = match groups.filter(|groups| *groups > 1) {
            Some(groups) => (0..groups).map(|group| client.for_group(group)).collect(),
            None => vec![client],
        };
        return replace_disk(ctx, &clients, id, restart_wait).await;
    }
    if changes_membership && ctx.group.is_none() {
        let probes = probe_all(&client, ctx.endpoints()?).await;
        let groups = answered(&probes).map(NodeStatus::group_count).max();
        if let Some(groups) = groups.filter(|groups| *groups > 1) {
            for group in 0..groups {
                let mut one = ctx.clone();
                one.group = Some(group);
                eprintln!("stockctl: Raft group {group} of {groups}:");
                Box::pin(run(&one, command.clone())).await?;
            }
            return Ok(());
        }
    }
    match command {
        ClusterCommand::Status => status(ctx, &client).await,
        ClusterCommand::Init { voters } => init(ctx, &client, voters).await,
        ClusterCommand::AddLearner { id, addr, no_wait } => {
            add_learner(ctx, &client, id, &addr, no_wait).await
        }
        ClusterCommand::Promote { id } => {
            let summary = format!("promoted node {id} to voter");
            change(ctx, &client, summary, |leader| plan_promote(leader, id))
                .await
                .map(drop)
        }
        ClusterCommand::Remove { id } => {
            let summary = format!("removed node {id}");
            let removed = change(ctx, &client, summary, |leader| plan_remove(leader, id)).await?;
            if removed {
                eprintln!(
                    "stockctl: note: stop node {id} now. It is no longer a member; before it joins \
                     again, wipe its data directory and add it as a learner, then promote it \
                     (`stockctl cluster replace-disk {id}` does each step and checks it)"
                );
            }
            Ok(())
        }
        ClusterCommand::ReplaceDisk { .. } => unreachable!("replace-disk is done above"),
        ClusterCommand::Snapshot { node, no_wait } => snapshot(ctx, &client, node, no_wait).await,
        ClusterCommand::HandOff { to } => crate::restart::hand_off(ctx, &client, to).await,
        ClusterCommand::RollingRestart {
            command,
            restart_wait,
            nodes,
        } => crate::restart::rolling_restart(ctx, &client, command, restart_wait, nodes).await,
    }
}

// ---- status ----

/// One endpoint's answer to `GET /admin/status`.
pub(crate) struct Probe {
    pub endpoint: String,
    pub result: Result<NodeStatus, CliError>,
}

/// Ask every endpoint for its status, concurrently; answers keep the endpoints' order.
pub(crate) async fn probe_all(client: &VoterClient, endpoints: &[String]) -> Vec<Probe> {
    let tasks: Vec<_> = endpoints
        .iter()
        .map(|endpoint| {
            let client = client.clone();
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                let result = client.status(&endpoint).await.map_err(CliError::from);
                Probe { endpoint, result }
            })
        })
        .collect();
    let mut probes = Vec::with_capacity(tasks.len());
    for task in tasks {
        probes.push(task.await.expect("a status probe does not panic"));
    }
    probes
}

pub(crate) fn answered(probes: &[Probe]) -> impl Iterator<Item = &NodeStatus> {
    probes.iter().filter_map(|p| p.result.as_ref().ok())
}

fn any_answered(probes: &[Probe]) -> bool {
    probes.iter().any(|p| p.result.is_ok())
}

/// The status of the node that says it leads, in the highest term if several do.
pub(crate) fn leader_status(statuses: &[&NodeStatus]) -> Option<NodeStatus> {
    statuses
        .iter()
        .filter(|s| s.state == RaftState::Leader)
        .max_by_key(|s| s.term)
        .map(|s| (*s).clone())
}

/// How far `node` lags behind the leader, as the leader reports it.
fn lag(node: &NodeStatus, leader: Option<&NodeStatus>) -> Option<u64> {
    let leader = leader?;
    if node.id == leader.id {
        return Some(0);
    }
    leader
        .replication
        .iter()
        .find(|peer| peer.id == node.id)
        .map(|peer| peer.lag)
}

/// One element of `cluster status --output json`.
#[derive(Serialize)]
#[serde(untagged)]
enum StatusEntry<'a> {
    Answered(&'a NodeStatus),
    Failed {
        endpoint: &'a str,
        code: &'a str,
        error: String,
    },
}

fn status_entries(probes: &[Probe]) -> Vec<StatusEntry<'_>> {
    probes
        .iter()
        .map(|probe| match &probe.result {
            Ok(status) => StatusEntry::Answered(status),
            Err(error) => StatusEntry::Failed {
                endpoint: &probe.endpoint,
                code: error.code().map_or("error", ErrorCode::as_str),
                error: error.to_string(),
            },
        })
        .collect()
}

const STATUS_HEADER: [&str; 14] = [
    "ID",
    "ADDR",
    "ROLE",
    "STATE",
    "TERM",
    "LEADER",
    "LAST LOG",
    "COMMITTED",
    "APPLIED",
    "SNAPSHOT",
    "LAG",
    "BACKLOG",
    "DATA MIB",
    "RELEASE",
];

fn status_table(probes: &[Probe]) -> Table {
    let failures = probes.iter().any(|p| p.result.is_err());
    let mut header = STATUS_HEADER.to_vec();
    if failures {
        header.push("ERROR");
    }
    let statuses: Vec<&NodeStatus> = answered(probes).collect();
    let leader = leader_status(&statuses);
    let mut table = Table::new(&header);
    for probe in probes {
        table.push(match &probe.result {
            Ok(status) => status_row(&probe.endpoint, status, leader.as_ref()),
            Err(error) => {
                let mut row = vec!["-".to_owned(), probe.endpoint.clone()];
                row.extend(std::iter::repeat_n("-".to_owned(), STATUS_HEADER.len() - 2));
                row.push(error.to_string());
                row
            }
        });
    }
    table
}

fn status_row(endpoint: &str, status: &NodeStatus, leader: Option<&NodeStatus>) -> Vec<String> {
    vec![
        status.id.to_string(),
        endpoint.to_owned(),
        status.role.to_string(),
        status.state.to_string(),
        status.term.to_string(),
        opt(status.leader),
        opt(status.last_log_index),
        opt(status.committed_index),
        opt(status.applied_index),
        opt(status.snapshot_index),
        opt(lag(status, leader)),
        opt(status.archive.as_ref().map(|archive| archive.backlog)),
        status.storage.as_ref().map_or_else(
            || "-".to_owned(),
            |storage| format!("{:.0}", storage.total_bytes() as f64 / 1_048_576.0),
        ),
        status.release.as_ref().map_or_else(
            // A node too old to say.
            || "-".to_owned(),
            |release| {
                format!(
                    "{}/w{}/f{}",
                    release.version, release.wire, release.state_format
                )
            },
        ),
    ]
}

/// Every endpoint's status; fails only when none answered.
async fn status(ctx: &Context, client: &VoterClient) -> Result<(), CliError> {
    let endpoints = ctx.endpoints()?;
    let probes = probe_all(client, endpoints).await;
    // A cluster of several groups, asked about none in particular: every group.
    let groups = answered(&probes).map(NodeStatus::group_count).max();
    let mut others = Vec::new();
    if ctx.group.is_none() {
        for group in 1..groups.unwrap_or(1) {
            let probes = probe_all(&client.for_group(group), endpoints).await;
            others.push((group, probes));
        }
    }
    let mut entries = status_entries(&probes);
    for (_, probes) in &others {
        entries.extend(status_entries(probes));
    }
    emit(ctx.output, &entries, || {
        let mut table = status_table(&probes);
        for line in membership_lines(&probes) {
            eprintln!("{line}");
        }
        if !others.is_empty() {
            let mut every = vec![(0, probes.as_slice())];
            every.extend(
                others
                    .iter()
                    .map(|(group, probes)| (*group, probes.as_slice())),
            );
            table = table.then(groups_table(&every));
            eprintln!(
                "the nodes' table is group 0's; `stockctl --group N cluster status` shows group N's"
            );
        }
        table
    });
    if any_answered(&probes) {
        Ok(())
    } else {
        Err(none_answered(&probes))
    }
}

/// One row per Raft group: its leader, term, commit index, and how far its furthest member
/// trails the leader's log.
fn groups_table(groups: &[(u16, &[Probe])]) -> Table {
    let mut table = Table::new(&["GROUP", "LEADER", "TERM", "COMMITTED", "MAX LAG", "BACKLOG"]);
    for (group, probes) in groups {
        let statuses: Vec<&NodeStatus> = answered(probes).collect();
        let leader = leader_status(&statuses);
        table.push(match &leader {
            Some(leader) => vec![
                group.to_string(),
                leader.id.to_string(),
                leader.term.to_string(),
                opt(leader.committed_index),
                opt(leader.replication.iter().map(|peer| peer.lag).max()),
                opt(leader.archive.as_ref().map(|archive| archive.backlog)),
            ],
            None => vec![
                group.to_string(),
                "none".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
            ],
        });
    }
    table
}

/// What the text output says under the table about the membership (from the leader, or the
/// freshest node) and about nodes whose Raft core stopped.
fn membership_lines(probes: &[Probe]) -> Vec<String> {
    let statuses: Vec<&NodeStatus> = answered(probes).collect();
    let mut lines = Vec::new();
    let view = leader_status(&statuses)
        .or_else(|| statuses.iter().max_by_key(|s| s.term).map(|s| (*s).clone()));
    if let Some(membership) = view.as_ref().and_then(|s| s.membership.as_ref()) {
        let sets: Vec<String> = membership
            .configs
            .iter()
            .map(|config| format!("{config:?}"))
            .collect();
        let at = opt(membership.log_index);
        if membership.committed && membership.configs.len() == 1 {
            lines.push(format!("membership: voters {} (index {at})", sets.join("")));
        } else {
            let mut line = format!(
                "membership: CHANGE IN PROGRESS at index {at}: voters {} (every commit needs a \
                 majority of each)",
                sets.join(" and ")
            );
            if !membership.waiting_for.is_empty() {
                line.push_str(&format!(
                    "; waiting for {:?}: it completes once they answer again (see RUNBOOK, \
                     \"A membership change that does not complete\")",
                    membership.waiting_for
                ));
            }
            lines.push(line);
        }
        if !membership.learners.is_empty() {
            lines.push(format!("learners: {:?}", membership.learners));
        }
    }
    lines.extend(release_line(&statuses));
    lines.extend(cluster_version_line(&statuses));
    for status in &statuses {
        if let Some(fatal) = &status.fatal {
            lines.push(format!(
                "node {}: Raft core STOPPED ({fatal}); the node is exiting",
                status.id
            ));
        }
    }
    lines
}

/// What the nodes run: one release everywhere, or, during an upgrade, who runs what and the
/// wire version every node speaks (the lowest: what the cluster can use).
pub(crate) fn release_line(statuses: &[&NodeStatus]) -> Option<String> {
    let mut runs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for status in statuses {
        let release = status.release.as_ref().map_or_else(
            || "a release before versions were shown".to_owned(),
            ToString::to_string,
        );
        runs.entry(release).or_default().push(status.id);
    }
    match runs.len() {
        0 => None,
        1 => Some(format!(
            "release: every node answering runs {}",
            runs.keys().next().expect("one")
        )),
        _ => {
            let spoken = statuses
                .iter()
                .map(|s| s.release.as_ref().map_or(1, |r| r.wire))
                .min()
                .unwrap_or(1);
            let who: Vec<String> = runs
                .iter()
                .map(|(release, ids)| format!("{ids:?} run {release}"))
                .collect();
            Some(format!(
                "release: MIXED: {}; wire version every node speaks: {spoken}",
                who.join("; ")
            ))
        }
    }
}

/// The cluster version the nodes have applied (the highest reported: a node that has not applied
/// the switch yet catches up), the newest every node answering supports, and the newest any
/// does; `None` without statuses.
pub(crate) fn cluster_versions(statuses: &[&NodeStatus]) -> Option<(u32, u32, u32)> {
    let running = statuses.iter().map(|s| s.applied_cluster_version()).max()?;
    let every = statuses
        .iter()
        .map(|s| s.supported_cluster_version())
        .min()?;
    let newest = statuses
        .iter()
        .map(|s| s.supported_cluster_version())
        .max()?;
    Some((running, every, newest))
}

/// The cluster version the nodes have applied, and whether it can go up.
pub(crate) fn cluster_version_line(statuses: &[&NodeStatus]) -> Option<String> {
    let (running, every, newest) = cluster_versions(statuses)?;
    Some(if every > running {
        format!(
            "cluster version: {running}; every node answering supports {every}: the leader \
             raises it once every member answers"
        )
    } else if newest > running {
        let behind: Vec<u64> = statuses
            .iter()
            .filter(|s| s.supported_cluster_version() <= running)
            .map(|s| s.id)
            .collect();
        format!(
            "cluster version: {running}; {behind:?} run a release that supports no newer one: \
             it goes up to {newest} once every member runs such a release (until then a server \
             may go back to its previous release)"
        )
    } else {
        format!("cluster version: {running}")
    })
}

/// The error of a poll in which no endpoint answered: the first endpoint's, with all of them.
pub(crate) fn none_answered(probes: &[Probe]) -> CliError {
    let code = probes
        .iter()
        .find_map(|p| p.result.as_ref().err().and_then(CliError::code))
        .cloned()
        .unwrap_or(ErrorCode::Unavailable);
    let details: Vec<String> = probes
        .iter()
        .filter_map(|p| {
            p.result
                .as_ref()
                .err()
                .map(|e| with_endpoint(&p.endpoint, e))
        })
        .collect();
    CliError::failed(
        code,
        format!("no endpoint answered ({})", details.join("; ")),
    )
}

/// An endpoint's error, naming the endpoint once.
fn with_endpoint(endpoint: &str, error: &CliError) -> String {
    let text = error.to_string();
    if text.contains(endpoint) {
        text
    } else {
        format!("{endpoint}: {text}")
    }
}

// ---- init ----

async fn init(ctx: &Context, client: &VoterClient, voters: Vec<NodeAddr>) -> Result<(), CliError> {
    let first = &ctx.endpoints()?[0];
    let voters = client.init(first, voters).await.map_err(mutation_error)?;
    emit(ctx.output, &voters, || {
        let mut table = Table::new(&["ID", "ADDR", "MEMBERSHIP"]);
        for voter in &voters {
            table.push(vec![
                voter.id.to_string(),
                voter.addr.clone(),
                "voter".into(),
            ]);
        }
        table
    });
    Ok(())
}

/// A failed call that changes the cluster: a lost answer means it may have happened.
fn mutation_error(error: flashstock_client::Error) -> CliError {
    match CliError::from(error) {
        CliError::Failed {
            code: ErrorCode::Unavailable,
            message,
        } => CliError::unknown(message, CHECK_STATUS),
        CliError::Unknown { message, .. } => CliError::unknown(message, CHECK_STATUS),
        other => other,
    }
}

// ---- finding the leader ----

/// The leader's status, confirmed by the leader itself, and its internal address. Waits out an
/// election until the deadline; fails at once if no endpoint answers at all.
pub(crate) async fn find_leader(
    ctx: &Context,
    client: &VoterClient,
) -> Result<(NodeStatus, String), CliError> {
    loop {
        let probes = probe_all(client, ctx.endpoints()?).await;
        if !any_answered(&probes) {
            return Err(none_answered(&probes));
        }
        let last_problem = match leader_addr(&probes) {
            Some(addr) => match client.status(&addr).await {
                Ok(status) if status.state == RaftState::Leader => return Ok((status, addr)),
                Ok(status) => format!("node {} at {addr} is {}", status.id, status.state),
                Err(e) => format!("the leader at {addr}: {e}"),
            },
            None => "no endpoint knows a leader".to_owned(),
        };
        if Instant::now() + POLL_INTERVAL > ctx.deadline {
            return Err(CliError::failed(
                ErrorCode::NoLeader,
                format!("no leader found within {:?}: {last_problem}", ctx.timeout),
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The leader's address as the freshest answering node (highest term) knows it.
fn leader_addr(probes: &[Probe]) -> Option<String> {
    let freshest = answered(probes)
        .filter(|s| s.leader.is_some())
        .max_by_key(|s| s.term)?;
    member_addr(freshest, freshest.leader?)
}

pub(crate) fn member_addr(status: &NodeStatus, id: u64) -> Option<String> {
    status
        .members
        .iter()
        .find(|member| member.id == id)
        .map(|member| member.addr.clone())
}

// ---- membership changes ----

/// What a membership command asks the leader to do, given the leader's current view.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// Nothing to do: the membership already is as asked.
    Nothing(String),
    AddLearner {
        id: u64,
        addr: String,
    },
    SetVoters {
        voters: Vec<u64>,
        retain: bool,
    },
    RemoveLearner {
        id: u64,
    },
}

fn plan_add_learner(leader: &NodeStatus, id: u64, addr: &str) -> Result<Plan, CliError> {
    if id == 0 || addr.trim().is_empty() {
        return Err(CliError::Usage(
            "a learner needs an id >= 1 and an address".into(),
        ));
    }
    if leader.voters.contains(&id) {
        return Err(CliError::failed(
            ErrorCode::AlreadyVoter,
            format!("node {id} is a voter already"),
        ));
    }
    match member_addr(leader, id) {
        Some(known) if known == addr => Ok(Plan::Nothing(format!(
            "node {id} is a learner at {addr} already"
        ))),
        Some(known) => Err(CliError::failed(
            ErrorCode::MemberExists,
            format!("node {id} is a member at {known}, not {addr}"),
        )),
        None => Ok(Plan::AddLearner {
            id,
            addr: addr.trim().to_owned(),
        }),
    }
}

fn plan_promote(leader: &NodeStatus, id: u64) -> Result<Plan, CliError> {
    if leader.voters.contains(&id) {
        return Ok(Plan::Nothing(format!("node {id} is a voter already")));
    }
    if member_addr(leader, id).is_none() {
        return Err(CliError::failed(
            ErrorCode::NotAMember,
            format!("node {id} is not a member: add it with `stockctl cluster add-learner` first"),
        ));
    }
    let mut voters: BTreeSet<u64> = leader.voters.iter().copied().collect();
    voters.insert(id);
    Ok(Plan::SetVoters {
        voters: voters.into_iter().collect(),
        retain: true,
    })
}

fn plan_remove(leader: &NodeStatus, id: u64) -> Result<Plan, CliError> {
    if !leader.voters.contains(&id) {
        return match member_addr(leader, id) {
            Some(_) => Ok(Plan::RemoveLearner { id }),
            None => Ok(Plan::Nothing(format!("node {id} is not a member"))),
        };
    }
    let voters: Vec<u64> = leader.voters.iter().copied().filter(|v| *v != id).collect();
    if voters.is_empty() {
        return Err(CliError::failed(
            ErrorCode::LastVoter,
            format!("node {id} is the only voter; a cluster needs at least one"),
        ));
    }
    Ok(Plan::SetVoters {
        voters,
        retain: false,
    })
}

/// What a membership command prints: the change and the membership the leader reports after it.
#[derive(Serialize)]
struct MembershipReport {
    summary: String,
    /// The log index of the change; absent when nothing had to change.
    log_index: Option<u64>,
    leader: u64,
    voters: Vec<u64>,
    members: Vec<NodeAddr>,
}

/// Plan a change from the leader's view and apply it at the leader; find the leader again and
/// re-plan if leadership moved or another change was in progress. Returns whether the membership
/// changed (false when it already was as asked).
async fn change(
    ctx: &Context,
    client: &VoterClient,
    summary: String,
    plan: impl Fn(&NodeStatus) -> Result<Plan, CliError>,
) -> Result<bool, CliError> {
    loop {
        let (leader, addr) = find_leader(ctx, client).await?;
        let (summary, outcome) = match plan(&leader)? {
            Plan::Nothing(why) => (why, Ok(None)),
            Plan::AddLearner { id, addr: learner } => {
                // The catch-up is followed here (`wait_caught_up`), not inside one call.
                let sent = client.add_learner_no_wait(&addr, id, &learner);
                (summary.clone(), within(ctx, sent).await)
            }
            Plan::SetVoters { voters, retain } => {
                let sent = client.change_membership(&addr, voters, retain);
                (summary.clone(), within(ctx, sent).await)
            }
            Plan::RemoveLearner { id } => {
                let sent = client.remove_learner(&addr, id);
                (summary.clone(), within(ctx, sent).await)
            }
        };
        match outcome {
            Ok(answer) => {
                let log_index = answer.as_ref().and_then(|a| a["log_index"].as_u64());
                report_membership(ctx, client, &addr, leader, summary, log_index).await;
                return Ok(log_index.is_some());
            }
            Err(error) if is_transient(&error) && Instant::now() < ctx.deadline => {
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Run an admin call that changes the cluster, within the command's deadline.
async fn within(
    ctx: &Context,
    call: impl Future<Output = Result<serde_json::Value, flashstock_client::Error>>,
) -> Result<Option<serde_json::Value>, CliError> {
    match tokio::time::timeout(ctx.remaining(), call).await {
        Ok(Ok(answer)) => Ok(Some(answer)),
        Ok(Err(error)) => Err(mutation_error(error)),
        Err(_) => Err(CliError::unknown(
            format!("no answer within {:?}", ctx.timeout),
            CHECK_STATUS,
        )),
    }
}

/// A refusal that waiting may overcome (a new leader, the last change completing, a learner
/// catching up); nothing was changed.
fn is_transient(error: &CliError) -> bool {
    matches!(
        error.code(),
        Some(
            ErrorCode::NotLeader | ErrorCode::MembershipChangeInProgress | ErrorCode::LearnerBehind
        )
    )
}

async fn report_membership(
    ctx: &Context,
    client: &VoterClient,
    addr: &str,
    before: NodeStatus,
    summary: String,
    log_index: Option<u64>,
) {
    // The leader's view after the change; the one before it if the leader cannot tell now.
    let after = client.status(addr).await.unwrap_or(before);
    let report = MembershipReport {
        summary,
        log_index,
        leader: after.id,
        voters: after.voters,
        members: after.members,
    };
    emit(ctx.output, &report, || {
        match report.log_index {
            Some(index) => println!("{} (log index {index})", report.summary),
            None => println!("{}", report.summary),
        }
        membership_table(&report.voters, &report.members)
    });
}

fn membership_table(voters: &[u64], members: &[NodeAddr]) -> Table {
    let mut table = Table::new(&["ID", "ADDR", "MEMBERSHIP"]);
    for member in members {
        let kind = if voters.contains(&member.id) {
            "voter"
        } else {
            "learner"
        };
        table.push(vec![
            member.id.to_string(),
            member.addr.clone(),
            kind.into(),
        ]);
    }
    table
}

// ---- learners and disks ----

/// Add a learner; unless `no_wait`, return only once it has caught up with the leader.
async fn add_learner(
    ctx: &Context,
    client: &VoterClient,
    id: u64,
    addr: &str,
    no_wait: bool,
) -> Result<(), CliError> {
    let summary = format!("added node {id} as a learner");
    change(ctx, client, summary, |leader| {
        plan_add_learner(leader, id, addr)
    })
    .await?;
    if !no_wait {
        wait_caught_up(ctx, client, id).await?;
    }
    Ok(())
}

/// Poll until member `id` has caught up with the leader, in its log and in what it has applied
/// ([`VoterClient::catch_up`]).
async fn wait_caught_up(ctx: &Context, client: &VoterClient, id: u64) -> Result<(), CliError> {
    loop {
        let (leader, _) = find_leader(ctx, client).await?;
        let behind = match member_addr(&leader, id) {
            Some(addr) => client.catch_up(&leader, id, &addr).await,
            None => CatchUp::NotReplicated,
        };
        if behind == CatchUp::CaughtUp {
            return Ok(());
        }
        if Instant::now() + POLL_INTERVAL > ctx.deadline {
            return Err(CliError::failed(
                ErrorCode::LearnerBehind,
                format!(
                    "node {id} is a learner but has not caught up within {:?} ({behind}); \
                     check its log, then `stockctl cluster status`",
                    ctx.timeout,
                ),
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Replace voter `id`'s disk. Each step is checked before the next: the node is out of the
/// membership before anyone wipes it (a member that forgets its log breaks Raft's promise that
/// an acknowledged entry stays acknowledged), it answers with an empty log before it is added
/// back, and it has caught up before it votes again. `groups`: a client of each Raft group (the
/// disk holds every group), each step done in every group before the next.
async fn replace_disk(
    ctx: &Context,
    groups: &[VoterClient],
    id: u64,
    restart_wait: Duration,
) -> Result<(), CliError> {
    let (leader, _) = find_leader(ctx, &groups[0]).await?;
    if !leader.voters.contains(&id) {
        return Err(CliError::failed(
            ErrorCode::NotAVoter,
            format!("node {id} is not a voter; voters are {:?}", leader.voters),
        ));
    }
    let addr = member_addr(&leader, id).ok_or_else(|| {
        CliError::failed(
            ErrorCode::UnknownNode,
            format!("the leader knows no address of {id}"),
        )
    })?;
    let in_groups = match groups.len() {
        1 => String::new(),
        n => format!(" in each of the {n} Raft groups"),
    };
    let step = |n: u32, text: &str| eprintln!("stockctl: step {n}/5: {text}");
    step(
        1,
        &format!("removing node {id} from the membership{in_groups}"),
    );
    for client in groups {
        let summary = format!("removed node {id}");
        change(ctx, client, summary, |leader| plan_remove(leader, id)).await?;
        let (after, _) = find_leader(ctx, client).await?;
        if member_addr(&after, id).is_some() {
            return Err(CliError::unknown(
                format!(
                    "node {id} is still a member of group {} after its removal",
                    client.group()
                ),
                CHECK_STATUS,
            ));
        }
    }
    step(
        2,
        &format!(
            "node {id} is out of the membership{in_groups}. Now stop it, wipe its data directory \
             and start it again with the same configuration; waiting up to {restart_wait:?} for \
             it to answer at {addr} with an empty log"
        ),
    );
    let restarted = ctx.for_step(restart_wait);
    for client in groups {
        wait_empty(&restarted, client, id, &addr).await?;
    }
    step(
        3,
        &format!("node {id} answers with an empty log; adding it as a learner{in_groups}"),
    );
    let catch_up = ctx.for_step(ctx.timeout.max(Duration::from_secs(300)));
    for client in groups {
        let summary = format!("added node {id} as a learner");
        change(&catch_up, client, summary, |leader| {
            plan_add_learner(leader, id, &addr)
        })
        .await?;
    }
    step(4, &format!("waiting for node {id} to catch up{in_groups}"));
    for client in groups {
        wait_caught_up(&catch_up, client, id).await?;
    }
    step(
        5,
        &format!("node {id} has caught up; promoting it to voter{in_groups}"),
    );
    let promote = ctx.for_step(ctx.timeout);
    for client in groups {
        let summary = format!("promoted node {id} to voter");
        change(&promote, client, summary, |leader| plan_promote(leader, id)).await?;
    }
    Ok(())
}

/// Node `id`'s status at `addr`: `Ok(Err(..))` while it does not answer, an error if another
/// node answers there.
pub(crate) async fn node_status(
    client: &VoterClient,
    id: u64,
    addr: &str,
) -> Result<Result<NodeStatus, flashstock_client::Error>, CliError> {
    match client.status(addr).await {
        Ok(status) if status.id != id => Err(CliError::failed(
            ErrorCode::WrongNode,
            format!("{addr} answers as node {}, not {id}", status.id),
        )),
        other => Ok(other),
    }
}

/// Poll node `id` at `addr` until it answers as a node with an empty log outside the membership.
async fn wait_empty(
    ctx: &Context,
    client: &VoterClient,
    id: u64,
    addr: &str,
) -> Result<(), CliError> {
    loop {
        let last = match node_status(client, id, addr).await? {
            Ok(status) if status.last_log_index.is_none() && status.voters.is_empty() => {
                return Ok(())
            }
            Ok(status) => format!(
                "it answers with last log index {} and voters {:?}: not wiped yet",
                opt(status.last_log_index),
                status.voters
            ),
            Err(e) => e.to_string(),
        };
        if Instant::now() + POLL_INTERVAL > ctx.deadline {
            return Err(CliError::failed(
                ErrorCode::NotRestarted,
                format!(
                    "node {id} did not come back empty within {:?}: {last}",
                    ctx.timeout
                ),
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

// ---- snapshot ----

/// What `cluster snapshot` prints.
#[derive(Serialize)]
struct SnapshotReport {
    node: u64,
    addr: String,
    /// The node's snapshot index when the command returned.
    snapshot_index: Option<u64>,
}

async fn snapshot(
    ctx: &Context,
    client: &VoterClient,
    node: Option<u64>,
    no_wait: bool,
) -> Result<(), CliError> {
    let (target, addr) = match node {
        Some(id) => (id, node_addr(ctx, client, id).await?),
        None => {
            let (leader, addr) = find_leader(ctx, client).await?;
            (leader.id, addr)
        }
    };
    let before = client.status(&addr).await?;
    client.snapshot(&addr).await?;
    let snapshot_index = if no_wait {
        before.snapshot_index
    } else {
        let applied = before.applied_index.unwrap_or(0);
        Some(wait_for_snapshot(ctx, client, &addr, applied).await?)
    };
    let report = SnapshotReport {
        node: target,
        addr,
        snapshot_index,
    };
    emit(ctx.output, &report, || {
        let mut table = Table::new(&["ID", "ADDR", "SNAPSHOT"]);
        table.push(vec![
            report.node.to_string(),
            report.addr.clone(),
            opt(report.snapshot_index),
        ]);
        table
    });
    Ok(())
}

/// The internal address of node `id`: the endpoint that is that node, or its member address.
async fn node_addr(ctx: &Context, client: &VoterClient, id: u64) -> Result<String, CliError> {
    let probes = probe_all(client, ctx.endpoints()?).await;
    if !any_answered(&probes) {
        return Err(none_answered(&probes));
    }
    let itself = probes
        .iter()
        .find(|p| p.result.as_ref().is_ok_and(|s| s.id == id))
        .map(|p| p.endpoint.clone());
    itself
        .or_else(|| answered(&probes).find_map(|s| member_addr(s, id)))
        .ok_or_else(|| {
            CliError::failed(
                ErrorCode::UnknownNode,
                format!("no endpoint knows node {id}"),
            )
        })
}

/// Poll until the node's snapshot covers `applied`; returns its snapshot index.
async fn wait_for_snapshot(
    ctx: &Context,
    client: &VoterClient,
    addr: &str,
    applied: u64,
) -> Result<u64, CliError> {
    loop {
        let status = client.status(addr).await?;
        if let Some(index) = status.snapshot_index.filter(|index| *index >= applied) {
            return Ok(index);
        }
        if Instant::now() + POLL_INTERVAL > ctx.deadline {
            return Err(CliError::unknown(
                format!(
                    "the snapshot was triggered but did not cover index {applied} within {:?}",
                    ctx.timeout
                ),
                CHECK_STATUS,
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashstock_api::{NodeRole, PeerReplication};

    fn node(id: u64, state: RaftState, term: u64, leader: Option<u64>) -> NodeStatus {
        NodeStatus {
            id,
            role: if id < 100 {
                NodeRole::Voter
            } else {
                NodeRole::Gateway
            },
            state,
            term,
            leader,
            last_log_index: Some(10),
            committed_index: Some(10),
            applied_index: Some(10),
            snapshot_index: None,
            purged_index: None,
            voters: vec![1, 2, 3],
            members: [1, 2, 3, 101]
                .iter()
                .map(|id| NodeAddr {
                    id: *id,
                    addr: format!("127.0.0.1:{}", 7000 + id),
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
        }
    }

    fn probe(status: NodeStatus) -> Probe {
        Probe {
            endpoint: format!("127.0.0.1:{}", 7000 + status.id),
            result: Ok(status),
        }
    }

    #[test]
    fn status_table_has_lag_from_the_leader_and_error_rows() {
        let mut leader = node(1, RaftState::Leader, 3, Some(1));
        leader.replication = vec![PeerReplication {
            id: 2,
            matched_index: Some(8),
            lag: 2,
        }];
        let probes = vec![
            probe(leader),
            probe(node(2, RaftState::Follower, 3, Some(1))),
            probe(node(101, RaftState::Learner, 3, Some(1))),
            Probe {
                endpoint: "127.0.0.1:7003".into(),
                result: Err(CliError::failed(ErrorCode::Unavailable, "refused")),
            },
        ];
        let text = status_table(&probes).render();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID   ADDR            ROLE     STATE"));
        assert!(lines[0].ends_with("LAG  BACKLOG  DATA MIB  RELEASE  ERROR"));
        let cells = |line: &str| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        // ID ADDR ROLE STATE TERM LEADER LAST-LOG COMMITTED APPLIED SNAPSHOT LAG BACKLOG
        assert_eq!(cells(lines[1])[10], "0");
        assert_eq!(cells(lines[1])[11], "-", "no archive status, no backlog");
        assert_eq!(cells(lines[2])[10], "2");
        assert_eq!(cells(lines[3])[10], "-");
        assert!(lines[4].ends_with("unavailable: refused"));
        assert_eq!(
            leader_addr(&probes).as_deref(),
            Some("127.0.0.1:7001"),
            "the leader's member address"
        );
    }

    #[test]
    fn the_release_line_names_who_runs_what_during_an_upgrade() {
        let release = |version: &str, wire| flashstock_api::ReleaseStatus {
            version: version.into(),
            wire,
            wire_min: 1,
            state_format: 1,
            cluster_version_max: 1,
        };
        let mut nodes: Vec<NodeStatus> = [1, 2, 101]
            .map(|id| node(id, RaftState::Follower, 3, Some(1)))
            .into();
        for node in &mut nodes {
            node.release = Some(release("0.1.0", 1));
        }
        let refs: Vec<&NodeStatus> = nodes.iter().collect();
        assert_eq!(
            release_line(&refs).as_deref(),
            Some("release: every node answering runs 0.1.0 (wire 1, state format 1, cluster version up to 1)")
        );
        nodes[2].release = Some(release("0.2.0", 2));
        nodes[1].release = None;
        let refs: Vec<&NodeStatus> = nodes.iter().collect();
        assert_eq!(
            release_line(&refs).as_deref(),
            Some(
                "release: MIXED: [1] run 0.1.0 (wire 1, state format 1, cluster version up to 1); [101] run 0.2.0 \
                 (wire 2, state format 1, cluster version up to 1); [2] run a release before versions were shown; \
                 wire version every node speaks: 1"
            )
        );
    }

    #[test]
    fn the_cluster_version_line_says_what_holds_it_back() {
        let release = |max| flashstock_api::ReleaseStatus {
            version: "0.2.0".into(),
            wire: 1,
            wire_min: 1,
            state_format: 2,
            cluster_version_max: max,
        };
        let mut nodes: Vec<NodeStatus> = [1, 2, 101]
            .map(|id| node(id, RaftState::Follower, 3, Some(1)))
            .into();
        // Mid-upgrade: node 2 still runs a release from before cluster versions.
        nodes[0].release = Some(release(2));
        nodes[0].cluster_version = Some(1);
        nodes[2].release = Some(release(2));
        nodes[2].cluster_version = Some(1);
        let refs: Vec<&NodeStatus> = nodes.iter().collect();
        assert_eq!(
            cluster_version_line(&refs).as_deref(),
            Some(
                "cluster version: 1; [2] run a release that supports no newer one: it goes up \
                 to 2 once every member runs such a release (until then a server may go back to \
                 its previous release)"
            )
        );
        nodes[1].release = Some(release(2));
        let refs: Vec<&NodeStatus> = nodes.iter().collect();
        assert!(cluster_version_line(&refs)
            .unwrap()
            .starts_with("cluster version: 1; every node answering supports 2"));
        for node in &mut nodes {
            node.cluster_version = Some(2);
        }
        let refs: Vec<&NodeStatus> = nodes.iter().collect();
        assert_eq!(
            cluster_version_line(&refs).as_deref(),
            Some("cluster version: 2")
        );
    }

    /// A change refused because another is in progress is retried, by its code alone.
    #[test]
    fn only_refusals_a_retry_may_overcome_are_transient() {
        let failed = |code| CliError::failed(code, "undergoing a configuration change");
        assert!(is_transient(&failed(ErrorCode::MembershipChangeInProgress)));
        assert!(is_transient(&failed(ErrorCode::NotLeader)));
        assert!(!is_transient(&failed(ErrorCode::MembershipError)));
    }

    #[test]
    fn membership_plans_follow_the_leaders_view() {
        let leader = node(1, RaftState::Leader, 3, Some(1));
        assert_eq!(
            plan_remove(&leader, 3).unwrap(),
            Plan::SetVoters {
                voters: vec![1, 2],
                retain: false
            }
        );
        assert_eq!(
            plan_remove(&leader, 101).unwrap(),
            Plan::RemoveLearner { id: 101 }
        );
        assert!(matches!(plan_remove(&leader, 9).unwrap(), Plan::Nothing(_)));
        assert!(matches!(
            plan_promote(&leader, 2).unwrap(),
            Plan::Nothing(_)
        ));
        assert_eq!(
            plan_promote(&leader, 101).unwrap(),
            Plan::SetVoters {
                voters: vec![1, 2, 3, 101],
                retain: true
            }
        );
        assert_eq!(
            plan_promote(&leader, 4).unwrap_err().code(),
            Some(&ErrorCode::NotAMember)
        );
        assert_eq!(
            plan_add_learner(&leader, 4, "h:1").unwrap(),
            Plan::AddLearner {
                id: 4,
                addr: "h:1".into()
            }
        );
        assert!(matches!(
            plan_add_learner(&leader, 101, "127.0.0.1:7101").unwrap(),
            Plan::Nothing(_)
        ));
        assert_eq!(
            plan_add_learner(&leader, 101, "other:1")
                .unwrap_err()
                .code(),
            Some(&ErrorCode::MemberExists)
        );
        assert_eq!(
            plan_add_learner(&leader, 2, "h:1").unwrap_err().code(),
            Some(&ErrorCode::AlreadyVoter)
        );
        let mut alone = node(1, RaftState::Leader, 3, Some(1));
        alone.voters = vec![1];
        assert_eq!(
            plan_remove(&alone, 1).unwrap_err().code(),
            Some(&ErrorCode::LastVoter)
        );
    }
}
