//! Replay the Raft log of a store into a fresh one, as a follower that lost its data does, and
//! print the apply rate: the tool to profile the apply path with (`perf record -g -p PID`).
//!
//! ```text
//! cargo run --release --example replay -- COPY_OF_A_NODES_DATA_DIR/db [ENTRIES_PER_APPLY]
//! ```
//!
//! Reads the source store only; the fresh store is a temporary directory.

use openraft::storage::RaftStateMachine;
use openraft::{RaftLogReader, StorageError};
use std::time::Instant;

fn main() -> Result<(), Box<StorageError<raft_store::NodeId>>> {
    let mut args = std::env::args().skip(1);
    let source = args
        .next()
        .expect("usage: replay SOURCE_DB [ENTRIES_PER_APPLY]");
    let per_apply: u64 = args.next().map_or(64, |n| n.parse().expect("a number"));
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime
        .block_on(replay(source, per_apply))
        .map_err(Box::new)
}

async fn replay(source: String, per_apply: u64) -> Result<(), StorageError<raft_store::NodeId>> {
    let (mut log, _) = raft_store::open(std::path::Path::new(&source))?;
    let target = tempfile::tempdir().expect("a temporary directory");
    let (_, mut state) = raft_store::open(target.path())?;
    let state_of_log = openraft::storage::RaftLogStorage::get_log_state(&mut log).await?;
    let first = state_of_log.last_purged_log_id.map_or(1, |id| id.index + 1);
    let last = state_of_log.last_log_id.map_or(0, |id| id.index);
    println!("replaying entries {first} to {last}, {per_apply} per apply");
    let began = Instant::now();
    let mut window = Instant::now();
    let mut next = first;
    while next <= last {
        let end = (next + per_apply).min(last + 1);
        let entries = log.try_get_log_entries(next..end).await?;
        state.apply(entries).await?;
        if window.elapsed().as_secs() >= 2 {
            let done = end - first;
            let rate = done as f64 / began.elapsed().as_secs_f64();
            println!("{done} entries applied, {rate:.0} per second");
            window = Instant::now();
        }
        next = end;
    }
    let seconds = began.elapsed().as_secs_f64();
    let count = last + 1 - first;
    println!(
        "{count} entries in {seconds:.1} s: {:.0} entries per second",
        count as f64 / seconds
    );
    Ok(())
}
