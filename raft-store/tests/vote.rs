//! The vote a store hands back at start-up: never committed, so a node restarted on a copy of its
//! data (a backup taken while it led) cannot lead that term again with a shorter log.

use openraft::storage::RaftLogStorage;
use openraft::Vote;

#[test]
fn a_committed_vote_reads_back_uncommitted_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        {
            let (mut log, _sm) = raft_store::open(dir.path()).unwrap();
            // Node 2 won term 5 and led it.
            log.save_vote(&Vote::new_committed(5, 2)).await.unwrap();
        }
        let (mut log, _sm) = raft_store::open(dir.path()).unwrap();
        let vote = log.read_vote().await.unwrap().expect("the vote survives");
        // Still term 5 and node 2: the node will not vote for another candidate in term 5.
        assert_eq!(vote.leader_id().term, 5);
        assert_eq!(vote.leader_id().voted_for(), Some(2));
        // But not committed: openraft starts it as a follower, not as term 5's leader.
        assert!(!vote.is_committed(), "{vote}");
        assert_eq!(vote, Vote::new(5, 2));
    });
}
