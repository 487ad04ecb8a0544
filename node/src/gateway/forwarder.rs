//! Forwarding writes from a gateway to the leader, coalesced into batches.
//!
//! Requests wait in one bounded queue; when it is full a request is refused at once
//! ([`ForwardError::Overloaded`]) rather than queued without bound. A batcher task takes an
//! in-flight slot first (at most `gateway.forward_connections_max` batches travel at once), then
//! everything queued, up to `gateway.batch_items_max` commands, as one write: one Raft entry.
//! Under low load a request travels alone and at once; under high load requests pile up while
//! the slots are busy, and the batches grow by themselves.
//!
//! The queue is fair between clients (`forwarder/fair_queue.rs`): each client (see [`Client`])
//! has its own sub-queue of at most `gateway.queue_per_client_max` requests, beyond which that
//! client alone is refused ([`ForwardError::ClientShareFull`]), and batches take one request of
//! each client in turn. One client sending thousands of purchases thus holds a share of the queue, not all
//! of it, and waits its turn in each batch like everyone else; honest buyers meet 503 only when
//! the queue is full of other clients' shares.
//!
//! A batch whose outcome is unknown is retried with the same idempotency keys, so a retry never
//! applies twice and usually turns "unknown" into a definite answer. A batch has
//! `gateway.forward_timeout_ms` in all: each attempt (which may try several voters, each
//! exchange within `gateway.forward_attempt_timeout_ms`) is cut at what is left of it, and no
//! retry starts after it. The answer then keeps "definitely not applied"
//! ([`ForwardError::Unavailable`]) apart from "may have been applied" ([`ForwardError::Unknown`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cluster_config::Config;
use flashstock_api::{Command, Outcome};
use flashstock_client::VoterClient;
use raft_store::Raft;
use tokio::sync::{oneshot, Notify, Semaphore};
use tokio::time::Instant;

use crate::metrics::{Metrics, Stage};
use crate::UnsafeFaults;

#[cfg(feature = "unsafe-faults")]
mod ack_before_commit;
mod fair_queue;

use fair_queue::{FairQueue, Refusal};

/// First pause between retries of a batch; doubles up to [`RETRY_BACKOFF_MAX`].
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(20);
const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(400);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The queue is full: refused before anything was sent. Definitely not applied.
    #[error("the gateway's purchase queue is full")]
    Overloaded,
    /// This client has its share of the queue waiting already: refused before anything was
    /// sent. Definitely not applied.
    #[error("{0} purchases of this client are waiting on this gateway already")]
    ClientShareFull(usize),
    /// No leader took the command within the forward timeout. Definitely not applied.
    #[error("no leader available: {0}")]
    Unavailable(String),
    /// Sent, and then the answer was lost: the command may or may not have been applied.
    #[error("outcome unknown: {0}")]
    Unknown(String),
}

/// A command's outcome, and whether it answers an earlier request with the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    pub outcome: Outcome,
    pub replayed: bool,
}

/// Who a queued command comes from, for sharing the queue fairly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientId {
    /// A client address (IPv4, or an IPv6 /64), as a number.
    Source(u128),
    /// A customer of a trusted source, by a keyed hash of its reference.
    Customer(u64),
    /// An operator's admin call, authorised by its token.
    Operator,
}

/// The client of a command and whether it is bound by its share of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub id: ClientId,
    /// Bounded by the whole queue only: a trusted source speaking for many, or an operator.
    pub share_exempt: bool,
}

impl Client {
    /// An operator's admin call.
    pub const OPERATOR: Client = Client {
        id: ClientId::Operator,
        share_exempt: true,
    };
}

type Reply = oneshot::Sender<Result<Forwarded, ForwardError>>;

struct Pending {
    command: Command,
    reply: Reply,
    queued_at: Instant,
}

/// What the submitters and the batcher share.
struct Queue {
    pending: Mutex<FairQueue<Pending>>,
    /// Wakes the batcher: a request was queued, or the last submitter left.
    ready: Notify,
    /// Set when every [`Forwarder`] clone is dropped.
    closed: AtomicBool,
    per_client_max: usize,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, FairQueue<Pending>> {
        // Every step under the lock leaves the queue whole, even one cut short by a panic.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Closes the queue when the last [`Forwarder`] clone is dropped, which stops the batcher.
struct Submitters(Arc<Queue>);

impl Drop for Submitters {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.ready.notify_one();
    }
}

/// The gateway's handle to submit commands; cheap to clone.
#[derive(Clone)]
pub struct Forwarder {
    queue: Arc<Submitters>,
    batcher: Arc<Batcher>,
    /// Empty, and without effect, unless built for the fault-injection harness.
    #[cfg_attr(not(feature = "unsafe-faults"), allow(dead_code))]
    faults: UnsafeFaults,
}

impl Forwarder {
    /// Start the batcher task, with at most `slots` batches in flight. It runs until every
    /// `Forwarder` clone is dropped.
    pub fn start(
        config: &Config,
        voters: VoterClient,
        raft: Raft,
        slots: usize,
        metrics: Arc<Metrics>,
        faults: UnsafeFaults,
    ) -> Self {
        let slots = slots.max(1);
        let gateway = &config.gateway;
        let queue = Arc::new(Queue {
            pending: Mutex::new(FairQueue::new(
                gateway.queue_max,
                gateway.queue_per_client_max,
            )),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
            per_client_max: gateway.queue_per_client_max.min(gateway.queue_max),
        });
        let batcher = Arc::new(Batcher {
            voters,
            raft,
            metrics,
            batch_items_max: gateway.batch_items_max,
            linger: Duration::from_micros(gateway.batch_wait_us),
            in_flight: Arc::new(Semaphore::new(slots)),
            slots,
            forward_timeout: Duration::from_millis(gateway.forward_timeout_ms),
        });
        tokio::spawn(batcher.clone().run(queue.clone()));
        Forwarder {
            queue: Arc::new(Submitters(queue)),
            batcher,
            faults,
        }
    }

    /// Apply `commands` at the leader as one write (one Raft entry), outside the purchase queue:
    /// for an operator's bulk change, whose commands are already a batch. It takes an in-flight
    /// slot like any batch, and is refused with [`ForwardError::Overloaded`] if none frees up
    /// within the forward timeout. The outcomes are in the commands' order.
    pub async fn submit_all(&self, commands: Vec<Command>) -> Result<Vec<Forwarded>, ForwardError> {
        let batcher = &self.batcher;
        let slot = tokio::time::timeout(batcher.forward_timeout, batcher.in_flight.acquire())
            .await
            .map_err(|_| ForwardError::Overloaded)?
            .expect("the semaphore is never closed");
        let (batch, answers): (Vec<Pending>, Vec<_>) = commands
            .into_iter()
            .map(|command| {
                let (reply, answer) = oneshot::channel();
                let queued_at = Instant::now();
                (
                    Pending {
                        command,
                        reply,
                        queued_at,
                    },
                    answer,
                )
            })
            .unzip();
        batcher.send(batch).await;
        drop(slot);
        let mut outcomes = Vec::with_capacity(answers.len());
        for answer in answers {
            // `send` answers every command before it returns.
            outcomes.push(answer.await.expect("every command is answered")?);
        }
        Ok(outcomes)
    }

    /// Apply one command of `client` at the leader and return its outcome.
    pub async fn submit(
        &self,
        client: Client,
        command: Command,
    ) -> Result<Forwarded, ForwardError> {
        #[cfg(feature = "unsafe-faults")]
        if self.faults.ack_before_commit {
            return ack_before_commit::submit(self, client, command).await;
        }
        self.submit_and_wait(client, command).await
    }

    /// Queue one command and wait for its batch's answer.
    async fn submit_and_wait(
        &self,
        client: Client,
        command: Command,
    ) -> Result<Forwarded, ForwardError> {
        let (reply, answer) = oneshot::channel();
        let queue = &self.queue.0;
        let queued = queue.lock().push(
            client.id,
            client.share_exempt,
            Pending {
                command,
                reply,
                queued_at: Instant::now(),
            },
        );
        queued.map_err(|refusal| match refusal {
            Refusal::Full => ForwardError::Overloaded,
            Refusal::ClientShare => ForwardError::ClientShareFull(queue.per_client_max),
        })?;
        queue.ready.notify_one();
        answer
            .await
            .unwrap_or_else(|_| Err(ForwardError::Unknown("the gateway stopped".into())))
    }
}

struct Batcher {
    voters: VoterClient,
    raft: Raft,
    metrics: Arc<Metrics>,
    batch_items_max: usize,
    linger: Duration,
    in_flight: Arc<Semaphore>,
    /// Batches in flight at most: every slot free means nothing is in flight.
    slots: usize,
    forward_timeout: Duration,
}

impl Batcher {
    async fn run(self: Arc<Self>, queue: Arc<Queue>) {
        let this = self;
        loop {
            // Something queued, or the end. `notify_one` keeps a wake-up for a batcher not yet
            // waiting, so none is lost between the check and the wait.
            while queue.lock().is_empty() {
                if queue.closed.load(Ordering::Acquire) {
                    return;
                }
                queue.ready.notified().await;
            }
            // A free slot first: while all are busy, requests pile up and the next batch grows.
            let slot = this
                .in_flight
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let mut batch = Vec::new();
            {
                let mut pending = queue.lock();
                batch.reserve(this.batch_items_max.min(pending.len()));
                pending.take_into(&mut batch, this.batch_items_max);
            }
            let linger_until = Instant::now() + this.linger;
            // Lingering only pays when other batches are in flight: more requests are coming
            // and the leader is busy anyway. When this is the only one (light load), waiting
            // would only add the linger to its latency.
            let alone = this.in_flight.available_permits() + 1 == this.slots;
            let linger = !(this.linger.is_zero() || alone);
            while linger && batch.len() < this.batch_items_max {
                match tokio::time::timeout_at(linger_until, queue.ready.notified()).await {
                    Ok(()) => queue.lock().take_into(&mut batch, this.batch_items_max),
                    Err(_) => break,
                }
            }
            this.metrics.queued.set(queue.lock().len() as i64);
            let taken = Instant::now();
            for pending in &batch {
                this.metrics
                    .stage(Stage::GatewayQueue, taken - pending.queued_at);
            }
            let this = this.clone();
            tokio::spawn(async move {
                this.send(batch).await;
                drop(slot);
            });
        }
    }

    /// Send one batch, retrying with the same keys until a definite answer or the timeout.
    async fn send(&self, batch: Vec<Pending>) {
        self.metrics.batch_size.observe(batch.len() as f64);
        let commands: Vec<Command> = batch.iter().map(|p| p.command.clone()).collect();
        let began = Instant::now();
        let deadline = began + self.forward_timeout;
        let mut backoff = RETRY_BACKOFF_MIN;
        // Whether an earlier attempt may have been applied.
        let mut maybe_applied = false;
        let failure = loop {
            if let Some(addr) = self.known_leader() {
                self.voters.set_leader_hint(addr);
            }
            let sent_to = self.raft.metrics().borrow().current_leader;
            let attempt = tokio::select! {
                result = tokio::time::timeout_at(deadline, self.voters.write(commands.clone())) => {
                    // Cut at the end of the budget: what was sent may still be applied.
                    result.unwrap_or_else(|_| Err(flashstock_client::Error::OutcomeUnknown {
                        message: format!(
                            "no answer within the forward timeout of {:?}",
                            self.forward_timeout
                        ),
                    }))
                }
                // A leader cut off by the network never answers, and the batch would wait for
                // the whole timeout; once this replica hears from a new leader, the old one can
                // no longer commit anything new. Give up the attempt (its outcome is unknown)
                // and send the same keys to the new leader.
                new_leader = self.leader_moved_from(sent_to) => {
                    Err(flashstock_client::Error::OutcomeUnknown {
                        message: format!(
                            "the leader changed to {new_leader} while the batch was in flight"
                        ),
                    })
                }
            };
            let error = match attempt {
                Ok(applied) => {
                    self.metrics.stage(Stage::GatewayForward, began.elapsed());
                    for (pending, outcome) in batch.into_iter().zip(applied.outcomes) {
                        // After an attempt whose outcome was lost, a duplicate may be our own.
                        let replayed = matches!(outcome, Outcome::Duplicate(_)) && !maybe_applied;
                        let outcome = outcome.first().clone();
                        let _ = pending.reply.send(Ok(Forwarded { outcome, replayed }));
                    }
                    return;
                }
                Err(error) => error,
            };
            if !error.is_definite() {
                maybe_applied = true;
            } else if let flashstock_client::Error::Refused { code, .. } = &error {
                if !code.is_retryable_elsewhere() {
                    // Refused for what it is, not for where it went: retrying cannot help.
                    break error;
                }
            }
            if Instant::now() + backoff >= deadline {
                break error;
            }
            tracing::debug!(%error, "retrying a batch");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
        };
        let failure = if maybe_applied {
            ForwardError::Unknown(failure.to_string())
        } else {
            ForwardError::Unavailable(failure.to_string())
        };
        for pending in batch {
            let _ = pending.reply.send(Err(failure.clone()));
        }
    }

    /// Completes with the new leader's id once this replica knows a leader other than `from`.
    async fn leader_moved_from(&self, from: Option<u64>) -> u64 {
        let mut metrics = self.raft.metrics();
        let moved = metrics
            .wait_for(|m| m.current_leader.is_some() && m.current_leader != from)
            .await
            .ok()
            .and_then(|m| m.current_leader);
        match moved {
            Some(leader) => leader,
            // Raft is shutting down: the write's own timeout ends the attempt.
            None => std::future::pending().await,
        }
    }

    /// The leader's address as this learner knows it.
    fn known_leader(&self) -> Option<String> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader?;
        let membership = metrics.membership_config.membership();
        membership.get_node(&leader).map(|node| node.addr.clone())
    }
}
