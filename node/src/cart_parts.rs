//! Carts across groups that their gateway left undecided or unsettled are finished by the
//! leaders of their secondary parts' groups (see `gateway/cart.rs` for the protocol).
//!
//! A secondary part never expires on its own, since its group cannot see the cart's decision,
//! which is the fate of the primary part in another group. So on a voter, every
//! [`CHECK_EVERY`], when this node leads the group, it reads the group's parts not settled yet
//! ([`raft_store::StateReader::cart_parts`]) and, for each, the primary part in this node's
//! own replica of the primary's group. It settles a part once its gateway had [`GRACE_MS`] to
//! do so, counted from the part's deadline or from the primary part's decision, whichever is
//! first (a hold across groups is decided when its buyer pays or cancels, long before its
//! deadline):
//! - confirmed: the cart is bought, and the part is committed (an order);
//! - released or expired: the cart is not bought, and the part is released;
//! - still held, or not there yet (this replica is behind): no decision yet, so it waits. The
//!   primary part expires by its deadline, so a decision always comes.
//!
//! Those states are final, so reading them from a replica that is behind cannot mislead: it
//! only delays. The settling commands carry the keys the gateway uses
//! ([`flashstock_api::cart::settle_key`]), so a part settled by both is settled once.

use std::sync::Arc;
use std::time::Duration;

use flashstock_api::cart::settle_key;
use flashstock_api::{Command, HoldId, HoldState, Op, OrderId, WriteResponse};
use openraft::ServerState;
use tokio::sync::watch;

use crate::{now_ms, Group, NodeState};

/// How often the leader looks for parts left unsettled.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long past a secondary part's deadline its gateway is given to settle it.
pub const GRACE_MS: u64 = 2_000;
/// How long past a part's deadline its primary part may be missing from this node's replica
/// before each check warns of it.
pub const PRIMARY_MISSING_WARN_MS: u64 = 600_000;
/// Most parts read, and settled, per check. Each check reads on from where the last one
/// stopped, and starts again from the first part after reaching the last: parts that must
/// wait (their primary part not decided, or missing here) never keep the others from being
/// read.
pub const PARTS_PER_CHECK_MAX: usize = 256;

/// On a voter, for as long as it runs: settle this group's parts whose cart was decided and
/// whose gateway did not settle them.
pub async fn settle_when_decided(
    state: Arc<NodeState>,
    group: u16,
    stopping: watch::Receiver<bool>,
) {
    let group = &state.groups[usize::from(group)];
    let mut checks = crate::Checks::every(CHECK_EVERY, stopping);
    let mut after = None;
    while checks.next().await {
        if group.raft.metrics().borrow().state != ServerState::Leader {
            continue;
        }
        let commands = match decided_parts(&state, group, &mut after) {
            Ok(commands) => commands,
            Err(e) => {
                tracing::warn!(id = state.id, error = %e, "cannot read the parts of carts");
                continue;
            }
        };
        if commands.is_empty() {
            continue;
        }
        let count = commands.len();
        match state.propose(group, commands).await {
            WriteResponse::Applied { log_index, .. } => tracing::info!(
                id = state.id,
                group = group.number,
                count,
                log_index,
                "settled parts of carts their gateway left"
            ),
            other => tracing::info!(
                id = state.id,
                group = group.number,
                ?other,
                "settling parts of carts did not complete; trying at the next check"
            ),
        }
    }
}

/// The commands that settle this group's secondary parts, among the next ones after `after`
/// (which it moves on), whose cart is decided and whose grace has passed.
fn decided_parts(
    state: &NodeState,
    group: &Group,
    after: &mut Option<HoldId>,
) -> Result<Vec<Command>, String> {
    let now = now_ms();
    let limit = PARTS_PER_CHECK_MAX.min(state.config.limits.commands_per_entry_max);
    let parts = group
        .reader
        .cart_parts(*after, limit)
        .map_err(|e| e.to_string())?;
    *after = match parts.last() {
        Some((last, _)) if parts.len() == limit => Some(*last),
        _ => None,
    };
    let mut commands = Vec::new();
    let mut missing = Vec::new();
    for (part, primary) in parts {
        if part == primary {
            // A primary part expires by its own deadline: that is the decision.
            continue;
        }
        let Some(hold) = group.reader.hold(part).map_err(|e| e.to_string())? else {
            continue;
        };
        if hold.state != HoldState::Held {
            continue;
        }
        let past_deadline = now >= hold.expires_at_ms.saturating_add(GRACE_MS);
        let decided = match state.groups.get(usize::from(OrderId(primary.0).group())) {
            Some(primary_group) => primary_group
                .reader
                .hold(primary)
                .map_err(|e| e.to_string())?,
            // A group this cluster does not have: never placed by a gateway of it.
            None => None,
        };
        let commit = match decided.map(|primary| (primary.state, primary.changed_at_ms)) {
            // Decided: settled here once its gateway had its grace, from the deadline or,
            // for a hold across groups confirmed or released early, from the decision.
            Some((state, decided_at_ms))
                if past_deadline || now >= decided_at_ms.saturating_add(GRACE_MS) =>
            {
                match state {
                    HoldState::Confirmed { .. } => true,
                    HoldState::Released | HoldState::Expired => false,
                    // Not decided yet: wait.
                    HoldState::Held => continue,
                }
            }
            Some(_) => continue,
            // Not applied here yet: wait. Long past the part's deadline, this replica of the
            // primary's group lags far behind, or no longer holds the primary part (forgotten
            // past the idempotency horizon): say so below, and still never guess.
            None => {
                if now > hold.expires_at_ms.saturating_add(PRIMARY_MISSING_WARN_MS) {
                    missing.push((part, primary));
                }
                continue;
            }
        };
        commands.push(Command {
            key: settle_key(&hold.key, commit),
            op: Op::SettlePart { hold: part, commit },
        });
    }
    if let Some((part, primary)) = missing.first() {
        tracing::warn!(
            id = state.id,
            group = group.number,
            count = missing.len(),
            %part,
            %primary,
            "parts of carts wait for their primary part, which this node's replica of the \
             primary's group does not hold (the first is named); their stock stays held"
        );
    }
    Ok(commands)
}
