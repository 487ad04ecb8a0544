//! The forwarder's queue: one bounded sub-queue per client, served round robin.
//!
//! At most `queue_max` items in all, and at most `per_client_max` of one client unless it is
//! exempt (a trusted source speaking for many). A batch takes one item of each client in turn,
//! so a client with a thousand items waiting gets one place in each round like a client with
//! one. A client's sub-queue exists only while it holds an item, so the table of clients is
//! bounded by `queue_max` too.

use std::collections::{HashMap, VecDeque};

use super::ClientId;

/// Why an item was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The whole queue is full.
    Full,
    /// This client has its share queued already.
    ClientShare,
}

pub(super) struct FairQueue<T> {
    clients: HashMap<ClientId, VecDeque<T>>,
    /// Clients with an item queued, in the order they are served next; each once.
    turns: VecDeque<ClientId>,
    len: usize,
    queue_max: usize,
    per_client_max: usize,
}

impl<T> FairQueue<T> {
    pub(super) fn new(queue_max: usize, per_client_max: usize) -> FairQueue<T> {
        FairQueue {
            clients: HashMap::new(),
            turns: VecDeque::new(),
            len: 0,
            queue_max,
            per_client_max: per_client_max.min(queue_max),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queue `item` for `client`; `exempt` clients are bounded by the whole queue only.
    pub(super) fn push(&mut self, client: ClientId, exempt: bool, item: T) -> Result<(), Refusal> {
        if self.len >= self.queue_max {
            return Err(Refusal::Full);
        }
        let queue = self.clients.entry(client).or_default();
        if queue.len() >= self.per_client_max && !exempt {
            return Err(Refusal::ClientShare);
        }
        if queue.is_empty() {
            self.turns.push_back(client);
        }
        queue.push_back(item);
        self.len += 1;
        Ok(())
    }

    /// Move up to `max - batch.len()` items into `batch`, one of each client in turn.
    pub(super) fn take_into(&mut self, batch: &mut Vec<T>, max: usize) {
        while batch.len() < max {
            let Some(client) = self.turns.pop_front() else {
                break;
            };
            let queue = self
                .clients
                .get_mut(&client)
                .expect("a client with a turn has a queue");
            batch.push(queue.pop_front().expect("a client with a turn has an item"));
            self.len -= 1;
            if queue.is_empty() {
                self.clients.remove(&client);
            } else {
                self.turns.push_back(client);
            }
        }
        debug_assert_eq!(self.turns.len(), self.clients.len());
        debug_assert!(self.clients.len() <= self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(n: u64) -> ClientId {
        ClientId::Customer(n)
    }

    #[test]
    fn a_client_is_held_to_its_share_and_the_queue_to_its_bound() {
        let mut queue = FairQueue::new(5, 2);
        queue.push(client(1), false, "a1").unwrap();
        queue.push(client(1), false, "a2").unwrap();
        assert_eq!(
            queue.push(client(1), false, "a3"),
            Err(Refusal::ClientShare)
        );
        queue.push(client(2), true, "b1").unwrap();
        queue.push(client(2), true, "b2").unwrap();
        queue
            .push(client(2), true, "b3")
            .expect("an exempt client is bounded by the whole queue only");
        assert_eq!(queue.push(client(3), false, "c1"), Err(Refusal::Full));
        assert_eq!(queue.len(), 5);
    }

    #[test]
    fn batches_take_one_item_of_each_client_in_turn() {
        let mut queue = FairQueue::new(100, 100);
        for i in 0..50 {
            queue.push(client(1), false, (1, i)).unwrap();
        }
        queue.push(client(2), false, (2, 0)).unwrap();
        queue.push(client(3), false, (3, 0)).unwrap();
        queue.push(client(3), false, (3, 1)).unwrap();
        let mut batch = Vec::new();
        queue.take_into(&mut batch, 4);
        assert_eq!(batch, [(1, 0), (2, 0), (3, 0), (1, 1)]);
        batch.clear();
        queue.take_into(&mut batch, 3);
        assert_eq!(
            batch,
            [(3, 1), (1, 2), (1, 3)],
            "the flooder's turn comes back"
        );
        assert_eq!(queue.len(), 46);
        batch.clear();
        queue.take_into(&mut batch, 1000);
        assert_eq!(batch.len(), 46);
        assert!(queue.is_empty() && queue.clients.is_empty() && queue.turns.is_empty());
    }

    /// Prints the cost of one request's trip through the queue next to that of a plain bounded
    /// channel (the queue before fairness), for the common case: many clients, one item each.
    /// Run with `--nocapture` to see the figures; nothing is asserted on speed.
    #[test]
    fn cost_of_a_request_next_to_a_plain_channel() {
        const ROUNDS: usize = 200;
        const BATCH: usize = 256;
        let started = std::time::Instant::now();
        // Behind a lock, as the forwarder holds it.
        let queue = std::sync::Mutex::new(FairQueue::new(8192, 64));
        let mut batch = Vec::with_capacity(BATCH);
        for round in 0..ROUNDS {
            for i in 0..BATCH {
                let id = client((round * BATCH + i) as u64);
                queue.lock().unwrap().push(id, false, i).unwrap();
            }
            batch.clear();
            queue.lock().unwrap().take_into(&mut batch, BATCH);
            assert_eq!(batch.len(), BATCH);
        }
        let fair = started.elapsed() / (ROUNDS * BATCH) as u32;
        let started = std::time::Instant::now();
        let (sender, mut receiver) = tokio::sync::mpsc::channel(8192);
        for _ in 0..ROUNDS {
            for i in 0..BATCH {
                sender.try_send(i).unwrap();
            }
            batch.clear();
            while let Ok(item) = receiver.try_recv() {
                batch.push(item);
            }
            assert_eq!(batch.len(), BATCH);
        }
        let channel = started.elapsed() / (ROUNDS * BATCH) as u32;
        println!("per request: fair queue {fair:?}, plain channel {channel:?}");
    }
}
