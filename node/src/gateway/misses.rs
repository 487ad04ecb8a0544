//! Confirming a miss before it is answered, one round at a time per group.
//!
//! A gateway applies each commit some milliseconds after its leader, more while the leader paces
//! a busy stream to it ([`crate::network`]). So a client that saw a product created through one
//! gateway may ask another that has not applied the creation yet, and a 404 would tell it the
//! product does not exist. Before a gateway denies a product, it catches up with the group's
//! leader (a read index, then the apply up to it, as a linearizable read does) and looks again.
//!
//! Misses share their catch-ups: one task per group runs rounds, one at a time, and a miss
//! waits for the first round that *starts* after it (a round already under way may have asked
//! the leader before the client's write was committed). However many misses come, a gateway
//! asks each group's leader for at most one read index at a time on their account, so a flood
//! of unknown ids costs the voters no more than a steady trickle of linearizable reads. A round
//! that fails (no leader within [`ROUND_WAIT`]) leaves the miss answered as the replica has it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flashstock_client::VoterClient;
use tokio::sync::{watch, Notify};

/// How long one round may take: the leader's read index, then this replica's apply up to it.
pub const ROUND_WAIT: Duration = Duration::from_millis(200);
/// How long a miss waits for its round: the round under way when it came, then its own.
pub const MISS_WAIT: Duration = Duration::from_millis(2 * ROUND_WAIT.as_millis() as u64);

/// One group's rounds of catching up with its leader, on behalf of misses.
pub struct MissConfirmer {
    /// Wakes the rounds' task: a miss is waiting. One stored wake-up covers every miss that
    /// came before the next round starts.
    wake: Arc<Notify>,
    /// Rounds started so far; the next round's number is one more.
    started: Arc<AtomicU64>,
    /// The last round finished: its number, and whether the replica caught up in it.
    finished: watch::Receiver<Round>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Round {
    number: u64,
    caught_up: bool,
}

impl MissConfirmer {
    /// Start the rounds of one group: `voters` finds its leader, `applied` follows this
    /// replica's applied index. Must be called within a Tokio runtime; the task ends with it.
    pub fn start(voters: VoterClient, applied: watch::Receiver<u64>) -> MissConfirmer {
        let wake = Arc::new(Notify::new());
        let started = Arc::new(AtomicU64::new(0));
        let (finish, finished) = watch::channel(Round::default());
        tokio::spawn(rounds(
            voters,
            applied,
            wake.clone(),
            started.clone(),
            finish,
        ));
        MissConfirmer {
            wake,
            started,
            finished,
        }
    }

    /// Whether this replica has caught up with the leader since this call began, so that a
    /// record it still lacks does not exist as of then. False after [`MISS_WAIT`].
    pub async fn caught_up_since(&self) -> bool {
        // A round numbered past `before` starts after this load: it asks the leader after the
        // miss, so it covers every write acknowledged before the miss.
        let before = self.started.load(Ordering::SeqCst);
        self.wake.notify_one();
        let mut finished = self.finished.clone();
        let round =
            tokio::time::timeout(MISS_WAIT, finished.wait_for(|round| round.number > before)).await;
        match round {
            Ok(Ok(round)) => round.caught_up,
            _ => false,
        }
    }
}

/// Run a round each time a miss asks for one, until the gateway is gone.
async fn rounds(
    voters: VoterClient,
    mut applied: watch::Receiver<u64>,
    wake: Arc<Notify>,
    started: Arc<AtomicU64>,
    finish: watch::Sender<Round>,
) {
    loop {
        wake.notified().await;
        if finish.is_closed() {
            return;
        }
        let number = started.fetch_add(1, Ordering::SeqCst) + 1;
        let caught_up = catch_up_round(&voters, &mut applied).await;
        finish.send_replace(Round { number, caught_up });
    }
}

/// One round: [`catch_up`] within [`ROUND_WAIT`].
async fn catch_up_round(voters: &VoterClient, applied: &mut watch::Receiver<u64>) -> bool {
    catch_up(voters, applied, ROUND_WAIT).await.is_ok()
}

/// Why a [`catch_up`] did not finish.
#[derive(Debug)]
pub enum CatchUpFailed {
    /// No leader confirmed a read index: what the last endpoint tried answered.
    NoLeader(String),
    /// No leader confirmed a read index in time.
    TimedOut,
    /// The leader's read index, which this replica did not apply in time.
    Behind(u64),
}

/// Wait until this replica (its applied index, `applied`) has applied everything the leader
/// that `voters` finds had committed when asked: a read index confirmed by a quorum, then the
/// apply up to it, both within `wait`.
pub async fn catch_up(
    voters: &VoterClient,
    applied: &mut watch::Receiver<u64>,
    wait: Duration,
) -> Result<(), CatchUpFailed> {
    let deadline = tokio::time::Instant::now() + wait;
    let index = match tokio::time::timeout_at(deadline, voters.read_index()).await {
        Ok(Ok(index)) => index,
        Ok(Err(error)) => return Err(CatchUpFailed::NoLeader(error.to_string())),
        Err(_) => return Err(CatchUpFailed::TimedOut),
    };
    if applied_up_to(applied, index, deadline).await {
        Ok(())
    } else {
        Err(CatchUpFailed::Behind(index))
    }
}

/// Whether this replica's applied index (`applied`) reaches `index` by `deadline`.
pub async fn applied_up_to(
    applied: &mut watch::Receiver<u64>,
    index: u64,
    deadline: tokio::time::Instant,
) -> bool {
    tokio::time::timeout_at(deadline, applied.wait_for(|applied| *applied >= index))
        .await
        .is_ok_and(|waited| waited.is_ok())
}
