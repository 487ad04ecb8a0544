//! Holds expire on time on an idle cluster too.
//!
//! The state machine expires a hold only while it applies an entry: at the start of each one,
//! every hold whose deadline the log's time has reached gives its stock back (a bounded number
//! per entry, the rest with the next ones), and a confirmation or release of a hold past its
//! deadline is refused `hold_expired` whenever it comes. Under load, entries come all the time;
//! when none comes, the stock of an abandoned hold would stay held.
//!
//! So on a voter, every [`CHECK_EVERY`] (250 ms): when this node leads, no entry was applied
//! since the last check, and the earliest deadline of a held hold
//! ([`raft_store::StateReader::next_hold_deadline`]) is at or before this node's clock, it
//! proposes an entry without commands ([`crate::NodeState::propose_empty`]), stamped with its
//! clock, which expires the due holds. While holds are still due after it (more than one entry
//! expires), it proposes again at once, up to [`ENTRIES_PER_CHECK_MAX`] entries per check. A
//! hold therefore gives its stock back within about a quarter second of its deadline (one
//! check, one commit), and an idle cluster without due holds proposes nothing.

use std::sync::Arc;
use std::time::Duration;

use flashstock_api::WriteResponse;
use openraft::ServerState;
use tokio::sync::watch;

use crate::{now_ms, Group, NodeState};

/// How often the leader looks for holds past their deadline.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);
/// Most empty entries one check proposes while holds are still due (each expires at least
/// `raft_store`'s `HOLDS_EXPIRED_PER_ENTRY_MIN`, 64).
pub const ENTRIES_PER_CHECK_MAX: usize = 8;

/// On a voter, for as long as it runs: propose an empty entry when holds are due and nothing
/// else would expire them.
pub async fn expire_when_idle(state: Arc<NodeState>, group: u16, stopping: watch::Receiver<bool>) {
    let group = &state.groups[usize::from(group)];
    let mut checks = crate::Checks::every(CHECK_EVERY, stopping);
    let mut applied_before = group.reader.applied_index();
    while checks.next().await {
        let applied = group.reader.applied_index();
        let idle = applied == applied_before;
        applied_before = applied;
        if !idle || group.raft.metrics().borrow().state != ServerState::Leader {
            continue;
        }
        for _ in 0..ENTRIES_PER_CHECK_MAX {
            if !holds_due(&state, group) {
                break;
            }
            match state.propose_empty(group).await {
                WriteResponse::Applied { log_index, .. } => {
                    tracing::debug!(
                        id = state.id,
                        log_index,
                        "proposed an entry to expire holds"
                    )
                }
                other => {
                    tracing::info!(
                        id = state.id,
                        ?other,
                        "an entry to expire holds did not complete; trying at the next check"
                    );
                    break;
                }
            }
        }
        applied_before = group.reader.applied_index();
    }
}

/// Whether a held hold's deadline is at or before this node's clock.
fn holds_due(state: &NodeState, group: &Group) -> bool {
    match group.reader.next_hold_deadline() {
        Ok(Some(deadline)) => deadline <= now_ms(),
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(id = state.id, error = %e, "cannot read the next hold deadline");
            false
        }
    }
}
