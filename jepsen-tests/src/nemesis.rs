//! The nemesis: a seeded schedule of faults, each injected, held, healed, and recovered from.
//!
//! Kinds of fault ([`FaultKind`]):
//! - `kill`: SIGKILL a random voter, restart it after the hold;
//! - `pause`: SIGSTOP the leader (half of the time) or a random node, SIGCONT it after the hold;
//! - `leader`: SIGKILL the current leader, restart it after the hold;
//! - `gateway`: SIGKILL one gateway, or now and then every gateway for a short hold;
//! - `partition`: cut one node (voter or gateway) off from every other node with iptables
//!   (see [`crate::partition`]), or, half of the time for a voter, from the other voters only
//!   (the gateways still reach it: a deposed leader keeps receiving writes); only as root with
//!   iptables installed, otherwise skipped and said so in the report;
//! - `postgres`: SIGKILL every process of the archive's primary PostgreSQL server, start it
//!   again after the hold (crash recovery from its WAL); only when the run archives, otherwise
//!   skipped;
//! - `voters`: SIGKILL every voter at once, restart them all after the hold (nothing can be
//!   confirmed meanwhile; nothing confirmed before may be lost);
//! - `isolate-leader`: cut the current leader off from every other node;
//! - `split`: the leader and one gateway on one side, the other voters and gateways on the
//!   other (a majority and a minority, each with clients);
//! - `bridge`: two voters cannot reach each other, the third reaches both;
//! - `ring`: a one-way ring among the voters: 1 cannot open connections to 2, 2 to 3, 3 to 1;
//! - `gateway-cut`: one gateway cut from the leader only;
//! - `loss`: 30% of the packets between voters dropped, both ways;
//! - `rejoin`: replace a follower's disk as the runbook does (`stockctl cluster replace-disk`):
//!   remove it from the membership entirely, stop it, wipe its data, start it again empty, add it
//!   as a learner, wait until it has caught up (through a snapshot once the leader has purged its
//!   log), promote it back: membership changes under load, each checked by the leader, which
//!   refuses any change its voters could not commit;
//! - `latency`: 10 to 40 ms added to every byte going to or from a voter, through the fault
//!   proxies in front of the voters ([`crate::proxy`]; the kernel has no netem);
//! - `postgres-failover`: SIGKILL the archive's primary PostgreSQL and promote its synchronous
//!   standby; on heal the dead server is rebuilt as the new standby ([`postgres_failover`]);
//!   only when the run archives;
//! - `stale-gateway`: cut one gateway off from every voter, clients still reaching it; it must
//!   turn not-ready within its bound and mark every view stale ([`stale_gateway`]);
//! - `upgrade`: a rolling upgrade, once: every node restarted, in the order of a rolling restart,
//!   with the binary of [`NemesisConfig::upgrade_to`] ([`upgrade`]). The cluster version must stay
//!   where it was until the last node runs the new release, then go up to the new release's.
//!   Not part of `all`: the run must start on an older release.
//!
//! The partition kinds need root and iptables, like `partition`.
//!
//! One fault at a time, so at most one voter (a minority) is ever faulty and the cluster must
//! stay available. After each heal the nemesis waits until the cluster is whole again (a leader
//! agreed on, every node caught up with the leader's log) and until a purchase invoked after the
//! heal has been confirmed, then pauses before the next fault. The first faults cover every
//! enabled kind once, in a seeded order; later ones are drawn at random. Every step is logged
//! with the run's timestamp.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cluster_config::Role;
use flashstock_deploy::local::LocalCluster;
use serde::{Deserialize, Serialize};

use crate::archive_db::ArchiveDb;
use crate::history::{stamp, Clock, OpRecord};
use crate::partition::Partitioner;
use crate::proxy::Proxies;
use crate::rng::Rng;
use crate::workload::Progress;
use crate::Error;

pub mod postgres_failover;
pub mod stale_gateway;
pub mod upgrade;

/// How often recovery conditions are polled.
const POLL: Duration = Duration::from_millis(20);
/// How long finding the leader may take when describing or choosing a victim.
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// How long a membership step may be retried: long enough for a wiped node to receive a
/// snapshot of a state built by a 20-minute run.
const ADMIN_RETRY_FOR: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FaultKind {
    Kill,
    Pause,
    Leader,
    Gateway,
    Partition,
    Postgres,
    Voters,
    IsolateLeader,
    Split,
    Bridge,
    Ring,
    GatewayCut,
    Loss,
    Rejoin,
    Latency,
    Restart,
    Backup,
    PostgresFailover,
    StaleGateway,
    Upgrade,
}

impl FaultKind {
    pub const ALL: [FaultKind; 19] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Leader,
        FaultKind::Gateway,
        FaultKind::Partition,
        FaultKind::Postgres,
        FaultKind::Voters,
        FaultKind::IsolateLeader,
        FaultKind::Split,
        FaultKind::Bridge,
        FaultKind::Ring,
        FaultKind::GatewayCut,
        FaultKind::Loss,
        FaultKind::Rejoin,
        FaultKind::Latency,
        FaultKind::Restart,
        FaultKind::Backup,
        FaultKind::PostgresFailover,
        FaultKind::StaleGateway,
    ];

    /// Whether the fault is made of iptables rules (root only).
    pub fn needs_iptables(self) -> bool {
        matches!(
            self,
            FaultKind::Partition
                | FaultKind::IsolateLeader
                | FaultKind::Split
                | FaultKind::Bridge
                | FaultKind::Ring
                | FaultKind::GatewayCut
                | FaultKind::Loss
                | FaultKind::StaleGateway
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Leader => "leader",
            FaultKind::Gateway => "gateway",
            FaultKind::Partition => "partition",
            FaultKind::Postgres => "postgres",
            FaultKind::Voters => "voters",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::Split => "split",
            FaultKind::Bridge => "bridge",
            FaultKind::Ring => "ring",
            FaultKind::GatewayCut => "gateway-cut",
            FaultKind::Loss => "loss",
            FaultKind::Rejoin => "rejoin",
            FaultKind::Latency => "latency",
            FaultKind::Restart => "restart",
            FaultKind::Backup => "backup",
            FaultKind::PostgresFailover => "postgres-failover",
            FaultKind::StaleGateway => "stale-gateway",
            FaultKind::Upgrade => "upgrade",
        }
    }

    /// Names from [`FaultKind::name`], comma-separated (any subset, any order; empty: no
    /// faults; `all`: every kind).
    pub fn parse_list(text: &str) -> Result<Vec<FaultKind>, String> {
        if text.trim() == "all" {
            return Ok(FaultKind::ALL.to_vec());
        }
        let mut kinds = Vec::new();
        let every = FaultKind::ALL.into_iter().chain([FaultKind::Upgrade]);
        for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let kind = every.clone().find(|k| k.name() == name).ok_or_else(|| {
                let known: Vec<&str> = every.clone().map(|k| k.name()).collect();
                format!(
                    "unknown fault {name:?}; known: {}, or all",
                    known.join(", ")
                )
            })?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        Ok(kinds)
    }
}

/// How the nemesis behaves.
#[derive(Debug, Clone)]
pub struct NemesisConfig {
    pub kinds: Vec<FaultKind>,
    pub seed: u64,
    /// How long a fault is held, in milliseconds.
    pub hold_ms: (u64, u64),
    /// How long a killed (`leader`), paused or partitioned leader stays faulty, in
    /// milliseconds: longer than a failover (a follower waits for the leader lease and up to
    /// 0.45 s more, 1.25 to 1.65 s with the defaults, before it campaigns), so that another
    /// voter takes over.
    pub leader_hold_ms: (u64, u64),
    /// How long every gateway is down at once, in milliseconds: briefly.
    pub all_gateways_hold_ms: (u64, u64),
    /// Share of gateway faults that take every gateway down, in percent.
    pub all_gateways_percent: u64,
    /// Quiet time between a recovery and the next fault, in milliseconds.
    pub gap_ms: (u64, u64),
    /// Longest wait for the cluster to be whole again, and for a purchase to be confirmed,
    /// after a heal.
    pub recovery_timeout: Duration,
    /// The gateways' `gateway.ready_leader_silence_ms`: a `stale-gateway` fault must see them
    /// turn not-ready within it, and is held past it.
    pub ready_leader_silence_ms: u64,
    /// The product the `stale-gateway` probe reads through the cut gateway.
    pub probe_product: String,
    /// The node binary an `upgrade` fault restarts every node with.
    pub upgrade_to: Option<PathBuf>,
}

impl NemesisConfig {
    pub fn new(kinds: Vec<FaultKind>, seed: u64) -> NemesisConfig {
        NemesisConfig {
            kinds,
            seed,
            hold_ms: (1500, 4000),
            leader_hold_ms: (3000, 4500),
            all_gateways_hold_ms: (300, 800),
            all_gateways_percent: 25,
            gap_ms: (500, 1500),
            recovery_timeout: Duration::from_secs(30),
            ready_leader_silence_ms: cluster_config::defaults::DEFAULT_READY_LEADER_SILENCE_MS,
            probe_product: "plenty".into(),
            upgrade_to: None,
        }
    }
}

/// One fault of the run, as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub kind: FaultKind,
    pub description: String,
    pub nodes: Vec<u64>,
    pub started_ms: u64,
    pub healed_ms: u64,
    /// When the cluster was whole again: one leader, every node caught up.
    pub recovered_ms: Option<u64>,
    /// When a purchase invoked after the heal was seen confirmed.
    pub resumed_ms: Option<u64>,
    /// What went wrong around this fault (nothing, normally).
    pub problems: Vec<String>,
    /// What the fault measured, for the kinds that measure something.
    pub figures: Option<FaultFigures>,
}

/// What a kind of fault measured beyond the common times.
#[derive(Debug, Clone, Serialize)]
pub enum FaultFigures {
    PostgresFailover(postgres_failover::Figures),
    StaleGateway(stale_gateway::Figures),
}

impl FaultFigures {
    /// One line for the report.
    pub fn describe(&self) -> String {
        match self {
            FaultFigures::PostgresFailover(figures) => figures.describe(),
            FaultFigures::StaleGateway(figures) => figures.describe(),
        }
    }
}

/// A fault in place, and what heals it.
enum Active {
    Killed(Vec<u64>),
    Paused(u64),
    Partitioned,
    PostgresDown,
    /// Removed from the membership, stopped and wiped: to be started and added back.
    Removed(u64),
    /// Every voter's proxy delays what it forwards.
    Delayed,
    /// Nothing left to heal: the fault was a planned operation, done when injected.
    Done,
    /// A follower backed up at injection: to be removed, restored from the backup and added
    /// back.
    BackedUp {
        id: u64,
        backup: PathBuf,
    },
    /// The archive's primary killed, its standby promoted: to rebuild a standby.
    FailedOver(postgres_failover::Active),
    /// A gateway cut off from every voter, probed: to reconnect.
    GatewayCutOff(stale_gateway::Active),
}

pub struct Nemesis {
    config: NemesisConfig,
    rng: Rng,
    clock: Clock,
    progress: Arc<Progress>,
    partitioner: Option<Partitioner>,
    /// Why partitions were left out, if they were asked for and could not be done.
    pub partitions_skipped: Option<String>,
    /// The archive's database, when the run archives.
    archive: Option<ArchiveDb>,
    /// What the `stale-gateway` probes read: views for the history.
    pub probe_views: Vec<OpRecord>,
    /// The fault proxies in front of the voters, when the run has latency faults.
    proxies: Option<Proxies>,
    pub faults: Vec<FaultRecord>,
    /// Problems found while injecting the fault under way, for its record.
    pending_problems: Vec<String>,
}

impl Nemesis {
    /// A nemesis; probes iptables if partitions are asked for. `archive` is the archive's
    /// database, if the run archives; without it the PostgreSQL faults are left out.
    pub fn new(
        mut config: NemesisConfig,
        clock: Clock,
        progress: Arc<Progress>,
        archive: Option<ArchiveDb>,
        proxies: Option<Proxies>,
        cluster: &LocalCluster,
    ) -> Nemesis {
        if archive.is_none() {
            config
                .kinds
                .retain(|k| !matches!(k, FaultKind::Postgres | FaultKind::PostgresFailover));
        }
        if proxies.is_none() {
            config.kinds.retain(|k| *k != FaultKind::Latency);
        }
        let mut partitioner = None;
        let mut partitions_skipped = None;
        if config.kinds.iter().any(|k| k.needs_iptables()) {
            let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
            match Partitioner::for_network(&cluster.network, &ids) {
                Ok(p) => partitioner = Some(p),
                Err(reason) => {
                    config.kinds.retain(|k| !k.needs_iptables());
                    partitions_skipped = Some(reason);
                }
            }
        }
        Nemesis {
            rng: Rng::stream(config.seed, u64::MAX),
            config,
            clock,
            progress,
            partitioner,
            partitions_skipped,
            archive,
            probe_views: Vec::new(),
            proxies,
            faults: Vec::new(),
            pending_problems: Vec::new(),
        }
    }

    /// The archive database's URL, when the run archives.
    pub fn postgres_url(&self) -> Option<String> {
        self.archive.as_ref().map(ArchiveDb::url)
    }

    /// What every `stale-gateway` fault measured.
    pub fn gateway_cuts(&self) -> Vec<stale_gateway::Figures> {
        self.faults
            .iter()
            .filter_map(|fault| match &fault.figures {
                Some(FaultFigures::StaleGateway(figures)) => Some(figures.clone()),
                _ => None,
            })
            .collect()
    }

    /// The kinds of fault this nemesis injects (partitions left out when unavailable).
    pub fn kinds(&self) -> &[FaultKind] {
        &self.config.kinds
    }

    fn log(&self, message: &str) {
        println!("{} nemesis: {message}", stamp(self.clock.ms()));
    }

    /// Inject faults one after another: every enabled kind once, then random ones while a
    /// whole fault still fits before `end_ms`.
    pub async fn run(&mut self, cluster: &mut LocalCluster, end_ms: u64) -> Result<(), Error> {
        if let Some(reason) = &self.partitions_skipped {
            self.log(&format!("partitions skipped: {reason}"));
        }
        if let Some(partitioner) = &self.partitioner {
            for rule in &partitioner.foreign {
                self.log(&format!("warning: another run's rule is in INPUT: {rule}"));
            }
        }
        let mut planned = self.config.kinds.clone();
        self.rng.shuffle(&mut planned);
        let mut hold_max_ms = self.config.hold_ms.1.max(self.config.leader_hold_ms.1);
        if self.config.kinds.contains(&FaultKind::StaleGateway) {
            let stale_hold = self.config.ready_leader_silence_ms
                + stale_gateway::HOLD_PAST_BOUND.as_millis() as u64;
            hold_max_ms = hold_max_ms.max(stale_hold);
        }
        let fault_max_ms = hold_max_ms + self.config.gap_ms.1;
        loop {
            let kind = match planned.pop() {
                Some(kind) => kind,
                None if self.config.kinds.is_empty() => break,
                None if self.clock.ms() + fault_max_ms >= end_ms => break,
                // An upgrade happens once.
                None if self.config.kinds == [FaultKind::Upgrade] => break,
                None => loop {
                    let kind = *self.rng.pick(&self.config.kinds);
                    if kind != FaultKind::Upgrade {
                        break kind;
                    }
                },
            };
            if kind == FaultKind::Upgrade {
                // The previous release serves the first quarter of the run on its own.
                let at = end_ms / 4;
                tokio::time::sleep(Duration::from_millis(at.saturating_sub(self.clock.ms()))).await;
            }
            self.one_fault(cluster, kind).await?;
        }
        Ok(())
    }

    async fn one_fault(
        &mut self,
        cluster: &mut LocalCluster,
        kind: FaultKind,
    ) -> Result<(), Error> {
        let started_ms = self.clock.ms();
        let (active, nodes, description, hold) = self.inject(cluster, kind).await?;
        self.log(&format!("inject {}: {description}", kind.name()));
        let mut record = FaultRecord {
            kind,
            description,
            nodes,
            started_ms,
            healed_ms: 0,
            recovered_ms: None,
            resumed_ms: None,
            problems: std::mem::take(&mut self.pending_problems),
            figures: None,
        };
        tokio::time::sleep(hold).await;
        match self.heal(cluster, active).await {
            Ok(figures) => record.figures = figures,
            Err(e) => {
                record.problems.push(format!("heal failed: {e}"));
                self.faults.push(record);
                return Err(e);
            }
        }
        record.healed_ms = self.clock.ms();
        self.log(&format!("healed {}: {}", kind.name(), record.description));
        if let Some(figures) = &record.figures {
            self.log(&format!("{}: {}", kind.name(), figures.describe()));
        }
        self.settle_after(cluster, &mut record).await;
        self.faults.push(record);
        let (low, high) = self.config.gap_ms;
        tokio::time::sleep(self.rng.millis(low, high)).await;
        Ok(())
    }

    /// Wait for the cluster to be whole, then for a purchase invoked after the heal to be
    /// confirmed; note what did not happen in time.
    async fn settle_after(&self, cluster: &LocalCluster, record: &mut FaultRecord) {
        match wait_recovered(cluster, self.config.recovery_timeout).await {
            Ok(_) => {
                record.recovered_ms = Some(self.clock.ms());
                self.log(&format!(
                    "cluster whole again after {} ms",
                    self.clock.ms() - record.healed_ms
                ));
            }
            Err(e) => {
                self.log(&format!("cluster NOT whole again: {e}"));
                record.problems.push(format!("not recovered: {e}"));
            }
        }
        let deadline = tokio::time::Instant::now() + self.config.recovery_timeout;
        while !self.progress.confirmed_invoked_since(record.healed_ms) {
            if tokio::time::Instant::now() > deadline {
                record.problems.push(format!(
                    "no purchase invoked after the heal was confirmed within {:?}",
                    self.config.recovery_timeout
                ));
                self.log("no purchase confirmed after the heal");
                return;
            }
            tokio::time::sleep(POLL).await;
        }
        record.resumed_ms = Some(self.clock.ms());
    }

    /// Put a fault in place: what is active, the nodes hit, a description, how long to hold.
    async fn inject(
        &mut self,
        cluster: &mut LocalCluster,
        kind: FaultKind,
    ) -> Result<(Active, Vec<u64>, String, Duration), Error> {
        // Both holds are drawn every time, so that the schedule does not depend on who leads.
        let (low, high) = self.config.hold_ms;
        let hold = self.rng.millis(low, high);
        let (low, high) = self.config.leader_hold_ms;
        let leader_hold = self.rng.millis(low, high);
        let leader = cluster.wait_for_leader(LEADER_WAIT).await.ok();
        let describe = |id: u64| describe_node(cluster, id, leader);
        // A paused or partitioned leader is held long enough for a failover.
        let hold_for = |id: u64| {
            if leader == Some(id) {
                leader_hold
            } else {
                hold
            }
        };
        Ok(match kind {
            FaultKind::Kill => {
                let id = *self.rng.pick(&cluster.voter_ids());
                let text = format!("SIGKILL {}", describe(id));
                cluster.kill(id)?;
                (Active::Killed(vec![id]), vec![id], text, hold)
            }
            FaultKind::Leader if cluster.groups > 1 => {
                // The server whose loss costs most: the one leading the most groups.
                let (id, led) = busiest_leader(cluster).await?;
                let text = format!("SIGKILL voter {id}, leader of Raft groups {led:?}");
                cluster.kill(id)?;
                (Active::Killed(vec![id]), vec![id], text, leader_hold)
            }
            FaultKind::Leader => {
                let id = cluster.wait_for_leader(LEADER_WAIT).await?;
                let text = format!("SIGKILL the leader, {}", describe(id));
                cluster.kill(id)?;
                (Active::Killed(vec![id]), vec![id], text, leader_hold)
            }
            FaultKind::Pause => {
                // Half of the pauses hit the leader: a leader that stops and then resumes as if
                // nothing happened is the classic trap for a consensus implementation.
                let picked = self.pick_node(cluster, 70);
                let id = match leader {
                    Some(leader) if self.rng.chance(50) => leader,
                    _ => picked,
                };
                let text = format!("SIGSTOP {}", describe(id));
                cluster.pause(id, true)?;
                (Active::Paused(id), vec![id], text, hold_for(id))
            }
            FaultKind::Gateway => self.inject_gateway(cluster, hold)?,
            FaultKind::Restart => {
                let (order, text) = self.rolling_restart(cluster, None).await?;
                (Active::Done, order, text, Duration::ZERO)
            }
            FaultKind::Upgrade => {
                let binary = self.config.upgrade_to.clone().ok_or_else(|| {
                    Error::Harness("an upgrade fault needs the new release's binary".into())
                })?;
                let mut watch = upgrade::Watch::start(cluster).await?;
                cluster.set_binary(&binary);
                let (order, text) = self.rolling_restart(cluster, Some(&mut watch)).await?;
                let figures = watch.finish(cluster).await;
                let rolled = watch.rolled_back.as_deref().unwrap_or("no rollback");
                let figures = format!("{rolled}; {}; {figures}", watch.handed_off.join("; "));
                self.log(&figures);
                self.pending_problems.extend(watch.problems);
                (
                    Active::Done,
                    order,
                    format!("{text}; {figures}"),
                    Duration::ZERO,
                )
            }
            FaultKind::Partition => {
                let id = self.pick_node(cluster, 75);
                let voters_only = cluster.nodes[&id].role == Role::Voter && self.rng.chance(50);
                let text = if voters_only {
                    format!(
                        "cut {} off from the other voters (gateways still reach it)",
                        describe(id)
                    )
                } else {
                    format!("isolate {} from every other node", describe(id))
                };
                self.isolate(cluster, id, voters_only)?;
                (Active::Partitioned, vec![id], text, hold_for(id))
            }
            FaultKind::Voters => {
                let ids = cluster.voter_ids();
                for id in &ids {
                    cluster.kill(*id)?;
                }
                let text = format!("SIGKILL every voter {ids:?}");
                (Active::Killed(ids.clone()), ids, text, hold)
            }
            FaultKind::IsolateLeader => {
                let id = cluster.wait_for_leader(LEADER_WAIT).await?;
                let text = format!(
                    "isolate the leader, {}, from every other node",
                    describe(id)
                );
                self.isolate(cluster, id, false)?;
                (Active::Partitioned, vec![id], text, leader_hold)
            }
            FaultKind::Split => {
                let leader = cluster.wait_for_leader(LEADER_WAIT).await?;
                let gateway = *self.rng.pick(&cluster.gateway_ids());
                let minority = [leader, gateway];
                let majority: Vec<u64> = cluster
                    .nodes
                    .keys()
                    .copied()
                    .filter(|id| !minority.contains(id))
                    .collect();
                let text =
                    format!("split: the leader {leader} and gateway {gateway} | {majority:?}");
                self.cut_sides(cluster, &minority, &majority)?;
                (Active::Partitioned, minority.to_vec(), text, leader_hold)
            }
            FaultKind::Bridge => {
                let mut voters = cluster.voter_ids();
                self.rng.shuffle(&mut voters);
                let (a, bridge, b) = (voters[0], voters[1], voters[2]);
                let text = format!(
                    "bridge: voters {a} and {b} cut from each other, {bridge} reaches both"
                );
                self.cut_sides(cluster, &[a], &[b])?;
                (Active::Partitioned, vec![a, b], text, leader_hold)
            }
            FaultKind::Ring => {
                let voters = cluster.voter_ids();
                let mut pairs = Vec::new();
                for (i, from) in voters.iter().enumerate() {
                    let to = voters[(i + 1) % voters.len()];
                    self.partitioner()?
                        .cut_one_way(cluster.nodes[from].addr, cluster.nodes[&to].addr)
                        .map_err(Error::Harness)?;
                    pairs.push(format!("{from}->{to}"));
                }
                let text = format!("one-way ring: no new connections {}", pairs.join(", "));
                (Active::Partitioned, voters, text, leader_hold)
            }
            FaultKind::GatewayCut => {
                let leader = cluster.wait_for_leader(LEADER_WAIT).await?;
                let gateway = *self.rng.pick(&cluster.gateway_ids());
                let text = format!("cut gateway {gateway} from the leader {leader} only");
                self.cut_sides(cluster, &[gateway], &[leader])?;
                (Active::Partitioned, vec![gateway], text, hold)
            }
            FaultKind::Loss => {
                let voters = cluster.voter_ids();
                for (i, a) in voters.iter().enumerate() {
                    for b in &voters[i + 1..] {
                        self.partitioner()?
                            .lossy(cluster.nodes[a].addr, cluster.nodes[b].addr, 30)
                            .map_err(Error::Harness)?;
                    }
                }
                let text = "drop 30% of the packets between voters".to_string();
                (Active::Partitioned, voters, text, hold)
            }
            FaultKind::Rejoin => {
                let id = self.pick_follower(cluster).await?;
                let rest: Vec<u64> = cluster
                    .voter_ids()
                    .into_iter()
                    .filter(|v| *v != id)
                    .collect();
                let text = format!(
                    "remove {} from the membership, stop it and wipe its data",
                    describe(id)
                );
                // Removed entirely, not kept as a learner: the leader then forgets how far the
                // node's log reached, and feeds the empty node from scratch when it is back.
                change_membership(cluster, rest, false).await?;
                cluster.kill(id)?;
                cluster.wipe(id)?;
                (Active::Removed(id), vec![id], text, hold)
            }
            FaultKind::Backup => {
                let id = self.pick_follower(cluster).await?;
                let backup = cluster.dir.join(format!("backup-{id}-{}", self.clock.ms()));
                let text = format!(
                    "back up {} (SIGTERM, copy its data directory, start it); on heal, remove it, \
                     restore the backup, add it back",
                    describe(id)
                );
                if !cluster.terminate(id)? {
                    self.log(&format!("node {id} exited unsuccessfully on SIGTERM"));
                }
                cluster.back_up(id, &backup)?;
                cluster.start(id).await?;
                (Active::BackedUp { id, backup }, vec![id], text, hold)
            }
            FaultKind::Latency => {
                // Up to 40 ms each way: openraft 0.9 gives one AppendEntries RPC the heartbeat
                // interval (100 ms) to answer, so a round trip above that stops replication
                // altogether (seen with 65 ms: nothing committed while it lasted).
                let ms = self.rng.millis(10, 40).as_millis() as u64;
                let proxies = self
                    .proxies
                    .as_ref()
                    .ok_or_else(|| Error::Harness("latency fault without proxies".into()))?;
                for id in proxies.voters() {
                    proxies.set_latency(id, ms).await.map_err(Error::Harness)?;
                }
                let text = format!("add {ms} ms each way to every connection to a voter");
                (Active::Delayed, proxies.voters(), text, hold)
            }
            FaultKind::Postgres => {
                let archive = self
                    .archive
                    .as_mut()
                    .ok_or_else(|| Error::Harness("postgres fault without an archive".into()))?;
                archive
                    .primary()
                    .kill()
                    .map_err(|e| Error::Harness(format!("crashing PostgreSQL: {e}")))?;
                let text = "SIGKILL every process of the archive's primary PostgreSQL".to_string();
                (Active::PostgresDown, Vec::new(), text, hold)
            }
            FaultKind::PostgresFailover => self.inject_postgres_failover(cluster, hold).await?,
            FaultKind::StaleGateway => self.inject_stale_gateway(cluster)?,
        })
    }

    /// `postgres-failover`: kill the archive's primary, promote its standby.
    async fn inject_postgres_failover(
        &mut self,
        cluster: &LocalCluster,
        hold: Duration,
    ) -> Result<(Active, Vec<u64>, String, Duration), Error> {
        let archive = self
            .archive
            .take()
            .ok_or_else(|| Error::Harness("postgres-failover fault without an archive".into()))?;
        let before = archive.describe();
        let voters = cluster
            .voter_ids()
            .iter()
            .map(|id| cluster.addr(*id))
            .collect();
        let (archive, failed_over) =
            postgres_failover::inject(archive, self.clock, cluster.voter_client(), voters).await;
        self.archive = Some(archive);
        let active =
            failed_over.map_err(|e| Error::Harness(format!("PostgreSQL failover: {e}")))?;
        let text =
            format!("SIGKILL the archive's primary PostgreSQL and promote its standby ({before})");
        Ok((Active::FailedOver(active), Vec::new(), text, hold))
    }

    /// `stale-gateway`: cut a gateway off from every voter and start probing it.
    fn inject_stale_gateway(
        &mut self,
        cluster: &LocalCluster,
    ) -> Result<(Active, Vec<u64>, String, Duration), Error> {
        let gateway = *self.rng.pick(&cluster.gateway_ids());
        self.isolate(cluster, gateway, true)?;
        let cut_ms = self.clock.ms();
        let bound_ms = self.config.ready_leader_silence_ms;
        let active = stale_gateway::start_probe(
            gateway,
            cluster.public_url(gateway),
            cluster.shop_tls(),
            bound_ms,
            cut_ms,
            self.clock,
            self.config.probe_product.clone(),
        );
        let hold = Duration::from_millis(bound_ms) + stale_gateway::HOLD_PAST_BOUND;
        let text = format!(
            "cut gateway {gateway} off from every voter, clients still reach it \
             (ready bound {bound_ms} ms)"
        );
        Ok((Active::GatewayCutOff(active), vec![gateway], text, hold))
    }

    /// Kill one gateway, or (now and then) all of them for a short hold.
    fn inject_gateway(
        &mut self,
        cluster: &mut LocalCluster,
        hold: Duration,
    ) -> Result<(Active, Vec<u64>, String, Duration), Error> {
        let gateways = cluster.gateway_ids();
        if self.rng.chance(self.config.all_gateways_percent) {
            let (low, high) = self.config.all_gateways_hold_ms;
            let hold = self.rng.millis(low, high);
            for id in &gateways {
                cluster.kill(*id)?;
            }
            let text = format!("SIGKILL every gateway {gateways:?} for {hold:?}");
            return Ok((Active::Killed(gateways.clone()), gateways, text, hold));
        }
        let id = *self.rng.pick(&gateways);
        cluster.kill(id)?;
        Ok((
            Active::Killed(vec![id]),
            vec![id],
            format!("SIGKILL gateway {id}"),
            hold,
        ))
    }

    /// A random voter with probability `voter_percent`, else a random gateway.
    /// A voter other than the current leader, drawn at random.
    async fn pick_follower(&mut self, cluster: &LocalCluster) -> Result<u64, Error> {
        let leader = cluster.wait_for_leader(LEADER_WAIT).await?;
        let followers: Vec<u64> = cluster
            .voter_ids()
            .into_iter()
            .filter(|id| *id != leader)
            .collect();
        Ok(*self.rng.pick(&followers))
    }

    fn pick_node(&mut self, cluster: &LocalCluster, voter_percent: u64) -> u64 {
        let ids = if self.rng.chance(voter_percent) {
            cluster.voter_ids()
        } else {
            cluster.gateway_ids()
        };
        *self.rng.pick(&ids)
    }

    /// Cut node `id` off from every other node, or from the other voters only.
    fn isolate(&mut self, cluster: &LocalCluster, id: u64, voters_only: bool) -> Result<(), Error> {
        let node = cluster.nodes[&id].addr;
        let others: Vec<SocketAddr> = cluster
            .nodes
            .values()
            .filter(|n| n.id != id && (!voters_only || n.role == Role::Voter))
            .map(|n| n.addr)
            .collect();
        let partitioner = self
            .partitioner
            .as_mut()
            .ok_or_else(|| Error::Harness("partition asked without iptables".into()))?;
        partitioner.isolate(node, &others).map_err(Error::Harness)
    }

    /// Undo a fault; what it measured, for the kinds that measure something.
    async fn heal(
        &mut self,
        cluster: &mut LocalCluster,
        active: Active,
    ) -> Result<Option<FaultFigures>, Error> {
        match active {
            Active::Killed(ids) => {
                for id in ids {
                    let begun = self.clock.ms();
                    cluster.start(id).await?;
                    self.log(&format!(
                        "restarted node {id}: healthy after {} ms",
                        self.clock.ms() - begun
                    ));
                }
            }
            Active::Paused(id) => cluster.pause(id, false)?,
            Active::Partitioned => {
                if let Some(partitioner) = self.partitioner.as_mut() {
                    let deleted = partitioner.heal().map_err(Error::Harness)?;
                    self.log(&format!("deleted {deleted} iptables rules"));
                }
            }
            Active::PostgresDown => self.restart_postgres()?,
            Active::Delayed => self.remove_latency().await?,
            Active::FailedOver(active) => {
                let archive = self.archive.take().ok_or_else(|| {
                    Error::Harness("postgres-failover heal without an archive".into())
                })?;
                let (archive, healed) = postgres_failover::heal(archive, active).await;
                self.log(&format!("archive: {}", archive.describe()));
                self.archive = Some(archive);
                let figures =
                    healed.map_err(|e| Error::Harness(format!("PostgreSQL failover heal: {e}")))?;
                return Ok(Some(FaultFigures::PostgresFailover(figures)));
            }
            Active::GatewayCutOff(active) => {
                let reconnect_ms = self.clock.ms();
                let (figures, views) = stale_gateway::stop_probe(active, reconnect_ms).await;
                self.probe_views.extend(views);
                if let Some(partitioner) = self.partitioner.as_mut() {
                    let deleted = partitioner.heal().map_err(Error::Harness)?;
                    self.log(&format!("deleted {deleted} iptables rules"));
                }
                return Ok(Some(FaultFigures::StaleGateway(figures)));
            }
            Active::Done => {}
            Active::BackedUp { id, backup } => {
                // As the RUNBOOK restores one voter: out of the membership first (a voter that
                // forgets acknowledged entries could help elect a leader without them), then
                // the backup in place of its data, back as a learner, promoted once caught up.
                let rest: Vec<u64> = cluster
                    .voter_ids()
                    .into_iter()
                    .filter(|v| *v != id)
                    .collect();
                change_membership(cluster, rest, false).await?;
                cluster.kill(id)?;
                cluster.restore_from(id, &backup)?;
                self.log(&format!("node {id} removed and restored from its backup"));
                self.rejoin(cluster, id).await?;
            }
            Active::Removed(id) => {
                self.rejoin(cluster, id).await?;
            }
        }
        Ok(None)
    }

    /// Start node `id` (out of the membership, its data empty or restored from a backup), add
    /// it as a learner, wait until it has caught up, promote it.
    async fn rejoin(&mut self, cluster: &mut LocalCluster, id: u64) -> Result<(), Error> {
        cluster.start(id).await?;
        let addr = cluster.addr(id);
        let begun = self.clock.ms();
        let cluster: &LocalCluster = cluster;
        // The empty node is no member yet and knows no leader: ask the others.
        let members: Vec<u64> = cluster
            .voter_ids()
            .into_iter()
            .filter(|v| *v != id)
            .collect();
        for group in 0..cluster.groups {
            retry_admin(|| {
                let client = cluster.voter_client().for_group(group);
                let addr = addr.clone();
                let members = members.clone();
                async move {
                    let leader = cluster.wait_for_group_leader_among(group, &members, LEADER_WAIT);
                    let leader =
                        leader
                            .await
                            .map_err(|e| flashstock_client::Error::OutcomeUnknown {
                                message: e.to_string(),
                            })?;
                    client
                        .add_learner_no_wait(&cluster.addr(leader), id, &addr)
                        .await
                }
            })
            .await?;
        }
        wait_caught_up(cluster, &members, id).await?;
        self.log(&format!(
            "node {id} is a learner again and caught up after {} ms",
            self.clock.ms() - begun
        ));
        change_membership(cluster, cluster.voter_ids(), true).await?;
        self.log(&format!("node {id} is a voter again"));
        Ok(())
    }

    /// Restart every node once, as `stockctl cluster rolling-restart` does: the gateways, then
    /// the followers, the leader last after handing leadership off; each node is stopped with
    /// SIGTERM, started, and caught up before the next. The node ids in order, and a
    /// description naming the hand-off.
    async fn rolling_restart(
        &mut self,
        cluster: &mut LocalCluster,
        mut upgrade: Option<&mut upgrade::Watch>,
    ) -> Result<(Vec<u64>, String), Error> {
        let leader = cluster.wait_for_leader(LEADER_WAIT).await?;
        let mut order = cluster.gateway_ids();
        order.sort_unstable();
        let mut followers: Vec<u64> = cluster
            .voter_ids()
            .into_iter()
            .filter(|id| *id != leader)
            .collect();
        followers.sort_unstable();
        order.extend(followers);
        order.push(leader);
        let mut hand_offs = Vec::new();
        for &id in &order {
            if let Some(watch) = upgrade.as_deref_mut() {
                let text = watch.before_restart(cluster, id).await;
                self.log(&text);
            }
            // Every group the node leads is handed off first (a gateway leads none).
            let leads_some = cluster.nodes[&id].role == Role::Voter;
            for group in (0..cluster.groups).filter(|_| leads_some) {
                let current = cluster
                    .wait_for_group_leader_among(group, &cluster.voter_ids(), LEADER_WAIT)
                    .await?;
                if current != id {
                    continue;
                }
                let client = cluster.voter_client().for_group(group);
                let of = match cluster.groups {
                    1 => String::new(),
                    _ => format!(" of group {group}"),
                };
                let handed = match client.hand_off(&cluster.addr(id), None).await {
                    Ok(h) => format!("hand-off{of} {} -> {} in {} ms", h.from, h.to, h.took_ms),
                    // Restarting the leader anyway costs an ordinary failover: the gap shows it.
                    Err(e) => format!("hand-off{of} FAILED ({e}), the leader restarted anyway"),
                };
                self.log(&handed);
                hand_offs.push(handed);
            }
            let begun = self.clock.ms();
            if !cluster.terminate(id)? {
                self.log(&format!("node {id} exited unsuccessfully on SIGTERM"));
            }
            cluster.start(id).await?;
            let others: Vec<u64> = cluster
                .voter_ids()
                .into_iter()
                .filter(|v| *v != id)
                .collect();
            wait_caught_up(cluster, &others, id).await?;
            self.log(&format!(
                "restarted node {id}: back and caught up after {} ms",
                self.clock.ms() - begun
            ));
            if let Some(watch) = upgrade.as_deref_mut() {
                if let Some(text) = watch.after_restart(cluster, id).await {
                    self.log(&text);
                }
            }
        }
        let what = if upgrade.is_some() {
            "rolling upgrade"
        } else {
            "rolling restart"
        };
        let handed = match hand_offs.is_empty() {
            true => "no hand-off".to_string(),
            false => hand_offs.join(", "),
        };
        let text = format!("{what} of {order:?} (SIGTERM, start, caught up); {handed}");
        Ok((order, text))
    }

    async fn remove_latency(&self) -> Result<(), Error> {
        if let Some(proxies) = &self.proxies {
            for id in proxies.voters() {
                proxies.set_latency(id, 0).await.map_err(Error::Harness)?;
            }
        }
        Ok(())
    }

    fn partitioner(&mut self) -> Result<&mut Partitioner, Error> {
        self.partitioner
            .as_mut()
            .ok_or_else(|| Error::Harness("partition asked without iptables".into()))
    }

    /// Cut every node of `a` from every node of `b`, both ways.
    fn cut_sides(&mut self, cluster: &LocalCluster, a: &[u64], b: &[u64]) -> Result<(), Error> {
        let others: Vec<SocketAddr> = b.iter().map(|id| cluster.nodes[id].addr).collect();
        for id in a {
            let node = cluster.nodes[id].addr;
            self.partitioner()?
                .isolate(node, &others)
                .map_err(Error::Harness)?;
        }
        Ok(())
    }

    fn restart_postgres(&mut self) -> Result<(), Error> {
        if let Some(archive) = self.archive.as_mut() {
            let begun = self.clock.ms();
            archive
                .primary()
                .start_again()
                .map_err(|e| Error::Harness(format!("restarting PostgreSQL: {e}")))?;
            self.log(&format!(
                "restarted PostgreSQL: recovered after {} ms",
                self.clock.ms() - begun
            ));
        }
        Ok(())
    }

    /// Undo whatever may still be in place: restart stopped nodes, resume paused ones, delete
    /// partition rules. Safe to call at any time, also after an error.
    pub async fn heal_everything(&mut self, cluster: &mut LocalCluster) -> Result<(), Error> {
        let mut first_error = None;
        if let Some(partitioner) = self.partitioner.as_mut() {
            if let Err(e) = partitioner.heal() {
                first_error.get_or_insert(Error::Harness(e));
            }
        }
        if self.archive.as_ref().is_some_and(|a| !a.primary_running()) {
            if let Err(e) = self.restart_postgres() {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.remove_latency().await {
            first_error.get_or_insert(e);
        }
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        for id in ids {
            let result = if cluster.nodes[&id].is_running() {
                cluster.pause(id, false)
            } else {
                cluster.start(id).await
            };
            if let Err(e) = result {
                first_error.get_or_insert(e.into());
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

/// The voter that leads the most Raft groups (the lowest id among equals), and the groups it
/// leads.
async fn busiest_leader(cluster: &LocalCluster) -> Result<(u64, Vec<u16>), Error> {
    let voters = cluster.voter_ids();
    let mut led: BTreeMap<u64, Vec<u16>> = BTreeMap::new();
    for group in 0..cluster.groups {
        let leader = cluster
            .wait_for_group_leader_among(group, &voters, LEADER_WAIT)
            .await?;
        led.entry(leader).or_default().push(group);
    }
    let most = led.values().map(Vec::len).max().unwrap_or(0);
    let busiest = led.into_iter().find(|(_, groups)| groups.len() == most);
    Ok(busiest.expect("every group has a leader"))
}

/// `voter 2 (leader)`, `voter 3 (follower)`, `gateway 101`.
fn describe_node(cluster: &LocalCluster, id: u64, leader: Option<u64>) -> String {
    match cluster.nodes[&id].role {
        Role::Voter if leader == Some(id) => format!("voter {id} (leader)"),
        Role::Voter if leader.is_some() => format!("voter {id} (follower)"),
        Role::Voter => format!("voter {id}"),
        Role::Gateway => format!("gateway {id}"),
    }
}

/// Wait until the running voters agree on a leader and every node has applied the leader's
/// last log index.
pub async fn wait_recovered(cluster: &LocalCluster, timeout: Duration) -> Result<u64, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
    let voters = cluster.voter_ids();
    // With several groups, every group: the sum of their last indexes moves while any does.
    let mut lasts = 0;
    for group in 0..cluster.groups {
        let leader = cluster
            .wait_for_group_leader_among(group, &voters, left())
            .await
            .map_err(|e| e.to_string())?;
        let status = cluster
            .voter_client()
            .for_group(group)
            .status(&cluster.addr(leader))
            .await
            .map_err(|e| format!("status of leader {leader} of group {group}: {e}"))?;
        let last = status.last_log_index.unwrap_or(0);
        for id in cluster.nodes.keys() {
            cluster
                .wait_applied_in(group, *id, last, left())
                .await
                .map_err(|e| e.to_string())?;
        }
        lasts += last;
    }
    Ok(lasts)
}

/// Make `voters` the voters of the membership of every Raft group, group after group, through
/// each group's leader, retrying while a leader refuses (a previous change in progress,
/// leadership moving, a learner still catching up, a member the change needs not answering).
/// `retain`: former voters stay learners.
async fn change_membership(
    cluster: &LocalCluster,
    voters: Vec<u64>,
    retain: bool,
) -> Result<(), Error> {
    for group in 0..cluster.groups {
        retry_admin(|| {
            let client = cluster.voter_client().for_group(group);
            let voters = voters.clone();
            async move {
                // Among the voters to be, not every voter: after an attempt whose outcome was
                // unknown but which went through, a voter it removed still names itself or its
                // old leader, which no member tells otherwise any more.
                let leader = cluster
                    .wait_for_group_leader_among(group, &voters, LEADER_WAIT)
                    .await
                    .map_err(|e| flashstock_client::Error::OutcomeUnknown {
                        message: e.to_string(),
                    })?;
                client
                    .change_membership(&cluster.addr(leader), voters, retain)
                    .await
            }
        })
        .await?;
    }
    Ok(())
}

/// How long a wiped node may take to catch up: a snapshot of everything a long run placed
/// (orders stay an hour, idempotency records a day), then the log.
const CATCH_UP_WAIT: Duration = Duration::from_secs(900);

/// Wait until learner `id` has caught up with the leader (found among `members`) of every Raft
/// group, in its log and in what it has applied, as `stockctl cluster add-learner` waits before
/// a promotion ([`flashstock_client::VoterClient::catch_up`]).
pub(crate) async fn wait_caught_up(
    cluster: &LocalCluster,
    members: &[u64],
    id: u64,
) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
    for group in 0..cluster.groups {
        let client = cluster.voter_client().for_group(group);
        let mut last = String::from("no answer yet");
        loop {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Harness(format!(
                    "node {id} did not catch up in group {group} within {CATCH_UP_WAIT:?}: {last}"
                )));
            }
            if let Ok(leader) = cluster
                .wait_for_group_leader_among(group, members, LEADER_WAIT)
                .await
            {
                // Leadership may come back to the node (its group's preferred voter) before it
                // is asked about: a leader holds its whole log.
                if leader == id {
                    break;
                }
                match client.status(&cluster.addr(leader)).await {
                    Ok(status) => match client.catch_up(&status, id, &cluster.addr(id)).await {
                        flashstock_client::CatchUp::CaughtUp => break,
                        behind => last = behind.to_string(),
                    },
                    Err(e) => last = e.to_string(),
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

/// Run an admin call until it succeeds, for up to [`ADMIN_RETRY_FOR`].
async fn retry_admin<F, Fut>(mut call: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, flashstock_client::Error>>,
{
    let deadline = tokio::time::Instant::now() + ADMIN_RETRY_FOR;
    loop {
        match call().await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(Error::Harness(format!("membership change failed: {e}")))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_lists_parse() {
        assert_eq!(
            FaultKind::parse_list("kill, leader,kill").unwrap(),
            vec![FaultKind::Kill, FaultKind::Leader]
        );
        assert_eq!(FaultKind::parse_list("").unwrap(), vec![]);
        assert!(FaultKind::parse_list("kill,flood").is_err());
        let all = "kill,pause,partition,leader,gateway";
        assert_eq!(FaultKind::parse_list(all).unwrap().len(), 5);
    }
}
