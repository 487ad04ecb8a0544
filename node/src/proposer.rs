//! Proposing commands on a voter: one batch of commands becomes one Raft entry.
//!
//! Every answer is a [`WriteResponse`] whose variant says what the caller may conclude:
//! - `Applied`: committed on a majority and applied; each command's outcome is final.
//! - `NotLeader`, `Refused`: nothing was proposed, or what was proposed was truncated from the
//!   log before it could commit: definitely not applied.
//! - `Unknown`: proposed, and then the node could not learn the result (timeout, shutdown). The
//!   entry may still commit; only a retry with the same idempotency keys tells.

use std::time::Duration;

use flashstock_api::{Command, ErrorCode, NodeAddr, Op, Proposal, WriteResponse};
use openraft::error::{ClientWriteError, RaftError};

use crate::{now_ms, Group, NodeState};

impl NodeState {
    /// Propose `commands` as one entry of `group` and wait until it is applied here.
    pub async fn propose(&self, group: &Group, commands: Vec<Command>) -> WriteResponse {
        if let Err(message) = self.check_batch(&commands) {
            return WriteResponse::Refused {
                code: ErrorCode::InvalidRequest,
                message,
            };
        }
        self.propose_checked(group, commands).await
    }

    /// Propose an entry without commands, which moves the log's clock (and the horizons) on:
    /// the state machine expires the holds past their deadline at the start of every entry,
    /// and [`crate::hold_expiry`] proposes one when no other entry comes. Writes from clients
    /// never come here: [`NodeState::propose`] refuses an empty batch.
    pub async fn propose_empty(&self, group: &Group) -> WriteResponse {
        self.propose_checked(group, Vec::new()).await
    }

    async fn propose_checked(&self, group: &Group, commands: Vec<Command>) -> WriteResponse {
        let count = commands.len();
        let proposal = self.proposal(commands);
        let wait = Duration::from_millis(self.config.raft.commit_timeout_ms);
        // Held back while a hand-off is under way, then refused with `NotLeader` if it moved.
        let _in_flight = group.handoff.enter().await;
        let began = std::time::Instant::now();
        let written = tokio::time::timeout(wait, group.raft.client_write(proposal)).await;
        if matches!(written, Ok(Ok(_))) {
            self.metrics
                .stage(crate::metrics::Stage::LeaderPropose, began.elapsed());
        }
        match written {
            Ok(Ok(written)) => {
                assert_eq!(
                    written.data.len(),
                    count,
                    "the state machine answers every command of an entry"
                );
                WriteResponse::Applied {
                    log_index: written.log_id.index,
                    outcomes: written.data,
                }
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
                let leader = forward
                    .leader_id
                    .zip(forward.leader_node)
                    .map(|(id, node)| NodeAddr {
                        id,
                        addr: node.addr,
                    });
                WriteResponse::NotLeader { leader }
            }
            Ok(Err(error)) => WriteResponse::Unknown {
                message: format!("proposed, then Raft failed: {error}"),
            },
            Err(_) => WriteResponse::Unknown {
                message: format!("not applied within {} ms", wait.as_millis()),
            },
        }
    }

    /// `commands` as one entry's proposal, stamped with this node's time and the horizons it
    /// implies. An empty proposal is a valid entry that changes nothing but those horizons.
    pub fn proposal(&self, commands: Vec<Command>) -> Proposal {
        let now = now_ms();
        Proposal {
            proposed_at_ms: now,
            forget_keys_before_ms: now.saturating_sub(self.config.raft.idempotency_window_ms),
            drop_archived_before_ms: now.saturating_sub(self.config.archive.retention_ms),
            commands,
        }
    }

    /// Structural checks of a batch, made before proposing anything. The state machine checks
    /// each command again, deterministically.
    fn check_batch(&self, commands: &[Command]) -> Result<(), String> {
        let limits = &self.config.limits;
        // A bulk command's items are the entry's work as much as commands are: they count.
        let items: usize = commands
            .iter()
            .map(|command| match &command.op {
                Op::Bulk { ops } => ops.len(),
                _ => 1,
            })
            .sum();
        if commands.is_empty() || items > limits.commands_per_entry_max {
            return Err(format!(
                "a write holds 1 to {} commands (a bulk command counts its items), not {items}",
                limits.commands_per_entry_max,
            ));
        }
        for command in commands {
            if let Op::Purchase { quantity, .. } = command.op {
                if quantity > limits.purchase_quantity_max {
                    return Err(format!(
                        "quantity {quantity} is above the limit of {}",
                        limits.purchase_quantity_max
                    ));
                }
            }
        }
        Ok(())
    }
}
