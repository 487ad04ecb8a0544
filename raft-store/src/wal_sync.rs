//! One write-ahead-log sync for the appends of every Raft group of a store.
//!
//! openraft 0.9.25 waits for each append of a group to be durable before that group appends
//! again, so within one group there is never more than one append waiting for an fsync, and
//! nothing to group ([`crate::log_store`]). Several groups in one store are another matter:
//! they share one write-ahead log, so one sync makes every group's written appends durable.
//! Their appends are written without a sync, and one thread syncs the log for every append
//! written while the previous sync ran, then reports each of them durable. G groups then cost
//! one fsync per round, not G.
//!
//! A store of one group does not use it: its append syncs inside its own write, one hand-off
//! fewer.
//!
//! Bounds: at most one append per group waits here (openraft's own wait), so the queue holds at
//! most as many as the store has groups. The thread holds no reference that keeps the store
//! open: it ends when the last log store is dropped, and a sync asked of a store already closed
//! reports an error, which openraft treats as a failed append.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Weak};

use rocksdb::DB;

/// What is told once the append is durable, or why it could not be made so.
pub(crate) type Done = Box<dyn FnOnce(Result<(), String>) + Send>;

/// The sync thread's door.
pub(crate) struct WalSync {
    requests: mpsc::Sender<Done>,
    syncs: Arc<AtomicU64>,
}

impl WalSync {
    /// Start the thread that syncs `db`'s write-ahead log.
    pub(crate) fn start(db: &Arc<DB>) -> std::io::Result<WalSync> {
        let (requests, waiting) = mpsc::channel::<Done>();
        let syncs = Arc::new(AtomicU64::new(0));
        let db: Weak<DB> = Arc::downgrade(db);
        let counted = syncs.clone();
        std::thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || {
                // Ends once every sender (every log store) is gone.
                while let Ok(first) = waiting.recv() {
                    // Every append written before this point is covered by the sync below.
                    let mut round = vec![first];
                    round.extend(waiting.try_iter());
                    let synced = match db.upgrade() {
                        Some(db) => db.flush_wal(true).map_err(|e| e.to_string()),
                        None => Err("the store is closed".to_string()),
                    };
                    counted.fetch_add(1, Ordering::Relaxed);
                    for done in round {
                        done(synced.clone());
                    }
                }
            })?;
        Ok(WalSync { requests, syncs })
    }

    /// Tell `done` once every write made before this call is durable.
    pub(crate) fn after_sync(&self, done: Done) {
        if let Err(mpsc::SendError(done)) = self.requests.send(done) {
            done(Err("the WAL sync thread stopped".to_string()));
        }
    }

    /// How many syncs the thread has made.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Arc<DB>) {
        let dir = tempfile::tempdir().unwrap();
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        let db = Arc::new(DB::open(&options, dir.path()).unwrap());
        (dir, db)
    }

    /// Appenders that each wait for their own append, as openraft's groups do, share syncs:
    /// fewer syncs than appends, and every append is reported only after a sync that began
    /// after it was written.
    #[test]
    fn concurrent_appends_share_syncs_and_each_is_reported_after_one() {
        const GROUPS: usize = 6;
        const APPENDS: usize = 200;
        let (_dir, db) = store();
        let sync = Arc::new(WalSync::start(&db).unwrap());
        let threads: Vec<_> = (0..GROUPS)
            .map(|group| {
                let (db, sync) = (db.clone(), sync.clone());
                std::thread::spawn(move || {
                    for n in 0..APPENDS {
                        let mut options = rocksdb::WriteOptions::default();
                        options.set_sync(false);
                        let key = format!("g{group}/{n}");
                        db.put_opt(&key, b"entry", &options).unwrap();
                        let written_before = sync.syncs();
                        let (tell, told) = mpsc::channel();
                        sync.after_sync(Box::new(move |result| tell.send(result).unwrap()));
                        told.recv().unwrap().unwrap();
                        // A sync that was already running when the append was written may not
                        // cover it: the one reported must have started after.
                        assert!(sync.syncs() > written_before);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let appends = (GROUPS * APPENDS) as u64;
        let syncs = sync.syncs();
        assert!(
            syncs >= (APPENDS as u64),
            "at least one sync per round of one group"
        );
        assert!(
            syncs < appends,
            "{syncs} syncs for {appends} appends of {GROUPS} groups: none shared"
        );
    }

    #[test]
    fn a_closed_store_reports_an_error_instead_of_durability() {
        let (_dir, db) = store();
        let sync = WalSync::start(&db).unwrap();
        drop(db);
        let (tell, told) = mpsc::channel();
        sync.after_sync(Box::new(move |result| tell.send(result).unwrap()));
        assert!(told.recv().unwrap().is_err());
    }
}
